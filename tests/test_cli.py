"""``python -m musetalk_core lipsync``: bad input -> a clear message and exit code 2; real runs on the tiny models."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from conftest import ROOT
from media import face_frames, tone, write_audio_only, write_video, write_wav
from musetalk_core import cli
from musetalk_core.io import video_read
from musetalk_core.options import LipsyncOptions


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_media")
    return {
        "video": write_video(folder / "in.mp4", face_frames(6, 128, 112), Fraction(30000, 1001),
                             audio=tone(0.2, 16000)),
        "audio": write_wav(folder / "speech.wav", tone(0.3, 16000, 2), 16000),
        "audio_only": write_audio_only(folder / "speech.m4a", tone(0.3)),
        "folder": folder,
    }


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_node_parameters(capsys):
    code, out, _ = run(["lipsync", "--help"], capsys)
    assert code == 0
    for option in ("--bbox-shift", "--extra-margin", "--parsing-mode", "--batch-size", "--version", "--precision",
                   "--device", "--models-dir", "--image", "--fps", "--frame-mapping", "--blur-factor"):
        assert option in out


def test_options_are_the_node_inputs():
    parser = cli.build_parser()
    args = parser.parse_args(["lipsync", "--video", "v.mp4", "--audio", "a.wav", "-o", "o.mp4", "--bbox-shift", "-7",
                              "--batch-size", "100", "--parsing-mode", "neck", "--silence-handling"])
    options = cli.options_from_args(args)
    assert options.bbox_shift == -7 and options.parsing_mode == "neck" and options.silence_handling is True
    assert options.batch_size == 100 and options.face_batch_size == 64 and options.vae_batch_size == 64
    defaults = cli.options_from_args(parser.parse_args(["lipsync", "--video", "v", "--audio", "a", "-o", "o.mp4"]))
    assert defaults == LipsyncOptions()


@pytest.mark.parametrize("case", ["missing_video", "junk_video", "audio_only_as_video", "empty_video",
                                  "missing_audio", "silent_audio", "missing_output_folder", "fps_with_video",
                                  "bad_option", "missing_models", "truncated_video"])
def test_bad_input_exits_2_with_message_and_writes_nothing(case, media, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    video, audio = str(media["video"]), str(media["audio"])
    extra = ["--models-dir", str(tmp_path / "no_models")]
    expect = None
    if case == "missing_video":
        video, expect = str(tmp_path / "nope.mp4"), "does not exist"
    elif case == "junk_video":
        junk = tmp_path / "junk.mp4"
        junk.write_bytes(b"garbage" * 100)
        video, expect = str(junk), "could not be opened"
    elif case == "audio_only_as_video":
        video, expect = str(media["audio_only"]), "audio-only"
    elif case == "empty_video":
        import av

        empty = tmp_path / "empty.avi"
        with av.open(str(empty), "w") as c:
            s = c.add_stream("mpeg4", rate=25)
            s.width = s.height = 32
            s.pix_fmt = "yuv420p"
            c.start_encoding()
        video, expect = str(empty), "no frames"
    elif case == "missing_audio":
        audio, expect = str(tmp_path / "nope.wav"), "does not exist"
    elif case == "silent_audio":
        audio, expect = str(write_video(tmp_path / "mute.mp4", face_frames(2, 32, 32))), "no audio stream"
    elif case == "missing_output_folder":
        out, expect = tmp_path / "missing" / "out.mp4", "does not exist"
    elif case == "fps_with_video":
        extra += ["--fps", "25"]
        expect = "--image only"
    elif case == "bad_option":
        extra += ["--bbox-shift", "500"]
        expect = "outside"
    elif case == "missing_models":
        expect = "missing"
    elif case == "truncated_video":  # cut part-way: refused before a model is loaded, naming the frame
        whole = write_video(tmp_path / "whole.mkv", face_frames(30, 48, 32), Fraction(25)).read_bytes()
        cut = tmp_path / "cut.mkv"
        cut.write_bytes(whole[: int(len(whole) * 0.6)])
        (tmp_path / "whole.mkv").unlink()
        video, expect = str(cut), "stopped at frame"
    code, _, err = run(["lipsync", "--video", video, "--audio", audio, "--output", str(out), "--no-progress",
                        *extra], capsys)
    assert code == 2, err
    assert expect.lower() in err.lower(), err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "musetalk_core", "lipsync", "--video", str(tmp_path / "x.mp4"),
                           "--audio", str(tmp_path / "a.wav"), "--output", str(tmp_path / "o.mp4")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_lipsync_video_end_to_end(media, tmp_path, tiny_models_factory, capsys):
    models = tiny_models_factory("v15")
    out = tmp_path / "result.mp4"
    code, stdout, err = run(["lipsync", "--video", str(media["video"]), "--audio", str(media["audio"]),
                             "--output", str(out), "--models-dir", str(models), "--batch-size", "4"], capsys)
    assert code == 0, err
    assert "MuseTalk" in err  # tqdm bars on stderr
    fps = Fraction(30000, 1001)
    info = video_read.probe(out)
    expected = math.floor(Fraction(3, 10) * fps)
    assert info["frames"] == expected and info["fps"] == fps
    assert info["audio_seconds"] == pytest.approx(float(expected / fps), abs=2e-3)
    assert str(out) in stdout
    assert [p for p in os.listdir(tmp_path) if p != "result.mp4"] == []


def test_lipsync_image_end_to_end(media, tmp_path, tiny_models_factory, capsys):
    from PIL import Image

    models = tiny_models_factory("v15")
    photo = tmp_path / "face.png"
    Image.fromarray(face_frames(1, 128, 112)[0]).save(photo)
    out = tmp_path / "talk.mp4"
    code, _, err = run(["lipsync", "--image", str(photo), "--audio", str(media["audio"]), "--fps", "12.5",
                        "--output", str(out), "--models-dir", str(models), "--no-progress"], capsys)
    assert code == 0, err
    info = video_read.probe(out)
    assert info["fps"] == Fraction(25, 2) and info["frames"] == math.floor(0.3 * 12.5)
    assert info["audio_seconds"] == pytest.approx(info["frames"] / 12.5, abs=2e-3)


def test_audio_shorter_than_a_frame_is_refused_before_anything_runs(media, tmp_path, capsys):
    short = write_wav(tmp_path / "blip.wav", tone(0.01, 16000), 16000)  # 10 ms < one frame at 29.97 fps
    out = tmp_path / "out.mp4"
    code, _, err = run(["lipsync", "--video", str(media["video"]), "--audio", str(short), "--output", str(out),
                        "--models-dir", str(tmp_path / "no_models"), "--no-progress"], capsys)
    assert code == 2 and "shorter than one video frame" in err  # not "missing models": checked first
    assert not out.exists()



@pytest.mark.parametrize("how", ["same_path", "symlink", "hard_link", "the_audio"])
def test_output_that_is_an_input_is_refused(how, media, tmp_path, capsys):
    """--output naming the source (also through a symbolic or a hard link) would replace the user's original with
    the result: refused (as ffmpeg does) before anything is loaded or written; the source is untouched."""
    video = tmp_path / "talk.mp4"
    video.write_bytes(media["video"].read_bytes())
    audio = tmp_path / "speech.wav"
    audio.write_bytes(media["audio"].read_bytes())
    out, named = video, "--video"
    if how == "symlink":
        out = tmp_path / "link.mp4"
        out.symlink_to(video)
    elif how == "hard_link":
        out = tmp_path / "other_name.mp4"
        os.link(video, out)
    elif how == "the_audio":  # the audio taken from a video file, written over
        audio, out, named = video, video, "--audio"
        video = tmp_path / "picture.mp4"
        video.write_bytes(media["video"].read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, _, err = run(["lipsync", "--video", str(video), "--audio", str(audio), "--output", str(out),
                        "--no-progress", "--models-dir", str(tmp_path / "no_models")], capsys)
    assert code == 2, err
    assert "same file as" in err and named in err and "replace your source" in err, err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing changed, nothing left
