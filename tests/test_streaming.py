"""The streaming core against the in-memory pipeline: same frames bit for bit, same audio, in chunks that do not
divide the clip, with box smoothing, silence cross-fades across chunk edges, ping-pong turns and face-less frames."""

from __future__ import annotations

import gc
import os
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from media import marked_faceless, write_video
from musetalk_core.faces import locate as face_locate
from musetalk_core.io import video_read, video_write
from musetalk_core.blend.blender import to_uint8
from musetalk_core.hooks import RunHooks
from musetalk_core.weights.loading import load_models
from musetalk_core.options import LipsyncOptions
from node_chain import lipsync
from musetalk_core.io.sources import TensorSource, VideoFileSource
from musetalk_core.pipeline import lipsync_stream
from test_faces import synthetic_video
from nodes.video_types import FileVideo

N = 7
FPS = 25.0
NO_FACE = (2, 5)  # frames marked by a black corner: the wrapped detector reports no face there


def marked_video() -> np.ndarray:
    frames = synthetic_video(N)
    for i in NO_FACE:
        frames[i, :8, :8] = 0
    return frames


def speech_with_pause(frames_out: int, sr: int = 16000) -> dict:
    """A modulated tone with a silent stretch in the middle (silence handling cross-fades around it)."""
    n = int(frames_out / FPS * sr) + 40
    t = np.arange(n) / sr
    wave = 0.4 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    wave[int(0.28 * sr):int(0.5 * sr)] = 0.0
    return {"waveform": torch.from_numpy(wave.astype(np.float32))[None, None], "sample_rate": sr}


@pytest.fixture(scope="module")
def models(tiny_models_factory):
    return load_models([tiny_models_factory("v15")], "v15", precision="fp32", device="cpu")


@pytest.fixture(autouse=True)
def faceless_frames(monkeypatch):
    """The real detector, with frames that carry the marker reported as face-less (content-based, so it holds
    whatever chunk the frame arrives in)."""
    monkeypatch.setattr(face_locate, "locate_faces", marked_faceless(face_locate.locate_faces))


OPTIONS = LipsyncOptions(face_batch_size=2, vae_batch_size=3, batch_size=4, chunk_size=5, box_smoothing=0.6,
                         silence_handling=True, silence_fade_frames=2)


def in_memory(models, frames, audio, options):
    result = lipsync(models, torch.from_numpy(frames), audio, FPS, options)
    return to_uint8(result.images), result.audio


def streamed(models, source, audio, options, **kw):
    out = []
    result = lipsync_stream(models, source, audio, FPS, options, out.append, **kw)
    return torch.cat(out), result


def test_chunked_equals_in_memory_bit_for_bit(models, tmp_path):
    frames = marked_video()
    t = 23  # > 2N: two ping-pong turns; chunks of 5 output frames and 3 (-> 2) source frames divide nothing
    audio = speech_with_pause(t)
    ref, ref_audio = in_memory(models, frames, audio, OPTIONS)
    assert ref.shape[0] == t
    spill = tmp_path / "spill"
    out, result = streamed(models, TensorSource(torch.from_numpy(frames)), audio, OPTIONS, chunk_frames=3,
                           spill_dir=spill)
    assert torch.equal(out, ref)
    assert torch.equal(result.audio["waveform"], ref_audio["waveform"])
    assert result.audio["sample_rate"] == ref_audio["sample_rate"] and result.frame_count == t
    # the material really exercised what the test is about
    assert result.audio_features.silent.any() and not result.audio_features.silent.all()
    assert not result.faces.has_face[list(NO_FACE)].any() and result.faces.has_face.sum() == N - len(NO_FACE)
    for i in NO_FACE:  # output frames over a face-less source frame are that frame unchanged
        rows = [k for k in range(t) if int(result_mapping(t)[k]) == i]
        assert all(torch.equal(out[k], torch.from_numpy(frames[i])) for k in rows)
    assert os.listdir(spill) == []  # the temporary material is gone


def result_mapping(t):
    from musetalk_core.frame_mapping import source_indices

    return source_indices(t, N, "ping_pong", 0)


