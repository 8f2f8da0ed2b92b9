"""Generate the example workflows (UI format + API format) from one description, and keep the copies in sync.

    python tools/workflows.py            write workflows/ui/*.json, workflows/api/*.json and, for the Templates
                                         browser, example_workflows/<title>.json + <title>.jpg
    python tools/workflows.py --check    exit 1 if any file differs from what would be written (CI / tests)

Adding a workflow: a function returning Workflow(name, title, description, [N(id, type, col, row, ...)]) appended
to WORKFLOWS. Only the graph and each node's column / order in its column are given; the node sizes and positions
(from the editor's sizing rules below, so nothing overlaps), the view, the uuid, the API file and the thumbnail
follow. Nodes with a media preview go last in their column (they grow when media loads).

Why generated, not hand-edited, and why copies instead of a symlink:
- One description (WORKFLOWS below) yields both formats, so the UI file (graph editor) and the API file (POST /prompt)
  can never disagree; ``ui_to_api`` is the same conversion the editor's "Export (API)" performs.
- ComfyUI's template browser lists ``<pack>/example_workflows/*.json`` (also ``workflows/*.json``, which is why our
  own files sit one level deeper, in workflows/ui and workflows/api: otherwise every template would be listed twice
  and API files would show up as templates). A symlink example_workflows -> workflows/ui would work on Linux
  (glob and aiohttp's static route both follow it), but git checkouts on Windows without symlink support turn it
  into a text file and registry archives do not reliably keep links, so we ship real files: each
  example_workflows/<title>.json is byte-identical to workflows/ui/<name>.json, written by this script and checked
  by tests/test_workflows.py. The browser (ComfyUI 0.8, frontend 1.35.9) shows a custom node template's file name as
  its title and loads <file name>.jpg as its thumbnail; it reads no index.json for packs (ComfyUI would even list
  one as a template named "index"), hence the title file names.

Widget order: ``NODE_WIDGETS`` is the positional order of each node's ``widgets_values`` (UI format). For our nodes
it is the order of the INPUT_TYPES widget inputs (the fixed interface); tests check it against the real classes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
UI_DIR = ROOT / "workflows" / "ui"
API_DIR = ROOT / "workflows" / "api"
TEMPLATES_DIR = ROOT / "example_workflows"

# Widget values the editor stores but the API prompt does not carry (upload buttons, audio player, seed control).
UI_ONLY_WIDGETS = ("upload", "audioUI", "control_after_generate")

# node type -> (inputs that take links: [(name, TYPE, optional)], widgets in widgets_values order, outputs [(name, TYPE)])
# Widgets are (name, TYPE, default); a widget may also receive a link (then the API carries the link).
NodeDef = Tuple[List[Tuple[str, str, bool]], List[Tuple[str, str, Any]], List[Tuple[str, str]]]

MUSETALK_NODES: Dict[str, NodeDef] = {
    "LoadMuseTalkModels": (
        [],
        [("version", "COMBO", "v15"), ("precision", "COMBO", "auto"), ("device", "COMBO", "auto"),
         ("landmark_backend", "COMBO", "torch")],
        [("musetalk_models", "MUSETALK_MODELS")]),
    "FaceDetectAndParse": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("images", "IMAGE", True), ("video", "VIDEO", True),
         ("speaker_audio", "AUDIO", True)],
        # speaker_selection (issue 25) is an optional widget, the last one: workflows saved before it keep their
        # widget positions
        [("bbox_shift", "INT", 0), ("extra_margin", "INT", 10), ("parsing_mode", "COMBO", "auto"),
         ("left_cheek_width", "INT", 90), ("right_cheek_width", "INT", 90),
         ("face_selection", "COMBO", "highest_score"), ("landmark_region", "COMBO", "full_frame"),
         ("box_smoothing", "FLOAT", 0.0), ("detector_scale", "FLOAT", 1.0), ("batch_size", "INT", 8),
         ("speaker_selection", "STRING", "default")],
        [("faces", "MUSETALK_FACES"), ("preview", "IMAGE"), ("bbox_range", "STRING")]),
    "WhisperAudioEncode": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("audio", "AUDIO", False), ("video", "VIDEO", True)],
        [("fps", "FLOAT", 25.0), ("audio_padding_left", "INT", 2), ("audio_padding_right", "INT", 2),
         ("feature_mode", "COMBO", "reference"), ("silence_threshold_db", "FLOAT", -45.0),
         ("audio_segments", "COMBO", "reference")],
        [("audio_features", "MUSETALK_AUDIO"), ("frame_count", "INT"), ("audio", "AUDIO")]),
    "VAEEncodeMasked": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("faces", "MUSETALK_FACES", False)],
        [("latent_mode", "COMBO", "sample"), ("seed", "INT", 0), ("control_after_generate", "COMBO", "fixed"),
         ("batch_size", "INT", 8)],
        [("latents", "MUSETALK_LATENTS")]),
    "MuseTalkUNetInpaint": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("latents", "MUSETALK_LATENTS", False),
         ("audio_features", "MUSETALK_AUDIO", False)],
        [("frame_mapping", "COMBO", "bounce"), ("frame_offset", "INT", 0), ("batch_size", "INT", 8),
         ("decoder", "COMBO", "vae"), ("acceleration", "COMBO", "off")],
        [("generated", "MUSETALK_GENERATED"), ("faces", "IMAGE")]),
    "BlendAndAssemble": (
        [("faces", "MUSETALK_FACES", False), ("generated", "MUSETALK_GENERATED", False), ("images", "IMAGE", True),
         ("video", "VIDEO", True), ("replacement_faces", "IMAGE", True),
         ("more_speakers", "MUSETALK_SPEAKERS", True)],
        [("blur_factor", "FLOAT", 0.05), ("upper_boundary_ratio", "FLOAT", 0.5), ("silence_handling", "BOOLEAN", False),
         ("silence_fade_frames", "INT", 3), ("chunk_size", "INT", 16)],
        [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"), ("frame_count", "INT"), ("video", "VIDEO")]),
    # several people talking, each with its own audio (issue 25): chained into BlendAndAssemble's more_speakers
    "AddSpeaker": (
        [("faces", "MUSETALK_FACES", False), ("generated", "MUSETALK_GENERATED", False),
         ("more_speakers", "MUSETALK_SPEAKERS", True)],
        [],
        [("more_speakers", "MUSETALK_SPEAKERS")]),
    # a prepared video kept for real-time sessions, the command line's --avatar and LoadMuseTalkAvatar (issue 26)
    "SaveMuseTalkAvatar": (
        [("faces", "MUSETALK_FACES", False), ("latents", "MUSETALK_LATENTS", False), ("images", "IMAGE", True),
         ("video", "VIDEO", True)],
        [("name", "STRING", "avatar"), ("fps", "FLOAT", 25.0), ("blur_factor", "FLOAT", 0.05),
         ("upper_boundary_ratio", "FLOAT", 0.5)],
        [("avatar_folder", "STRING")]),
    # the second generator (LatentSync, issue 17)
    "LoadLatentSyncModel": (
        [],
        [("version", "COMBO", "latentsync15"), ("precision", "COMBO", "auto"), ("device", "COMBO", "auto"),
         ("unet_config", "STRING", "")],
        [("latentsync_models", "LATENTSYNC_MODELS")]),
    "LatentSyncInpaint": (
        [("latentsync_models", "LATENTSYNC_MODELS", False), ("faces", "MUSETALK_FACES", False),
         ("audio_features", "MUSETALK_AUDIO", False), ("images", "IMAGE", True), ("video", "VIDEO", True)],
        [("inference_steps", "INT", 20), ("guidance_scale", "FLOAT", 1.5), ("seed", "INT", 1247),
         ("control_after_generate", "COMBO", "fixed"), ("window_length", "INT", 16),
         ("frame_mapping", "COMBO", "bounce"), ("frame_offset", "INT", 0), ("alignment", "COMBO", "dwpose"),
         # scheduler (issue 24) is an optional widget, the last one: workflows saved before it keep their positions
         ("scheduler", "COMBO", "ddim")],
        [("generated", "MUSETALK_GENERATED"), ("faces", "IMAGE")]),
}

# Core ComfyUI v0.8 nodes used (ids, input names and output order from comfy_extras/nodes_video.py,
# nodes_audio.py, nodes_post_processing.py and nodes.py).
CORE_NODES: Dict[str, NodeDef] = {
    "LoadVideo": ([], [("file", "COMBO", ""), ("upload", "IMAGEUPLOAD", "image")], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO", False)], [],
                           [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "LoadAudio": ([], [("audio", "COMBO", ""), ("audioUI", "AUDIO_UI", None), ("upload", "AUDIOUPLOAD", None)],
                  [("AUDIO", "AUDIO")]),
    "LoadImage": ([], [("image", "COMBO", ""), ("upload", "IMAGEUPLOAD", "image")],
                  [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "CreateVideo": ([("images", "IMAGE", False), ("audio", "AUDIO", True)], [("fps", "FLOAT", 30.0)],
                    [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO", False)],
                  [("filename_prefix", "STRING", "video/ComfyUI"), ("format", "COMBO", "auto"),
                   ("codec", "COMBO", "auto")], []),
    "ImageSharpen": ([("image", "IMAGE", False)],
                     [("sharpen_radius", "INT", 1), ("sigma", "FLOAT", 1.0), ("alpha", "FLOAT", 1.0)],
                     [("IMAGE", "IMAGE")]),
    "MarkdownNote": ([], [("text", "STRING", "")], []),
}
# Nodes of other packs a workflow may use, by pack: {pack: (Comfy Registry id, display name, repository, {node type:
# NodeDef})}. Ids, input names, types, defaults and outputs as the pack registers them (TTS Audio Suite 5.5.2:
# nodes.py, nodes/engines/chatterbox_engine_node.py, nodes/unified/tts_text_node.py). The editor shows a node of a
# pack that is not installed as missing (ComfyUI-Manager installs it from the registry id, cnr_id); the tests run
# these nodes as stand-ins (tests/tts_standin.py).
TTS_PACK = "tts_audio_suite"
THIRD_PARTY_PACKS: Dict[str, Tuple[str, str, Dict[str, NodeDef]]] = {
    TTS_PACK: ("TTS Audio Suite", "https://github.com/diodiogod/TTS-Audio-Suite", {
        "ChatterBoxEngineNode": (
            [],
            [("language", "COMBO", "English"), ("device", "COMBO", "auto"), ("exaggeration", "FLOAT", 0.5),
             ("temperature", "FLOAT", 0.8), ("cfg_weight", "FLOAT", 0.5),
             ("crash_protection_template", "STRING", "hmm ,, {seg} hmm ,,")],
            [("TTS_engine", "TTS_ENGINE")]),
        "UnifiedTTSTextNode": (
            [("TTS_engine", "TTS_ENGINE", False), ("opt_narrator", "*", True)],
            [("text", "MULTILINE", ""), ("narrator_voice", "COMBO", "none"), ("seed", "INT", 1),
             ("control_after_generate", "COMBO", "fixed"), ("enable_chunking", "BOOLEAN", True),
             ("max_chars_per_chunk", "INT", 400), ("chunk_combination_method", "COMBO", "auto"),
             ("silence_between_chunks_ms", "INT", 100), ("enable_audio_cache", "BOOLEAN", True),
             ("batch_size", "INT", 0)],
            [("audio", "AUDIO"), ("generation_info", "STRING")]),
    }),
}
THIRD_PARTY_NODES: Dict[str, NodeDef] = {t: d for _, _, defs in THIRD_PARTY_PACKS.values() for t, d in defs.items()}
NODE_PACK = {t: pack for pack, (_, _, defs) in THIRD_PARTY_PACKS.items() for t in defs}
UI_ONLY_NODES = ("MarkdownNote", "Note")
# A template title is also a file name (see Workflow): letters, digits, spaces and , + ( ) - only (Windows-safe,
# nothing a URL needs to escape beyond the space).
TEMPLATE_TITLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,+()-]*[A-Za-z0-9)]")
TITLE_MAX_CHARS = 28  # a template card shows about 31 characters of its title (1600 px window), then "..."
NODE_DEFS: Dict[str, NodeDef] = {**MUSETALK_NODES, **CORE_NODES, **THIRD_PARTY_NODES}


def widget_names(node_type: str) -> List[str]:
    return [w[0] for w in NODE_DEFS[node_type][1]]


@dataclass
class N:
    """One node of a workflow description.

    col: the column it sits in (0 = left); row: its order inside the column (any sortable number). Positions and
    sizes are computed (``layout``); ``size`` overrides the computed size (notes), and must not be smaller.
    links: input name -> (source node id, output slot).
    """

    id: int
    type: str
    col: int
    row: float
    widgets: Dict[str, Any] = field(default_factory=dict)
    links: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    title: Optional[str] = None
    size: Optional[Tuple[int, int]] = None


@dataclass
class Workflow:
    """name: file stem of workflows/ui and workflows/api (snake case). title: what the Templates browser shows;
    it is also the file stem in example_workflows/, because ComfyUI's template browser (frontend 1.35.9, the
    one ComfyUI 0.8 pins) shows a custom node template's FILE NAME as its title and ignores any metadata."""

    name: str
    title: str
    description: str
    nodes: List[N]


