"""Generate the example workflows (UI format + API format) from one description, and keep the copies in sync.

    python tools/workflows.py            write workflows/ui/*.json, workflows/api/*.json, example_workflows/*.json
    python tools/workflows.py --check    exit 1 if any file differs from what would be written (CI / tests)

Why generated, not hand-edited, and why copies instead of a symlink:
- One description (WORKFLOWS below) yields both formats, so the UI file (graph editor) and the API file (POST /prompt)
  can never disagree; ``ui_to_api`` is the same conversion the editor's "Export (API)" performs.
- ComfyUI's template browser lists ``<pack>/example_workflows/*.json`` (also ``workflows/*.json``, which is why our
  own files sit one level deeper, in workflows/ui and workflows/api: otherwise every template would be listed twice
  and API files would show up as templates). A symlink example_workflows -> workflows/ui would work on Linux
  (glob and aiohttp's static route both follow it), but git checkouts on Windows without symlink support turn it
  into a text file and registry archives do not reliably keep links, so we ship real files: example_workflows/ is
  byte-identical to workflows/ui/, written by this script and checked by tests/test_workflows.py.

Widget order: ``NODE_WIDGETS`` is the positional order of each node's ``widgets_values`` (UI format). For our nodes
it is the order of the INPUT_TYPES widget inputs (the fixed interface); tests check it against the real classes.
"""

from __future__ import annotations

import argparse
import json
import sys
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
        [("musetalk_models", "MUSETALK_MODELS", False), ("images", "IMAGE", False)],
        [("bbox_shift", "INT", 0), ("extra_margin", "INT", 10), ("parsing_mode", "COMBO", "auto"),
         ("left_cheek_width", "INT", 90), ("right_cheek_width", "INT", 90),
         ("face_selection", "COMBO", "highest_score"), ("landmark_region", "COMBO", "full_frame"),
         ("box_smoothing", "FLOAT", 0.0), ("detector_scale", "FLOAT", 1.0), ("batch_size", "INT", 8)],
        [("faces", "MUSETALK_FACES"), ("preview", "IMAGE"), ("bbox_range", "STRING")]),
    "WhisperAudioEncode": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("audio", "AUDIO", False)],
        [("fps", "FLOAT", 25.0), ("audio_padding_left", "INT", 2), ("audio_padding_right", "INT", 2),
         ("feature_mode", "COMBO", "reference"), ("silence_threshold_db", "FLOAT", -45.0)],
        [("audio_features", "MUSETALK_AUDIO"), ("frame_count", "INT"), ("audio", "AUDIO")]),
    "VAEEncodeMasked": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("faces", "MUSETALK_FACES", False)],
        [("latent_mode", "COMBO", "sample"), ("seed", "INT", 0), ("control_after_generate", "COMBO", "fixed"),
         ("batch_size", "INT", 8)],
        [("latents", "MUSETALK_LATENTS")]),
    "MuseTalkUNetInpaint": (
        [("musetalk_models", "MUSETALK_MODELS", False), ("latents", "MUSETALK_LATENTS", False),
         ("audio_features", "MUSETALK_AUDIO", False)],
        [("frame_mapping", "COMBO", "ping_pong"), ("frame_offset", "INT", 0), ("batch_size", "INT", 8)],
        [("generated", "MUSETALK_GENERATED"), ("faces", "IMAGE")]),
    "BlendAndAssemble": (
        [("images", "IMAGE", False), ("faces", "MUSETALK_FACES", False), ("generated", "MUSETALK_GENERATED", False),
         ("replacement_faces", "IMAGE", True)],
        [("blur_factor", "FLOAT", 0.05), ("upper_boundary_ratio", "FLOAT", 0.5), ("silence_handling", "BOOLEAN", False),
         ("silence_fade_frames", "INT", 3), ("chunk_size", "INT", 16)],
        [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"), ("frame_count", "INT")]),
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
UI_ONLY_NODES = ("MarkdownNote", "Note")
NODE_DEFS: Dict[str, NodeDef] = {**MUSETALK_NODES, **CORE_NODES}


def widget_names(node_type: str) -> List[str]:
    return [w[0] for w in NODE_DEFS[node_type][1]]


@dataclass
class N:
    """One node of a workflow description. links: input name -> (source node id, output slot)."""

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
    name: str
    title: str
    description: str
    nodes: List[N]


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
    by_id = {n.id: n for n in wf.nodes}
    order = _order(wf.nodes)
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
        node = {
            "id": n.id, "type": n.type,
            "pos": [n.col * 380, int(n.row * 150)],
            "size": list(n.size or ((420, 260) if n.type in UI_ONLY_NODES else (330, 60 + 26 * (len(widgets) + max(len(inputs), len(outputs)))))),
            "flags": {}, "order": order[n.id], "mode": 0,
            "inputs": inputs,
            "outputs": [{"name": name, "type": typ, "links": out_links.get((n.id, slot), []), "slot_index": slot}
                        for slot, (name, typ) in enumerate(outputs)],
            "properties": {"Node name for S&R": n.type,
                           **({"cnr_id": "comfy-core"} if n.type in CORE_NODES else {"cnr_id": "musetalk-nodes"})},
            "widgets_values": _widget_values(n),
        }
        if n.title:
            node["title"] = n.title
        if n.type in UI_ONLY_NODES:
            node["color"], node["bgcolor"] = "#432", "#653"
        nodes.append(node)
    return {
        "id": f"musetalk-{wf.name}", "revision": 0,
        "last_node_id": max(n.id for n in wf.nodes), "last_link_id": len(links),
        "nodes": nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}, "musetalk": {"title": wf.title,
                                                                           "description": wf.description}},
        "version": 0.4,
    }


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
   video's frames are reused back and forth (ping-pong) when the audio is longer.