def test_video_file_source_equals_decoded_frames(models, tmp_path):
    """A file read lazily (seeks for the ping-pong turn) gives what decoding the whole file gives."""
    path = write_video(tmp_path / "in.mp4", marked_video(), Fraction(25))
    decoded = video_read.read_video(path, with_audio=False).frames.numpy()
    options = OPTIONS.updated(box_smoothing=0.0, silence_handling=False, frame_offset=3)
    audio = speech_with_pause(16)
    ref, _ = in_memory(models, decoded, audio, options)
    source = VideoFileSource(path)
    out, _ = streamed(models, source, audio, options, chunk_frames=4)
    assert torch.equal(out, ref)


def test_short_audio_reads_only_the_frames_it_uses(models):
    frames = marked_video()
    t = 4  # the output uses source frames 0..3 only
    audio = speech_with_pause(t)
    options = OPTIONS.updated(box_smoothing=0.0)
    read = []

    class Counting(TensorSource):
        def read(self, indices):
            read.extend(int(i) for i in indices)
            return super().read(indices)

    out, result = streamed(models, Counting(torch.from_numpy(frames)), audio, options, chunk_frames=2)
    assert set(read) == set(range(t)) and result.source_frames_used == t
    ref, _ = in_memory(models, frames[:t], audio, options)  # the same frames, batches and mapping
    assert torch.equal(out, ref)


def test_interrupt_removes_temporary_material(models, tmp_path):
    frames = marked_video()
    spill = tmp_path / "spill"

    def progress(stage, total):
        def stop():
            if stage == "lip-sync":
                raise KeyboardInterrupt

        return RunHooks(check_interrupt=stop)

    with pytest.raises(KeyboardInterrupt):
        streamed(models, TensorSource(torch.from_numpy(frames)), speech_with_pause(12),
                 OPTIONS.updated(box_smoothing=0.0), spill_dir=spill, progress=progress)
    assert os.listdir(spill) == []


