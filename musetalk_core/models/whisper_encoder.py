"""The Whisper-tiny encoder MuseTalk takes its audio features from, loaded from an openai/whisper-tiny folder.

``load_whisper_encoder`` builds a transformers ``WhisperEncoder`` from whisper/config.json and copies the encoder
weights strictly from model.safetensors / pytorch_model.bin. Files saved from WhisperForConditionalGeneration
("model.encoder.*") and from WhisperModel ("encoder.*") both work; decoder and proj_out keys are ignored.

``encoder_states`` runs it and returns the five states MuseTalk stacks: the stem output (conv stack + positions),
the outputs of layers 1-3, and either the final-LayerNorm output of layer 4 (HEAD, ``final_norm=True``, what
transformers' ``hidden_states[-1]`` is) or layer 4's raw output (v1.0-original, OpenAI ``include_embeddings``).
They are captured with forward hooks, so the encoder's own forward (and its attention kernel) is what runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import load_strict, read_json, read_state_dict
from ..errors import WeightFileError

D_MODEL = 384  # MuseTalk's UNet cross-attention width
N_STATES = 5  # stem + 4 layers
MEL_FRAMES = 3000  # 30 s of 10 ms mel frames per encoder call


def whisper_config(config_path: Path):
    from transformers import WhisperConfig

    raw = read_json(config_path, "Whisper config")
    try:
        config = WhisperConfig(**{k: v for k, v in raw.items() if not k.startswith("_")})
    except Exception as exc:  # noqa: BLE001 - a broken config is a file problem
        raise WeightFileError(config_path, f"is not a Whisper config ({type(exc).__name__}: {exc}).") from None
    problems = []
    if config.d_model != D_MODEL:
        problems.append(f"d_model is {config.d_model}, MuseTalk needs {D_MODEL} (whisper-tiny)")
    if config.encoder_layers != N_STATES - 1:
        problems.append(f"encoder_layers is {config.encoder_layers}, MuseTalk needs {N_STATES - 1} (whisper-tiny)")
    if config.num_mel_bins != 80 or config.max_source_positions != MEL_FRAMES // 2:
        problems.append("num_mel_bins/max_source_positions must be 80/1500 (30 s windows)")
    if problems:
        raise WeightFileError(config_path, "; ".join(problems) + ". Use openai/whisper-tiny's config.json.")
    return config


def encoder_state(state: dict) -> dict:
    """The encoder's own keys from a WhisperForConditionalGeneration or WhisperModel state dict."""
    out = {}
    for key, value in state.items():
        if key.startswith("model."):
            key = key[len("model."):]
        if key.startswith("encoder."):
            out[key[len("encoder."):]] = value
    return out


def load_whisper_encoder(config_path: Path, weights_path: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = whisper_config(config_path)
    try:
        config._attn_implementation = "sdpa"  # what from_pretrained picks; numerically the same as eager
    except Exception:  # noqa: BLE001 - older/newer transformers without the setter
        pass
    encoder = WhisperEncoder(config)
    state = encoder_state(read_state_dict(weights_path))
    if not state:
        raise WeightFileError(weights_path, "holds no Whisper encoder weights (no 'encoder.*' or 'model.encoder.*' "
                                            "keys). Put openai/whisper-tiny's model.safetensors here.")
    load_strict(encoder, state, weights_path, "Whisper encoder (openai/whisper-tiny)")
    return encoder.to(dtype=dtype).eval().requires_grad_(False)


def encoder_states(encoder: torch.nn.Module, mel: torch.Tensor, final_norm: bool = True) -> torch.Tensor:
    """(B, 80, 3000) log-mel -> (B, 1500, 5, 384): [stem, layer1, layer2, layer3, layer4 (+ final LayerNorm)]."""
    captured = []

    def before_first(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    def after_layer(module, args, output):
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)

    layers = list(encoder.layers)
    handles = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(after_layer) for layer in layers]
    try:
        out = encoder(mel)
    finally:
        for handle in handles:
            handle.remove()
    last = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
    if len(captured) != N_STATES:
        raise RuntimeError(f"Whisper encoder produced {len(captured)} states, expected {N_STATES}")
    if final_norm:
        captured[-1] = last
    return torch.stack(captured, dim=2)


def window_states(encoder: torch.nn.Module, mel: torch.Tensor, first_row: int, final_norm: bool = True) -> torch.Tensor:
    """(B, 80, 2n) log-mel of rows first_row..first_row+n-1 of a 30 s segment -> (B, n, 5, 384): the encoder's
    five states with attention over those n rows only (whisper.cpp's "audio_ctx", for live windows shorter than
    30 s). The stem and the layers are the encoder's own modules in its forward's order (its forward refuses
    anything but 3000 mel frames); each row keeps its position in the segment. With the whole segment (first_row 0,
    3000 frames) it is encoder_states (tests/test_realtime_session.py)."""
    if mel.ndim != 3 or mel.shape[-1] % 2:
        raise ValueError(f"window_states: expected (B, 80, even frames), got {tuple(mel.shape)}")
    rows = mel.shape[-1] // 2
    table = encoder.embed_positions.weight
    if first_row < 0 or first_row + rows > table.shape[0]:
        raise ValueError(f"window_states: rows {first_row}..{first_row + rows - 1} outside the segment's "
                         f"{table.shape[0]}")
    x = torch.nn.functional.gelu(encoder.conv1(mel))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    hidden = x + table[first_row:first_row + rows]
    states = [hidden]
    for layer in encoder.layers:
        out = layer(hidden, None)
        hidden = out[0] if isinstance(out, (tuple, list)) else out
        states.append(hidden)
    if final_norm:
        states[-1] = encoder.layer_norm(hidden)
    return torch.stack(states, dim=2)
