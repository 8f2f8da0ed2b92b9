"""Foundation: pack import, model folder layout, loaders on tiny real-format checkpoints, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from musetalk_core.weights import loading
from musetalk_core.weights import files as model_files
from musetalk_core.errors import InputError, ModelFilesMissing, WeightFileError

CARD_NODE_IDS = ["LoadMuseTalkModels", "FaceDetectAndParse", "WhisperAudioEncode", "VAEEncodeMasked",
                 "MuseTalkUNetInpaint", "BlendAndAssemble"]
# the second generator (issue 17), after the card's six; ids fixed from their first release
LATENTSYNC_NODE_IDS = ["LoadLatentSyncModel", "LatentSyncInpaint"]
# later nodes, in menu order: several speakers (issue 25), real-time avatars (issue 26)
LATER_NODE_IDS = ["AddSpeaker", "SaveMuseTalkAvatar", "LoadMuseTalkAvatar"]
ALL_NODE_IDS = CARD_NODE_IDS + LATENTSYNC_NODE_IDS + LATER_NODE_IDS


def test_pack_import_is_light_and_loads_no_model():
    """Importing the pack by path (as ComfyUI does) must not import diffusers/transformers/cv2 or load weights.
    How long it takes is measured by benchmarks/import_time.py (BENCHMARKS.md), not asserted here."""
    from benchmarks.import_time import one_import

    result = one_import(ROOT)
    assert result["heavy"] == []
    assert sorted(result["nodes"]) == sorted(ALL_NODE_IDS)


def test_node_contract(pack):
    mappings = pack.NODE_CLASS_MAPPINGS
    assert list(mappings) == ALL_NODE_IDS
    for node_id, cls in mappings.items():
        assert cls.CATEGORY == ("MuseTalk/LatentSync" if node_id in LATENTSYNC_NODE_IDS else "MuseTalk")
        assert "MuseTalk" in pack.NODE_DISPLAY_NAME_MAPPINGS[node_id]
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}
        assert len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))
        assert callable(getattr(cls, cls.FUNCTION))
        assert isinstance(cls.DESCRIPTION, str) and cls.DESCRIPTION


def test_missing_folder_lists_every_file(tmp_path):
    with pytest.raises(ModelFilesMissing) as err:
        model_files.require([tmp_path / "nowhere"], "v15")
    message = str(err.value)
    for f in model_files.files_for("v15"):
        assert f.path in message
    assert "python install.py --download-models v15" in message
    assert "whisper/tiny.pt" not in message  # optional file is not demanded


def test_partial_folder_reports_only_missing(tiny_models_factory):
    folder = tiny_models_factory("v15", ["unet", "vae"])
    with pytest.raises(ModelFilesMissing) as err:
        model_files.require([folder], "v15")
    names = {f.role for f in err.value.missing}
    assert names == {"whisper_config", "whisper_preprocessor", "whisper", "dwpose", "face_parser", "s3fd"}
    assert "musetalkV15/unet.pth" not in str(err.value)


def test_safetensors_twin_is_accepted(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "s3fd").mkdir()
    save_file({"w": torch.zeros(1)}, str(tmp_path / "s3fd" / "s3fd-619a316812.safetensors"))
    assert model_files.resolve(tmp_path, "s3fd").name == "s3fd-619a316812.safetensors"


@pytest.mark.parametrize("version", ["v15", "v1"])
def test_unet_vae_pe_load_on_tiny_files(tiny_models_factory, version):
    folder = tiny_models_factory(version, ["unet", "vae"])
    models = loading.load_models([folder], version=version, precision="fp32", device="cpu",
                                 networks=["unet", "vae", "pe"])
    unet, vae, pe = (models.network(n) for n in ("unet", "vae", "pe"))
    assert unet.config.in_channels == 8 and unet.config.cross_attention_dim == 384
    from tiny.unet_vae import seeded_unet, seeded_vae

    ref = seeded_unet().state_dict()
    assert all(torch.equal(ref[k], v) for k, v in unet.state_dict().items())
    assert abs(vae.config.scaling_factor - 0.18215) < 1e-9
    ref_vae = seeded_vae().state_dict()
    assert all(torch.equal(ref_vae[k], v) for k, v in vae.state_dict().items())
    x = torch.zeros(2, 50, 384)
    assert torch.allclose(pe(x)[0, 1, :2], torch.tensor([torch.sin(torch.tensor(1.0)), torch.cos(torch.tensor(1.0))]))
    # Loading again with the same settings reuses the loaded models.
    again = loading.load_models([folder], version=version, precision="fp32", device="cpu",
                                networks=["unet", "vae", "pe"])
    assert again is models


def test_legacy_vae_bin_names_are_renamed(tiny_models_factory):
    folder = tiny_models_factory("v15", ["vae"], vae_format="bin")
    state = torch.load(folder / "sd-vae" / "diffusion_pytorch_model.bin", weights_only=True)
    assert any(k.endswith("attentions.0.query.weight") for k in state)
    models = loading.load_models([folder], version="v15", precision="fp32", device="cpu", networks=["vae"])
    from tiny.unet_vae import seeded_vae

    ref = seeded_vae().state_dict()
    assert all(torch.equal(ref[k], v) for k, v in models.network("vae").state_dict().items())


def test_corrupt_weight_file_names_the_file(tiny_models_factory, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_models_factory("v15", ["unet", "vae"]), folder)
    (folder / "musetalkV15" / "unet.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightFileError) as err:
        loading.load_models([folder], version="v15", precision="fp32", device="cpu", networks=["unet"])
    assert "unet.pth" in str(err.value) and "corrupt" in str(err.value)


def test_wrong_state_dict_summarises_mismatch(tiny_models_factory, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_models_factory("v15", ["unet", "vae"]), folder)
    # The VAE's weights where the UNet belongs: a real model file in the wrong place.
    vae_state = loading.load_models([folder], "v15", "fp32", "cpu", networks=["vae"]).network("vae").state_dict()
    torch.save(vae_state, folder / "musetalkV15" / "unet.pth")
    with pytest.raises(WeightFileError) as err:
        loading.load_models([folder], version="v15", precision="fp32", device="cpu", networks=["unet"])
    message = str(err.value)
    assert "unet.pth" in message and "missing keys" in message and "unexpected keys" in message
    assert "MuseTalk UNet" in message


def test_state_dict_with_one_bad_shape(tiny_models_factory, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_models_factory("v15", ["unet", "vae"]), folder)
    state = torch.load(folder / "musetalkV15" / "unet.pth", weights_only=True)
    state["conv_in.weight"] = torch.zeros(32, 4, 3, 3)
    torch.save(state, folder / "musetalkV15" / "unet.pth")
    with pytest.raises(WeightFileError, match=r"conv_in.weight: file \(32, 4, 3, 3\), model \(32, 8, 3, 3\)"):
        loading.load_models([folder], version="v15", precision="fp32", device="cpu", networks=["unet"])


def test_pickles_load_with_weights_only(tmp_path):
    """A pickle holding arbitrary objects is refused (weights_only=True), with the file named."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "x.pth"
    with open(path, "wb") as fh:
        pickle.dump({"a": Evil()}, fh)
    from musetalk_core.models.checkpoints import read_state_dict

    with pytest.raises(WeightFileError, match="x.pth"):
        read_state_dict(path)


