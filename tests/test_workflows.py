"""The example workflows: in sync, loadable by the editor (checked against INPUT_TYPES), and runnable end to end.

Every test here needs the whole pack: a node that has not landed makes these tests FAIL (KeyError on
NODE_CLASS_MAPPINGS), they never skip. The one exception is named below (THIRD_PARTY_ALLOWED): the text-to-speech
nodes of another pack, which run as stand-ins with that pack's inputs and outputs (tests/tts_standin.py).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import uuid
from fractions import Fraction

import pytest

from conftest import ROOT
import tts_standin
import two_speaker_clip
from media import face_frames, tone, write_video, write_wav
from workflow_runner import CORE_EQUIVALENTS, PromptError, RunResult, execution_order, run_prompt

_spec = importlib.util.spec_from_file_location("musetalk_tools_workflows", ROOT / "tools" / "workflows.py")
wftool = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = wftool
_spec.loader.exec_module(wftool)

UI_FILES = sorted((ROOT / "workflows" / "ui").glob("*.json"))
API_FILES = sorted((ROOT / "workflows" / "api").glob("*.json"))
NAMES = [p.stem for p in UI_FILES]
TEMPLATES_DIR = ROOT / "example_workflows"
TITLES = {json.loads(p.read_text())["extra"]["musetalk"]["name"]: json.loads(p.read_text())["extra"]["musetalk"]["title"]
          for p in UI_FILES}

# A saved workflow stores widget values by POSITION. This list pins each node's widget order: changing it breaks
# every workflow users have saved, so it must be a deliberate change, documented in the changelog/README, with the
# example workflows regenerated (python tools/workflows.py).
PINNED_WIDGETS = {
    "LoadMuseTalkModels": ["version", "precision", "device", "landmark_backend"],
    "FaceDetectAndParse": ["bbox_shift", "extra_margin", "parsing_mode", "left_cheek_width", "right_cheek_width",
                           "face_selection", "landmark_region", "box_smoothing", "detector_scale", "batch_size",
                           "speaker_selection"],  # speaker_selection added last, an optional input (issue 25)
    "WhisperAudioEncode": ["fps", "audio_padding_left", "audio_padding_right", "feature_mode",
                           "silence_threshold_db", "audio_segments"],  # audio_segments added last (issue 25)
    "VAEEncodeMasked": ["latent_mode", "seed", "batch_size"],
    "MuseTalkUNetInpaint": ["frame_mapping", "frame_offset", "batch_size", "decoder", "acceleration"],
    "BlendAndAssemble": ["blur_factor", "upper_boundary_ratio", "silence_handling", "silence_fade_frames",
                         "chunk_size"],
    "LoadLatentSyncModel": ["version", "precision", "device", "unet_config"],  # unet_config added last (issue 22)
    "LatentSyncInpaint": ["inference_steps", "guidance_scale", "seed", "window_length", "frame_mapping",
                          "frame_offset", "alignment", "scheduler"],  # scheduler added last, optional (issue 24)
    "AddSpeaker": [],
    "SaveMuseTalkAvatar": ["name", "fps", "blur_factor", "upper_boundary_ratio"],
}
PINNED_LINK_INPUTS = {
    "LoadMuseTalkModels": [],
    "FaceDetectAndParse": [("musetalk_models", "MUSETALK_MODELS"), ("images", "IMAGE"), ("video", "VIDEO"),
                           ("speaker_audio", "AUDIO")],
    "WhisperAudioEncode": [("musetalk_models", "MUSETALK_MODELS"), ("audio", "AUDIO"), ("video", "VIDEO")],
    "VAEEncodeMasked": [("musetalk_models", "MUSETALK_MODELS"), ("faces", "MUSETALK_FACES")],
    "MuseTalkUNetInpaint": [("musetalk_models", "MUSETALK_MODELS"), ("latents", "MUSETALK_LATENTS"),
                            ("audio_features", "MUSETALK_AUDIO")],
    # images became optional beside video (issue 13): saved workflows keep their own slot order, so the move
    # behind the required inputs does not break them (the editor restores a node's inputs from the file)
    "BlendAndAssemble": [("faces", "MUSETALK_FACES"), ("generated", "MUSETALK_GENERATED"), ("images", "IMAGE"),
                         ("video", "VIDEO"), ("replacement_faces", "IMAGE"), ("more_speakers", "MUSETALK_SPEAKERS")],
    "LoadLatentSyncModel": [],
    "LatentSyncInpaint": [("latentsync_models", "LATENTSYNC_MODELS"), ("faces", "MUSETALK_FACES"),
                          ("audio_features", "MUSETALK_AUDIO"), ("images", "IMAGE"), ("video", "VIDEO")],
    "AddSpeaker": [("faces", "MUSETALK_FACES"), ("generated", "MUSETALK_GENERATED"),
                   ("more_speakers", "MUSETALK_SPEAKERS")],
    "SaveMuseTalkAvatar": [("faces", "MUSETALK_FACES"), ("latents", "MUSETALK_LATENTS"), ("images", "IMAGE"),
                           ("video", "VIDEO")],
}
WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN")
# Nodes of other packs, each allowed in the one workflow that needs it and nowhere else: workflow -> {node type:
# the pack's registry id}. The pack is not installed in CI; its nodes are checked against (and run as) stand-ins
# with the same INPUT_TYPES / outputs (tests/tts_standin.py, from the pack's source).
THIRD_PARTY_ALLOWED = {
    "text_to_talking_video": {"ChatterBoxEngineNode": "tts_audio_suite", "UnifiedTTSTextNode": "tts_audio_suite"},
}
STANDINS = tts_standin.NODE_CLASS_MAPPINGS


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, (list, tuple)) or kind in WIDGET_KINDS


def _inputs(cls):
    types = cls.INPUT_TYPES()
    return {**types.get("required", {}), **types.get("optional", {})}


def _ui_widget_names(cls) -> list:
    """widgets_values positions as the editor builds them: widget inputs in order, a seed gets its control value."""
    names = []
    for name, spec in _inputs(cls).items():
        if _is_widget(spec):
            names.append(name)
            opts = spec[1] if len(spec) > 1 else {}
            if spec[0] == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
                names.append("control_after_generate")
    return names


@pytest.fixture(scope="module")
def node_classes(pack):
    return pack.NODE_CLASS_MAPPINGS


def classes_for(name: str, node_classes) -> dict:
    """The pack's nodes, plus the stand-ins of the third-party nodes this workflow (only) is allowed."""
    return {**{t: STANDINS[t] for t in THIRD_PARTY_ALLOWED.get(name, {})}, **node_classes}