# --------------------------------------------------------------------------------------------------------------
# How the graph editor sizes nodes (ComfyUI frontend 1.35.9 / its LiteGraph; measured in a real editor with
# headless Chromium: widget y positions, computeSize(), DOM element boxes). A node's ``pos`` is the top-left of
# its BODY: the title bar is drawn above it, so a node below must start TITLE_H lower than the body's end.
# --------------------------------------------------------------------------------------------------------------

TITLE_H = 30          # LiteGraph.NODE_TITLE_HEIGHT
SLOT_H = 20           # LiteGraph.NODE_SLOT_HEIGHT: one row per input/output socket (the taller side counts)
SLOT_TOP = 6          # first socket row starts 6 px into the body
NO_SLOT_TOP = 2       # a node without sockets (MarkdownNote) starts its widgets here
WIDGET_H = 24         # LiteGraph.NODE_WIDGET_HEIGHT (20) + 4 px spacing: combo, number, text, toggle, button
BODY_PAD = 8          # below the last widget
# DOM widgets (HTML elements laid over the canvas) by widget TYPE in NODE_DEFS: the audio player under Load Audio.
# A multiline text box (a textarea) takes the node's free height; MULTILINE is the room these workflows give it.
DOM_WIDGET_H = {"AUDIO_UI": 66, "MULTILINE": 110}
# Media previews appended after the widgets. A video preview takes the node's inner width and the video's aspect
# ratio: the editor GROWS the node when the file loads (a portrait clip nearly triples it), and Save Video gets one
# when the run finishes. So these nodes get room for a 16:9 preview and must have nothing below them (checked by
# tests/test_workflows.py). Load Image's preview area is fixed, but it also grows the node on load.
PREVIEW_NODES = {"LoadVideo": "video", "SaveVideo": "video", "LoadImage": "image"}
VIDEO_PREVIEW_PAD = 40   # measured: preview height = (width - 20) * aspect + about 12..36
IMAGE_PREVIEW_H = 240    # measured 220 + margin
PREVIEW_INSET = 20       # the preview element is the node width less 10 px each side
# Widest computeSize() width the editor asked for, per node (our nodes with their defaults, core nodes with the
# example file names); a node narrower than this gets squeezed text.
MIN_WIDTH = {"LoadMuseTalkModels": 212, "FaceDetectAndParse": 241, "WhisperAudioEncode": 258,
             "VAEEncodeMasked": 253, "MuseTalkUNetInpaint": 210, "BlendAndAssemble": 228, "LoadVideo": 223,
             "GetVideoComponents": 194, "LoadAudio": 223, "LoadImage": 223, "CreateVideo": 210, "SaveVideo": 210,
             "ImageSharpen": 210, "MarkdownNote": 210,
             # estimated from the widest widget text (not yet measured in the editor; both below NODE_W)
             "LoadLatentSyncModel": 240, "LatentSyncInpaint": 260, "AddSpeaker": 220, "SaveMuseTalkAvatar": 240,
             # TTS Audio Suite's nodes, estimated the same way (its combo texts are short)
             "ChatterBoxEngineNode": 260, "UnifiedTTSTextNode": 300}