def test_bad_version_device_precision():
    with pytest.raises(InputError, match="version"):
        loading.load_models([Path(".")], version="v2")
    with pytest.raises(InputError, match="device"):
        loading.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            loading.resolve_device("cuda")
    with pytest.raises(InputError, match="fp16"):
        loading.resolve_dtype("fp16", torch.device("cpu"))
    assert loading.resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_real_size_unet_on_meta_device():
    """The published musetalk.json builds the ~850 M parameter UNet with the documented key names."""
    from musetalk_core.models.unet import build_unet
    from tiny.unet_vae import PUBLISHED_UNET_CONFIG

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "musetalk.json"
        path.write_text(json.dumps(PUBLISHED_UNET_CONFIG))
        unet = build_unet(path, meta=True)
    n = sum(p.numel() for p in unet.parameters())
    assert 845e6 < n < 855e6, n
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert shapes["conv_in.weight"] == (320, 8, 3, 3)
    assert shapes["time_embedding.linear_1.weight"] == (1280, 320)
    assert shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"] == (320, 384)
    assert shapes["conv_out.weight"] == (4, 320, 3, 3)
    assert "mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight" in shapes
    assert "up_blocks.1.upsamplers.0.conv.weight" in shapes


def test_load_node_reports_missing(pack, models_env, tmp_path):
    models_env(tmp_path / "empty")
    node = pack.NODE_CLASS_MAPPINGS["LoadMuseTalkModels"]()
    with pytest.raises(ModelFilesMissing) as err:
        node.load("v15", "auto", "cpu", "torch")
    assert len(err.value.missing) == len(model_files.files_for("v15"))


def test_missing_model_files_refuse_the_prompt_before_anything_runs(pack, models_env, tmp_path, tiny_models_factory):
    """ComfyUI calls VALIDATE_INPUTS for every node before any node runs: a missing file refuses the prompt there,
    naming the family, every file and the command that fetches them. A linked (None) version is left to the node."""
    nodes = pack.NODE_CLASS_MAPPINGS
    load, unet = nodes["LoadMuseTalkModels"], nodes["MuseTalkUNetInpaint"]
    models_env(tmp_path / "empty")
    problem = load.VALIDATE_INPUTS("v15")
    assert isinstance(problem, str) and "MuseTalk model files are missing (10)" in problem
    assert "python install.py --download-models v15" in problem and "LatentSync" not in problem
    assert "version: 'v2' is not one of v15, v1" in load.VALIDATE_INPUTS("v2")  # ComfyUI's list check is ours now
    assert load.VALIDATE_INPUTS(None) is True
    models_env(tiny_models_factory("v15"))
    assert load.VALIDATE_INPUTS("v15") is True
    assert "MuseTalk model files are missing" in load.VALIDATE_INPUTS("v1")  # another version's UNet is absent
    # the TAESD decoder, chosen at the UNet node, is checked at the same time (not after face detection)
    assert unet.VALIDATE_INPUTS("vae") is True
    taesd = unet.VALIDATE_INPUTS("taesd")
    assert "taesd_decoder" in taesd and "--download-models taesd" in taesd
    assert "decoder: 'fast' is not one of vae, taesd" in unet.VALIDATE_INPUTS("fast")
