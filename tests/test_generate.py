"""MuseTalkUNetInpaint / generate_faces: reference parity, frame mapping with no-face frames, batching, interrupts."""

from __future__ import annotations

import pytest
import torch

from musetalk_core.generators.musetalk import generate as gen_mod
from musetalk_core.errors import InputError
from musetalk_core.generators.musetalk.generate import fixed_time_embedding, generate_faces
from musetalk_core.hooks import RunHooks
from musetalk_core.types import MuseTalkAudio, MuseTalkLatents
from test_latents import GOLDEN, golden, models  # noqa: F401  (the same golden file and tiny UNet/VAE fixtures)


def assert_same_faces(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float rounding: CPU kernels sum in a batch-size dependent order (~1e-5 before the uint8 rounding),
    so a few pixels may round the other way. Anything real (another frame, another window) differs by far more."""
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    diff = (a.int() - b.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, (int(diff.max()), int((diff > 0).sum()))


def make_latents(golden, keep=None, version="v15") -> MuseTalkLatents:
    z = torch.from_numpy(golden["latents"])
    n = z.shape[0]
    keep = list(range(n)) if keep is None else keep
    return MuseTalkLatents(latents=z[keep].clone(), frame_indices=torch.tensor(keep, dtype=torch.int64),
                           num_frames=n, version=version, latent_mode="mean", frames_fingerprint="fp")


def make_audio(golden, frames=None, version="v15") -> MuseTalkAudio:
    f = torch.from_numpy(golden["audio"])
    if frames is not None:
        f = f[:frames]
    return MuseTalkAudio(features=f, fps=25.0, silent=torch.zeros(f.shape[0], dtype=torch.bool),
                         audio={"waveform": torch.zeros(1, 1, 640), "sample_rate": 16000}, version=version)


@pytest.fixture(scope="module")
def reference_run(models, golden):
    """Our run at the reference's batch size, recording every UNet output on the way to the decoder."""
    preds = []
    original = gen_mod.decode_faces

    def spy(vae, latents, scale):
        preds.append(latents.clone())
        return original(vae, latents, scale)

    gen_mod.decode_faces = spy
    try:
        out = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=int(golden["ref_batch"]))
    finally:
        gen_mod.decode_faces = original
    return out, torch.cat(preds)


def test_unet_output_and_faces_equal_reference(reference_run, golden):
    out, pred = reference_run
    err = (pred - torch.from_numpy(golden["unet_out"])).abs().max().item()
    assert err < 1e-4, err
    want = torch.from_numpy(golden["faces_rgb"])
    assert out.faces.shape == want.shape == (7, 256, 256, 3) and out.faces.dtype == torch.uint8
    diff = (out.faces.int() - want.int()).abs()
    # the float images agree to ~1e-6; a value that close to k + 0.5 rounds either way, and the CPU decodes in
    # passes of 2 (musetalk_core/passes.py) where the reference decodes 4 at once: 95 to 198 flips of 1.38 M
    # measured, depending on the CPU's kernels and thread count (README, Faithfulness)
    assert diff.max() <= 1 and (diff > 0).float().mean() < 3e-4, (diff.max(), (diff > 0).sum())
    assert out.source_index.tolist() == [0, 1, 2, 2, 1, 0, 0]
    assert out.has_face.all() and out.fps == 25.0 and out.frames_fingerprint == "fp"


def test_fixed_time_embedding_equals_plain_call(models, golden):
    unet, pe = models.network("unet"), models.network("pe")
    t = torch.tensor([0])
    with torch.inference_mode():
        for n in (1, 3, 2, 3):  # batch sizes in use, a cached one again last
            lat = torch.from_numpy(golden["latents"])[:n]
            ctx = pe(torch.from_numpy(golden["audio"])[:n])
            plain = unet(lat, t, encoder_hidden_states=ctx).sample
            with fixed_time_embedding(unet, torch.device("cpu"), torch.float32):
                assert isinstance(unet.time_embedding, gen_mod._FixedEmbedding)
                fixed = unet(lat, t, encoder_hidden_states=ctx).sample
                again = unet(lat, t, encoder_hidden_states=ctx).sample
            # bit-identical: the embedding is computed at the batch size in use, as the plain call does (computed
            # once at batch 1 and repeated it differs by ~1.5e-7, and the UNet output by ~1e-6)
            assert torch.equal(plain, fixed) and torch.equal(plain, again), n
    assert not isinstance(unet.time_embedding, gen_mod._FixedEmbedding)  # restored
    assert "time_embedding.linear_1.weight" in unet.state_dict()  # the stand-in adds no keys while it is in