# The editor widens a node to fit its title: measured 6.5 px per character (14 px Inter) plus 62 px (the collapse
# dot and padding); 7 per character keeps a margin for wide letters.
TITLE_CHAR_W = 7.0
TITLE_PAD_W = 64
NODE_W = 340          # every node is this wide (a column of equal widths reads well and fits the 16:9 preview)
NOTE_SIZE = (NODE_W, 420)  # the longest note fills about 80 % of it in the editor
COL_GAP = 50          # horizontal space between columns (room for the link curves)
ROW_GAP = 40          # vertical space between a node's body and the next node's title bar
# The editor's chrome covers the canvas edges: the left sidebar is 59 px wide, the tab bar 38 px high and the
# floating breadcrumb / Run bar below it reaches y = 86 px. The saved view (extra.ds) keeps the graph clear of them.
SIDEBAR_PX = 59
TOPBAR_PX = 86
VIEW_MARGIN_PX = 24
VIEW_WIDTH_PX = 1600  # the view is scaled so the whole graph fits this window width (a laptop-sized browser)
MAX_SCALE = 0.8


def slot_rows(node_type: str) -> int:
    """Socket rows: link inputs on the left, outputs on the right; a widget fed by a link keeps its widget row."""
    links, _, outputs = NODE_DEFS[node_type]
    return max(len(links), len(outputs))


def widget_heights(node_type: str) -> List[int]:
    return [DOM_WIDGET_H.get(kind, WIDGET_H) for _, kind, _ in NODE_DEFS[node_type][1]]


def preview_height(node_type: str, width: float) -> float:
    kind = PREVIEW_NODES.get(node_type)
    if kind == "video":
        return (width - PREVIEW_INSET) * 9 / 16 + VIDEO_PREVIEW_PAD
    if kind == "image":
        return IMAGE_PREVIEW_H
    return 0.0


def min_size(node_type: str, width: float = NODE_W) -> Tuple[float, float]:
    """The smallest body the editor gives this node (media previews at 16:9), as (width, height)."""
    rows = slot_rows(node_type)
    top = SLOT_TOP + SLOT_H * rows if rows else NO_SLOT_TOP
    widgets = widget_heights(node_type)
    height = top + sum(widgets) + (BODY_PAD if widgets else 0) + preview_height(node_type, width)
    return float(MIN_WIDTH.get(node_type, NODE_W)), float(height)


def title_width(title: str) -> float:
    return TITLE_CHAR_W * len(title) + TITLE_PAD_W


def layout(wf: Workflow) -> Dict[int, Tuple[Tuple[int, int], Tuple[int, int]]]:
    """node id -> ((x, y), (w, h)): columns left to right, each column stacked top-down by ``row``."""
    sizes: Dict[int, Tuple[int, int]] = {}
    for n in wf.nodes:
        w = n.size[0] if n.size else NODE_W
        auto = min_size(n.type, w)
        if n.size and (n.size[0] < auto[0] or n.size[1] < auto[1]):
            raise ValueError(f"{wf.name}: {n.type} #{n.id} size {n.size} is below the editor's {auto}")
        sizes[n.id] = tuple(n.size) if n.size else (w, int(math.ceil(auto[1])))
        if n.title and title_width(n.title) > sizes[n.id][0]:
            raise ValueError(f"{wf.name}: title {n.title!r} would widen {n.type} #{n.id} past {sizes[n.id][0]} px")
    cols = sorted({n.col for n in wf.nodes})
    if cols != list(range(len(cols))):
        raise ValueError(f"{wf.name}: columns must be 0..k without gaps, got {cols}")
    x, placed = 0, {}
    for col in cols:
        column = sorted((n for n in wf.nodes if n.col == col), key=lambda n: (n.row, n.id))
        y = TITLE_H
        for n in column:
            placed[n.id] = ((x, y), sizes[n.id])
            y += sizes[n.id][1] + ROW_GAP + TITLE_H
        x += max(sizes[n.id][0] for n in column) + COL_GAP
    return placed


def view(placed) -> dict:
    """extra.ds: a scale that fits the graph's width in VIEW_WIDTH_PX, and an offset that puts its top-left corner
    (title bars included) just clear of the sidebar and the top bars. Screen = (graph + offset) * scale."""
    right = max(x + w for (x, _), (w, _) in placed.values())
    left_px = SIDEBAR_PX + VIEW_MARGIN_PX
    scale = min(MAX_SCALE, (VIEW_WIDTH_PX - left_px - VIEW_MARGIN_PX) / right)
    scale = math.floor(scale * 20) / 20  # 0.05 steps, like the editor's zoom
    return {"scale": scale, "offset": [math.ceil(left_px / scale), math.ceil((TOPBAR_PX + VIEW_MARGIN_PX) / scale)]}


