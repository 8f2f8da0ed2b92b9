"""BlendAndAssemble: the generated faces back into the original frames, plus the audio cut to the clip's length.

The entry points the nodes, the command line and batch jobs call; the parts live beside this module:

- chunk_loop.py: ``ChunkBlender``, the one loop over output frames in chunks (rows, silence weights, read-ahead of
  the source frames), handing each blended chunk to a sink (sinks.py: an IMAGE, or the video writer);
- box_paste.py: ``Blender``, MuseTalk's paste-back (the 256 px face into the face box through the parsing mask); a
  generator with its own paste-back brings its ChunkBlender in ``generated.restore`` (LatentSync: the inverse
  affine warp, generators/latentsync/restore.py);
- silence_fade.py: the face's weight per output frame with silence handling; audio_cut.py: the AUDIO cut to
  T / fps; checks.py: the input checks.

Output pixels no face touches are the caller's values unchanged (float IMAGE values are not rounded), so frames
without a face are the input frames bit for bit; blend_frames and stream_blend give the same frames.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch

from ..errors import InputError
from ..hooks import NO_HOOKS, RunHooks
from ..io.frames import exact_rate, frames_fingerprint, rgb_frames, rgb_to_uint8
from ..types import MuseTalkFaces, MuseTalkGenerated
from .audio_cut import SILENT_AUDIO_RATE, assemble_audio, audio_length
from .box_paste import Blender
from .checks import check_blend_settings, check_fps, check_material
from .chunk_loop import ChunkBlender, blend_layers_into, to_uint8
from .silence_fade import silence_weights
from .sinks import ImageFrames, ImageSink, VideoSink

log = logging.getLogger(__name__)

__all__ = ["Blender", "ChunkBlender", "SILENT_AUDIO_RATE", "assemble_audio", "audio_length", "blend_frames",
           "check_blend_settings", "check_material", "generated_faces_reader", "make_blender", "silence_weights",
           "stream_blend", "to_uint8"]


def blend_frames(images: torch.Tensor, faces: MuseTalkFaces, generated: MuseTalkGenerated, *,
                 blur_factor: float = 0.05, upper_boundary_ratio: float = 0.5, silence_handling: bool = False,
                 silence_fade_frames: int = 3, chunk_size: int = 16, replacement_faces: Optional[torch.Tensor] = None,
                 hooks: Optional[RunHooks] = None, output_device: Optional[torch.device] = None,
                 more_speakers: Sequence = ()):
    """Compose the generated faces into the original frames (an IMAGE batch); see the module docstring.
    ``more_speakers``: (faces, generated) of further speakers of the same frames, pasted after this one in order;
    their audio is mixed into the clip's.

    Returns (frames float32 IMAGE (T, H, W, 3) on ``output_device`` (default: the device of ``images``),
    AUDIO {"waveform" (B, C, round(T / fps * rate)), "sample_rate"} on the CPU, fps float, T int)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError("'images' must be an IMAGE batch (frames, height, width, 3): the same frames given to "
                         "FaceDetectAndParse.")
    images = rgb_frames(images, "images")  # RGB view (alpha dropped, gray expanded) exactly as the faces saw it
    n, height, width = (int(v) for v in images.shape[:3])
    check_material(faces, generated, n, height, width, replacement_faces, blur_factor, upper_boundary_ratio,
                   silence_fade_frames, chunk_size, "images", "IMAGE")
    if faces.frames_fingerprint:
        if frames_fingerprint(images) != faces.frames_fingerprint:
            raise InputError("'images': these are not the frames the faces were computed from (same size and count, "
                             "different pixels). Connect the same IMAGE to FaceDetectAndParse and BlendAndAssemble.")
    t, fps = generated.num_frames, check_fps(generated)
    out_device = torch.device(output_device) if output_device is not None else images.device
    blender = make_blender(faces, generated, generated.faces.device, blur_factor, upper_boundary_ratio,
                           silence_handling, silence_fade_frames)
    faces_of = generated_faces_reader(generated, replacement_faces, blender.device)
    sink = ImageSink(t, height, width, out_device)
    look = (blur_factor, upper_boundary_ratio, silence_handling, silence_fade_frames)
    layers = [(blender, faces_of, None)] + _more_layers(faces, generated, more_speakers, look, "images")
    blend_layers_into(sink, layers, ImageFrames(images), chunk_size, hooks or NO_HOOKS)
    return sink.frames, _clip_audio(generated, more_speakers, t, fps), fps, t


