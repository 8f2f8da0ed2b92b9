"""PyAV reading/writing for the command line: exact fps, frames, audio, atomic writes, clear errors."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from media import face_frames, tone, write_audio_only, write_video, write_wav
from musetalk_core.io import audio_file, image_file, output_file, video_read, video_write
from musetalk_core.errors import InputError


def test_read_video_exact_fps_frames_and_audio(tmp_path):
    frames = face_frames(12, 64, 48)
    path = write_video(tmp_path / "in.mp4", frames, Fraction(30000, 1001), audio=tone(0.5, 16000, 2))
    video = video_read.read_video(path)
    assert video.fps == Fraction(30000, 1001) and isinstance(video.fps, Fraction)
    assert video.frames.shape == (12, 64, 48, 3) and video.frames.dtype == torch.uint8
    # lossy but close to what was written (crf 10)
    assert (video.frames.float() - torch.from_numpy(frames).float()).abs().mean() < 8
    assert video.audio["sample_rate"] == 16000 and video.audio["waveform"].shape[:2] == (1, 2)
    assert video.audio["waveform"].dtype == torch.float32


def test_read_audio_wav_is_comfy_audio(tmp_path):
    samples = tone(0.3, 22050)
    audio = audio_file.read_audio(write_wav(tmp_path / "a.wav", samples, 22050))
    assert audio["sample_rate"] == 22050
    wav = audio["waveform"]
    assert wav.shape == (1, 1, samples.shape[1])
    assert np.allclose(wav[0].numpy(), samples, atol=1e-3)


def test_read_image(tmp_path):
    from PIL import Image

    arr = face_frames(1, 40, 30)[0]
    Image.fromarray(arr).convert("RGBA").save(tmp_path / "p.png")
    img = image_file.read_image(tmp_path / "p.png")
    assert img.shape == (1, 40, 30, 3) and torch.equal(img[0], torch.from_numpy(arr))


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001), Fraction(24)])
def test_write_video_roundtrip_fps_frames_audio_duration(tmp_path, fps):
    t = 17
    frames = torch.from_numpy(face_frames(t, 48, 64))
    sr = 16000
    seconds = float(t / fps)
    audio = {"waveform": torch.from_numpy(tone(seconds + 0.3, sr)).unsqueeze(0), "sample_rate": sr}
    out = video_write.write_video(tmp_path / "o.mp4", frames, fps, audio)
    info = video_read.probe(out)
    assert info["frames"] == t and info["fps"] == fps
    # audio longer than the video is trimmed to exactly the video's duration
    assert info["audio_seconds"] == pytest.approx(seconds, abs=1e-3 + 1.0 / sr)  # mp4 edit lists are in ms
    back = video_read.read_video(out)
    assert (back.frames.float() - frames.float()).abs().mean() < 10
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary file left behind"


def test_write_video_pads_odd_sizes_and_accepts_image_floats(tmp_path):
    frames = torch.from_numpy(face_frames(3, 33, 45)).float() / 255
    out = video_write.write_video(tmp_path / "odd.mp4", frames, 25.0)
    back = video_read.read_video(out)
    assert back.frames.shape == (3, 34, 46, 3) and back.audio is None


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    frames = torch.from_numpy(face_frames(4, 32, 32))
    target = tmp_path / "o.mp4"
    calls = []

    def boom(n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video_write.write_video(target, frames, 25, advance=boom)
    assert os.listdir(tmp_path) == []


def test_existing_output_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "o.mp4"
    target.write_bytes(b"old")
    with pytest.raises(InputError):
        video_write.write_video(target, torch.zeros((0, 8, 8, 3), dtype=torch.uint8), 25)
    assert target.read_bytes() == b"old"
    video_write.write_video(target, torch.zeros((2, 8, 8, 3), dtype=torch.uint8), 25)
    assert video_read.probe(target)["frames"] == 2


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        video_read.read_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(InputError, match="could not be opened"):
        video_read.read_video(junk)
    audio_only = write_audio_only(tmp_path / "speech.m4a", tone(0.3))
    with pytest.raises(InputError, match="audio-only"):
        video_read.read_video(audio_only)
    silent_video = write_video(tmp_path / "v.mp4", face_frames(3, 32, 32))
    with pytest.raises(InputError, match="no audio stream"):
        audio_file.read_audio(silent_video)
    with pytest.raises(InputError, match="could not be read as an image"):
        image_file.read_image(junk)
    with pytest.raises(InputError, match="does not exist"):
        output_file.check_output_path(tmp_path / "nope" / "o.mp4")
    with pytest.raises(InputError, match="must end in"):
        output_file.check_output_path(tmp_path / "o.gif")


def test_video_without_frames(tmp_path):
    import av

    path = tmp_path / "empty.avi"  # AVI keeps a declared video stream with zero frames
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        c.start_encoding()
    with pytest.raises(InputError, match="has no frames"):
        video_read.read_video(path)


def test_lazy_source_reads_any_order_like_a_full_decode(tmp_path):
    import random

    from media import face_frames, write_video as write_test_video
    from musetalk_core.io.sources import VideoFileSource

    path = write_test_video(tmp_path / "v.mp4", face_frames(40, 48, 32), Fraction(25))
    full = video_read.read_video(path, with_audio=False).frames
    source = VideoFileSource(path)
    assert source.num_frames == 40 and source.frame_size == (48, 32) and source.fps == 25
    rnd = random.Random(1)
    for _ in range(12):  # forward, backward (seek) and repeated indices
        idx = [rnd.randrange(40) for _ in range(rnd.randrange(1, 6))]
        assert torch.equal(source.read(idx), full[idx])
    backwards = list(range(39, -1, -1))
    assert torch.equal(source.read(backwards), full[backwards])


def test_truncated_video_names_the_frame_where_decoding_stopped(tmp_path):
    from media import face_frames, write_video as write_test_video
    from musetalk_core.io.sources import VideoFileSource

    path = write_test_video(tmp_path / "v.mkv", face_frames(30, 48, 32), Fraction(25))
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError, match=r"stopped at frame \d+ of the 30"):
        VideoFileSource(cut)  # noticed when opened: before a frame is decoded or anything written


@pytest.mark.parametrize("channels", [1, 2])
def test_long_audio_is_written_in_pieces_with_the_packets_of_one_whole_frame(tmp_path, monkeypatch, channels):
    """VideoWriter.finish hands the track to the AAC encoder in pieces (no whole-track copy for long videos);
    the encoder re-cuts them into the same AAC frames, so the packets equal those of one frame holding it all."""
    import av

    monkeypatch.setattr(audio_file, "AUDIO_CHUNK", 3000)  # many pieces, none a multiple of the 1024-sample AAC frame
    sr, t, fps = 16000, 10, Fraction(25)
    rng = np.random.default_rng(3)
    wave = (0.2 * rng.standard_normal((1, channels, 7000))).astype(np.float32)
    audio = {"waveform": torch.from_numpy(wave), "sample_rate": sr}
    sizes = []
    real = av.AudioFrame.from_ndarray

    def recording(array, *args, **kwargs):
        sizes.append(array.shape[-1])
        return real(array, *args, **kwargs)

    monkeypatch.setattr(av.AudioFrame, "from_ndarray", recording)
    out = video_write.write_video(tmp_path / "o.mp4", torch.from_numpy(face_frames(t, 32, 32)), fps, audio)
    monkeypatch.setattr(av.AudioFrame, "from_ndarray", real)
    assert max(sizes) == 3000 and sum(sizes) == 6400  # 0.4 s at 16 kHz, never the whole track at once
    with av.open(str(out)) as c:
        written = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    # reference: the trimmed track as a single frame through a fresh encoder with the same settings
    keep = int(round(float(t / fps) * sr))
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(tmp_path / "ref.mp4"), "w") as c:
        stream = c.add_stream("aac", rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[0, :, :keep]), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sr, 0
        expected = [bytes(p) for p in stream.encode(frame)] + [bytes(p) for p in stream.encode()]
    assert len(written) > 3 and written == expected
    assert video_read.probe(out)["audio_seconds"] == pytest.approx(keep / sr, abs=1e-3)


def test_writer_preset_reaches_the_encoder_and_bad_ones_are_refused(tmp_path):
    """--preset trades encoding speed for file size; the x264 settings stored in the stream show it was used."""
    frames = torch.from_numpy(face_frames(6, 48, 64))
    settings = {}
    for preset in ("veryfast", "medium"):
        path = tmp_path / f"{preset}.mp4"
        with video_write.VideoWriter(path, Fraction(25), 64, 48, 18, preset=preset) as writer:
            writer.write(frames)
            writer.finish(None)
        data = path.read_bytes()
        settings[preset] = data[data.index(b"x264 - core"):][:2000]
        assert video_read.probe(path)["frames"] == 6
    assert b" ref=1 " in settings["veryfast"] and b" subme=2 " in settings["veryfast"]  # x264's veryfast
    assert b" ref=3 " in settings["medium"] and b" subme=7 " in settings["medium"]      # x264's medium
    with pytest.raises(InputError, match="preset: 'quick' is not an H.264 preset"):
        video_write.VideoWriter(tmp_path / "x.mp4", Fraction(25), 64, 48, preset="quick")
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001)])
@pytest.mark.parametrize("sr,channels", [(16000, 1), (44100, 2), (48000, 2)])
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".m4v", ".mkv"])
def test_every_container_holds_exactly_the_frames_duration_of_audio(tmp_path, suffix, sr, channels, fps):
    """The audio is cut to T / fps in every container the writer accepts. MP4 / MOV / M4V: AAC with the exact
    length in the edit list (in samples); Matroska cannot trim AAC's last 1024-sample frame (0.448 s of sound for
    0.400 s of video at 16 kHz), so .mkv gets FLAC: exactly round(T / fps * rate) samples decode, and the declared
    durations agree."""
    import av

    t = 10
    seconds = float(t / fps)
    source = tone(1.0, sr, channels)
    audio = {"waveform": torch.from_numpy(source).unsqueeze(0), "sample_rate": sr}
    out = video_write.write_video(tmp_path / f"o{suffix}", torch.from_numpy(face_frames(t, 48, 64)), fps, audio)
    info = video_read.probe(out)
    assert info["frames"] == t and info["fps"] == fps
    with av.open(str(out)) as container:
        declared = container.duration / 1e6  # what players show (the longest stream)
        codec = container.streams.audio[0].codec_context.name
        audio_tag = container.streams.audio[0].metadata.get("DURATION")
    assert declared == pytest.approx(seconds, abs=1e-3)
    keep = int(round(seconds * sr))
    # to the sample: the MP4 edit list counts in the sample rate (movie timescale), FLAC's last frame is short
    assert info["audio_seconds"] == pytest.approx(keep / sr, abs=1e-9)
    if suffix == ".mkv":
        assert codec == "flac" and info["audio_samples"] == keep
        assert float(audio_tag.rsplit(":", 1)[1]) == pytest.approx(seconds, abs=1e-3)  # Matroska counts in ms
        back = audio_file.read_audio(out)["waveform"][0].numpy()
        assert np.abs(back - source[:, :keep]).max() < 4e-5  # 16-bit FLAC: the sound itself, not just its length
    else:
        assert codec == "aac"


def test_webm_and_other_containers_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"must end in \.mp4, \.mov, \.mkv or \.m4v"):
        video_write.write_video(tmp_path / "o.webm", torch.from_numpy(face_frames(2, 32, 32)), Fraction(25))
    assert list(tmp_path.iterdir()) == []


def _in_torch_memory(frames: torch.Tensor) -> bool:
    """uint8, contiguous, 64-byte aligned and owned by torch (a numpy-backed storage is not resizable)."""
    return (frames.dtype == torch.uint8 and frames.is_contiguous() and frames.data_ptr() % 64 == 0
            and frames.untyped_storage().resizable())


def test_every_frame_source_reads_into_torch_memory(tmp_path):
    from musetalk_core.io.sources import TensorSource, VideoFileSource

    stored = face_frames(4, 48, 64)
    plain = write_video(tmp_path / "plain.mp4", stored, Fraction(25))
    turned = write_video(tmp_path / "turned.mp4", stored, Fraction(25), rotation=-90)  # a view with negative strides
    rgba = torch.from_numpy(np.concatenate([stored, np.full(stored.shape[:3] + (1,), 255, np.uint8)], -1))
    order = [3, 1, 3, 0]  # out of order, one frame twice
    cases = [(VideoFileSource(plain), video_read.read_video(plain, with_audio=False).frames),
             (VideoFileSource(turned), video_read.read_video(turned, with_audio=False).frames),
             (TensorSource(torch.from_numpy(stored)), torch.from_numpy(stored)),  # numpy-backed uint8 IMAGE
             (TensorSource(rgba), torch.from_numpy(stored)),  # a strided RGB view of RGBA
             (TensorSource(torch.from_numpy(stored).float() / 255), torch.from_numpy(stored))]
    for source, expected in cases:
        try:
            got = source.read(order)
        finally:
            source.close()
        assert _in_torch_memory(got), type(source).__name__
        assert torch.equal(got, expected[order])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                    reason="counts the OpenMP threads of a Linux process; torch must use 2 threads or more")
def test_video_read_runs_torch_work_on_the_reading_thread(tmp_path):
    """The cause of the VIDEO path's slow networks (io.frames.put_frame): the read-ahead thread must get an OpenMP
    team of its own, as an IMAGE read always gave it, so that libgomp lets idle workers sleep. Its team's workers
    are new threads of the process while the reading thread lives."""
    import threading

    from musetalk_core.io.sources import VideoFileSource

    path = write_video(tmp_path / "v.mp4", face_frames(2, 128, 160), Fraction(25))  # frames above torch's grain
    source = VideoFileSource(path)
    source.read([0, 1])  # the decoder's own threads start here, not on the reading thread below
    counts, done = [], threading.Event()

    def read():
        counts.append(len(os.listdir("/proc/self/task")))
        source.read([0, 1])
        counts.append(len(os.listdir("/proc/self/task")))
        done.wait(10)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while len(counts) < 2 and reader.is_alive():
            reader.join(0.01)
        assert len(counts) == 2 and counts[1] > counts[0]
    finally:
        done.set()
        reader.join()
        source.close()


def test_as_source_takes_any_object_with_comfyuis_video_interface(tmp_path):
    """The library imports nothing from ComfyUI or the nodes: a VIDEO is any object with get_stream_source() (a path
    or a file object, read lazily) or get_components() (an IMAGE batch and its frame rate)."""
    import io
    from types import SimpleNamespace

    from musetalk_core.io.sources import TensorSource, VideoFileSource, as_source

    stored = face_frames(3, 48, 64)
    path = write_video(tmp_path / "v.mp4", stored, Fraction(25))
    decoded = video_read.read_video(path, with_audio=False).frames

    class PathVideo:  # core VideoFromFile of a file on disk
        def get_stream_source(self):
            return str(path)

    class BytesVideo:  # core VideoFromFile of uploaded bytes
        def get_stream_source(self):
            return io.BytesIO(path.read_bytes())

    class MemoryVideo:  # core VideoFromComponents: no stream to give
        def get_stream_source(self):
            raise NotImplementedError

        def get_components(self):
            return SimpleNamespace(images=torch.from_numpy(stored).float() / 255, frame_rate=Fraction(30000, 1001))

    for video, kind, expected in [(PathVideo(), VideoFileSource, decoded), (BytesVideo(), VideoFileSource, decoded),
                                  (MemoryVideo(), TensorSource, torch.from_numpy(stored))]:
        source = as_source(video, "video")
        try:
            assert isinstance(source, kind) and source.num_frames == 3
            assert torch.equal(source.read([2, 0]), expected[[2, 0]])
        finally:
            source.close()
    assert as_source(MemoryVideo(), "video").fps == Fraction(30000, 1001)
    with pytest.raises(InputError, match="must be an IMAGE batch or a VIDEO"):
        as_source(object(), "video")
