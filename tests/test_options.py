"""The run settings are declared once (musetalk_core.options): the nodes' widgets, the command line flags and the
batch job keys are made from the declarations, and one check gives one message naming the input and its range."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys

import pytest

from conftest import ROOT
from musetalk_core.errors import InputError
from musetalk_core.lipsync_args import add_lipsync_arguments, options_from_args
from musetalk_core.options import PARAMS, LipsyncOptions, check_value, node_input, resolve

REQUIRED = ["--video", "v.mp4", "--audio", "a.wav", "--output", "o.mp4"]
# the LatentSync nodes take these settings too (LatentSync's default where it has one)
LATENTSYNC_INPUTS = {"LoadLatentSyncModel": ("precision", "device"),
                     "LatentSyncInpaint": ("seed", "frame_mapping", "frame_offset")}
# settings added to a node after workflows were saved: optional inputs, after the others (saved widget positions hold)
OPTIONAL_INPUTS = ("audio_segments", "speaker_selection", "scheduler")  # last widgets: saved workflows keep positions


class _Raising(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(message)


def parse(*flags):
    parser = _Raising(add_help=False)
    add_lipsync_arguments(parser, models_dir=False)
    return options_from_args(parser.parse_args(REQUIRED + list(flags)))


def test_every_node_input_is_its_declaration(pack):
    nodes = pack.NODE_CLASS_MAPPINGS
    for param in PARAMS.values():
        if param.node is not None:
            kind = "optional" if param.name in OPTIONAL_INPUTS else "required"
            assert nodes[param.node].INPUT_TYPES()[kind][param.node_name or param.name] == \
                node_input(param.name), param.name
    for node_id, names in LATENTSYNC_INPUTS.items():
        for name in names:
            assert nodes[node_id].INPUT_TYPES()["required"][name] == node_input(name, latentsync=True)
    assert node_input("seed", latentsync=True)[1]["default"] == 1247 and node_input("seed")[1]["default"] == 0


def test_node_input_kinds():
    assert node_input("bbox_shift")[0] == "INT" and "step" not in node_input("bbox_shift")[1]
    assert node_input("blur_factor") == ("FLOAT", {"default": 0.05, "min": 0.0, "max": 0.5, "step": 0.005,
                                                   "tooltip": PARAMS["blur_factor"].help})
    assert node_input("silence_handling")[0] == "BOOLEAN"
    assert node_input("parsing_mode")[0] == ["auto", "jaw", "raw", "neck"]


def test_the_library_choices_are_the_declared_ones():
    """Until the library reads its lists from the declarations, they must not drift apart."""
    from musetalk_core.audio.windows import AUDIO_SEGMENTS, FEATURE_MODES
    from musetalk_core.faces.locate import FACE_SELECTIONS, LANDMARK_REGIONS
    from musetalk_core.faces.parsing import PARSING_MODES
    from musetalk_core.frame_mapping import MODES
    from musetalk_core.generators.latentsync.config import VERSIONS as LATENTSYNC_VERSIONS
    from musetalk_core.generators.latentsync.landmarks import BACKENDS
    from musetalk_core.generators.musetalk.accel import Acceleration
    from musetalk_core.generators.musetalk.generate import DECODERS
    from musetalk_core.generators.musetalk.latents import LATENT_MODES
    from musetalk_core.types import VERSIONS
    from musetalk_core.weights.loading import DEVICES, LANDMARK_BACKENDS, PRECISIONS

    for name, choices in [("version", VERSIONS), ("precision", PRECISIONS), ("device", DEVICES),
                          ("landmark_backend", LANDMARK_BACKENDS), ("parsing_mode", PARSING_MODES),
                          ("face_selection", FACE_SELECTIONS), ("landmark_region", LANDMARK_REGIONS),
                          ("feature_mode", FEATURE_MODES), ("latent_mode", LATENT_MODES), ("frame_mapping", MODES),
                          ("decoder", DECODERS), ("alignment", BACKENDS), ("audio_segments", AUDIO_SEGMENTS),
                          ("generator", ("musetalk", *LATENTSYNC_VERSIONS))]:
        assert PARAMS[name].choices == tuple(choices), name
    for preset in PARAMS["acceleration"].choices:
        Acceleration.parse(preset)
    upstream = LATENTSYNC_VERSIONS["latentsync15"]
    assert (PARAMS["seed"].latentsync_default, PARAMS["inference_steps"].default, PARAMS["guidance_scale"].default,
            PARAMS["window_length"].default) == (upstream.seed, upstream.inference_steps, upstream.guidance_scale,
                                                 upstream.num_frames)


@pytest.mark.parametrize("name, value, message", [
    ("bbox_shift", 500, "'bbox_shift' = 500 is outside -200..200."),
    ("box_smoothing", math.nan, "'box_smoothing' = nan is outside 0.0..1.0."),
    ("face_batch_size", 0, "'face_batch_size' = 0 is outside 1..64."),
    ("chunk_size", 2.0, "'chunk_size' = 2.0 is not an integer."),
    ("parsing_mode", "lips", "'parsing_mode' = 'lips' is not one of auto, jaw, raw, neck."),
    ("silence_handling", 1, "'silence_handling' = 1 is not true or false."),
])
def test_one_check_one_message(name, value, message):
    with pytest.raises(InputError) as info:
        check_value(name, value)
    assert str(info.value) == message
    with pytest.raises(InputError, match="^'batch_size' = 0 "):  # named as the caller's user knows it
        check_value("face_batch_size", 0, label="batch_size")


def test_presets_are_not_a_limit():
    assert check_value("acceleration", "channels_last+cuda_graphs") == "channels_last+cuda_graphs"


def test_resolve_fills_the_declared_defaults():
    assert resolve({}) == LipsyncOptions()
    latentsync = resolve({"generator": "latentsync16"})
    assert latentsync.seed == 1247 and latentsync.feature_mode == "v1.0-original"
    assert resolve({"generator": "latentsync16", "seed": 3}).seed == 3
    big = resolve({"batch_size": 200})
    assert big.face_batch_size == big.vae_batch_size == 64
    assert resolve({"batch_size": 4, "vae_batch_size": 2}).face_batch_size == 4
    with pytest.raises(TypeError, match="bbox"):
        resolve({"bbox": 1})
    with pytest.raises(InputError, match="outside"):
        resolve({"detector_scale": 0.0})


def test_every_setting_is_a_flag_with_the_declared_range():
    assert parse() == LipsyncOptions()
    for param in PARAMS.values():
        flag = "--" + param.name.replace("_", "-")
        if param.lo is not None:
            assert getattr(parse(flag, str(param.hi)), param.name) == param.hi
            with pytest.raises(InputError, match=f"argument {flag}: '{param.name}' = .* is outside"):
                parse(flag, str(param.lo - 1))
        elif param.choices and not param.presets:
            assert getattr(parse(flag, param.choices[-1]), param.name) == param.choices[-1]
            with pytest.raises(InputError, match=f"argument {flag}: '{param.name}' = 'nope' is not one of"):
                parse(flag, "nope")
    assert parse("--silence-handling").silence_handling is True
    assert parse("--silence-handling", "false").silence_handling is False


def test_batch_does_not_import_the_command_line():
    code = "import sys, musetalk_core.batch.run, musetalk_core.batch.jobs; sys.exit('musetalk_core.cli' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0
    leaf = "import sys, musetalk_core.options; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", leaf], cwd=ROOT, timeout=120).returncode == 0