def workflow_id(name: str) -> str:
    """The editor validates ``id`` as a UUID (zod); uuid5 of the name keeps it stable across regenerations."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"musetalk-nodes/workflows/{name}"))


def _widget_values(node: N) -> list:
    names = widget_names(node.type)
    unknown = set(node.widgets) - set(names)
    if unknown:
        raise ValueError(f"{node.type} #{node.id}: unknown widget(s) {sorted(unknown)}")
    return [node.widgets.get(name, default) for name, _, default in NODE_DEFS[node.type][1]]


def _order(nodes: List[N]) -> Dict[int, int]:
    """Topological execution order (the editor's ``order`` field)."""
    done: Dict[int, int] = {}
    by_id = {n.id: n for n in nodes}

    def visit(n: N):
        if n.id in done:
            return
        for src, _ in n.links.values():
            visit(by_id[src])
        done[n.id] = len(done)

    for n in sorted(nodes, key=lambda n: n.id):
        visit(n)
    return done


def build_ui(wf: Workflow) -> dict:
    if not TEMPLATE_TITLE.fullmatch(wf.title):
        raise ValueError(f"{wf.name}: title {wf.title!r} must be a portable file name ({TEMPLATE_TITLE.pattern})")
    if len(wf.title) > TITLE_MAX_CHARS:
        raise ValueError(f"{wf.name}: title {wf.title!r} is cut off on its card past {TITLE_MAX_CHARS} characters")
    by_id = {n.id: n for n in wf.nodes}
    if len(by_id) != len(wf.nodes):
        raise ValueError(f"{wf.name}: duplicate node ids")
    order = _order(wf.nodes)
    placed = layout(wf)
    links = []
    in_link: Dict[Tuple[int, str], int] = {}
    out_links: Dict[Tuple[int, int], List[int]] = {}
    for n in sorted(wf.nodes, key=lambda n: n.id):
        link_inputs = [i[0] for i in NODE_DEFS[n.type][0]]
        for name, (src, slot) in n.links.items():
            if name not in link_inputs and name not in widget_names(n.type):
                raise ValueError(f"{n.type} #{n.id} has no input '{name}'")
            src_type = NODE_DEFS[by_id[src].type][2][slot][1]
            link_id = len(links) + 1
            target_slot = _ui_inputs_names(n).index(name)
            links.append([link_id, src, slot, n.id, target_slot, src_type])
            in_link[(n.id, name)] = link_id
            out_links.setdefault((src, slot), []).append(link_id)
    nodes = []
    for n in sorted(wf.nodes, key=lambda n: n.id):
        link_inputs, widgets, outputs = NODE_DEFS[n.type]
        inputs = []
        for name, typ, optional in link_inputs:
            entry = {"name": name, "type": typ, "link": in_link.get((n.id, name))}
            if optional:
                entry["shape"] = 7  # the editor draws optional inputs hollow
            inputs.append(entry)
        for name, typ, _ in widgets:
            if (n.id, name) in in_link:  # a widget fed by a link
                inputs.append({"name": name, "type": typ, "widget": {"name": name}, "link": in_link[(n.id, name)]})
        (x, y), (w, h) = placed[n.id]
        node = {
            "id": n.id, "type": n.type, "pos": [x, y], "size": [w, h],
            "flags": {}, "order": order[n.id], "mode": 0,
            "inputs": inputs,
            "outputs": [{"name": name, "type": typ, "links": out_links.get((n.id, slot), []), "slot_index": slot}
                        for slot, (name, typ) in enumerate(outputs)],
            "properties": {"Node name for S&R": n.type, "cnr_id": _pack_id(n.type)},
            "widgets_values": _widget_values(n),
        }
        if n.title:
            node["title"] = n.title
        if n.type in UI_ONLY_NODES:
            node["color"], node["bgcolor"] = "#432", "#653"
        nodes.append(node)
    return {
        "id": workflow_id(wf.name), "revision": 0,
        "last_node_id": max(n.id for n in wf.nodes), "last_link_id": len(links),
        "nodes": nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": view(placed), "musetalk": {"name": wf.name, "title": wf.title,
                                                   "description": wf.description}},
        "version": 0.4,
    }


def _pack_id(node_type: str) -> str:
    """The Comfy Registry id of the pack a node comes from (what ComfyUI-Manager installs a missing node by)."""
    return "comfy-core" if node_type in CORE_NODES else NODE_PACK.get(node_type, "musetalk-nodes")


def _ui_inputs_names(n: N) -> List[str]:
    names = [i[0] for i in NODE_DEFS[n.type][0]]
    names += [w[0] for w in NODE_DEFS[n.type][1] if w[0] in n.links]
    return names


def ui_to_api(ui: dict) -> dict:
    """The editor's graphToPrompt for these nodes: widgets by name from widgets_values, links as [id, slot]."""
    links = {l[0]: l for l in ui["links"]}
    prompt = {}
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        if node["type"] in UI_ONLY_NODES or node.get("mode", 0) in (2, 4):
            continue
        inputs: Dict[str, Any] = {}
        values = node.get("widgets_values", [])
        for name, value in zip(widget_names(node["type"]), values):
            if name not in UI_ONLY_WIDGETS:
                inputs[name] = value
        for entry in node["inputs"]:
            if entry.get("link") is not None:
                link = links[entry["link"]]
                inputs[entry["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                   "_meta": {"title": node.get("title", node["type"])}}
    return prompt


# --------------------------------------------------------------------------------------------------------------
# The example workflows
# --------------------------------------------------------------------------------------------------------------

VIDEO_FILE = "musetalk_example.mp4"
PHOTO_FILE = "musetalk_example.png"
AUDIO_FILE = "musetalk_example_speech.wav"
AUDIO_FILE_2 = "musetalk_example_speech_2.wav"
MODELS_NOTE = ("**Models**: `python install.py --download-models v15` (inside `custom_nodes/musetalk-nodes`) puts "
               "every file in `ComfyUI/models/musetalk/`. LoadMuseTalkModels lists any missing file with the "
               "command that fetches it.")


def _models(id_=1, row=0, **widgets) -> N:
    return N(id_, "LoadMuseTalkModels", 0, row, widgets=widgets)


def video_to_video() -> Workflow:
    note = f"""# Video + audio -> lip-synced video (MuseTalk 1.5)

1. **Load Video**: the person to animate (any length; every frame comes back, frames without a face unchanged).
2. **Load Audio**: the speech. The output is exactly as long as the audio: floor(duration x fps) frames; the
   video's frames are reused back and forth (frame_mapping bounce) when the audio is longer.
3. **Queue**. The result is saved by **Save Video** (H.264 + AAC) under `output/video/`.

The video's own fps flows from *Get Video Components* into *Whisper Audio Encode* and *Create Video*, so the mouth
stays in step with the sound at any frame rate (29.97 included). The video's own sound track is not used.

Tuning: `bbox_shift` (face detect) moves the crop up/down (negative = more mouth opening, see the `bbox_range`
output); `extra_margin` adds chin room (v1.5); `blur_factor` softens the paste seam.

{MODELS_NOTE}"""
    return Workflow("musetalk_video_to_video", "MuseTalk, lip-sync a video",
                    "Lip-sync an existing video to a new audio track with MuseTalk 1.5 (core video nodes in and out).", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(4, "LoadAudio", 0, 1, widgets={"audio": AUDIO_FILE}),
        N(2, "LoadVideo", 0, 2, widgets={"file": VIDEO_FILE}),
        N(3, "GetVideoComponents", 1, 0, links={"video": (2, 0)}),
        N(5, "FaceDetectAndParse", 1, 1, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(6, "WhisperAudioEncode", 1, 2, links={"musetalk_models": (1, 0), "audio": (4, 0), "fps": (3, 2)}),
        N(7, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (5, 0)}),
        N(8, "MuseTalkUNetInpaint", 2, 1, links={"musetalk_models": (1, 0), "latents": (7, 0),
                                                  "audio_features": (6, 0)}),
        N(9, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (5, 0), "generated": (8, 0)}),
        N(10, "CreateVideo", 3, 1, links={"images": (9, 0), "audio": (9, 1), "fps": (9, 2)}),
        N(12, "MarkdownNote", 3, 2, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk"}, links={"video": (10, 0)}),
    ])


def photo_to_video() -> Workflow:
    note = f"""# One photo + audio -> talking video

**Load Image** gives a single frame; MuseTalk keeps that frame for every output frame and animates only the mouth,
so the result is as long as the audio. Set the frame rate on **Whisper Audio Encode** (`fps`); *Blend & Assemble*
passes it on to *Create Video*.

Use a frontal photo where the face is clearly visible, at least ~256 px tall. Only the lower half of the face
moves (MuseTalk is a mouth inpainter, not a head animator): for head motion, generate the frames with a video
model first and see the *generated frames* workflow.

{MODELS_NOTE}"""
    return Workflow("musetalk_photo_to_video", "MuseTalk, talking photo",
                    "Make a single portrait photo speak an audio track.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(3, "LoadAudio", 0, 1, widgets={"audio": AUDIO_FILE}),
        N(2, "LoadImage", 0, 2, widgets={"image": PHOTO_FILE}),
        N(4, "FaceDetectAndParse", 1, 0, links={"musetalk_models": (1, 0), "images": (2, 0)}),
        N(5, "WhisperAudioEncode", 1, 1, widgets={"fps": 25.0}, links={"musetalk_models": (1, 0), "audio": (3, 0)}),
        N(6, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (4, 0)}),
        N(7, "MuseTalkUNetInpaint", 2, 1, links={"musetalk_models": (1, 0), "latents": (6, 0),
                                                  "audio_features": (5, 0)}),
        N(8, "BlendAndAssemble", 3, 0, links={"images": (2, 0), "faces": (4, 0), "generated": (7, 0)}),
        N(9, "CreateVideo", 3, 1, links={"images": (8, 0), "audio": (8, 1), "fps": (8, 2)}),
        N(11, "MarkdownNote", 3, 2, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(10, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_photo"}, links={"video": (9, 0)}),
    ])


def one_video_two_audios() -> Workflow:
    note = f"""# One prepared video, two audio tracks

The per-video stages, **Face Detect & Parse** and **VAE Encode (masked)**, have one output each, wired to two
audio branches. ComfyUI runs each node once per queue and caches its result, so faces and latents are computed
**once** and shared; each audio track only costs Whisper + UNet + blending.

Queue again with a *different* audio file: the video stages are not re-run at all (cached), only the audio
branch that changed. Add more branches (copy one audio column) to dub the same clip into more languages.

{MODELS_NOTE}"""
    return Workflow("musetalk_one_video_two_audios", "MuseTalk, two audio tracks",
                    "Prepare a video once (faces, latents) and lip-sync it to two different audio tracks.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(6, "LoadAudio", 0, 1, widgets={"audio": AUDIO_FILE}, title="Load Audio (track A)"),
        N(12, "LoadAudio", 0, 2, widgets={"audio": AUDIO_FILE_2}, title="Load Audio (track B)"),
        N(2, "LoadVideo", 0, 3, widgets={"file": VIDEO_FILE}),
        N(3, "GetVideoComponents", 1, 0, links={"video": (2, 0)}),
        N(4, "FaceDetectAndParse", 1, 1, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(5, "VAEEncodeMasked", 1, 2, links={"musetalk_models": (1, 0), "faces": (4, 0)}),
        # audio branch A above, branch B below
        N(7, "WhisperAudioEncode", 2, 0, links={"musetalk_models": (1, 0), "audio": (6, 0), "fps": (3, 2)}),
        N(8, "MuseTalkUNetInpaint", 2, 1, links={"musetalk_models": (1, 0), "latents": (5, 0),
                                                  "audio_features": (7, 0)}),
        N(13, "WhisperAudioEncode", 2, 2, links={"musetalk_models": (1, 0), "audio": (12, 0), "fps": (3, 2)}),
        N(14, "MuseTalkUNetInpaint", 2, 3, links={"musetalk_models": (1, 0), "latents": (5, 0),
                                                   "audio_features": (13, 0)}),
        N(9, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (4, 0), "generated": (8, 0)}),
        N(10, "CreateVideo", 3, 1, links={"images": (9, 0), "audio": (9, 1), "fps": (9, 2)}),
        N(15, "BlendAndAssemble", 3, 2, links={"images": (3, 0), "faces": (4, 0), "generated": (14, 0)}),
        N(16, "CreateVideo", 3, 3, links={"images": (15, 0), "audio": (15, 1), "fps": (15, 2)}),
        # each Save Video grows when its result arrives, so each has a column to itself
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_track_a"}, links={"video": (10, 0)},
          title="Save Video (track A)"),
        N(17, "SaveVideo", 5, 0, widgets={"filename_prefix": "video/musetalk_track_b"}, links={"video": (16, 0)},
          title="Save Video (track B)"),
        N(18, "MarkdownNote", 1, 3, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
    ])



