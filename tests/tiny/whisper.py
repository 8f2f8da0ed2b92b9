"""Tiny Whisper folder (config.json, preprocessor_config.json, model.safetensors) in the openai/whisper-tiny format.

The encoder keeps everything the MuseTalk audio path depends on: d_model 384 (the UNet's cross-attention width),
4 encoder layers (5 hidden states), 6 heads, 80 mel bins, 1500 source positions (30 s windows). Only the encoder
FFN width, the decoder (1 layer) and the vocabulary are shrunk. Weights are seeded random values saved exactly as
transformers saves a WhisperForConditionalGeneration ("model.encoder...", "model.decoder...", proj_out tied).

Also here: ``seeded_signal``, the seeded integer-only test audio shared by the golden recorder and the tests, so both
sides see bit-identical samples without storing them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

TINY_WHISPER_CONFIG = {
    "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
    "d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 256,
    "decoder_layers": 1, "decoder_attention_heads": 6, "decoder_ffn_dim": 64,
    "num_mel_bins": 80, "max_source_positions": 1500, "max_target_positions": 32, "vocab_size": 96,
    "activation_function": "gelu", "scale_embedding": False, "tie_word_embeddings": True,
    "pad_token_id": 95, "bos_token_id": 95, "eos_token_id": 95, "decoder_start_token_id": 94,
    "begin_suppress_tokens": None, "suppress_tokens": None,
    "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
}

PREPROCESSOR_CONFIG = {
    "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80,
    "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
    "padding_value": 0.0, "processor_class": "WhisperProcessor", "return_attention_mask": False,
    "sampling_rate": 16000,
}


def seeded_whisper(seed: int = 7, config: dict = None) -> torch.nn.Module:
    """A WhisperForConditionalGeneration with seeded random weights (LayerNorms near 1, small biases)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(**(config or TINY_WHISPER_CONFIG))
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    from tiny.rng import Draw

    draw = Draw(seed)  # the same bits on every CPU (torch.randn is not)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim > 1:
                p.copy_(draw.noise(p.shape, (1.0 / p[0].numel()) ** 0.5))
            elif "layer_norm" in name and name.endswith("weight"):
                p.copy_(draw.noise(p.shape, 0.1, mean=1.0))
            else:
                p.copy_(draw.noise(p.shape, 0.05))
        pos = model.model.encoder.embed_positions.weight
        pos.copy_(draw.noise(pos.shape, 0.5))
    return model


def state_dict_for_file(model: torch.nn.Module, prefix: bool = True) -> dict:
    """Keys as transformers writes them: tied proj_out dropped; ``prefix=False`` gives WhisperModel's keys."""
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "proj_out.weight"}
    if not prefix:
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return state


def write(models_dir, version="v15", name="whisper", seed: int = 7, pickle: bool = False, prefix: bool = True,
          **options):
    """Write models_dir/whisper/{config.json, preprocessor_config.json, model.safetensors | pytorch_model.bin}."""
    from safetensors.torch import save_file

    folder = Path(models_dir) / "whisper"
    folder.mkdir(parents=True, exist_ok=True)
    model = seeded_whisper(seed)
    config = dict(model.config.to_dict())
    config["architectures"] = ["WhisperForConditionalGeneration"]
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    state = state_dict_for_file(model, prefix=prefix)
    if pickle:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def seeded_signal(seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """int16 (channels, S): shaped noise bursts of varying loudness with digital-silence gaps.

    Only integer arithmetic after the RNG draw, so every platform gets the same samples (no libm differences).
    """
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(seed)
    out = np.zeros((channels, n), dtype=np.int16)
    block = max(1, sample_rate // 5)  # 200 ms blocks of constant loudness
    levels = rng.integers(0, 9, size=n // block + 1)
    levels[::7] = 0  # a silent block every 1.4 s
    gain = np.repeat(levels, block)[:n].astype(np.int64)
    for c in range(channels):
        white = rng.integers(-2048, 2048, size=n + 8, dtype=np.int64)
        csum = np.concatenate([[0], np.cumsum(white)])
        smooth = (csum[8:] - csum[:-8])[:n]  # 8-tap moving sum: low-pass, |x| < 16384
        x = (smooth * gain) // 8
        if c == 1:
            x = (x * 3) // 4
        out[c] = np.clip(x, -32768, 32767).astype(np.int16)
    return out


def as_audio(samples_int16: np.ndarray, sample_rate: int) -> dict:
    """The ComfyUI AUDIO mapping for int16 samples (C, S): waveform float32 (1, C, S) = x / 32768."""
    wave = torch.from_numpy(samples_int16.astype(np.float32) / 32768.0).unsqueeze(0)
    return {"waveform": wave, "sample_rate": int(sample_rate)}