# ---------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------

def test_workflow_files_are_generated_and_in_sync():
    rendered = wftool.render()
    assert len(UI_FILES) == len(API_FILES) == len(wftool.WORKFLOWS) >= 4
    for path, text in rendered.items():
        assert path.exists(), f"{path} missing: run python tools/workflows.py"
        assert path.read_text(encoding="utf-8") == text, f"{path} out of date: run python tools/workflows.py"
    for path, data in wftool.render_thumbnails().items():
        assert not wftool.thumbnail_differs(path, data), f"{path} out of date: run python tools/workflows.py"
    # example_workflows/ holds exactly one copy of each UI file, named by its title, and its thumbnail
    templates = sorted(TEMPLATES_DIR.iterdir())
    assert {p.name for p in templates} == {f"{t}.{ext}" for t in TITLES.values() for ext in ("json", "jpg")}
    for name, title in TITLES.items():
        assert (TEMPLATES_DIR / f"{title}.json").read_bytes() == (ROOT / "workflows" / "ui" / f"{name}.json").read_bytes()
    # ComfyUI also lists <pack>/workflows/*.json as templates: keep that level empty so nothing is listed twice.
    assert list((ROOT / "workflows").glob("*.json")) == []
    assert wftool.main(["--check"]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_api_file_is_the_ui_file_converted(name):
    ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    api = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
    assert wftool.ui_to_api(ui) == api
    # every API node is a real node (notes are UI only), every UI link appears in the API
    assert all(n["class_type"] not in ("MarkdownNote", "Note") for n in api.values())
    linked = sum(1 for n in api.values() for v in n["inputs"].values() if isinstance(v, list))
    assert linked == len(ui["links"])


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_has_explaining_note_and_only_core_or_our_nodes(name):
    ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    assert ui["version"] == 0.4 and ui["last_link_id"] == len(ui["links"])
    notes = [n for n in ui["nodes"] if n["type"] in ("MarkdownNote", "Note")]
    assert notes and len(notes[0]["widgets_values"][0]) > 200
    third_party = THIRD_PARTY_ALLOWED.get(name, {})
    allowed = set(wftool.CORE_NODES) | set(PINNED_WIDGETS) | set(third_party)
    assert {n["type"] for n in ui["nodes"]} <= allowed
    for node in ui["nodes"]:  # ComfyUI-Manager installs a missing node's pack by this id
        if node["type"] in third_party:
            assert node["properties"]["cnr_id"] == third_party[node["type"]], node["type"]
    assert set(third_party) <= {n["type"] for n in ui["nodes"]}  # the list names what is used, nothing more


def test_third_party_nodes_are_allowed_in_their_workflow_only():
    """Only the workflows THIRD_PARTY_ALLOWED names use another pack's nodes (each: core, ours, or allowed there)."""
    ours = set(wftool.CORE_NODES) | set(PINNED_WIDGETS)
    for name in NAMES:
        ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
        assert {n["type"] for n in ui["nodes"]} - ours == set(THIRD_PARTY_ALLOWED.get(name, {})), name
    with pytest.raises(AssertionError):  # the check bites: the TTS workflow without its allowance fails it
        ui = json.loads((ROOT / "workflows" / "ui" / "text_to_talking_video.json").read_text())
        assert {n["type"] for n in ui["nodes"]} - ours == set()


@pytest.mark.parametrize("node_id", sorted(STANDINS))
def test_third_party_table_matches_the_standins(node_id):
    """The generator's table for the other pack's nodes (widget order as saved, defaults, link inputs, outputs) and
    the stand-ins the tests run agree; both were read off the pack's source."""
    cls = STANDINS[node_id]
    specs = _inputs(cls)
    links, widgets, outputs = wftool.THIRD_PARTY_NODES[node_id]
    assert wftool.NODE_PACK[node_id] == tts_standin.PACK_ID
    assert wftool.widget_names(node_id) == _ui_widget_names(cls)
    assert [(n, t) for n, t, _ in links] == [(n, s[0]) for n, s in specs.items() if not _is_widget(s)]
    assert [(n, t) for n, t in outputs] == list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))
    for name, kind, default in widgets:
        if name == "control_after_generate" or (name == "text" and kind == "MULTILINE"):
            continue  # the text's default is the workflow's own sentence, a multiline box in the editor
        assert specs[name][1]["default"] == default, (node_id, name)


