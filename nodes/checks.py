"""Checks that refuse a prompt before its first heavy stage (face detection) instead of after it.

ComfyUI calls a node's VALIDATE_INPUTS for every node of a prompt before any node runs (a refusal is shown on the
node, and nothing runs). It sees the node's widget values only: a linked value arrives as None and is left to the
node itself. Naming an input there turns off ComfyUI's own check that a choice is in the list, so the choices are
checked here too. What depends on data (the audio's length, the frames) is checked by the nodes, of which the
cheap ones run first (comfy_bridge.run_early)."""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple, Union

from . import comfy_bridge


def verdict(problem: Optional[str]) -> Union[bool, str]:
    """What VALIDATE_INPUTS returns: True, or the problem (chain the checks with ``or``: the first one found)."""
    return problem or True


def choice(name: str, value, choices: Sequence[str]) -> Optional[str]:
    if value is None or value in choices:  # None: linked, the node checks it when it runs
        return None
    return f"{name}: '{value}' is not one of {', '.join(choices)}."


def model_files(download_set: str, roles: Optional[Iterable[str]] = None) -> Optional[str]:
    """The missing-files message (every file, its family and the command that fetches them), or None."""
    from musetalk_core.errors import ModelFilesMissing
    from musetalk_core.weights import files

    try:
        files.require(comfy_bridge.models_search_dirs(), download_set, roles)
    except ModelFilesMissing as exc:
        return str(exc)
    return None


def musetalk_files(version) -> Optional[str]:
    from musetalk_core.types import VERSIONS
    from musetalk_core.weights.loading import NETWORKS, OPTIONAL_NETWORKS, roles_for

    if version not in VERSIONS:
        return None
    return model_files(version, roles_for([n for n in NETWORKS if n not in OPTIONAL_NETWORKS], version))


def taesd_file(decoder) -> Optional[str]:
    from musetalk_core.weights.loading import roles_for

    return model_files("taesd", roles_for(["taesd"], "v15")) if decoder == "taesd" else None


def insightface_ready(alignment) -> Optional[str]:
    """The optional InsightFace alignment: its package and its buffalo_l models, as the backend will look for them."""
    from pathlib import Path

    from musetalk_core.generators.latentsync.landmarks import INSIGHTFACE_INSTALL
    from musetalk_core.generators.latentsync.loading import insightface_root

    if alignment != "insightface":
        return None
    try:
        import insightface  # type: ignore # noqa: F401
    except ImportError:
        return (f"alignment 'insightface' needs the optional InsightFace package: {INSIGHTFACE_INSTALL} (or use "
                "the default 'dwpose').")
    folder = Path(insightface_root(comfy_bridge.models_search_dirs()) or "") / "models" / "buffalo_l"
    if not folder.is_dir() or not any(folder.glob("*.onnx")):
        return (f"alignment 'insightface': InsightFace's buffalo_l models were not found in {folder}. Copy "
                "LatentSync's checkpoints/auxiliary/models/buffalo_l there, or use the default 'dwpose'.")
    return None


def consumers(prompt, node_id, output: int = 0) -> List[Tuple[str, dict]]:
    """(id, node) of every node of an API prompt that takes output ``output`` of node ``node_id``."""
    if not prompt or node_id is None:
        return []
    found = []
    for other_id, node in prompt.items():
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(node_id) and value[1] == output:
                found.append((other_id, node))
                break
    return found