def stream_blend(source, faces: MuseTalkFaces, generated: MuseTalkGenerated, path, *, blur_factor: float = 0.05,
                 upper_boundary_ratio: float = 0.5, silence_handling: bool = False, silence_fade_frames: int = 3,
                 chunk_size: int = 16, replacement_faces: Optional[torch.Tensor] = None,
                 hooks: Optional[RunHooks] = None, crf: int = 18, more_speakers: Sequence = ()):
    """BlendAndAssemble over a frame source (a VIDEO): each chunk of output frames is blended over its source
    frames, read again from the source, and written straight to an H.264 + AAC file at ``path`` (atomically).

    Returns (a preview IMAGE of up to 16 output frames sampled evenly, the AUDIO cut to exactly T / fps, fps, T).
    The output frames equal blend_frames' on the same frames, bit for bit."""
    from fractions import Fraction

    from ..io.audio_file import audio_layout
    from ..io.video_write import VideoWriter

    n, (h, w) = source.num_frames, source.frame_size
    check_material(faces, generated, n, h, w, replacement_faces, blur_factor, upper_boundary_ratio,
                   silence_fade_frames, chunk_size, "video", "VIDEO")
    if faces.frames_fingerprint and source.fingerprint() != faces.frames_fingerprint:
        raise InputError("'video': this is not the video the faces were computed from. Connect the same VIDEO to "
                         "FaceDetectAndParse and BlendAndAssemble.")
    t, fps = generated.num_frames, check_fps(generated)
    exact = source.fps is not None and abs(float(source.fps) - fps) < 1e-6
    rate = Fraction(source.fps) if exact else exact_rate(fps)
    device = generated.faces.device if isinstance(generated.faces, torch.Tensor) \
        else torch.device(generated.settings.get("device", "cpu"))
    blender = make_blender(faces, generated, device, blur_factor, upper_boundary_ratio, silence_handling,
                           silence_fade_frames)
    faces_of = generated_faces_reader(generated, replacement_faces, device)
    audio = _clip_audio(generated, more_speakers, t, fps)
    look = (blur_factor, upper_boundary_ratio, silence_handling, silence_fade_frames)
    layers = [(blender, faces_of, None)] + _more_layers(faces, generated, more_speakers, look, "video")
    with VideoWriter(path, rate, w, h, crf, *audio_layout(audio)) as writer:
        sink = VideoSink(writer, t)
        blend_layers_into(sink, layers, source, chunk_size, hooks or NO_HOOKS)
        writer.finish(audio)
    return sink.preview(), audio, fps, t


def _more_layers(faces, generated, more_speakers, look, input_name: str) -> list:
    """(blender, faces_of, None) per further speaker, checked against the first: same frames, same output."""
    layers = []
    for n, (other_faces, other) in enumerate(more_speakers, start=2):
        label = f"speaker {n}"
        if not isinstance(other, MuseTalkGenerated) or not isinstance(other_faces, MuseTalkFaces):
            raise InputError(f"'more_speakers': {label} is not (faces, generated) from FaceDetectAndParse and a "
                             "generation node.")
        if other.num_frames != generated.num_frames or not torch.equal(other.source_index.cpu(),
                                                                        generated.source_index.cpu()):
            raise InputError(f"'more_speakers': {label} has {other.num_frames} output frames over other source "
                             f"frames than the first speaker's {generated.num_frames}. Give every speaker's "
                             "generation node the same frame_mapping and frame_offset, and audio tracks of one "
                             "length, or frame_mapping 'silence' or 'cut_off' (their length follows the video).")
        if faces.frames_fingerprint and other_faces.frames_fingerprint != faces.frames_fingerprint:
            raise InputError(f"'more_speakers': {label}'s faces come from other frames than '{input_name}'. Give "
                             "every speaker's FaceDetectAndParse the same frames.")
        device = other.faces.device if isinstance(other.faces, torch.Tensor) \
            else torch.device(other.settings.get("device", "cpu"))
        blender = make_blender(other_faces, other, device, *look)
        layers.append((blender, generated_faces_reader(other, None, device), None))
    return layers


def _clip_audio(generated, more_speakers, t: int, fps: float):
    """The clip's AUDIO: the first speaker's, or every speaker's mixed (audio.mix)."""
    from .audio_mix import mix_audio

    audios = [g.audio.audio if g.audio is not None else None for g in [generated] + [g for _, g in more_speakers]]
    if len(audios) == 1 or any(a is None for a in audios):
        return assemble_audio(audios[0], t, fps)
    return mix_audio(audios, t, fps)


def make_blender(faces, generated, device, blur_factor, upper_boundary_ratio, silence_handling,
                 silence_fade_frames) -> ChunkBlender:
    silent = generated.audio.silent if generated.audio is not None else None
    if not bool(faces.has_face.any()):  # cutaway / face-less clip: normal footage, passed through
        t = generated.num_frames
        log.warning("BlendAndAssemble: the video has no usable face (see FaceDetectAndParse's warning and "
                    "preview); its %d output frames are the source frames unchanged, with the audio cut to "
                    "%d / %g s.", t, t, float(generated.fps))
    has_face = generated.has_face
    skipped = getattr(generated, "skipped", None)
    if skipped is not None and bool(skipped.any()):
        # frames MuseTalkUNetInpaint did not generate (skip_silent): weight 0 with silence handling, so the source
        # shows there; without silence handling they would be holes
        if not silence_handling or silent is None:
            raise InputError("'generated' skipped its silent frames (MuseTalkUNetInpaint skip_silent_frames), which "
                             "only BlendAndAssemble with silence_handling on can use: turn silence_handling on, or "
                             "turn skip_silent_frames off.")
        has_face = has_face.detach().to("cpu").bool().reshape(-1) & ~skipped.detach().to("cpu").bool().reshape(-1)
    if generated.restore is not None:  # a generator with its own paste-back (LatentSync: the inverse affine warp)
        return generated.restore.make_blender(faces, generated.source_index, has_face, device, silent=silent,
                                              silence_handling=silence_handling,
                                              silence_fade_frames=silence_fade_frames)
    return Blender(faces, generated.source_index, has_face, device, silent=silent,
                   blur_factor=blur_factor, upper_boundary_ratio=upper_boundary_ratio,
                   silence_handling=silence_handling, silence_fade_frames=silence_fade_frames)


def generated_faces_reader(generated: MuseTalkGenerated, replacement_faces, device):
    """rows -> uint8 faces: the replacement IMAGE when given, else the generated faces (tensor or spilled); a
    generator's own restore may carry the faces it reads instead (LatentSync: unclamped float faces)."""
    if replacement_faces is not None:
        faces = rgb_frames(replacement_faces, "replacement_faces")  # a view; check_material checked the values once
        return lambda rows: rgb_to_uint8(faces[rows].to(device))
    exact = getattr(generated.restore, "faces", None)
    if exact is not None:
        return lambda rows: exact[rows]
    return lambda rows: generated.faces[rows]