def test_generate_equals_plain_unet_calls(models, golden, reference_run):
    """The default path gives exactly what a plain ``unet(latents, timesteps, encoder_hidden_states=...)`` call gives
    on the same inputs and the same batch split (the reference's datagen batches of ``ref_batch``)."""
    unet, pe = models.network("unet"), models.network("pe")
    _, preds = reference_run
    lat = torch.from_numpy(golden["latents"])[[0, 1, 2, 2, 1, 0, 0]]  # the ping-pong rows of the 7 output frames
    audio = torch.from_numpy(golden["audio"])
    step = int(golden["ref_batch"])
    with torch.inference_mode():
        plain = torch.cat([unet(lat[s:s + step], torch.tensor([0]), encoder_hidden_states=pe(audio[s:s + step])).sample
                           for s in range(0, lat.shape[0], step)])
    assert preds.shape == plain.shape == (7, 4, 32, 32)
    assert torch.equal(preds, plain), (preds - plain).abs().max().item()


def test_batch_size_does_not_change_the_result(models, golden, reference_run):
    one = generate_faces(models, make_latents(golden), make_audio(golden), batch_size=1)
    four = reference_run[0]
    assert torch.equal(one.source_index, four.source_index) and torch.equal(one.has_face, four.has_face)
    assert_same_faces(one.faces, four.faces)
    # and the check is sharp: another frame's face is nowhere near
    assert (one.faces[0].int() - one.faces[1].int()).abs().max() > 1


def test_no_face_source_frame_passes_through(models, golden, reference_run):
    full = reference_run[0]
    out = generate_faces(models, make_latents(golden, keep=[0, 2]), make_audio(golden), batch_size=8)
    assert out.source_index.tolist() == [0, 1, 2, 2, 1, 0, 0]  # the reference's frame cycle, unchanged
    assert out.has_face.tolist() == [True, False, True, True, False, True, True]
    assert torch.all(out.faces[[1, 4]] == 0)
    keep = out.has_face
    assert_same_faces(out.faces[keep], full.faces[keep])  # every face stays with its own frame (§11.2.1 fixed)


def test_mapping_modes_and_offset(models, golden):
    lat = make_latents(golden, keep=[1, 2])
    loop = generate_faces(models, lat, make_audio(golden, frames=4), frame_mapping="loop", frame_offset=2)
    assert loop.source_index.tolist() == [2, 0, 1, 2]
    assert loop.has_face.tolist() == [True, False, True, True] and torch.all(loop.faces[1] == 0)
    assert loop.settings["frame_mapping"] == "loop" and loop.settings["frame_offset"] == 2
    hold = generate_faces(models, make_latents(golden), make_audio(golden, frames=3), frame_mapping="once_hold",
                          frame_offset=1)
    assert hold.source_index.tolist() == [1, 2, 2]
    # output 2 = source 2 with audio window 2 in both runs (ping-pong: sources 0 1 2 2 ...)
    ref = torch.from_numpy(golden["faces_rgb"])
    assert_same_faces(hold.faces[2], ref[2])


def test_interrupt_stops_within_one_batch(models, golden):
    calls = {"unet": 0, "checks": 0}
    original = gen_mod.decode_faces

    def counting(vae, latents, scale):
        calls["unet"] += 1
        return original(vae, latents, scale)

    class Stop(Exception):
        pass

    def check():
        calls["checks"] += 1
        if calls["checks"] >= 2:
            raise Stop()

    gen_mod.decode_faces = counting
    try:
        with pytest.raises(Stop):
            generate_faces(models, make_latents(golden), make_audio(golden, frames=4), batch_size=1,
                           hooks=RunHooks(check_interrupt=check))
    finally:
        gen_mod.decode_faces = original
    assert calls["unet"] == 2  # 4 batches of work; stopped right after the second
    assert not isinstance(models.network("unet").time_embedding, gen_mod._FixedEmbedding)


def test_progress_covers_every_output_frame(models, golden):
    steps = []
    generate_faces(models, make_latents(golden, keep=[0, 1]), make_audio(golden), batch_size=2,
                   hooks=RunHooks(advance=steps.append))
    # output sources 0 1 2 2 1 0 0; frames 2, 3 pass through
    # outputs with a face: 0 1 4 5 6 -> batches [0,1] [4,5] [6]; progress counts the pass-through frames too
    assert steps == [2, 4, 1]