def two_speakers() -> Workflow:
    note = f"""# Two people in one video, each with their own audio

Two faces in the same shot (an interview, a dialogue), one audio track per person. Each person gets a column of
their own; both are pasted into the same frames and both audio tracks are mixed into the clip.

1. **Face Detect & Parse**, one per person: `speaker_selection` names the face. The faces are tracked through the
   video and numbered from 0, left to right where each first appears: **track 0** and **track 1** here (the text on
   the node lists the tracks found). `point X Y` picks the face at that pixel of frame 0 (`point X Y FRAME` for
   another frame); `auto` picks the face whose mouth follows the audio wired to `speaker_audio`.
2. **Whisper Audio Encode**, **VAE Encode (masked)** and **UNet Inpaint** per person, each on its own audio.
   `frame_mapping` **silence** on both: the whole video once, whatever each audio's length (shorter audio is padded
   with silence, the mouth at rest; longer audio is cut). Both speakers must give the same number of frames.
3. **Add Speaker** bundles person 2 (their faces and generated faces) for **Blend & Assemble**'s `more_speakers`;
   person 1 goes in the usual inputs. Any other face in the video stays as it is.

A third person: copy a column, set `track 2`, and chain a second Add Speaker into the first one's `more_speakers`.
Not the same as the *two audio tracks* template, which makes two separate videos of one face.

{MODELS_NOTE}"""
    return Workflow("musetalk_two_speakers", "MuseTalk, two speakers",
                    "Two people in one video, each lip-synced to their own audio track, in one output clip.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(4, "LoadAudio", 0, 1, widgets={"audio": AUDIO_FILE}, title="Load Audio (speaker 1)"),
        N(5, "LoadAudio", 0, 2, widgets={"audio": AUDIO_FILE_2}, title="Load Audio (speaker 2)"),
        N(2, "LoadVideo", 0, 3, widgets={"file": VIDEO_FILE}),
        N(3, "GetVideoComponents", 1, 0, links={"video": (2, 0)}),
        N(6, "FaceDetectAndParse", 1, 1, widgets={"speaker_selection": "track 0"},
          links={"musetalk_models": (1, 0), "images": (3, 0)}, title="Face Detect & Parse (speaker 1)"),
        N(7, "FaceDetectAndParse", 1, 2, widgets={"speaker_selection": "track 1"},
          links={"musetalk_models": (1, 0), "images": (3, 0)}, title="Face Detect & Parse (speaker 2)"),
        N(8, "WhisperAudioEncode", 2, 0, links={"musetalk_models": (1, 0), "audio": (4, 0), "fps": (3, 2)},
          title="Whisper Audio Encode (speaker 1)"),
        N(9, "WhisperAudioEncode", 2, 1, links={"musetalk_models": (1, 0), "audio": (5, 0), "fps": (3, 2)},
          title="Whisper Audio Encode (speaker 2)"),
        N(18, "MarkdownNote", 2, 2, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        # speaker 1 above, speaker 2 below
        N(10, "VAEEncodeMasked", 3, 0, links={"musetalk_models": (1, 0), "faces": (6, 0)}),
        N(11, "MuseTalkUNetInpaint", 3, 1, widgets={"frame_mapping": "silence"},
          links={"musetalk_models": (1, 0), "latents": (10, 0), "audio_features": (8, 0)},
          title="UNet Inpaint (speaker 1)"),
        N(12, "VAEEncodeMasked", 3, 2, links={"musetalk_models": (1, 0), "faces": (7, 0)}),
        N(13, "MuseTalkUNetInpaint", 3, 3, widgets={"frame_mapping": "silence"},
          links={"musetalk_models": (1, 0), "latents": (12, 0), "audio_features": (9, 0)},
          title="UNet Inpaint (speaker 2)"),
        N(14, "AddSpeaker", 4, 0, links={"faces": (7, 0), "generated": (13, 0)}, title="Add Speaker (speaker 2)"),
        N(15, "BlendAndAssemble", 4, 1, links={"images": (3, 0), "faces": (6, 0), "generated": (11, 0),
                                                "more_speakers": (14, 0)}),
        N(16, "CreateVideo", 4, 2, links={"images": (15, 0), "audio": (15, 1), "fps": (15, 2)}),
        N(17, "SaveVideo", 5, 0, widgets={"filename_prefix": "video/musetalk_two_speakers"}, links={"video": (16, 0)}),
    ])