def test_audio_too_short_fails_before_any_frame_is_read(models):
    class Untouchable(TensorSource):
        def read(self, indices):
            raise AssertionError("a frame was read")

    short = {"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}
    from musetalk_core.errors import InputError

    with pytest.raises(InputError, match="shorter than one video frame|too short"):
        streamed(models, Untouchable(torch.from_numpy(marked_video())), short, OPTIONS)


def test_graph_video_path_equals_image_path(pack, models, tmp_path, monkeypatch):
    """LoadVideo's lazy VIDEO through FaceDetectAndParse ... BlendAndAssemble (NODE_CLASS_MAPPINGS): the frames it
    encodes are the IMAGE path's frames; the file has exactly T frames at the exact fps and T / fps of audio."""
    nodes = pack.NODE_CLASS_MAPPINGS
    path = write_video(tmp_path / "in.mp4", marked_video(), Fraction(30000, 1001))
    video = FileVideo(path)
    images = video.get_components().images
    fps = float(Fraction(30000, 1001))
    audio = speech_with_pause(13)
    face_args = dict(bbox_shift=0, extra_margin=10, parsing_mode="auto", left_cheek_width=90, right_cheek_width=90,
                     face_selection="highest_score", landmark_region="full_frame", box_smoothing=0.4,
                     detector_scale=1.0, batch_size=2)
    blend_args = dict(blur_factor=0.05, upper_boundary_ratio=0.5, silence_handling=True, silence_fade_frames=2,
                      chunk_size=4)
    (features,) = nodes["WhisperAudioEncode"]().encode(models, audio, fps, 2, 2, "reference", -45.0)[:1]
    written = []
    real_write = video_write.VideoWriter.write
    monkeypatch.setattr(video_write.VideoWriter, "write",
                        lambda self, frames, advance=None: (written.append(frames.clone()),
                                                            real_write(self, frames, advance))[1])

    def run(**source):
        faces, preview, _ = nodes["FaceDetectAndParse"]().prepare(models, **source, **face_args)
        (latents,) = nodes["VAEEncodeMasked"]().encode(models, faces, "sample", 0, 3)
        generated, shown = nodes["MuseTalkUNetInpaint"]().generate(models, latents, features, "ping_pong", 0, 4)
        return preview, shown, nodes["BlendAndAssemble"]().blend(faces=faces, generated=generated, **source,
                                                                 **blend_args)

    _, _, (ref_images, ref_audio, _, ref_count, _) = run(images=images)
    written.clear()
    preview, shown, (sample, out_audio, out_fps, count, out_video) = run(video=video)
    assert count == ref_count == features.num_frames
    assert torch.equal(torch.cat(written), to_uint8(ref_images))
    assert torch.equal(out_audio["waveform"], ref_audio["waveform"])
    assert sample.shape[0] == min(16, count) and preview.shape[0] == N and shown.shape[0] <= 16
    info = video_read.probe(out_video.get_stream_source())
    assert info["frames"] == count and info["fps"] == Fraction(30000, 1001)
    assert info["audio_seconds"] == pytest.approx(count / out_fps, abs=2e-3)
    # the temp mp4 lives as long as the VIDEO (ComfyUI's cached output): dropped, the file goes too
    out_path = Path(out_video.get_stream_source())
    assert out_path.is_file() and out_path.name.startswith("musetalk_")
    del out_video
    gc.collect()
    assert not out_path.exists()
    import musetalk_core.errors as errors

    with pytest.raises(errors.InputError, match="not both"):
        nodes["BlendAndAssemble"]().blend(images=images, video=video, faces=None, generated=None, **blend_args)


def test_face_chunks_are_bounded_by_pixels(models, monkeypatch):
    """FaceDetectAndParse's VIDEO reads hold at most face_material.CHUNK_PIXELS (whole detection batches, at least
    one), so 4K / 8K frames are not read 64 at a time; the material is the same as with the default chunks."""
    from musetalk_core.faces import material as face_material
    from musetalk_core.faces import parsing

    # labels from the parser's input pixels instead of BiSeNet (the slow part; chunked parsing against the real
    # network is test_chunked_equals_in_memory_bit_for_bit): skin where red dominates, lips where it is strongest
    monkeypatch.setattr(parsing, "parse_labels", lambda net, inputs, device=None, one_by_one=None: np.stack(
        [np.where(x[..., 0] > x[..., 2] + 40, 1, 0) + np.where(x[..., 0] > 200, 11, 0) for x in inputs]
    ).astype(np.uint8))
    frames = marked_video()[:4]
    reads = []

    class Counting(TensorSource):
        def read(self, indices):
            reads.append(len(indices))
            return super().read(indices)

    def build():
        reads.clear()
        faces, _, _ = face_material.build_faces(models, Counting(torch.from_numpy(frames)), batch_size=2)
        return faces

    ref = build()
    assert reads == [4] and sum(m is not None and bool(m.any()) for m in ref.masks) >= 2
    h, w = frames.shape[1:3]
    monkeypatch.setattr(face_material, "CHUNK_PIXELS", 3 * h * w)  # 3 frames -> 2: one batch of 2
    faces = build()
    assert reads == [2, 2]
    assert torch.equal(faces.boxes, ref.boxes) and torch.equal(faces.has_face, ref.has_face)
    assert all(torch.equal(a, b) for a, b in zip(faces.masks, ref.masks) if a is not None)
    assert [m is None for m in faces.masks] == [m is None for m in ref.masks]


def test_disk_full_while_spilling_is_a_clear_error_and_removes_the_material(models, tmp_path, monkeypatch):
    """The temporary disk filling up while the face crops are spilled: an InputError saying so (with the fix),
    and the temporary folder (audio windows already written included) removed."""
    import errno

    from musetalk_core.io import spill as spill_module
    from musetalk_core.errors import InputError

    real = spill_module._File.write

    def write(self, offset, data):
        if self.path.name == "crops.u8":
            self._fh.write = _full  # the OS refusing: _File.write turns it into the clear error
        return real(self, offset, data)

    def _full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill_module._File, "write", write)
    folder = tmp_path / "spill"
    with pytest.raises(InputError, match="is full.*TMPDIR"):
        streamed(models, TensorSource(torch.from_numpy(marked_video())), speech_with_pause(8),
                 OPTIONS.updated(box_smoothing=0.0), spill_dir=folder)
    assert os.listdir(folder) == []