3. **Queue**. The result is saved by **Save Video** (H.264 + AAC) under `output/video/`.

The video's own fps flows from *Get Video Components* into *Whisper Audio Encode* and *Create Video*, so the mouth
stays in step with the sound at any frame rate (29.97 included). The video's own sound track is not used.

Tuning: `bbox_shift` (face detect) moves the crop up/down (negative = more mouth opening, see the `bbox_range`
output); `extra_margin` adds chin room (v1.5); `blur_factor` softens the paste seam.

{MODELS_NOTE}"""
    return Workflow("musetalk_video_to_video", "MuseTalk: video + audio -> lip-synced video",
                    "Lip-sync an existing video to a new audio track with MuseTalk 1.5 (core video nodes in and out).", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(2, "LoadVideo", 0, 1.2, widgets={"file": VIDEO_FILE}, size=(330, 300)),
        N(3, "GetVideoComponents", 0, 3.4, links={"video": (2, 0)}),
        N(4, "LoadAudio", 0, 4.4, widgets={"audio": AUDIO_FILE}, size=(330, 140)),
        N(5, "FaceDetectAndParse", 1, 0, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(6, "WhisperAudioEncode", 1, 2.8, links={"musetalk_models": (1, 0), "audio": (4, 0), "fps": (3, 2)}),
        N(7, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (5, 0)}),
        N(8, "MuseTalkUNetInpaint", 2, 1.5, links={"musetalk_models": (1, 0), "latents": (7, 0),
                                                    "audio_features": (6, 0)}),
        N(9, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (5, 0), "generated": (8, 0)}),
        N(10, "CreateVideo", 3, 2.2, links={"images": (9, 0), "audio": (9, 1), "fps": (9, 2)}),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk"}, links={"video": (10, 0)},
          size=(380, 420)),
        N(12, "MarkdownNote", 4, 3, widgets={"text": note}, title="About this workflow", size=(460, 520)),
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
    return Workflow("musetalk_photo_to_video", "MuseTalk: photo + audio -> talking video",
                    "Make a single portrait photo speak an audio track.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(2, "LoadImage", 0, 1.2, widgets={"image": PHOTO_FILE}, size=(330, 340)),
        N(3, "LoadAudio", 0, 3.8, widgets={"audio": AUDIO_FILE}, size=(330, 140)),
        N(4, "FaceDetectAndParse", 1, 0, links={"musetalk_models": (1, 0), "images": (2, 0)}),
        N(5, "WhisperAudioEncode", 1, 2.8, widgets={"fps": 25.0}, links={"musetalk_models": (1, 0), "audio": (3, 0)}),
        N(6, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (4, 0)}),
        N(7, "MuseTalkUNetInpaint", 2, 1.5, links={"musetalk_models": (1, 0), "latents": (6, 0),
                                                    "audio_features": (5, 0)}),
        N(8, "BlendAndAssemble", 3, 0, links={"images": (2, 0), "faces": (4, 0), "generated": (7, 0)}),
        N(9, "CreateVideo", 3, 2.2, links={"images": (8, 0), "audio": (8, 1), "fps": (8, 2)}),
        N(10, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_photo"}, links={"video": (9, 0)},
          size=(380, 420)),
        N(11, "MarkdownNote", 4, 3, widgets={"text": note}, title="About this workflow", size=(460, 440)),
    ])


def one_video_two_audios() -> Workflow:
    note = f"""# One prepared video, two audio tracks

The per-video stages, **Face Detect & Parse** and **VAE Encode (masked)**, have one output each, wired to two
audio branches. ComfyUI runs each node once per queue and caches its result, so faces and latents are computed
**once** and shared; each audio track only costs Whisper + UNet + blending.

Queue again with a *different* audio file: the video stages are not re-run at all (cached), only the audio
branch that changed. Add more branches (copy one audio column) to dub the same clip into more languages.