def test_bad_input(models, golden):
    lat, aud = make_latents(golden), make_audio(golden)
    with pytest.raises(InputError, match="v1"):
        generate_faces(models, make_latents(golden, version="v1"), aud)
    with pytest.raises(InputError, match="v1"):
        generate_faces(models, lat, make_audio(golden, version="v1"))
    with pytest.raises(InputError, match="shorter than one video frame"):
        generate_faces(models, lat, make_audio(golden, frames=0))
    empty = MuseTalkLatents(latents=torch.zeros(0, 8, 32, 32), frame_indices=torch.zeros(0, dtype=torch.int64),
                            num_frames=3)
    none = generate_faces(models, empty, aud)  # a face-less video: every output frame passes through
    assert not none.has_face.any() and not none.faces.any() and none.num_frames == aud.num_frames
    with pytest.raises(InputError, match="frame_mapping"):
        generate_faces(models, lat, aud, frame_mapping="zigzag")
    with pytest.raises(InputError, match="batch_size"):
        generate_faces(models, lat, aud, batch_size=0)
    bad = MuseTalkAudio(features=torch.zeros(3, 50, 80), fps=25.0, silent=torch.zeros(3, dtype=torch.bool), audio={})
    with pytest.raises(InputError, match="50, 384"):
        generate_faces(models, lat, bad)


def test_node(pack, models, golden, reference_run):
    node = pack.NODE_CLASS_MAPPINGS["MuseTalkUNetInpaint"]
    spec = node.INPUT_TYPES()["required"]
    assert list(spec) == ["musetalk_models", "latents", "audio_features", "frame_mapping", "frame_offset",
                          "batch_size", "decoder", "acceleration"]
    assert spec["frame_mapping"][0] == ["bounce", "loop", "once_hold", "cut_off", "silence", "remap", "ping_pong"]
    assert spec["frame_mapping"][1]["default"] == "bounce"
    assert spec["frame_offset"][1]["min"] == -10000 and spec["batch_size"][1]["max"] == 256
    assert all("tooltip" in v[1] for v in spec.values())
    assert node.RETURN_NAMES == ("generated", "faces")
    generated, images = node().generate(models, make_latents(golden), make_audio(golden, frames=3), "ping_pong", 0, 8)
    assert images.shape == (3, 256, 256, 3) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert torch.equal(images, generated.faces.float() / 255.0)  # batch 8 > 3 frames of work: one batch
    assert_same_faces(generated.faces, reference_run[0].faces[:3])


def test_v10_original_features_warn_only_at_the_musetalk_v15_unet(pack, models, golden, caplog,
                                                                  tiny_models_factory):
    """v1.0-original features are LatentSync's: the encoder (the LatentSync template uses them with v1.5 models)
    stays quiet, and the MuseTalk v1.5 UNet, trained on 'reference' features, says so when it gets them."""
    import dataclasses
    import logging

    node = pack.NODE_CLASS_MAPPINGS["MuseTalkUNetInpaint"]()
    speech = {"waveform": torch.sin(torch.arange(8000) * 0.05).reshape(1, 1, -1), "sample_rate": 16000}
    with caplog.at_level(logging.WARNING):
        from musetalk_core.weights.loading import load_models

        whisper = load_models([tiny_models_factory("v15", networks=["whisper"])], device="cpu", networks=["whisper"])
        (encoded,) = pack.NODE_CLASS_MAPPINGS["WhisperAudioEncode"]().encode(whisper, speech, 25.0, 2, 2,
                                                                              "v1.0-original", -45.0)[:1]
    assert encoded.feature_mode == "v1.0-original" and not caplog.records
    original = dataclasses.replace(make_audio(golden, frames=2), feature_mode="v1.0-original")
    with caplog.at_level(logging.WARNING):
        node.generate(models, make_latents(golden), make_audio(golden, frames=2), "ping_pong", 0, 8)
    assert not [r for r in caplog.records if "v1.0-original" in r.getMessage()]
    with caplog.at_level(logging.WARNING):
        node.generate(models, make_latents(golden), original, "ping_pong", 0, 8)
    assert [r for r in caplog.records if "trained on 'reference'" in r.getMessage()]