def generated_frames_with_restoration() -> Workflow:
    note = f"""# Frames from a generator + a face-restoration slot

**Upstream frames**: any IMAGE batch works, e.g. the output of a MuseV or ControlNeXt workflow (replace the
*Load Video -> Get Video Components* pair with your generator and set `fps` on **Whisper Audio Encode** to the
generator's frame rate).

**Face restoration slot**: *MuseTalk UNet Inpaint* outputs the generated 256x256 faces as an IMAGE (`faces`).
Anything that maps an IMAGE batch to an IMAGE batch of the same size can sit between it and the optional
`replacement_faces` input of **Blend & Assemble**, which then pastes the restored faces instead. The core
*Image Sharpen* node is a placeholder: swap in a GFPGAN / CodeFormer / face-restore node from another pack
(keep it at 256x256 and the same number of frames). Disconnect `replacement_faces` to compare with the raw output.

{MODELS_NOTE}"""
    return Workflow("musetalk_generated_frames_face_restore", "MuseTalk, generated frames",
                    "Lip-sync frames from an upstream generator, with a face-restoration slot before blending.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(4, "LoadAudio", 0, 1, widgets={"audio": AUDIO_FILE}),
        N(2, "LoadVideo", 0, 2, widgets={"file": VIDEO_FILE}, title="Upstream frames (your generator)"),
        N(3, "GetVideoComponents", 1, 0, links={"video": (2, 0)}),
        N(5, "FaceDetectAndParse", 1, 1, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(6, "WhisperAudioEncode", 1, 2, widgets={"fps": 25.0}, links={"musetalk_models": (1, 0), "audio": (4, 0)}),
        N(7, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (5, 0)}),
        N(8, "MuseTalkUNetInpaint", 2, 1, links={"musetalk_models": (1, 0), "latents": (7, 0),
                                                  "audio_features": (6, 0)}),
        N(9, "ImageSharpen", 2, 2, widgets={"sharpen_radius": 1, "sigma": 0.8, "alpha": 0.3},
          links={"image": (8, 1)}, title="Face restoration slot"),
        N(10, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (5, 0), "generated": (8, 0),
                                                "replacement_faces": (9, 0)}),
        N(11, "CreateVideo", 3, 1, links={"images": (10, 0), "audio": (10, 1), "fps": (10, 2)}),
        N(13, "MarkdownNote", 3, 2, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(12, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_restored"}, links={"video": (11, 0)}),
    ])


def long_video() -> Workflow:
    note = f"""# Long video + audio -> lip-synced video, in bounded memory

For videos of any length (minutes, 4K): no node holds the frames of the whole video.

1. **Load Video** gives a VIDEO that is read lazily: *Face Detect & Parse* and *Blend & Assemble* take it on their
   `video` input and read it in chunks (the per-frame material waits in ComfyUI's temp folder).
2. **Whisper Audio Encode** takes the exact fps from the same VIDEO (its `video` input).
3. **Blend & Assemble** writes the finished H.264 + AAC clip while it blends and outputs it as a VIDEO:
   **Save Video** stores it under `output/video/`. Its `images` output is a strip of 16 sample frames.

Do not add *Get Video Components* here: it decodes the whole video into one IMAGE batch (about 25 MB per 1080p
frame), which is what this workflow avoids. The output has floor(audio seconds x fps) frames.

{MODELS_NOTE}"""
    return Workflow("musetalk_long_video", "MuseTalk, long video",
                    "Lip-sync a long video to an audio track in bounded memory: LoadVideo's VIDEO in, a VIDEO out.", [
        *_video_stream_nodes(),
        N(9, "BlendAndAssemble", 3, 0, links={"video": (2, 0), "faces": (5, 0), "generated": (8, 0)}),
        N(12, "MarkdownNote", 3, 1, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_long"}, links={"video": (9, 4)}),
    ])


def _video_stream_nodes() -> List[N]:
    """Models, audio and a lazily read VIDEO through faces, audio encoding, VAE and UNet (ids 1, 2, 4-8): the
    bounded-memory chain of the long-video and avatar templates."""
    return [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(4, "LoadAudio", 0, 1, widgets={"audio": AUDIO_FILE}),
        N(2, "LoadVideo", 0, 2, widgets={"file": VIDEO_FILE}),
        N(5, "FaceDetectAndParse", 1, 0, links={"musetalk_models": (1, 0), "video": (2, 0)}),
        N(6, "WhisperAudioEncode", 1, 1, links={"musetalk_models": (1, 0), "audio": (4, 0), "video": (2, 0)}),
        N(7, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (5, 0)}),
        N(8, "MuseTalkUNetInpaint", 2, 1, links={"musetalk_models": (1, 0), "latents": (7, 0),
                                                  "audio_features": (6, 0)}),
    ]


AVATAR_NAME = "musetalk_example"


