"""The LatentSync generator (bytedance/LatentSync 1.5 / 1.6), in progress: see docs/latentsync.md.

config    published UNet3D / scheduler / VAE settings, the two versions, the tiny test config
layers    the UNet3D's layers (resnets, spatial and temporal transformers), upstream module names
unet3d    UNet3DConditionModel
loading   load_latentsync: a version's files -> LatentSyncModels
weights   strict loading of latentsync_unet.pt (.pt wrapper or .safetensors twin)
audio     Whisper frames -> per-video-frame (50, 384) windows
align     three-point face alignment and the affine restore (AlignRestore)
pixels    faces <-> latents, mouth mask and paste-back, the reference's order of random draws
sampler   DDIM with classifier-free guidance over 16-frame windows, progress/interrupt per step
"""
