"""The LatentSync generator (bytedance/LatentSync 1.5 / 1.6): the nodes LoadLatentSyncModel and LatentSyncInpaint,
the command line's ``--generator latentsync15|16`` and a workflow use it; the deviations from upstream and what
remains are in docs/latentsync.md.

config    published UNet3D / scheduler / VAE settings, the two versions, the tiny test config
layers    the UNet3D's layers (resnets, spatial and temporal transformers), upstream module names
unet3d    UNet3DConditionModel
loading   load_latentsync: a version's files -> LatentSyncModels
weights   strict loading of latentsync_unet.pt (.pt wrapper or .safetensors twin)
audio     Whisper frames -> per-video-frame (50, 384) windows
align     three-point face alignment and the affine restore (AlignRestore)
pixels    faces <-> latents, mouth mask and paste-back, the reference's order of random draws
sampler   DDIM with classifier-free guidance over 16-frame windows, progress/interrupt per step
landmarks the three alignment points from DWPose's keypoints (default) or InsightFace
video_align  the per-video alignment driver: aligned crops and matrices per source frame
generate  the generator: windows cut at face-less frames, the reference's draw order, DDIM, decode, mouth paste
restore   the paste-back through the inverse affine (BlendAndAssemble's LatentSync path)
stream    the command line's path: audio -> faces -> alignment -> generation -> restore, streamed to the writer
"""