class RecordingGenerator:
    """MuseTalk's generator recording, per batch it makes, the thread it ran on, its last output frame and how many
    output frames the sink had received by then; ``fail_at``: the batch that raises instead."""

    def __new__(cls, models, options, sunk, fail_at=None):
        from musetalk_core.generators.musetalk.generator import MuseTalkGenerator

        class Recording(MuseTalkGenerator):
            made = []

            def batches(self, *args):
                for k, (out_idx, decoded) in enumerate(super().batches(*args)):
                    if k == fail_at:
                        raise RuntimeError("the UNet failed")
                    self.made.append((threading.current_thread().name, int(out_idx[-1]), len(sunk)))
                    yield out_idx, decoded

        return Recording(models, options)


def test_batches_made_ahead_on_a_worker_give_the_same_frames(models, monkeypatch):
    """render makes the generator's batches on a worker, at most two batches beyond the blend's need; the frames
    equal those of batches made on the caller's thread when a chunk needs them ("auto" on the CPU)."""
    import musetalk_core.pipeline as pipeline

    frames, t = marked_video(), 23
    audio = speech_with_pause(t)
    options = OPTIONS.updated(silence_handling=False)
    runs = {}
    for ahead in (True, False, "auto"):
        monkeypatch.setattr(pipeline, "GENERATE_AHEAD", ahead)
        sunk = []
        generator = RecordingGenerator(models, options, sunk)
        lipsync_stream(models, TensorSource(torch.from_numpy(frames)), audio, FPS, options,
                       lambda chunk: sunk.extend(chunk), generator=generator)
        runs[ahead] = (torch.stack(sunk), generator.made)
    assert torch.equal(runs[True][0], runs[False][0]) and runs[True][0].shape[0] == t
    assert {name for name, _, _ in runs[True][1]} == {"musetalk-generate"}
    assert {name for name, _, _ in runs[False][1]} == {threading.current_thread().name}
    assert runs["auto"][1] == runs[False][1]  # on the CPU: in turn, when a chunk needs them
    batch, chunk = options.batch_size, options.chunk_size
    for _, last, sunk_then in runs[True][1]:
        # the chunk being blended needs frames up to sunk_then + chunk - 1; the worker is at most 2 batches beyond
        assert last < sunk_then + chunk + 2 * batch
    assert any(sunk_then > 0 for _, _, sunk_then in runs[True][1])  # it really worked beside the blend


@pytest.mark.parametrize("fail_at", [0, 3])
def test_a_batch_that_fails_on_the_worker_fails_the_run_and_ends_the_worker(models, tmp_path, monkeypatch, fail_at):
    import musetalk_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "GENERATE_AHEAD", True)
    sunk = []
    generator = RecordingGenerator(models, OPTIONS, sunk, fail_at=fail_at)
    spill = tmp_path / "spill"
    with pytest.raises(RuntimeError, match="the UNet failed"):
        lipsync_stream(models, TensorSource(torch.from_numpy(marked_video())), speech_with_pause(23), FPS,
                       OPTIONS.updated(silence_handling=False), sunk.extend, generator=generator, spill_dir=spill)
    assert len(sunk) < 23
    assert [t for t in threading.enumerate() if t.name == "musetalk-generate"] == []
    assert os.listdir(spill) == []


def test_a_sink_that_fails_stops_the_worker_ahead_of_it(models, monkeypatch):
    import musetalk_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "GENERATE_AHEAD", True)

    def sink(chunk):
        raise OSError("the output disk is full")

    generator = RecordingGenerator(models, OPTIONS, [])
    with pytest.raises(OSError, match="disk is full"):
        lipsync_stream(models, TensorSource(torch.from_numpy(marked_video())), speech_with_pause(23), FPS,
                       OPTIONS.updated(silence_handling=False), sink, generator=generator)
    assert [t for t in threading.enumerate() if t.name == "musetalk-generate"] == []
    assert len(generator.made) <= 4  # the first chunk's two batches and at most two made ahead