# ---------------------------------------------------------------------------------------------------------------
# the graph editor: valid workflow id, nodes that do not overlap, a view clear of the editor's chrome, templates
# ---------------------------------------------------------------------------------------------------------------

# The frontend validates the workflow with zod before loading it; its uuid check (zod 3.x) is this pattern.
ZOD_UUID = re.compile(r"^[0-9a-fA-F]{8}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{4}\b-[0-9a-fA-F]{12}$")
GAP = 10  # what must separate two boxes, in graph units, so that the borders and socket dots do not touch


def editor_rects(ui: dict) -> dict:
    """node id -> (x0, y0, x1, y1, grows): the box the editor draws, title bar included, from the UI file itself.

    Heights follow the editor's rules (see tools/workflows.py for the measured constants): socket rows for the
    taller of link inputs / outputs, one row per widget (a linked widget keeps its row), the audio player's DOM
    height, and a media preview at 16:9. A node with a media preview GROWS downward when its file loads or its
    result arrives (by the media's aspect ratio), so its box is open at the bottom.
    """
    rects = {}
    for n in ui["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        slots = max(sum(1 for i in n["inputs"] if "widget" not in i), len(n["outputs"]))
        kinds = [kind for _, kind, _ in wftool.NODE_DEFS[n["type"]][1]]
        assert len(kinds) == len(n["widgets_values"]), n["type"]
        need = (wftool.SLOT_TOP + wftool.SLOT_H * slots if slots else wftool.NO_SLOT_TOP) \
            + sum(wftool.DOM_WIDGET_H.get(k, wftool.WIDGET_H) for k in kinds) + (wftool.BODY_PAD if kinds else 0)
        grows = n["type"] in wftool.PREVIEW_NODES
        if grows:
            need += (w - wftool.PREVIEW_INSET) * 9 / 16 + wftool.VIDEO_PREVIEW_PAD \
                if wftool.PREVIEW_NODES[n["type"]] == "video" else wftool.IMAGE_PREVIEW_H
        # a saved size below what the editor needs is grown on load, straight into the node below
        assert h >= need, f"{n['type']} #{n['id']}: height {h} < {need} the editor needs"
        assert w >= wftool.MIN_WIDTH[n["type"]], f"{n['type']} #{n['id']}: width {w}"
        # a long title widens the node on load (it did: into the next column)
        title = n.get("title", "")
        assert wftool.TITLE_CHAR_W * len(title) + wftool.TITLE_PAD_W <= w, f"title {title!r} wider than {w}"
        rects[n["id"]] = (x, y - wftool.TITLE_H, x + w, math.inf if grows else y + h, grows)
    return rects


def overlaps(rects: dict) -> list:
    bad = []
    items = sorted(rects.items())
    for i, (a, ra) in enumerate(items):
        for b, rb in items[i + 1:]:
            if ra[0] < rb[2] + GAP and rb[0] < ra[2] + GAP and ra[1] < rb[3] + GAP and rb[1] < ra[3] + GAP:
                bad.append((a, b))
    return bad


def test_overlap_check_catches_the_reported_layouts():
    """The layouts users reported (before this check existed): a title bar under the node above, a video preview
    growing into Get Video Components. The check must flag both, and pass a correct stack."""
    def node(id_, type_, pos, size, inputs=(), outputs=()):
        widgets = [d for _, _, d in wftool.NODE_DEFS[type_][1]]
        return {"id": id_, "type": type_, "pos": list(pos), "size": list(size), "inputs": list(inputs),
                "outputs": list(outputs), "widgets_values": widgets}

    video = node(2, "LoadVideo", (0, 180), (340, 320), outputs=[{"name": "VIDEO"}])
    below = node(3, "GetVideoComponents", (0, 700), (340, 80), inputs=[{"name": "video"}],
                 outputs=[{"name": n} for n in ("images", "audio", "fps")])
    assert overlaps(editor_rects({"nodes": [video, below]})) == [(2, 3)]  # the preview grows into it
    beside = dict(below, pos=[390, 180])
    assert overlaps(editor_rects({"nodes": [video, beside]})) == []
    models = node(1, "LoadMuseTalkModels", (0, 0), (340, 140), outputs=[{"name": "m"}])
    audio = node(4, "LoadAudio", (0, 150), (340, 150), outputs=[{"name": "AUDIO"}])  # title bar at 120..150
    assert overlaps(editor_rects({"nodes": [models, audio]})) == [(1, 4)]
    audio["pos"] = [0, 140 + wftool.TITLE_H + GAP]
    assert overlaps(editor_rects({"nodes": [models, audio]})) == []
    with pytest.raises(AssertionError, match="height"):  # the audio player needs more than a plain widget row
        editor_rects({"nodes": [dict(audio, size=[340, 100])]})


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_nodes_do_not_overlap_in_the_editor(name):
    ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    rects = editor_rects(ui)
    assert overlaps(rects) == []
    # every node that grows has the space below it to itself (nothing further down in its column either)
    assert any(r[4] for r in rects.values())


@pytest.mark.parametrize("name", NAMES)
def test_saved_view_keeps_the_graph_clear_of_the_sidebar_and_top_bars(name):
    ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    ds = ui["extra"]["ds"]
    scale, (ox, oy) = ds["scale"], ds["offset"]
    assert 0.5 <= scale <= 1.0  # still readable
    rects = editor_rects(ui).values()
    # screen = (graph + offset) * scale (LiteGraph's DragAndScale)
    left = min((r[0] + ox) * scale for r in rects)
    top = min((r[1] + oy) * scale for r in rects)
    right = max((r[2] + ox) * scale for r in rects)
    assert left >= wftool.SIDEBAR_PX + 16, left
    assert top >= wftool.TOPBAR_PX + 16, top
    assert right <= wftool.VIEW_WIDTH_PX, right  # the whole graph is in view in a 1600 px wide window


def test_workflow_ids_are_stable_uuids():
    ids = {}
    for name in NAMES:
        ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
        assert ZOD_UUID.match(ui["id"]), ui["id"]  # what raised "Invalid uuid at id" in the editor
        assert uuid.UUID(ui["id"]).version == 5 and ui["id"] == wftool.workflow_id(name)
        ids[ui["id"]] = name
    assert len(ids) == len(NAMES)
    assert wftool.workflow_id("musetalk_video_to_video") == str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                           "musetalk-nodes/workflows/musetalk_video_to_video"))


