"""The LatentSync generator over a frame source, for the command line (``--generator latentsync15|16``).

The same functions as the graph (WhisperAudioEncode -> FaceDetectAndParse -> LatentSyncInpaint -> BlendAndAssemble):

    audio -> v1.0-original Whisper windows (T frames)          audio.encode_audio
    frames -> DWPose landmarks of the frames the output uses   face_material.build_faces
           -> three-point alignment in source order             video_align.align_video (crops spilled)
           -> 16-frame windows of DDIM                          generate.generate_latentsync (faces spilled)
           -> inverse-affine paste, chunk by chunk, to ``sink`` blend.Blender.stream via restore.AffineBlender

Memory: the aligned crops and generated faces wait in a temporary folder (res x res x 3 bytes per frame, and
2 or 4 times that for the unclamped faces the restore reads); one chunk
of source frames and one window are in memory at a time. The folder is removed when the run ends.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any, Mapping, Optional

import torch

from ...hooks import NO_HOOKS
from ...io.spill import SpillFolder, store_in

MUSETALK_NETWORKS = ("whisper", "s3fd", "landmarks", "face_parser")  # the shared stages LatentSync needs


def latentsync_stream(models, ls_models, source, audio: Mapping[str, Any], fps: float, options, sink,
                      progress=None, spill_dir=None):
    """Lip-sync ``source`` to ``audio`` with LatentSync; returns pipeline.StreamResult."""
    from ...audio.windows import encode_audio
    from ...blend.blender import assemble_audio, generated_faces_reader, make_blender
    from ...faces.material import build_faces
    from ...frame_mapping import used_source_frames
    from ...pipeline import StreamResult
    from .generate import (SamplingSettings, check_audio, count_steps, generate_latentsync, plan_frames,
                           restore_dtype)
    from .video_align import align_video, alignment_plan

    hooks_for = (lambda stage, total: progress(stage, int(total))) if progress is not None \
        else (lambda stage, total: NO_HOOKS)
    settings = SamplingSettings(options.inference_steps, options.guidance_scale, options.seed,
                                options.window_length).check()
    spill = SpillFolder(spill_dir)
    try:
        features = encode_audio(models, audio, float(fps), audio_padding_left=options.audio_padding_left,
                                audio_padding_right=options.audio_padding_right, feature_mode=options.feature_mode,
                                silence_threshold_db=options.silence_threshold_db, hooks=hooks_for("audio", 1),
                                store=store_in(spill, "audio.bin"))
        check_audio(features)
        t, n = features.num_frames, source.num_frames
        _, wanted = used_source_frames(t, n, options.frame_mapping, options.frame_offset)
        faces, _, _ = build_faces(
            models, source, face_selection=options.face_selection, landmark_region=options.landmark_region,
            detector_scale=options.detector_scale, batch_size=options.face_batch_size, wanted=wanted, spill=spill,
            hooks=hooks_for("faces", 2 * int(wanted.sum())))
        res = ls_models.version.resolution
        plan = alignment_plan(faces, n, options.alignment, wanted)
        aligned = align_video(source, faces, res, options.alignment, device=str(ls_models.device),
                              insightface_root=options.insightface_root, hooks=hooks_for("align", len(plan)),
                              store=store_in(spill, "aligned.u8"), frames=plan)
        store = store_in(spill, "generated.u8")((t, res, res, 3), torch.uint8)
        exact = store_in(spill, "generated.restore")((t, res, res, 3), restore_dtype(ls_models.dtype))
        _, has_face = plan_frames(aligned, t, options.frame_mapping, options.frame_offset)
        generated = generate_latentsync(ls_models, aligned, features, frame_mapping=options.frame_mapping,
                                        frame_offset=options.frame_offset, settings=settings, store=store,
                                        restore_store=exact,
                                        hooks=hooks_for("denoise", count_steps(has_face, settings)))
        blender = make_blender(faces, generated, torch.device("cpu"), options.blur_factor,
                               options.upper_boundary_ratio, options.silence_handling, options.silence_fade_frames)
        hooks = hooks_for("restore", t)
        faces_of = generated_faces_reader(generated, None, torch.device("cpu"))  # the unclamped float faces
        with closing(blender.stream(source, options.chunk_size, faces_of)) as chunks:
            for start, stop, out in chunks:
                sink(out)
                hooks.step(stop - start)
    finally:
        spill.close()
    return StreamResult(t, float(fps), assemble_audio(audio, t, float(fps)), faces, features, int(wanted.sum()))


def load_for_latentsync(dirs, options, unet_config=None):
    """(MuseTalk's shared networks, LatentSyncModels) for ``options.generator``; ``unet_config``: an upstream UNet
    config file instead of the version's own (``--unet-config``; not in LipsyncOptions, whose fields make the batch
    job ids)."""
    from ...weights.loading import load_models
    from .loading import load_latentsync

    models = load_models(list(dirs), version="v15", precision=options.precision, device=options.device,
                         landmark_backend=options.landmark_backend, networks=MUSETALK_NETWORKS)
    ls_models = load_latentsync(list(dirs), options.generator, precision=options.precision, device=options.device,
                                config_file=unet_config)
    return models, ls_models


def insightface_root(dirs) -> Optional[str]:
    """<models>/latentsync/auxiliary in the first models folder that has one (upstream: checkpoints/auxiliary);
    the first folder's when none has it (the missing-files error then names that place)."""
    from pathlib import Path

    roots = [Path(d) / "latentsync" / "auxiliary" for d in dirs]
    found = [r for r in roots if r.is_dir()]
    return str(found[0]) if found else (str(roots[0]) if roots else None)