def video_to_avatar() -> Workflow:
    note = f"""# Lip-sync a video and keep it as an avatar (real time)

The long-video graph (a VIDEO in, a VIDEO out, bounded memory) plus **Save Avatar**: the frames, faces and latents
of the video are saved once to `models/musetalk/avatars/{AVATAR_NAME}` (change `name`; saving again replaces it).
Then, without face detection or VAE encoding again:

- **Live in the browser**: `python -m musetalk_core serve --avatars ComfyUI/models/musetalk/avatars`, open the page
  it prints, pick the avatar, talk into the microphone.
- **Another audio in a graph**: *Load Avatar* in place of Load Video, Face Detect & Parse and VAE Encode; its
  `latents` go to UNet Inpaint, its `faces` and `video` to Blend & Assemble.
- **Command line**: `python -m musetalk_core lipsync --avatar {AVATAR_NAME} --avatars-dir ComfyUI/models/musetalk/avatars
  --audio speech.wav -o out.mp4`.

`blur_factor` and `upper_boundary_ratio` on Save Avatar are kept for the live sessions' blending; use the values
set on Blend & Assemble here. The avatar keeps every frame (about 2.8 MB per 720p frame on disk).

{MODELS_NOTE}"""
    return Workflow("musetalk_video_to_avatar", "MuseTalk, real-time avatar",
                    "Lip-sync a video and save it as an avatar for live sessions, Load Avatar and the command line.", [
        *_video_stream_nodes(),
        N(10, "SaveMuseTalkAvatar", 2, 2, widgets={"name": AVATAR_NAME},
          links={"faces": (5, 0), "latents": (7, 0), "video": (2, 0)}),
        N(9, "BlendAndAssemble", 3, 0, links={"video": (2, 0), "faces": (5, 0), "generated": (8, 0)}),
        N(12, "MarkdownNote", 3, 1, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_avatar"}, links={"video": (9, 4)}),
    ])


def latentsync_video_to_video() -> Workflow:
    note = """# Video + audio -> lip-synced video (LatentSync)

The same graph as the MuseTalk one with LatentSync's diffusion UNet3D as the generator: slower (20 denoising steps
over windows of 16 frames), often more natural mouths and teeth.

1. **Load Video** and **Load Audio**: the person and the speech. The output has floor(audio seconds x fps) frames;
   the video bounces (forward, then backward) when the audio is longer; frames without a face come back
   unchanged.
2. **Load MuseTalk Models** (v15) is still needed: face detection and landmarks (*Face Detect & Parse*) and the
   Whisper encoder. *Whisper Audio Encode* must use `feature_mode` **v1.0-original** (LatentSync's features).
3. **LatentSync Inpaint** aligns each face by three points (eyebrow centres, nose) from the DWPose landmarks and
   generates; **Blend & Assemble** warps the faces back (LatentSync's own paste, its blur/boundary widgets unused).

Settings: `inference_steps` 20 and `guidance_scale` 1.5 are upstream's; `alignment` insightface reproduces
upstream's landmarks exactly (pip install insightface onnxruntime). Version 1.5 (256 px faces) needs about 8 GB of
VRAM, 1.6 (512 px) about 18 GB.

**Models**: `python install.py --download-models v15` and `--download-models latentsync15` (or latentsync16) put
every file in `ComfyUI/models/musetalk/`."""
    return Workflow("musetalk_latentsync_video_to_video", "LatentSync, lip-sync a video",
                    "Lip-sync a video to a new audio track with LatentSync 1.5 / 1.6 (diffusion, 16-frame windows).", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(13, "LoadLatentSyncModel", 0, 1),
        N(4, "LoadAudio", 0, 2, widgets={"audio": AUDIO_FILE}),
        N(2, "LoadVideo", 0, 3, widgets={"file": VIDEO_FILE}),
        N(3, "GetVideoComponents", 1, 0, links={"video": (2, 0)}),
        N(5, "FaceDetectAndParse", 1, 1, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(6, "WhisperAudioEncode", 1, 2, widgets={"feature_mode": "v1.0-original"},
          links={"musetalk_models": (1, 0), "audio": (4, 0), "fps": (3, 2)}),
        N(8, "LatentSyncInpaint", 2, 0, links={"latentsync_models": (13, 0), "faces": (5, 0),
                                                "audio_features": (6, 0), "images": (3, 0)}),
        N(12, "MarkdownNote", 2, 1, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(9, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (5, 0), "generated": (8, 0)}),
        N(10, "CreateVideo", 3, 1, links={"images": (9, 0), "audio": (9, 1), "fps": (9, 2)}),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/latentsync"}, links={"video": (10, 0)}),
    ])


TTS_TEXT = ("Hello! Everything you hear was typed as text: a text-to-speech voice reads it, "
            "and MuseTalk moves the lips in the video to match.")


def text_to_talking_video() -> Workflow:
    note = f"""# Text -> speech -> lip-synced video

Needs the **TTS Audio Suite** custom nodes (github.com/diodiogod/TTS-Audio-Suite): ComfyUI-Manager ->
*Install Missing Custom Nodes*, or `git clone` it into `custom_nodes` and run its `python install.py`. Restart.

1. **Text to speech**: type what the person says in `text`. The **ChatterBox engine** node picks the voice model
   (`language` English; the model downloads on first use). `narrator_voice` none = ChatterBox's own voice; pick a
   file from the suite's voice folders, or wire an AUDIO into `opt_narrator`, to clone a voice.
2. **Load Video**: the person to animate (or swap in Load Image for a photo). The output is as long as the speech.
3. **Queue**. **Save Video** writes the clip (H.264 + AAC) under `output/video/`.

Any other node with an AUDIO output can take the TTS node's place (another TTS pack, Load Audio).

{MODELS_NOTE}"""
    return Workflow("text_to_talking_video", "MuseTalk, TTS talking video",
                    "Type text: a text-to-speech node (TTS Audio Suite, ChatterBox) speaks it and MuseTalk lip-syncs "
                    "a video to the speech.", [
        N(13, "ChatterBoxEngineNode", 0, 0, title="ChatterBox engine (TTS Audio Suite)"),
        N(4, "UnifiedTTSTextNode", 0, 1, widgets={"text": TTS_TEXT}, links={"TTS_engine": (13, 0)},
          title="Text to speech (TTS Audio Suite)"),
        N(2, "LoadVideo", 0, 2, widgets={"file": VIDEO_FILE}),
        N(1, "LoadMuseTalkModels", 1, 0),
        N(3, "GetVideoComponents", 1, 1, links={"video": (2, 0)}),
        N(5, "FaceDetectAndParse", 1, 2, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(6, "WhisperAudioEncode", 1, 3, links={"musetalk_models": (1, 0), "audio": (4, 0), "fps": (3, 2)}),
        N(7, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (5, 0)}),
        N(8, "MuseTalkUNetInpaint", 2, 1, links={"musetalk_models": (1, 0), "latents": (7, 0),
                                                  "audio_features": (6, 0)}),
        N(9, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (5, 0), "generated": (8, 0)}),
        N(10, "CreateVideo", 3, 1, links={"images": (9, 0), "audio": (9, 1), "fps": (9, 2)}),
        N(12, "MarkdownNote", 3, 2, widgets={"text": note}, title="About this workflow", size=NOTE_SIZE),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_tts"}, links={"video": (10, 0)}),
    ])


WORKFLOWS = [video_to_video, photo_to_video, one_video_two_audios, generated_frames_with_restoration, long_video,
             latentsync_video_to_video, text_to_talking_video, two_speakers, video_to_avatar]


# --------------------------------------------------------------------------------------------------------------
# Templates browser thumbnails: a picture of the graph, drawn from the UI file (same boxes as the editor).
# The browser loads <template>.jpg next to <template>.json (frontend 1.35.9: the .jpg extension is fixed for
# custom node templates) and shows it with object-contain, so any aspect works; 4:3 fills its card.
# --------------------------------------------------------------------------------------------------------------

THUMB_SIZE = (480, 360)
THUMB_PAD = 14
_LINK_COLORS = {"IMAGE": (100, 181, 246), "AUDIO": (234, 154, 66), "VIDEO": (214, 104, 214), "FLOAT": (170, 238, 136),
                "INT": (170, 238, 136)}
_MUSETALK_LINK = (74, 201, 180)


def _link_color(typ: str):
    return _LINK_COLORS.get(typ, _MUSETALK_LINK if typ.startswith("MUSETALK") else (160, 160, 160))