def test_templates_have_titles_and_thumbnails_the_browser_shows():
    """ComfyUI 0.8's /api/workflow_templates lists every <pack>/example_workflows/*.json by file stem and the
    browser (frontend 1.35.9) shows that stem as the title and loads <stem>.jpg as the thumbnail."""
    from PIL import Image

    jsons = sorted(TEMPLATES_DIR.glob("*.json"))
    assert jsons and all(wftool.TEMPLATE_TITLE.fullmatch(p.stem) for p in jsons)
    assert all(len(p.stem) <= wftool.TITLE_MAX_CHARS for p in jsons)  # whole on the card
    for p in jsons:
        ui = json.loads(p.read_text())
        assert ui["extra"]["musetalk"]["title"] == p.stem and ui["nodes"]  # a workflow, not an index or a list
        with Image.open(p.with_suffix(".jpg")) as im:
            assert im.format == "JPEG" and im.size == wftool.THUMB_SIZE
            # a picture of the graph, not a blank: node boxes and links give many distinct colours
            assert len(im.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 50
    # the editor's tab shows the same title
    assert len({p.stem.lower() for p in jsons}) == len(jsons) == len(NAMES)


def test_generator_rejects_layouts_the_editor_would_break():
    N, Workflow = wftool.N, wftool.Workflow
    squeezed = Workflow("t", "MuseTalk, test", "d", [N(1, "LoadAudio", 0, 0, widgets={"audio": "a.wav"},
                                                       size=(340, 100))])
    with pytest.raises(ValueError, match="below the editor"):
        wftool.build_ui(squeezed)
    with pytest.raises(ValueError, match="would widen"):
        wftool.build_ui(Workflow("t", "MuseTalk, test", "d", [
            N(1, "LoadMuseTalkModels", 0, 0, title="Upstream frames (replace with MuseV / ControlNeXt output)")]))
    with pytest.raises(ValueError, match="cut off"):
        wftool.build_ui(Workflow("t", "MuseTalk, video + audio to lip-synced video", "d",
                                 [N(1, "LoadMuseTalkModels", 0, 0)]))
    with pytest.raises(ValueError, match="portable file name"):
        wftool.build_ui(Workflow("t", "MuseTalk: a -> b", "d", [N(1, "LoadMuseTalkModels", 0, 0)]))
    # a generic new workflow: only the graph is given, the layout, id, view and thumbnail follow
    wf = Workflow("t", "MuseTalk, test", "d", [
        N(1, "LoadVideo", 0, 1, widgets={"file": "v.mp4"}), N(2, "GetVideoComponents", 1, 0, links={"video": (1, 0)}),
        N(3, "CreateVideo", 2, 0, links={"images": (2, 0), "audio": (2, 1), "fps": (2, 2)}),
        N(4, "SaveVideo", 3, 0, links={"video": (3, 0)}), N(5, "LoadMuseTalkModels", 0, 0)])
    ui = wftool.build_ui(wf)
    assert overlaps(editor_rects(ui)) == []
    assert ZOD_UUID.match(ui["id"]) and wftool.thumbnail(ui).size == wftool.THUMB_SIZE


# ---------------------------------------------------------------------------------------------------------------
# the editor's view: our nodes' INPUT_TYPES
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("node_id", sorted(PINNED_WIDGETS))
def test_widget_order_is_pinned(node_classes, node_id):
    cls = node_classes[node_id]  # KeyError = the node has not landed: a failure, not a skip
    specs = _inputs(cls)
    assert [n for n, s in specs.items() if _is_widget(s)] == PINNED_WIDGETS[node_id]
    assert [(n, s[0]) for n, s in specs.items() if not _is_widget(s)] == PINNED_LINK_INPUTS[node_id]
    # the generator's table (tools/workflows.py) agrees with the class, control widgets included
    assert wftool.widget_names(node_id) == _ui_widget_names(cls)
    links, widgets, outputs = wftool.MUSETALK_NODES[node_id]
    assert [(n, t) for n, t, _ in links] == PINNED_LINK_INPUTS[node_id]
    assert [n for n, _ in outputs] == list(cls.RETURN_NAMES)
    assert [t for _, t in outputs] == list(cls.RETURN_TYPES)
    for name, _, default in widgets:
        if name in specs:
            assert specs[name][1].get("default", specs[name][0][0] if isinstance(specs[name][0], list) else None) \
                == default, f"{node_id}.{name} default"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_matches_input_types(node_classes, name):
    ui = json.loads((ROOT / "workflows" / "ui" / f"{name}.json").read_text())
    node_classes = classes_for(name, node_classes)
    by_id = {n["id"]: n for n in ui["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, link_type in ui["links"]:
        src_node, dst_node = by_id[src], by_id[dst]
        assert src_node["outputs"][src_slot]["type"] == link_type
        assert link_id in src_node["outputs"][src_slot]["links"]
        target = dst_node["inputs"][dst_slot]
        assert target["link"] == link_id and target["type"] == link_type, (name, dst_node["type"], target)
    for node in ui["nodes"]:
        if node["type"] not in PINNED_WIDGETS and node["type"] not in THIRD_PARTY_ALLOWED.get(name, {}):
            continue
        cls = node_classes[node["type"]]
        specs = _inputs(cls)
        names = _ui_widget_names(cls)
        assert len(node["widgets_values"]) == len(names), node["type"]
        for wname, value in zip(names, node["widgets_values"]):
            if wname == "control_after_generate":
                assert value in ("fixed", "increment", "decrement", "randomize")
                continue
            kind, opts = specs[wname][0], specs[wname][1]
            if isinstance(kind, list):
                assert value in kind, (node["type"], wname, value)
            else:
                assert {"INT": int, "FLOAT": (int, float), "BOOLEAN": bool, "STRING": str}[kind] \
                    and isinstance(value, {"INT": int, "FLOAT": (int, float), "BOOLEAN": bool, "STRING": str}[kind])
                if kind in ("INT", "FLOAT"):
                    assert opts.get("min", -math.inf) <= value <= opts.get("max", math.inf), (node["type"], wname)
        for entry in node["inputs"]:
            spec = specs[entry["name"]]
            want = "COMBO" if isinstance(spec[0], list) else spec[0]
            assert entry["type"] == want, (node["type"], entry)
            if "widget" in entry:
                assert entry["widget"]["name"] == entry["name"] and _is_widget(spec)
        required = cls.INPUT_TYPES()["required"]
        linked = {e["name"] for e in node["inputs"] if e["link"] is not None}
        for iname, spec in required.items():
            if not _is_widget(spec):
                assert iname in linked, f"{name}: {node['type']} #{node['id']} required input {iname} not linked"
        assert [o["name"] for o in node["outputs"]] == list(cls.RETURN_NAMES)
        assert [o["type"] for o in node["outputs"]] == list(cls.RETURN_TYPES)


def test_runner_rejects_bad_prompts(node_classes, inputs_dir, tmp_path, tiny_models_factory, models_env):
    models_env(tiny_models_factory("v15"))  # the files are there: only the broken input is refused
    api = json.loads((ROOT / "workflows" / "api" / "musetalk_video_to_video.json").read_text())
    bad = json.loads(json.dumps(api))
    bad["5"]["inputs"]["bbox_shift"] = 999
    with pytest.raises(PromptError, match="max"):
        run_prompt(bad, node_classes, inputs_dir, tmp_path)
    bad = json.loads(json.dumps(api))
    bad["8"]["inputs"]["latents"] = ["5", 0]  # MUSETALK_FACES into a MUSETALK_LATENTS input
    with pytest.raises(PromptError, match="wants MUSETALK_LATENTS"):
        run_prompt(bad, node_classes, inputs_dir, tmp_path)
    bad = json.loads(json.dumps(api))
    bad["4"]["inputs"]["audio"] = "not_uploaded.wav"
    with pytest.raises(PromptError, match="not in"):
        run_prompt(bad, node_classes, inputs_dir, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing ran


# ---------------------------------------------------------------------------------------------------------------
# end to end on the tiny real-format models
# ---------------------------------------------------------------------------------------------------------------

FPS = Fraction(25)
AUDIO_SECONDS = {wftool.AUDIO_FILE: 0.32, wftool.AUDIO_FILE_2: 0.2}  # 8 and 5 frames at 25 fps


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comfy_input")
    frames = face_frames(8, 128, 112)
    write_video(folder / wftool.VIDEO_FILE, frames, FPS, audio=tone(0.32, 16000, 1, freq=440.0))
    from PIL import Image

    Image.fromarray(frames[0]).save(folder / wftool.PHOTO_FILE)
    write_wav(folder / wftool.AUDIO_FILE, tone(AUDIO_SECONDS[wftool.AUDIO_FILE], 16000, 2), 16000)
    write_wav(folder / wftool.AUDIO_FILE_2, tone(AUDIO_SECONDS[wftool.AUDIO_FILE_2], 22050, 1, 300.0), 22050)
    return folder


TWO_SPEAKERS = "musetalk_two_speakers"


@pytest.fixture(scope="module")
def two_speaker_inputs(tmp_path_factory):
    """A drawn two-head clip and each head's audio under the workflow's file names (tests/two_speaker_clip.py):
    (folder, clip, seconds of speaker 1's and speaker 2's audio)."""
    folder = tmp_path_factory.mktemp("comfy_input_two_speakers")
    clip = two_speaker_clip.make_clip()
    seconds = two_speaker_clip.write_inputs(folder, clip, wftool.VIDEO_FILE, [wftool.AUDIO_FILE, wftool.AUDIO_FILE_2])
    return folder, clip, seconds


def _latentsync_models(tiny_models_factory, tmp_path_factory, monkeypatch):
    """A models folder with the tiny MuseTalk v15 set and the LatentSync 1.5 files (tiny UNet3D structure)."""
    import shutil

    import tiny_latentsync

    folder = tmp_path_factory.mktemp("models_latentsync")
    shutil.copytree(tiny_models_factory("v15"), folder, dirs_exist_ok=True)
    tiny_latentsync.use_tiny_versions(monkeypatch)
    return tiny_latentsync.write_latentsync_files(folder)


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_end_to_end(name, node_classes, tiny_models_factory, models_env, inputs_dir, tmp_path,
                                     tmp_path_factory, monkeypatch, caplog, request):
    import logging

    from musetalk_core.io import video_read

    models_env(tiny_models_factory("v15"))
    api = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
    if name == TWO_SPEAKERS:  # two heads S3FD can find (stand-ins; tiny random S3FD finds arbitrary "faces")
        inputs_dir, clip, speaker_seconds = request.getfixturevalue("two_speaker_inputs")
        two_speaker_clip.install(clip, monkeypatch.setattr)
    if any(n["class_type"] == "LoadLatentSyncModel" for n in api.values()):
        models_env(_latentsync_models(tiny_models_factory, tmp_path_factory, monkeypatch))
        for n in api.values():  # 2 DDIM steps instead of 20 keep the tiny run short; the graph is what is tested
            if n["class_type"] == "LatentSyncInpaint":
                n["inputs"]["inference_steps"] = 2
    avatars = tmp_path_factory.mktemp("avatars")
    monkeypatch.setattr(request.getfixturevalue("pack").nodes.comfy_bridge, "avatars_directory", lambda: avatars)
    with caplog.at_level(logging.WARNING):
        result = run_prompt(api, classes_for(name, node_classes), inputs_dir, tmp_path)
    # a template's own settings never warn (the LatentSync one used to, on every run, about its audio features)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    saves = [nid for nid, n in api.items() if n["class_type"] == "SaveVideo"]
    assert len(result.saved) == len(saves) >= 1
    seconds = [AUDIO_SECONDS[n["inputs"]["audio"]] for n in api.values() if n["class_type"] == "LoadAudio"]
    seconds += [tts_standin.SECONDS for n in api.values() if n["class_type"] == "UnifiedTTSTextNode"]
    expected = sorted(math.floor(s * FPS) for s in seconds)
    if name == TWO_SPEAKERS:  # one clip of the video's length (frame_mapping 'silence'), whatever the audio lengths
        expected = [two_speaker_clip.FRAMES]
    got = []
    for path in result.saved:
        info = video_read.probe(path)
        assert info["fps"] == FPS
        assert info["audio_seconds"] == pytest.approx(info["frames"] / FPS, abs=2e-3)
        got.append(info["frames"])
    assert sorted(got) == expected
    for nid, n in api.items():
        if n["class_type"] == "BlendAndAssemble":
            images, audio, fps, count, video = result.outputs[nid]
            streamed = "video" in n["inputs"]  # a VIDEO in: a sample strip of the frames, the clip as a file
            assert images.shape[0] == (min(16, count) if streamed else count) and fps == pytest.approx(float(FPS))
            assert video_read.probe(video.get_stream_source())["frames"] == count if streamed else \
                video.get_frame_count() == count
            assert audio["waveform"].shape[-1] == pytest.approx(count / fps * audio["sample_rate"], abs=1)
    if name == "musetalk_one_video_two_audios":
        # the per-video stages ran once for both audio tracks
        assert result.runs["FaceDetectAndParse"] == 1 and result.runs["VAEEncodeMasked"] == 1
        assert result.runs["WhisperAudioEncode"] == 2 and result.runs["MuseTalkUNetInpaint"] == 2
        assert result.runs["BlendAndAssemble"] == 2
    if name == "musetalk_generated_frames_face_restore":
        assert result.runs["ImageSharpen"] == 1
    if name == TWO_SPEAKERS:
        check_two_speakers(api, result, clip, speaker_seconds)
    if name == "musetalk_video_to_avatar":
        check_saved_avatar(api, result, avatars, inputs_dir)
    if name == "text_to_talking_video":  # the speech came from the TTS node (its stand-in here), 24 kHz
        assert result.runs["UnifiedTTSTextNode"] == 1 and result.runs["ChatterBoxEngineNode"] == 1
        assert expected == [math.floor(tts_standin.SECONDS * FPS)]


def check_saved_avatar(api: dict, result: RunResult, avatars, inputs_dir):
    """The avatar holds the video's frames with the faces and latents the lip-sync used, and opens again."""
    import numpy as np
    import torch

    from musetalk_core.io import video_read
    from musetalk_core.realtime.avatar import load_avatar

    by_class = {n["class_type"]: nid for nid, n in api.items()}
    (folder,) = result.outputs[by_class["SaveMuseTalkAvatar"]]
    assert folder == str(avatars / wftool.AVATAR_NAME)
    avatar = load_avatar(folder)
    faces = result.outputs[by_class["FaceDetectAndParse"]][0]
    latents = result.outputs[by_class["VAEEncodeMasked"]][0]
    assert avatar.num_frames == faces.num_frames == 8 and avatar.fps == float(FPS)
    decoded = video_read.read_video(inputs_dir / wftool.VIDEO_FILE, with_audio=False).frames
    assert torch.equal(torch.from_numpy(np.asarray(avatar.frames)), decoded)
    assert torch.equal(avatar.faces.boxes, faces.boxes) and torch.equal(avatar.faces.has_face, faces.has_face)
    rows = torch.arange(int(avatar.latents.latents.shape[0]))  # the graph's latents are spilled (a VIDEO input)
    assert rows.numel() > 0 and torch.equal(avatar.latents.latents, latents.latents[rows])
    assert result.runs["FaceDetectAndParse"] == 1 and result.runs["VAEEncodeMasked"] == 1  # shared, not run twice


def check_two_speakers(api: dict, result: RunResult, clip, speaker_seconds):
    """Each FaceDetectAndParse followed its own head, both heads were lip-synced in every frame (and nothing else
    changed), over the video's length with one audio of that length, from audio tracks longer and shorter than it."""
    import torch

    frames = two_speaker_clip.FRAMES
    assert speaker_seconds[0] * FPS > frames > speaker_seconds[1] * FPS  # one cut, one padded with silence
    by_class = {}
    for nid, n in api.items():
        by_class.setdefault(n["class_type"], []).append(nid)
    assert result.runs["AddSpeaker"] == 1 and result.runs["MuseTalkUNetInpaint"] == 2
    for nid in by_class["FaceDetectAndParse"]:  # track k is head k (heads numbered left to right)
        head = int(api[nid]["inputs"]["speaker_selection"].split()[1])
        faces = result.outputs[nid][0]
        assert bool(faces.has_face.all())
        for i, box in enumerate(faces.boxes.tolist()):
            x1, _, x2, _ = clip.boxes[head, i]
            assert x1 <= (box[0] + box[2]) / 2 <= x2, (head, i, box)
    for nid in by_class["MuseTalkUNetInpaint"]:
        assert api[nid]["inputs"]["frame_mapping"] == "silence" and result.outputs[nid][0].num_frames == frames
    (blend,) = by_class["BlendAndAssemble"]
    (source_node,) = by_class["GetVideoComponents"]
    source = result.outputs[source_node][0]
    images, audio, fps, count, _ = result.outputs[blend]
    assert images.shape == source.shape and count == frames
    assert audio["waveform"].shape[-1] == round(frames / fps * audio["sample_rate"])
    assert two_speaker_clip.head_changed(clip, source, images).all()
    # outside both heads (each box widened by half its size on every side) the frames are the video's own
    untouched = torch.ones(images.shape[:3], dtype=torch.bool)
    for j, i in zip(*clip.visible.nonzero()):
        x1, y1, x2, y2 = clip.boxes[j, i]
        w, h = x2 - x1, y2 - y1
        untouched[i, max(0, int(y1 - h / 2)):int(y2 + h / 2), max(0, int(x1 - w / 2)):int(x2 + w / 2)] = False
    assert torch.equal(images[untouched], source[untouched])


# ---------------------------------------------------------------------------------------------------------------
# a prompt that cannot finish fails before face detection (the heavy stage), whatever the template
# ---------------------------------------------------------------------------------------------------------------

def _api_file(name: str) -> dict:
    return json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())


def _by_class(api: dict) -> dict:
    return {n["class_type"]: nid for nid, n in api.items()}


@pytest.mark.parametrize("name", NAMES)
def test_cheap_checks_run_before_face_detection_in_comfyuis_order(name, node_classes):
    """In ComfyUI 0.8's order (the runner's, checked against ComfyUI's own ExecutionList in
    test_comfyui_integration), every template encodes its (first) audio and loads LatentSync before face detection:
    WhisperAudioEncode and Load LatentSync Model are run_early nodes (async functions inside ComfyUI)."""
    api = _api_file(name)
    classes = {**CORE_EQUIVALENTS, **classes_for(name, node_classes)}
    order = [api[n]["class_type"] for n in execution_order(api, classes)]
    if "SaveMuseTalkAvatar" in order:
        # the avatar needs no audio: ComfyUI may prepare and save it first (a bad audio then fails the prompt after
        # the avatar is saved, which keeps it); the audio is still checked before any generation
        assert order.index("WhisperAudioEncode") < order.index("MuseTalkUNetInpaint"), order
        return
    assert order.index("WhisperAudioEncode") < order.index("FaceDetectAndParse"), order
    if "UnifiedTTSTextNode" in order:  # the speech is made (or fails) before the heavy stage too
        assert order.index("UnifiedTTSTextNode") < order.index("FaceDetectAndParse"), order
    if "LoadLatentSyncModel" in order:
        assert order[0] == "LoadLatentSyncModel", order


@pytest.fixture
def short_audio_inputs(inputs_dir, tmp_path_factory):
    """The example inputs plus a 20 ms clip: shorter than one frame at 25 fps (40 ms)."""
    folder = tmp_path_factory.mktemp("comfy_input_short")
    for entry in inputs_dir.iterdir():
        (folder / entry.name).symlink_to(entry)
    write_wav(folder / "short.wav", tone(0.02, 16000, 1), 16000)
    return folder


@pytest.mark.parametrize("name", ["musetalk_long_video", "musetalk_video_to_video", "musetalk_photo_to_video",
                                  "musetalk_latentsync_video_to_video"])
def test_too_short_audio_fails_before_face_detection(name, node_classes, tiny_models_factory, models_env,
                                                     short_audio_inputs, tmp_path, tmp_path_factory, monkeypatch):
    """The VIDEO path used to detect faces in the whole video (142 s in a real ComfyUI) before refusing the audio."""
    from musetalk_core.errors import InputError

    models_env(tiny_models_factory("v15"))
    api = _api_file(name)
    if "LoadLatentSyncModel" in _by_class(api):
        models_env(_latentsync_models(tiny_models_factory, tmp_path_factory, monkeypatch))
    api[_by_class(api)["LoadAudio"]]["inputs"]["audio"] = "short.wav"
    ran = RunResult()
    with pytest.raises(InputError, match="shorter than one video frame"):
        run_prompt(api, node_classes, short_audio_inputs, tmp_path, result=ran)
    assert ran.runs["FaceDetectAndParse"] == 0 and ran.runs["LoadMuseTalkModels"] == 1, ran.runs
    assert not list(tmp_path.iterdir())


def test_latentsync_template_refuses_reference_features_before_face_detection(
        node_classes, tiny_models_factory, models_env, inputs_dir, tmp_path, tmp_path_factory, monkeypatch):
    """LatentSyncInpaint (after face detection) needs v1.0-original features; the encoder it is fed by (before face
    detection) already refuses others, with LatentSyncInpaint's own message."""
    from musetalk_core.errors import InputError

    models_env(_latentsync_models(tiny_models_factory, tmp_path_factory, monkeypatch))
    api = _api_file("musetalk_latentsync_video_to_video")
    api[_by_class(api)["WhisperAudioEncode"]]["inputs"]["feature_mode"] = "reference"
    ran = RunResult()
    with pytest.raises(InputError, match="LatentSync needs WhisperAudioEncode's feature_mode 'v1.0-original'"):
        run_prompt(api, node_classes, inputs_dir, tmp_path, result=ran)
    assert ran.runs["FaceDetectAndParse"] == 0 and ran.runs["WhisperAudioEncode"] == 0, ran.runs


def test_missing_latentsync_files_refuse_the_prompt_before_anything_runs(node_classes, tiny_models_factory,
                                                                         models_env, inputs_dir, tmp_path):
    models_env(tiny_models_factory("v15"))  # MuseTalk's files only
    ran = RunResult()
    with pytest.raises(PromptError, match="LoadLatentSyncModel.*LatentSync model files are missing") as err:
        run_prompt(_api_file("musetalk_latentsync_video_to_video"), node_classes, inputs_dir, tmp_path, result=ran)
    assert "MuseTalk model files" not in str(err.value) and not ran.runs  # nothing ran, not even a loader


def test_musetalk_template_with_latentsyncs_features_warns_on_the_unet_node(
        pack, node_classes, tiny_models_factory, models_env, inputs_dir, tmp_path, monkeypatch, caplog):
    """The wrong combination still warns (the shipped settings do not: test_api_workflow_runs_end_to_end): the
    v1.5 UNet was trained on 'reference' features. In the log, and on the node in the graph."""
    import logging

    models_env(tiny_models_factory("v15"))
    shown = []
    monkeypatch.setattr(pack.nodes.comfy_bridge, "show_text", lambda text: shown.append(text) or True)
    api = _api_file("musetalk_photo_to_video")
    api[_by_class(api)["WhisperAudioEncode"]]["inputs"]["feature_mode"] = "v1.0-original"
    with caplog.at_level(logging.WARNING):
        run_prompt(api, node_classes, inputs_dir, tmp_path)
    expected = "v1.0-original audio features with the v1.5 UNet, which was trained on 'reference' features"
    assert expected in caplog.text
    (unet_text,) = [t for t in shown if t.startswith("Generated ")]
    assert expected in unet_text and "⚠" in unet_text
