"""Against a real ComfyUI: the real loader, folders and devices, every API workflow through the real /prompt queue
and executor (core LoadVideo / GetVideoComponents / LoadAudio / LoadImage / CreateVideo / SaveVideo included), and,
where node + Chromium are installed, the workflows in the real graph editor.

Which ComfyUI: $COMFYUI_DIR, else the one `python tools/comfyui_env.py` (run by `python install.py --dev` when
../shared/vendor holds the snapshot) installed for this Python, <venv>/comfyui/ComfyUI. Neither: these tests skip,
unless $MUSETALK_REQUIRE_COMFYUI is set (CI sets it), where they fail.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import ROOT


def _find_comfyui():
    if os.environ.get("COMFYUI_DIR"):
        return os.environ["COMFYUI_DIR"]
    installed = Path(sys.prefix) / "comfyui" / "ComfyUI"  # tools/comfyui_env.py's default place
    return str(installed) if (installed / "main.py").is_file() else None


COMFYUI_DIR = _find_comfyui()
REQUIRED = bool(os.environ.get("MUSETALK_REQUIRE_COMFYUI"))
needs_comfyui = pytest.mark.skipif(not COMFYUI_DIR, reason="no ComfyUI: run python tools/comfyui_env.py (or set "
                                                           "COMFYUI_DIR to a ComfyUI checkout)")


def test_comfyui_is_there_when_required():
    if not REQUIRED:
        pytest.skip("MUSETALK_REQUIRE_COMFYUI is not set")
    assert COMFYUI_DIR and (Path(COMFYUI_DIR) / "main.py").is_file(), \
        f"MUSETALK_REQUIRE_COMFYUI is set but there is no ComfyUI ({COMFYUI_DIR or Path(sys.prefix) / 'comfyui'}):" \
        " python install.py --dev sets it up from ../shared/vendor (tools/comfyui_env.py)"



def test_env_script_says_clearly_when_the_snapshot_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "comfyui_env.py"), "--dest", str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MUSETALK_COMFYUI_TARBALL=str(tmp_path / "absent.tar.gz")))
    assert proc.returncode == 2 and "snapshot is not there" in proc.stderr and "absent.tar.gz" in proc.stderr
    assert "shared/vendor" in proc.stderr and list(tmp_path.iterdir()) == []  # nothing unpacked, nothing installed

def run_in_comfyui(body: str, tmp_path) -> dict:
    code = textwrap.dedent(f"""
        import asyncio, json, os, sys
        sys.path.insert(0, {COMFYUI_DIR!r}); os.chdir({COMFYUI_DIR!r})
        sys.argv = ["main.py", "--cpu", "--base-directory", {str(tmp_path / "base")!r}]
        import comfy.options; comfy.options.enable_args_parsing()
        import folder_paths
        if os.environ.get("MUSETALK_TEST_MODELS"):
            folder_paths.add_model_folder_path("musetalk", os.environ["MUSETALK_TEST_MODELS"])  # extra_model_paths.yaml
        import nodes
        assert asyncio.run(nodes.load_custom_node({str(ROOT)!r}))
    """) + textwrap.dedent(body)
    proc = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", code], capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, **getattr(run_in_comfyui, "env", {})))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_comfyui
def test_pack_registers_nodes_and_models_folder(tmp_path):
    out = run_in_comfyui("""
        ids = sorted(k for k, v in nodes.NODE_CLASS_MAPPINGS.items() if getattr(v, "CATEGORY", "") == "MuseTalk")
        print(json.dumps({"ids": ids, "paths": folder_paths.get_folder_paths("musetalk")}))
    """, tmp_path)
    assert out["ids"] == sorted(["LoadMuseTalkModels", "FaceDetectAndParse", "WhisperAudioEncode", "VAEEncodeMasked",
                                 "MuseTalkUNetInpaint", "BlendAndAssemble", "AddSpeaker", "SaveMuseTalkAvatar",
                                 "LoadMuseTalkAvatar"])
    assert any(p.endswith(os.path.join("models", "musetalk")) for p in out["paths"])


@needs_comfyui
def test_models_load_through_extra_model_paths(tmp_path, tiny_models_factory, monkeypatch):
    folder = tiny_models_factory("v15")
    monkeypatch.setattr(run_in_comfyui, "env", {"MUSETALK_TEST_MODELS": str(folder)}, raising=False)
    out = run_in_comfyui("""
        models, = nodes.NODE_CLASS_MAPPINGS["LoadMuseTalkModels"]().load("v15", "auto", "auto", "torch")
        print(json.dumps({"device": str(models.device), "placement": type(models.placement).__name__,
                          "networks": sorted(models.networks)}))
    """, tmp_path)
    assert out["device"] == "cpu" and out["placement"] == "ComfyPlacement"
    assert out["networks"] == sorted(["unet", "vae", "pe", "whisper", "s3fd", "landmarks", "face_parser"])


# ---------------------------------------------------------------------------------------------------------------
# A ComfyUI server: main.py as a subprocess on 127.0.0.1 (a free port), in a base folder of its own (custom_nodes
# with the pack linked in, models, input, output). Bounded waits; stopped when the module's tests are done.
# ---------------------------------------------------------------------------------------------------------------

# loopback only: never through a proxy that the environment may name
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_folder(base: Path) -> Path:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "musetalk-nodes").symlink_to(ROOT, target_is_directory=True)
    for sub in ("input", "output", "models"):
        (base / sub).mkdir()
    return base


@contextlib.contextmanager
def comfyui(base: Path, *extra: str, start_timeout: float = 240):
    """Start ComfyUI on a free loopback port; yield its URL; terminate it (kill after 30 s) on the way out."""
    port = _free_port()
    log_path = base / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "MUSETALK_MODELS_DIR"}  # ComfyUI's models/musetalk only
    with open(log_path, "w") as log:
        server = subprocess.Popen([os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu",
                                   "--disable-api-nodes", "--listen", "127.0.0.1", "--port", str(port),
                                   "--base-directory", str(base), *extra],
                                  cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    _OPENER.open(url + "/api/system_stats", timeout=2).close()
                    break
                except OSError:
                    assert server.poll() is None, "ComfyUI exited:\n" + log_path.read_text()[-3000:]
                    assert time.monotonic() < deadline, "ComfyUI did not start:\n" + log_path.read_text()[-3000:]
                    time.sleep(0.5)
            started = log_path.read_text()
            assert "IMPORT FAILED" not in started, started[-3000:]
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)


def _get(url: str):
    with _OPENER.open(url, timeout=10) as r:
        return json.loads(r.read())


def queue_prompt(url: str, prompt: dict, client_id: str = "") -> str:
    body = json.dumps({"prompt": prompt, "client_id": client_id or str(uuid.uuid4())}).encode()
    req = urllib.request.Request(url + "/prompt", data=body, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=30) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as e:  # 400: the prompt did not validate; the body says why
        raise AssertionError(f"/prompt refused the workflow: {e.read().decode()[:3000]}") from None
    assert answer["node_errors"] == {}, answer
    return answer["prompt_id"]


def wait_for(url: str, prompt_id: str, log: Path, timeout: float = 300, failing: bool = False) -> dict:
    """The prompt's /history entry once it has finished (success or error), polled for at most ``timeout`` s.
    ``failing``: the prompt is expected to fail; its entry is returned, and a success is the error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = _get(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry and entry["status"].get("status_str") in ("success", "error"):
            if failing:
                assert entry["status"]["status_str"] == "error", "the prompt ran to the end"
                return entry
            if entry["status"]["status_str"] == "error":
                errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
                detail = [(e["node_type"], e["exception_message"], "".join(e["traceback"][-4:])) for e in errors]
                raise AssertionError(f"the prompt failed in ComfyUI: {detail}")
            return entry
        time.sleep(0.5)
    _OPENER.open(urllib.request.Request(url + "/interrupt", data=b"{}", method="POST"), timeout=10).close()
    raise AssertionError(f"prompt {prompt_id} not done after {timeout} s; queue: {_get(url + '/queue')}; log:\n"
                         + log.read_text()[-3000:])


def cached_nodes(entry: dict) -> set:
    return {n for m in entry["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]}


# ---------------------------------------------------------------------------------------------------------------
# Every API workflow (workflows/api) through the real /prompt queue and executor, on the tiny real-format networks
# ---------------------------------------------------------------------------------------------------------------

API_FILES = sorted((ROOT / "workflows" / "api").glob("*.json"))
FPS = Fraction(25)
# the input files the workflows name (tools/workflows.py): a 4-frame clip and two audio tracks of 6 and 3 frames at
# 25 fps (one longer than the clip: bounce; one shorter: cut), small so that the six runs stay short
VIDEO_FILE, PHOTO_FILE = "musetalk_example.mp4", "musetalk_example.png"
SOURCE_FRAMES = 4
AUDIO_SECONDS = {"musetalk_example_speech.wav": 0.24, "musetalk_example_speech_2.wav": 0.12}
# A test-only custom node: LatentSync's published versions with the tiny UNet3D structure the test checkpoint holds
# (what tests/tiny_latentsync.use_tiny_versions does in-process); musetalk_core is one module for it and the pack.
TINY_LATENTSYNC_NODE = """
import sys
from dataclasses import replace
sys.path.insert(0, {root!r})
from musetalk_core.generators.latentsync import config
for name in list(config.VERSIONS):
    config.VERSIONS[name] = replace(config.VERSIONS[name], unet=config.tiny_config())
NODE_CLASS_MAPPINGS = {{}}
"""
# Another test-only custom node: the stand-ins of the two TTS Audio Suite nodes text_to_talking_video uses (that pack
# is not installed here; tests/test_workflows.py THIRD_PARTY_ALLOWED), registered under the suite's node ids.
TTS_STANDIN_NODE = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from tts_standin import NODE_CLASS_MAPPINGS
"""
# And one more: S3FD and DWPose answer from the ground truth of the drawn two-head clip the two-speakers workflow runs
# on (tests/two_speaker_clip.py; random-weight S3FD finds arbitrary "faces", so no 'track 1' to speak for); frames
# of any other video still go to the tiny networks.
TWO_SPEAKER_STANDIN_NODE = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import two_speaker_clip
two_speaker_clip.install(two_speaker_clip.make_clip())
NODE_CLASS_MAPPINGS = {{}}
"""
TWO_SPEAKERS = "musetalk_two_speakers"
TWO_SPEAKER_FILES = {"musetalk_example.mp4": "musetalk_two_heads.mp4",
                     "musetalk_example_speech.wav": "musetalk_two_heads_speaker_1.wav",
                     "musetalk_example_speech_2.wav": "musetalk_two_heads_speaker_2.wav"}


@pytest.fixture(scope="module")
def run_server(tmp_path_factory, tiny_models_factory):
    """A ComfyUI whose models/musetalk holds the tiny MuseTalk v15 set and the tiny LatentSync 1.5 files, and whose
    input/ holds the files the workflows name."""
    if not COMFYUI_DIR:
        pytest.skip("no ComfyUI: run python tools/comfyui_env.py (or set COMFYUI_DIR)")
    import tiny_latentsync
    from media import face_frames, tone, write_video, write_wav
    from PIL import Image

    base = _base_folder(tmp_path_factory.mktemp("comfy_run"))
    (base / "custom_nodes" / "zz_musetalk_tiny_latentsync.py").write_text(TINY_LATENTSYNC_NODE.format(root=str(ROOT)))
    (base / "custom_nodes" / "zz_musetalk_tts_standin.py").write_text(
        TTS_STANDIN_NODE.format(root=str(ROOT), tests=str(ROOT / "tests")))
    (base / "custom_nodes" / "zz_musetalk_two_speaker_standin.py").write_text(
        TWO_SPEAKER_STANDIN_NODE.format(root=str(ROOT), tests=str(ROOT / "tests")))
    models = base / "models" / "musetalk"
    shutil.copytree(tiny_models_factory("v15"), models)
    tiny_latentsync.write_latentsync_files(models)
    frames = face_frames(SOURCE_FRAMES, 128, 112)
    inputs = base / "input"
    write_video(inputs / VIDEO_FILE, frames, FPS, audio=tone(SOURCE_FRAMES / FPS, 16000, 1, freq=440.0))
    Image.fromarray(frames[0]).save(inputs / PHOTO_FILE)
    write_wav(inputs / "musetalk_example_speech.wav", tone(AUDIO_SECONDS["musetalk_example_speech.wav"], 16000, 2), 16000)
    write_wav(inputs / "musetalk_example_speech_2.wav",
              tone(AUDIO_SECONDS["musetalk_example_speech_2.wav"], 22050, 1, 300.0), 22050)
    import two_speaker_clip

    two_speaker_clip.write_inputs(inputs, two_speaker_clip.make_clip(), TWO_SPEAKER_FILES[VIDEO_FILE],
                                  [TWO_SPEAKER_FILES["musetalk_example_speech.wav"],
                                   TWO_SPEAKER_FILES["musetalk_example_speech_2.wav"]])
    with comfyui(base) as url:
        yield url, base


def _api(path: Path) -> dict:
    api = json.loads(path.read_text())
    for n in api.values():  # 2 DDIM steps instead of 20 keep the tiny run short; the graph is what is tested
        if n["class_type"] == "LatentSyncInpaint":
            n["inputs"]["inference_steps"] = 2
    return api


def _saved_videos(url: str, entry: dict, prompt: dict, folder: Path) -> dict:
    """SaveVideo node id -> the file it wrote, fetched through /view as the editor does."""
    saved = {}
    for node_id, ui in entry["outputs"].items():
        if prompt[node_id]["class_type"] != "SaveVideo":
            continue
        (item,) = ui["images"]  # core SaveVideo reports its file under "images", animated
        assert ui.get("animated") == [True] and item["type"] == "output", ui
        query = urllib.parse.urlencode({k: item[k] for k in ("filename", "subfolder", "type")})
        target = folder / f"{node_id}_{item['filename']}"
        with _OPENER.open(f"{url}/view?{query}", timeout=30) as r:
            target.write_bytes(r.read())
        saved[node_id] = target
    return saved


ONE_SPEAKER_FILES = [p for p in API_FILES if p.stem != TWO_SPEAKERS]  # that one: test_two_speakers_run_in_comfyui


@needs_comfyui
@pytest.mark.parametrize("path", ONE_SPEAKER_FILES, ids=[p.stem for p in ONE_SPEAKER_FILES])
def test_api_workflow_runs_in_comfyui(path, run_server, tmp_path):
    from musetalk_core.io import video_read

    url, base = run_server
    api = _api(path)
    entry = wait_for(url, queue_prompt(url, api), base / "server.log")
    saved = _saved_videos(url, entry, api, tmp_path)
    saves = [nid for nid, n in api.items() if n["class_type"] == "SaveVideo"]
    assert sorted(saved) == sorted(saves) and saves
    for node_id, file in saved.items():
        # the audio that reaches this SaveVideo: follow the graph back to its LoadAudio (or text-to-speech node)
        seconds = _upstream_audio_seconds(api, node_id)
        info = video_read.probe(file)
        assert info["frames"] == math.floor(seconds * FPS), (node_id, info)
        assert info["fps"] == FPS, (node_id, info)
        assert info["audio_seconds"] == pytest.approx(info["frames"] / FPS, abs=2e-3), (node_id, info)


def _upstream_audio_seconds(api: dict, node_id: str) -> float:
    import tts_standin

    seen, todo = set(), [node_id]
    while todo:
        nid = todo.pop()
        if nid in seen:
            continue
        seen.add(nid)
        node = api[nid]
        if node["class_type"] == "LoadAudio":
            return AUDIO_SECONDS[node["inputs"]["audio"]]
        if node["class_type"] == "UnifiedTTSTextNode":  # its stand-in's speech
            return tts_standin.SECONDS
        todo += [v[0] for v in node["inputs"].values() if isinstance(v, list)]
    raise AssertionError(f"no LoadAudio or TTS node upstream of node {node_id}")


@needs_comfyui
def test_two_speakers_run_in_comfyui(run_server):
    """The two-speakers workflow on the drawn two-head clip (its heads found by the stand-in custom node above):
    'track 0' and 'track 1' are the two faces of the clip, and the one clip is the video's length (frame_mapping
    'silence') with speaker 1's audio longer and speaker 2's shorter than the video."""
    import two_speaker_clip
    from musetalk_core.io import video_read

    url, base = run_server
    api = _api(ROOT / "workflows" / "api" / f"{TWO_SPEAKERS}.json")
    for node in api.values():
        for key in ("file", "audio"):
            if node["class_type"] in ("LoadVideo", "LoadAudio") and key in node["inputs"]:
                node["inputs"][key] = TWO_SPEAKER_FILES[node["inputs"][key]]
    shown = dict(run_reading_node_texts(url, api))
    for nid, node in api.items():
        if node["class_type"] == "FaceDetectAndParse":
            track = node["inputs"]["speaker_selection"].split()[1]
            assert shown[nid].startswith(f"Speaker: face track {track} of 2."), shown[nid]
    (save,) = [n for n in api.values() if n["class_type"] == "SaveVideo"]
    (file,) = (base / "output").glob(save["inputs"]["filename_prefix"] + "_*.mp4")
    info = video_read.probe(file)
    assert info["frames"] == two_speaker_clip.FRAMES and info["fps"] == FPS, info
    assert info["audio_seconds"] == pytest.approx(info["frames"] / FPS, abs=2e-3), info


@needs_comfyui
def test_changing_only_the_audio_reruns_only_the_audio_stages(run_server, tmp_path):
    """README: 'Changing only the audio re-runs only the audio stages' - in ComfyUI's own cache."""
    url, base = run_server
    api = _api(ROOT / "workflows" / "api" / "musetalk_video_to_video.json")
    wait_for(url, queue_prompt(url, api), base / "server.log")
    by_class = {n["class_type"]: nid for nid, n in api.items()}
    api[by_class["LoadAudio"]]["inputs"]["audio"] = "musetalk_example_speech_2.wav"
    entry = wait_for(url, queue_prompt(url, api), base / "server.log")
    cached = {api[n]["class_type"] for n in cached_nodes(entry)}
    assert cached == {"LoadMuseTalkModels", "LoadVideo", "GetVideoComponents", "FaceDetectAndParse",
                      "VAEEncodeMasked"}, cached
    from musetalk_core.io import video_read

    (file,) = _saved_videos(url, entry, api, tmp_path).values()
    assert video_read.probe(file)["frames"] == math.floor(AUDIO_SECONDS["musetalk_example_speech_2.wav"] * FPS)


@needs_comfyui
def test_video_outputs_in_temp_live_as_long_as_the_cached_output(run_server):
    """BlendAndAssemble's VIDEO path writes temp/musetalk_<id>.mp4; when ComfyUI drops that cached output (here: a
    new run with another audio replaces it) the file goes too. They used to pile up until a restart."""
    url, base = run_server
    api = _api(ROOT / "workflows" / "api" / "musetalk_long_video.json")
    by_class = {n["class_type"]: nid for nid, n in api.items()}
    temp = base / "temp"
    files = []
    for audio in ("musetalk_example_speech_2.wav", "musetalk_example_speech.wav", "musetalk_example_speech_2.wav"):
        api[by_class["LoadAudio"]]["inputs"]["audio"] = audio
        wait_for(url, queue_prompt(url, api), base / "server.log")
        files.append(sorted(p.name for p in temp.glob("musetalk_*.mp4")))
    assert [len(f) for f in files] == [1, 1, 1], files  # only the output ComfyUI still caches
    assert len({f[0] for f in files}) == 3, files  # each run wrote its own file and the one before it went


@needs_comfyui
def test_a_bad_prompt_is_refused_by_comfyui_validation(run_server):
    url, _ = run_server
    api = _api(ROOT / "workflows" / "api" / "musetalk_video_to_video.json")
    by_class = {n["class_type"]: nid for nid, n in api.items()}
    api[by_class["FaceDetectAndParse"]]["inputs"]["bbox_shift"] = 999
    with pytest.raises(AssertionError, match="value_bigger_than_max"):
        queue_prompt(url, api)


# ---------------------------------------------------------------------------------------------------------------
# A prompt that cannot finish fails before face detection; what a user must know is shown on the nodes
# ---------------------------------------------------------------------------------------------------------------

@needs_comfyui
def test_comfyui_runs_the_cheap_checks_first_in_the_runners_order(tmp_path, pack):
    """ComfyUI's own ExecutionList orders every template as tests/workflow_runner.py does (its tests rely on that):
    the audio encoder (an async function here) and Load LatentSync Model before face detection."""
    from workflow_runner import CORE_EQUIVALENTS, execution_order

    out = run_in_comfyui("""
        import inspect
        from comfy_execution.graph import DynamicPrompt, ExecutionList
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))  # core LoadVideo...
        sys.path[:0] = [%r]
        import tts_standin  # the TTS Audio Suite nodes of text_to_talking_video, as stand-ins
        nodes.NODE_CLASS_MAPPINGS.update(tts_standin.NODE_CLASS_MAPPINGS)
        class NoCache:
            def get(self, key): return None
        async def order(prompt):
            plan = ExecutionList(DynamicPrompt(prompt), NoCache())
            outputs = sorted(k for k, v in prompt.items() if getattr(nodes.NODE_CLASS_MAPPINGS[v["class_type"]],
                                                                      "OUTPUT_NODE", False))
            for o in outputs:
                plan.add_node(o)
            seq = []
            while not plan.is_empty():
                node_id, _, _ = await plan.stage_node_execution()
                seq.append(node_id)
                plan.complete_node_execution()
            return seq
        orders = {p: asyncio.run(order(json.load(open(p)))) for p in %r}
        whisper = nodes.NODE_CLASS_MAPPINGS["WhisperAudioEncode"]
        print(json.dumps({"orders": orders, "function": whisper.FUNCTION,
                          "async": inspect.iscoroutinefunction(getattr(whisper, whisper.FUNCTION))}))
    """ % (str(ROOT / "tests"), [str(p) for p in API_FILES]), tmp_path)
    assert out["function"] == "run_first" and out["async"]
    import tts_standin

    classes = {**CORE_EQUIVALENTS, **tts_standin.NODE_CLASS_MAPPINGS, **pack.NODE_CLASS_MAPPINGS}
    for path in API_FILES:
        api = json.loads(path.read_text())
        assert out["orders"][str(path)] == execution_order(api, classes), path.name
        kinds = [api[n]["class_type"] for n in out["orders"][str(path)]]
        # a saved avatar needs no audio (test_workflows: test_cheap_checks_run_before_face_detection...)
        first_heavy = "MuseTalkUNetInpaint" if "SaveMuseTalkAvatar" in kinds else "FaceDetectAndParse"
        assert kinds.index("WhisperAudioEncode") < kinds.index(first_heavy), (path.name, kinds)


@needs_comfyui
def test_too_short_audio_on_the_video_path_fails_before_face_detection(run_server):
    """It used to fail after face detection had run over the whole video (142 s on a real clip)."""
    from media import tone, write_wav

    url, base = run_server
    write_wav(base / "input" / "musetalk_short.wav", tone(0.02, 16000, 1), 16000)  # 20 ms < one frame (40 ms)
    api = _api(ROOT / "workflows" / "api" / "musetalk_long_video.json")
    by_class = {n["class_type"]: nid for nid, n in api.items()}
    api[by_class["LoadAudio"]]["inputs"]["audio"] = "musetalk_short.wav"
    entry = wait_for(url, queue_prompt(url, api), base / "server.log", failing=True)
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert error["node_type"] == "WhisperAudioEncode" and "shorter than one video frame" in error["exception_message"]
    assert by_class["FaceDetectAndParse"] not in error["executed"], error["executed"]


@needs_comfyui
def test_missing_latentsync_files_refuse_the_prompt_before_it_runs(run_server):
    """The server holds LatentSync 1.5 only: a 1.6 prompt is refused at /prompt (nothing runs), on the loader node,
    as LatentSync's files."""
    url, _ = run_server
    api = _api(ROOT / "workflows" / "api" / "musetalk_latentsync_video_to_video.json")
    loader = next(nid for nid, n in api.items() if n["class_type"] == "LoadLatentSyncModel")
    api[loader]["inputs"]["version"] = "latentsync16"
    refusal = _refusal(url, api)
    (error,) = refusal["node_errors"][loader]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert "LatentSync model files are missing (1)" in error["details"] and "latentsync16" in error["details"]


def _refusal(url: str, prompt: dict) -> dict:
    """The body of /prompt's 400 answer for a prompt ComfyUI's validation refuses."""
    body = json.dumps({"prompt": prompt, "client_id": str(uuid.uuid4())}).encode()
    req = urllib.request.Request(url + "/prompt", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        _OPENER.open(req, timeout=30).close()
    assert refused.value.code == 400
    return json.loads(refused.value.read())


def run_reading_node_texts(url: str, prompt: dict, timeout: float = 300):
    """Queue ``prompt`` as the editor does (a websocket client first) and collect the texts ComfyUI sends to show
    on nodes (binary event 3: node id length, node id, text) until the prompt is done."""
    import asyncio
    import struct

    import aiohttp

    async def run():
        client = str(uuid.uuid4())
        texts = []
        async with aiohttp.ClientSession(trust_env=False) as session:  # loopback: never a proxy
            async with session.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?clientId={client}") as ws:
                prompt_id = queue_prompt(url, prompt, client)
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY and struct.unpack(">I", message.data[:4])[0] == 3:
                        (size,) = struct.unpack(">I", message.data[4:8])
                        texts.append((message.data[8:8 + size].decode(), message.data[8 + size:].decode()))
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        event = json.loads(message.data)
                        data = event.get("data", {})
                        if event["type"] == "execution_error":
                            raise AssertionError(data.get("exception_message"))
                        if event["type"] == "executing" and data.get("node") is None \
                                and data.get("prompt_id") == prompt_id:
                            return texts
        raise AssertionError("the websocket closed before the prompt was done")

    return asyncio.run(asyncio.wait_for(run(), timeout))


@needs_comfyui
def test_a_face_less_video_says_so_on_the_nodes(run_server):
    """A video without a face passes through (right), and the graph now says so on the nodes themselves, not only
    in the server log: ComfyUI's progress text, sent to the editor that queued the prompt."""
    import numpy as np
    from media import tone, write_video

    url, base = run_server
    grey = np.full((SOURCE_FRAMES, 128, 112, 3), 128, np.uint8)  # no face for the detector (a cut-away)
    write_video(base / "input" / "musetalk_grey.mp4", grey, FPS, audio=tone(SOURCE_FRAMES / FPS, 16000, 1))
    api = _api(ROOT / "workflows" / "api" / "musetalk_long_video.json")
    by_class = {n["class_type"]: nid for nid, n in api.items()}
    api[by_class["LoadVideo"]]["inputs"]["file"] = "musetalk_grey.mp4"
    shown = dict(run_reading_node_texts(url, api))
    detect = shown[by_class["FaceDetectAndParse"]]
    assert detect.startswith(f"No face found in any of the {SOURCE_FRAMES} frames: the video passes through")
    assert "⚠ FaceDetectAndParse: no face was found" in detect
    assert "no usable face" in shown[by_class["BlendAndAssemble"]]
    assert shown[by_class["WhisperAudioEncode"]].startswith("6 frames at 25 fps")


# ---------------------------------------------------------------------------------------------------------------
# The workflows in the real graph editor: ComfyUI's server on 127.0.0.1 and its frontend in headless Chromium
# (tools/editor_check.js, playwright-core). Run on request (MUSETALK_EDITOR_CHECK=1, or NODE_PATH set; it takes 3-5
# minutes, which CI's budget leaves to the sessions that change nodes or workflows) where the tools are there
# (tests/browser.py): `node`,
# playwright-core ($NODE_PATH, or <venv>/node where `python install.py --dev` puts it) and Chromium ($CHROMIUM,
# default /usr/bin/chromium).
# $COMFYUI_FRONTEND_ROOT runs it against another frontend (a comfyui-frontend-package's static/ folder, e.g. from
# `python tools/comfyui_env.py --frontend latest`). Screenshots are kept in $EDITOR_SHOTS if set.
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def comfyui_server(tmp_path_factory):
    from media import face_frames, tone, write_video, write_wav
    from PIL import Image

    from browser import browser_missing

    if os.environ.get("MUSETALK_EDITOR_CHECK") != "1" and not os.environ.get("NODE_PATH"):
        pytest.skip("the graph editor check runs on request, 3-5 minutes: MUSETALK_EDITOR_CHECK=1 (README, Tests)")
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    base = _base_folder(tmp_path_factory.mktemp("comfy_base"))
    inputs, outputs = base / "input", base / "output" / "video"
    outputs.mkdir(parents=True)
    # the example file names the workflows carry, and a portrait clip (the tallest preview a user will load)
    write_video(inputs / "musetalk_example.mp4", face_frames(8, 360, 640), Fraction(25), audio=tone(0.32, 16000))
    write_video(inputs / "musetalk_portrait.mp4", face_frames(8, 640, 360), Fraction(25), audio=tone(0.32, 16000))
    write_video(outputs / "musetalk_portrait_00001_.mp4", face_frames(8, 640, 360), Fraction(25))
    Image.fromarray(face_frames(1, 512, 512)[0]).save(inputs / "musetalk_example.png")
    write_wav(inputs / "musetalk_example_speech.wav", tone(1.0, 16000), 16000)
    write_wav(inputs / "musetalk_example_speech_2.wav", tone(0.8, 22050, 1, 300.0), 22050)
    front = os.environ.get("COMFYUI_FRONTEND_ROOT")
    with comfyui(base, *(["--front-end-root", front] if front else [])) as url:
        yield url


@needs_comfyui
def test_workflows_open_in_the_real_editor_without_alerts_or_overlaps(comfyui_server, tmp_path):
    from browser import node_env
    from test_workflows import THIRD_PARTY_ALLOWED

    ui_files = sorted((ROOT / "workflows" / "ui").glob("*.json"))
    titles = {json.loads(p.read_text())["extra"]["musetalk"]["title"] for p in ui_files}
    name_of = {json.loads(p.read_text())["extra"]["musetalk"]["title"]: p.stem for p in ui_files}
    # the server lists the pack's templates by file name: the titles, and nothing else (no index.json)
    listed = _get(comfyui_server + "/api/workflow_templates")
    assert set(listed["musetalk-nodes"]) == titles
    shots = os.environ.get("EDITOR_SHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)
    proc = subprocess.run(["node", str(ROOT / "tools" / "editor_check.js"), comfyui_server, shots, *map(str, ui_files)],
                          capture_output=True, text=True, timeout=900,
                          env=node_env(PORTRAIT_VIDEO="musetalk_portrait.mp4",
                                   PORTRAIT_OUTPUT="video/musetalk_portrait_00001_.mp4",
                                   TEMPLATE_TITLES="\n".join(sorted(titles))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    views = []
    # the editor's missing-nodes dialog: only where a workflow uses another pack's nodes (this ComfyUI does not have
    # TTS Audio Suite), listing exactly those
    def missing_ok(name, missing):
        assert missing == sorted(THIRD_PARTY_ALLOWED.get(name, {})), (name, missing)

    for name, seen in report["dropped"].items():
        assert seen["alerts"] == [] and seen["loaded"]["toasts"] == [], (name, seen["alerts"], seen["loaded"]["toasts"])
        missing_ok(name, seen["loaded"]["missingNodes"])
        views += [(name, seen["loaded"]), (name + " grown", seen["grown"])]
    grown = {s[0]: s for seen in report["dropped"].values() for s in seen["grown"]["sizes"]}
    assert any(k.startswith("SaveVideo") and s[2] > 600 for k, s in grown.items())  # the previews really grew
    assert len(report["cards"]) == len(titles) and all(c["loaded"] and (c["width"], c["height"]) == (480, 360)
                                                       for c in report["cards"])  # our thumbnails, not placeholders
    for title, seen in report["templates"].items():
        assert seen["found"] and seen["alerts"] == [] and seen["toasts"] == [], (title, seen)
        missing_ok(name_of[title], seen["missingNodes"])
        views.append((title, seen))
    assert set(report["templates"]) == titles
    for name, seen in report["dropped"].items():  # every widget shows the file's value, in the table's order
        ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
        assert editor_widget_mismatches(ui, seen["loaded"]["widgets"]) == [], name
    for name, view in views:
        assert view["overlaps"] == [] and view["domOutside"] == [], (name, view["overlaps"], view["domOutside"])
        assert view["left"] >= view["sidebarRight"] + 10 and view["top"] >= 90, (name, view["left"], view["top"])


EDITOR_ONLY_WIDGETS = ("upload", "audioUI")  # in the table, but buttons and the audio player: no value of their own


def editor_widget_mismatches(ui: dict, editor_widgets: dict) -> list:
    """Where the graph editor shows other widgets or values than a UI file holds: (node, widget, file value, editor
    value), or (node, "order", the editor's widget names) when its widgets differ from tools/workflows.py's table.
    ``editor_widgets``: node id -> [(name, value)] as loaded (tools/editor_check.js). widgets_values are positional,
    so a table out of step with a node's real INPUT_TYPES loads values into the wrong widgets (it did: a widget
    added in the middle showed NaN and 'track 0' in the widgets after it); nodes of packs that are not installed
    have no widgets there and are skipped."""
    from test_workflows import wftool

    bad = []
    for node in ui["nodes"]:
        kind = node["type"]
        if kind in wftool.UI_ONLY_NODES or kind in wftool.THIRD_PARTY_NODES:
            continue
        label = f"{kind}#{node['id']}"
        table = [n for n in wftool.widget_names(kind) if n not in EDITOR_ONLY_WIDGETS]
        saved = dict(zip(wftool.widget_names(kind), node["widgets_values"]))
        # the editor's own extras (media previews) hold no file value
        shown = [(n, v) for n, v in editor_widgets[str(node["id"])] if n in saved and n not in EDITOR_ONLY_WIDGETS]
        if [n for n, _ in shown] != table:
            bad.append((label, "order", [n for n, _ in shown]))
            continue
        for name, value in shown:
            want = saved[name]
            same = value == pytest.approx(want) if isinstance(want, float) and isinstance(value, (int, float)) \
                else value == want
            if not same:
                bad.append((label, name, want, value))
    return bad


def test_editor_widget_check_catches_values_in_the_wrong_widgets(monkeypatch):
    """The comparison above flags what the editor showed when the generator's table had speaker_selection after
    face_selection but the node has it last (the file's values one position off in the editor), a value the editor
    changed, and passes the files the generator writes."""
    from test_workflows import wftool

    ui = json.loads((ROOT / "workflows" / "ui" / "musetalk_two_speakers.json").read_text())
    real = {kind: wftool.widget_names(kind) for kind in wftool.NODE_DEFS}

    def editor(ui):  # what the editor does: the file's values, by position, into the node's real widgets
        return {str(n["id"]): list(zip(real[n["type"]], n["widgets_values"])) for n in ui["nodes"]}

    assert editor_widget_mismatches(ui, editor(ui)) == []
    shown = editor(ui)
    shown["6"] = [(n, "NaN" if n == "box_smoothing" else v) for n, v in shown["6"]]  # editor_check.js's NaN
    assert editor_widget_mismatches(ui, shown) == [("FaceDetectAndParse#6", "box_smoothing", 0.0, "NaN")]
    # the old table, and a file written from it
    links, widgets, outputs = wftool.NODE_DEFS["FaceDetectAndParse"]
    old = widgets[:6] + widgets[-1:] + widgets[6:-1]
    monkeypatch.setitem(wftool.NODE_DEFS, "FaceDetectAndParse", (links, old, outputs))
    stale = json.loads(json.dumps(ui))
    for node in stale["nodes"]:
        if node["type"] == "FaceDetectAndParse":
            values = dict(zip(real["FaceDetectAndParse"], node["widgets_values"]))
            node["widgets_values"] = [values[name] for name, _, _ in old]
    bad = editor_widget_mismatches(stale, editor(stale))
    assert ("FaceDetectAndParse#6", "order", real["FaceDetectAndParse"]) in bad
    assert ("FaceDetectAndParse#7", "order", real["FaceDetectAndParse"]) in bad and len(bad) == 2


@needs_comfyui
def test_saved_avatar_comes_back_into_the_graph(run_server):
    """In the real server: one prompt lip-syncs the example video and saves its faces and latents as an avatar
    (SaveMuseTalkAvatar); a second prompt loads it (LoadMuseTalkAvatar) and runs the same audio on it, the
    avatar's frames going to BlendAndAssemble as a VIDEO and to core SaveVideo. The two lip-synced files hold the
    same frames; core SaveVideo writes the avatar's own frames."""
    import numpy as np

    from musetalk_core.io import video_read

    url, base = run_server
    models = {"class_type": "LoadMuseTalkModels",
              "inputs": {"version": "v15", "precision": "auto", "device": "auto", "landmark_backend": "torch"}}
    audio = {"class_type": "LoadAudio", "inputs": {"audio": "musetalk_example_speech.wav"}}

    def rest(faces, latents, video, fps, prefix):
        return {
            "6": {"class_type": "WhisperAudioEncode", "inputs": {
                "fps": fps, "audio_padding_left": 2, "audio_padding_right": 2, "feature_mode": "reference",
                "silence_threshold_db": -45.0, "audio_segments": "reference", "musetalk_models": ["1", 0],
                "audio": ["4", 0]}},
            "8": {"class_type": "MuseTalkUNetInpaint", "inputs": {
                "frame_mapping": "bounce", "frame_offset": 0, "batch_size": 8, "decoder": "vae",
                "acceleration": "off", "musetalk_models": ["1", 0], "latents": latents, "audio_features": ["6", 0]}},
            "9": {"class_type": "BlendAndAssemble", "inputs": {
                "blur_factor": 0.05, "upper_boundary_ratio": 0.5, "silence_handling": False,
                "silence_fade_frames": 3, "chunk_size": 16, "faces": faces, "generated": ["8", 0], "video": video}},
            "11": {"class_type": "SaveVideo", "inputs": {"filename_prefix": prefix, "format": "auto",
                                                         "codec": "auto", "video": ["9", 4]}},
            # the blended frames (a sample of at most 16: here all 6) as lossless PNGs: libx264's threads do not
            # give the same bytes twice, so the two videos are compared through these
            "14": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["9", 0]}}}

    from_video = {"1": models, "2": {"class_type": "LoadVideo", "inputs": {"file": VIDEO_FILE}}, "4": audio,
                  "5": {"class_type": "FaceDetectAndParse", "inputs": {
                      "bbox_shift": 0, "extra_margin": 10, "parsing_mode": "auto", "left_cheek_width": 90,
                      "right_cheek_width": 90, "face_selection": "highest_score", "landmark_region": "full_frame",
                      "box_smoothing": 0.0, "detector_scale": 1.0, "batch_size": 8, "speaker_selection": "default",
                      "musetalk_models": ["1", 0], "video": ["2", 0]}},
                  "7": {"class_type": "VAEEncodeMasked", "inputs": {
                      "latent_mode": "sample", "seed": 0, "batch_size": 8, "musetalk_models": ["1", 0],
                      "faces": ["5", 0]}},
                  "12": {"class_type": "SaveMuseTalkAvatar", "inputs": {
                      "faces": ["5", 0], "latents": ["7", 0], "name": "presenter", "fps": 25.0,
                      "blur_factor": 0.05, "upper_boundary_ratio": 0.5, "video": ["2", 0]}},
                  **rest(["5", 0], ["7", 0], ["2", 0], float(FPS), "avatar_test/from_video")}
    entry = wait_for(url, queue_prompt(url, from_video), base / "server.log")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert (base / "models" / "musetalk" / "avatars" / "presenter" / "avatar.json").is_file()

    from_avatar = {"1": models, "4": audio,
                   "3": {"class_type": "LoadMuseTalkAvatar", "inputs": {"avatar": "presenter"}},
                   "13": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "avatar_test/frames",
                                                                "format": "auto", "codec": "auto",
                                                                "video": ["3", 2]}},
                   **rest(["3", 0], ["3", 1], ["3", 2], ["3", 3], "avatar_test/from_avatar")}
    entry = wait_for(url, queue_prompt(url, from_avatar), base / "server.log")
    assert entry["status"]["status_str"] == "success", entry["status"]
    from PIL import Image

    out = base / "output" / "avatar_test"
    count = math.floor(AUDIO_SECONDS["musetalk_example_speech.wav"] * FPS)
    (a,), (v,), (f,) = (sorted(out.glob(f"{name}_*.mp4")) for name in ("from_avatar", "from_video", "frames"))
    assert [video_read.probe(p)["frames"] for p in (a, v)] == [count, count]
    got, expected = ([np.asarray(Image.open(p)) for p in sorted(out.glob(f"{name}_*.png"))]
                     for name in ("from_avatar", "from_video"))
    assert len(got) == len(expected) == count and all(np.array_equal(x, y) for x, y in zip(got, expected))
    frames = video_read.read_video(f, with_audio=False)
    assert frames.frames.shape[0] == SOURCE_FRAMES and frames.fps == FPS