def thumbnail(ui: dict):
    """A 480x360 PIL image of the graph: links, node boxes with title bars, widget rows and media previews."""
    from PIL import Image, ImageDraw, ImageFont

    nodes = {n["id"]: n for n in ui["nodes"]}
    x0 = min(n["pos"][0] for n in ui["nodes"])
    y0 = min(n["pos"][1] - TITLE_H for n in ui["nodes"])
    x1 = max(n["pos"][0] + n["size"][0] for n in ui["nodes"])
    y1 = max(n["pos"][1] + n["size"][1] for n in ui["nodes"])
    tw, th = THUMB_SIZE
    s = min((tw - 2 * THUMB_PAD) / (x1 - x0), (th - 2 * THUMB_PAD) / (y1 - y0))
    ox = (tw - (x1 - x0) * s) / 2 - x0 * s
    oy = (th - (y1 - y0) * s) / 2 - y0 * s

    def pt(x, y):
        return ox + x * s, oy + y * s

    img = Image.new("RGB", THUMB_SIZE, (24, 24, 24))
    d = ImageDraw.Draw(img)
    for gx in range(0, tw, 24):  # the editor's dotted canvas, faintly
        for gy in range(0, th, 24):
            d.point((gx, gy), fill=(48, 48, 48))
    for _, src, slot, dst, dslot, typ in ui["links"]:
        a, b = nodes[src], nodes[dst]
        p0 = pt(a["pos"][0] + a["size"][0], a["pos"][1] + SLOT_TOP + SLOT_H * (slot + 0.5))
        p3 = pt(b["pos"][0], b["pos"][1] + SLOT_TOP + SLOT_H * (min(dslot, slot_rows(b["type"]) - 1) + 0.5))
        dx = max(abs(p3[0] - p0[0]) * 0.5, 12)
        p1, p2 = (p0[0] + dx, p0[1]), (p3[0] - dx, p3[1])
        curve = []
        for i in range(25):
            t = i / 24
            curve.append(tuple((1 - t) ** 3 * p0[k] + 3 * (1 - t) ** 2 * t * p1[k] + 3 * (1 - t) * t * t * p2[k]
                               + t ** 3 * p3[k] for k in range(2)))
        d.line(curve, fill=_link_color(typ), width=2)
    font = ImageFont.load_default(size=max(8, round(TITLE_H * s * 0.5)))
    radius = max(2, round(6 * s))
    for n in ui["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        note = n["type"] in UI_ONLY_NODES
        ours = n["type"] in MUSETALK_NODES
        body = (85, 68, 51) if note else (53, 53, 53)
        bar = (68, 51, 34) if note else ((38, 94, 86) if ours else (72, 72, 72))
        d.rounded_rectangle([pt(x, y - TITLE_H), pt(x + w, y + h)], radius=radius, fill=body)
        d.rounded_rectangle([pt(x, y - TITLE_H), pt(x + w, y)], radius=radius, fill=bar,
                            corners=(True, True, False, False))
        title = n.get("title") or TYPE_TITLES.get(n["type"], n["type"])
        max_w = w * s - 8
        while title and d.textlength(title, font=font) > max_w:
            title = title[:-2] + "…" if len(title) > 2 else ""
            title = title.rstrip("…")[:-1] + "…" if d.textlength(title, font=font) > max_w else title
        tx, ty = pt(x + 10, y - TITLE_H / 2)
        d.text((tx, ty), title, fill=(230, 230, 230), font=font, anchor="lm")
        if note:  # lines of text
            for i, ly in enumerate(range(int(y + 20), int(y + h - 20), 26)):
                lw = w - 40 if i % 4 != 3 else (w - 40) * 0.6
                d.line([pt(x + 20, ly), pt(x + 20 + lw, ly)], fill=(150, 128, 100), width=max(1, round(6 * s)))
            continue
        rows = slot_rows(n["type"])
        wy = y + (SLOT_TOP + SLOT_H * rows if rows else NO_SLOT_TOP)
        for wh in widget_heights(n["type"]):
            d.rounded_rectangle([pt(x + 12, wy + 3), pt(x + w - 12, wy + wh - 3)], radius=max(1, radius // 2),
                                fill=(34, 34, 34))
            wy += wh
        if n["type"] in PREVIEW_NODES:
            d.rectangle([pt(x + 10, wy + 4), pt(x + w - 10, y + h - 8)], fill=(16, 16, 16))
            cx, cy = pt(x + w / 2, (wy + y + h) / 2)
            r = 14 * s * 3
            if PREVIEW_NODES[n["type"]] == "video":  # a play button
                d.polygon([(cx - r * 0.5, cy - r * 0.6), (cx - r * 0.5, cy + r * 0.6), (cx + r * 0.6, cy)],
                          fill=(120, 120, 120))
            else:  # a face
                d.ellipse([cx - r * 0.7, cy - r * 0.9, cx + r * 0.7, cy + r * 0.9], fill=(200, 160, 130))
    return img


def thumbnail_bytes(ui: dict) -> bytes:
    buf = io.BytesIO()
    thumbnail(ui).save(buf, "JPEG", quality=88, optimize=True)
    return buf.getvalue()


# Display names of the nodes (the editor's titles when a node has no custom title), for the thumbnails.
TYPE_TITLES = {"LoadMuseTalkModels": "Load MuseTalk Models", "FaceDetectAndParse": "MuseTalk Face Detect & Parse",
               "WhisperAudioEncode": "MuseTalk Whisper Audio Encode", "VAEEncodeMasked": "MuseTalk VAE Encode (masked)",
               "MuseTalkUNetInpaint": "MuseTalk UNet Inpaint", "BlendAndAssemble": "MuseTalk Blend & Assemble",
               "LoadVideo": "Load Video", "GetVideoComponents": "Get Video Components", "LoadAudio": "Load Audio",
               "LoadImage": "Load Image", "CreateVideo": "Create Video", "SaveVideo": "Save Video",
               "ImageSharpen": "Image Sharpen", "LoadLatentSyncModel": "Load LatentSync Model (MuseTalk)",
               "LatentSyncInpaint": "LatentSync Inpaint (MuseTalk)", "ChatterBoxEngineNode": "ChatterBox TTS Engine",
               "UnifiedTTSTextNode": "TTS Text", "AddSpeaker": "MuseTalk Add Speaker",
               "SaveMuseTalkAvatar": "MuseTalk Save Avatar (real-time)"}


def render() -> Dict[Path, str]:
    """Every text file this script owns -> its exact content. The editor file is written twice: workflows/ui/<name>
    (stable paths for docs and scripts) and example_workflows/<title> (what the Templates browser shows)."""
    files: Dict[Path, str] = {}
    titles = set()
    for make in WORKFLOWS:
        wf = make()
        ui = build_ui(wf)
        if wf.title.lower() in titles:
            raise ValueError(f"two workflows are titled {wf.title!r}")
        titles.add(wf.title.lower())
        ui_text = json.dumps(ui, indent=2, ensure_ascii=False) + "\n"
        api_text = json.dumps(ui_to_api(ui), indent=2, ensure_ascii=False) + "\n"
        files[UI_DIR / f"{wf.name}.json"] = ui_text
        files[API_DIR / f"{wf.name}.json"] = api_text
        files[TEMPLATES_DIR / f"{wf.title}.json"] = ui_text
    return files


def render_thumbnails() -> Dict[Path, bytes]:
    """example_workflows/<title>.jpg for every template."""
    return {TEMPLATES_DIR / f"{wf.title}.jpg": thumbnail_bytes(build_ui(wf)) for wf in (m() for m in WORKFLOWS)}


def thumbnail_differs(path: Path, data: bytes) -> bool:
    """Compared by pixels, not bytes (JPEG encoders of other builds differ by a few levels): stale when more than
    8 pixels differ by more than 24 levels, which any changed box, link or label does."""
    if not path.exists():
        return True
    from PIL import Image, ImageChops

    old, new = Image.open(path).convert("RGB"), Image.open(io.BytesIO(data)).convert("RGB")
    if old.size != new.size:
        return True
    diff = ImageChops.difference(old, new).convert("L").point(lambda v: 255 if v > 24 else 0)
    return diff.histogram()[255] > 8


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale, extra = [], []
    texts, thumbs = render(), render_thumbnails()
    for path, text in texts.items():
        if (path.read_text(encoding="utf-8") if path.exists() else None) != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for path, data in thumbs.items():
        if thumbnail_differs(path, data):
            stale.append(path)
            if not args.check:
                path.write_bytes(data)
    # files left over from a renamed or removed workflow would still be listed as templates
    for folder, patterns in ((UI_DIR, ("*.json",)), (API_DIR, ("*.json",)), (TEMPLATES_DIR, ("*.json", "*.jpg"))):
        for pattern in patterns:
            for path in folder.glob(pattern):
                if path not in texts and path not in thumbs:
                    extra.append(path)
                    if not args.check:
                        path.unlink()
    for path in stale:
        print(("out of date: " if args.check else "wrote ") + str(path.relative_to(ROOT)))
    for path in extra:
        print(("not generated: " if args.check else "removed ") + str(path.relative_to(ROOT)))
    return 1 if (args.check and (stale or extra)) else 0


if __name__ == "__main__":
    sys.exit(main())