{MODELS_NOTE}"""
    return Workflow("musetalk_one_video_two_audios", "MuseTalk: one video, two audio tracks",
                    "Prepare a video once (faces, latents) and lip-sync it to two different audio tracks.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(2, "LoadVideo", 0, 1.2, widgets={"file": VIDEO_FILE}, size=(330, 300)),
        N(3, "GetVideoComponents", 0, 3.4, links={"video": (2, 0)}),
        N(4, "FaceDetectAndParse", 1, 0, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(5, "VAEEncodeMasked", 1, 2.8, links={"musetalk_models": (1, 0), "faces": (4, 0)}),
        # audio branch A
        N(6, "LoadAudio", 2, 0, widgets={"audio": AUDIO_FILE}, title="Load Audio (track A)", size=(330, 140)),
        N(7, "WhisperAudioEncode", 2, 1.1, links={"musetalk_models": (1, 0), "audio": (6, 0), "fps": (3, 2)}),
        N(8, "MuseTalkUNetInpaint", 2, 2.7, links={"musetalk_models": (1, 0), "latents": (5, 0),
                                                    "audio_features": (7, 0)}),
        N(9, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (4, 0), "generated": (8, 0)}),
        N(10, "CreateVideo", 3, 1.8, links={"images": (9, 0), "audio": (9, 1), "fps": (9, 2)}),
        N(11, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_track_a"}, links={"video": (10, 0)},
          size=(380, 300)),
        # audio branch B
        N(12, "LoadAudio", 2, 4.2, widgets={"audio": AUDIO_FILE_2}, title="Load Audio (track B)", size=(330, 140)),
        N(13, "WhisperAudioEncode", 2, 5.3, links={"musetalk_models": (1, 0), "audio": (12, 0), "fps": (3, 2)}),
        N(14, "MuseTalkUNetInpaint", 2, 6.9, links={"musetalk_models": (1, 0), "latents": (5, 0),
                                                     "audio_features": (13, 0)}),
        N(15, "BlendAndAssemble", 3, 4.2, links={"images": (3, 0), "faces": (4, 0), "generated": (14, 0)}),
        N(16, "CreateVideo", 3, 6.0, links={"images": (15, 0), "audio": (15, 1), "fps": (15, 2)}),
        N(17, "SaveVideo", 4, 4.2, widgets={"filename_prefix": "video/musetalk_track_b"}, links={"video": (16, 0)},
          size=(380, 300)),
        N(18, "MarkdownNote", 0, 4.6, widgets={"text": note}, title="About this workflow", size=(360, 460)),
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
    return Workflow("musetalk_generated_frames_face_restore", "MuseTalk: generated frames + face restoration",
                    "Lip-sync frames from an upstream generator, with a face-restoration slot before blending.", [
        N(1, "LoadMuseTalkModels", 0, 0),
        N(2, "LoadVideo", 0, 1.2, widgets={"file": VIDEO_FILE}, size=(330, 300),
          title="Upstream frames (replace with MuseV / ControlNeXt output)"),
        N(3, "GetVideoComponents", 0, 3.4, links={"video": (2, 0)}),
        N(4, "LoadAudio", 0, 4.4, widgets={"audio": AUDIO_FILE}, size=(330, 140)),
        N(5, "FaceDetectAndParse", 1, 0, links={"musetalk_models": (1, 0), "images": (3, 0)}),
        N(6, "WhisperAudioEncode", 1, 2.8, widgets={"fps": 25.0}, links={"musetalk_models": (1, 0), "audio": (4, 0)}),
        N(7, "VAEEncodeMasked", 2, 0, links={"musetalk_models": (1, 0), "faces": (5, 0)}),
        N(8, "MuseTalkUNetInpaint", 2, 1.5, links={"musetalk_models": (1, 0), "latents": (7, 0),
                                                    "audio_features": (6, 0)}),
        N(9, "ImageSharpen", 2, 3.4, widgets={"sharpen_radius": 1, "sigma": 0.8, "alpha": 0.3},
          links={"image": (8, 1)}, title="Face restoration slot (replace with GFPGAN / CodeFormer)"),
        N(10, "BlendAndAssemble", 3, 0, links={"images": (3, 0), "faces": (5, 0), "generated": (8, 0),
                                                "replacement_faces": (9, 0)}),
        N(11, "CreateVideo", 3, 2.4, links={"images": (10, 0), "audio": (10, 1), "fps": (10, 2)}),
        N(12, "SaveVideo", 4, 0, widgets={"filename_prefix": "video/musetalk_restored"}, links={"video": (11, 0)},
          size=(380, 420)),
        N(13, "MarkdownNote", 4, 3, widgets={"text": note}, title="About this workflow", size=(460, 520)),
    ])


WORKFLOWS = [video_to_video, photo_to_video, one_video_two_audios, generated_frames_with_restoration]


def render() -> Dict[Path, str]:
    """Every file this script owns -> its exact content."""
    files: Dict[Path, str] = {}
    for make in WORKFLOWS:
        wf = make()
        ui = build_ui(wf)
        ui_text = json.dumps(ui, indent=2, ensure_ascii=False) + "\n"
        api_text = json.dumps(ui_to_api(ui), indent=2, ensure_ascii=False) + "\n"
        files[UI_DIR / f"{wf.name}.json"] = ui_text
        files[API_DIR / f"{wf.name}.json"] = api_text
        files[TEMPLATES_DIR / f"{wf.name}.json"] = ui_text
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(("out of date: " if args.check else "wrote ") + str(path.relative_to(ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
