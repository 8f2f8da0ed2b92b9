"""Record golden audio features from the reference MuseTalk code on the tiny seeded Whisper (tests/tiny/whisper.py).

    python tools/golden/record_audio.py --reference /work/ref/MuseTalk --out tests/golden/audio

- "reference" cases run HEAD's ``musetalk.utils.audio_processor.AudioProcessor`` exactly as scripts/inference.py
  does: ``get_audio_feature(wav_path)`` (librosa.load of a PCM-16 WAV written from the seeded int16 signal) and
  ``get_whisper_chunk(..., whisper=WhisperModel.from_pretrained(tiny folder), fps=...)`` on the CPU in fp32.
- "v1.0-original" cases run ``Audio2Feature`` from commit 058f7dd (read with ``git show``, executed from memory,
  never copied) with the vendored OpenAI whisper at HEAD. Deviations, all in this script only:
  * the audio is handed to ``transcribe`` as the 16 kHz int16/32768 samples instead of a path decoded by the
    ffmpeg CLI (ffmpeg-python is stubbed, it is never called);
  * the OpenAI ``Whisper`` is built from the tiny dims and its blocks' MLPs are rebuilt with the tiny FFN width
    (OpenAI hard-codes 4*d_model) out of the vendored ``Linear``; the encoder weights are the tiny HF encoder's,
    renamed per spec §1.3, loaded strictly. The decoder is unused by ``audio2feat`` and stays random;
  * ``Audio2Feature.__init__`` (which loads tiny.pt from disk) is bypassed by setting ``.model`` directly.

Stored per case (npz): the case parameters, the full (50, 384) features of a few frames (start, the 30 s seams,
the end) and, for every frame, 4 random unit-norm projections of its 19 200 values (a checksum that any per-value
error shows up in). The test regenerates the same int16 audio from the seed and compares.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from tiny.whisper import TINY_WHISPER_CONFIG, seeded_signal, write  # noqa: E402

# name, seconds, source sample rate, channels, seed, fps, mode
CASES = [
    ("ref_5s_16k_mono", 5.0, 16000, 1, 1, 25.0, "reference"),
    ("ref_5s_44k_stereo", 5.0, 44100, 2, 2, 25.0, "reference"),
    ("ref_5s_48k_stereo", 5.0, 48000, 2, 3, 25.0, "reference"),
    ("ref_31s_16k_mono", 31.0, 16000, 1, 4, 25.0, "reference"),
    ("ref_31s_44k_stereo", 31.0, 44100, 2, 5, 25.0, "reference"),
    ("ref_61s_16k_mono", 61.0, 16000, 1, 6, 25.0, "reference"),
    ("ref_61s_48k_stereo", 61.0, 48000, 2, 7, 25.0, "reference"),
    ("v10_5s_16k", 5.0, 16000, 1, 8, 25.0, "v1.0-original"),
    ("v10_31s_16k", 31.0, 16000, 1, 9, 25.0, "v1.0-original"),
    ("v10_61s_16k", 61.0, 16000, 1, 10, 25.0, "v1.0-original"),
    ("v10_7s_16k_2997", 7.0, 16000, 1, 11, 29.97, "v1.0-original"),
]
WHISPER_SEED = 7
PROJECTION_SEED = 1234


def projections() -> np.ndarray:
    w = np.random.default_rng(PROJECTION_SEED).standard_normal((4, 50 * 384))
    return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float64)


def pick_frames(total: int, fps: float) -> list:
    """Start, around every 30 s seam, the end."""
    picks = {0, 1, total // 2, total - 1}
    seam = 1
    while seam * 30 * fps < total - 1:
        centre = int(round(seam * 30 * fps))
        picks.update({centre - 1, centre + 1})
        seam += 1
    return sorted(p for p in picks if 0 <= p < total)


def reference_features(ref: Path, whisper_dir: Path, wav: Path, fps: float) -> np.ndarray:
    from transformers import WhisperModel

    from musetalk.utils.audio_processor import AudioProcessor

    processor = AudioProcessor(feature_extractor_path=str(whisper_dir))
    whisper = WhisperModel.from_pretrained(str(whisper_dir)).to("cpu", torch.float32).eval().requires_grad_(False)
    feats, length = processor.get_audio_feature(str(wav), weight_dtype=torch.float32)
    with torch.no_grad():
        chunks = processor.get_whisper_chunk(feats, "cpu", torch.float32, whisper, length, fps=fps,
                                             audio_padding_length_left=2, audio_padding_length_right=2)
    return chunks.numpy()


def original_audio2feature(ref: Path, whisper_dir: Path):
    """Audio2Feature (058f7dd) bound to a vendored OpenAI Whisper carrying the tiny HF encoder weights."""
    if "ffmpeg" not in sys.modules:  # ffmpeg-python is imported by whisper/audio.py but never used here
        stub = types.ModuleType("ffmpeg")
        stub.Error = RuntimeError
        sys.modules["ffmpeg"] = stub
    from musetalk.whisper.whisper.model import Linear, ModelDimensions, Whisper
    from safetensors.torch import load_file

    source = subprocess.run(["git", "-C", str(ref), "show", "058f7dd:musetalk/whisper/audio2feature.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("musetalk.whisper.audio2feature")
    module.__package__ = "musetalk.whisper"
    exec(compile(source, "058f7dd:musetalk/whisper/audio2feature.py", "exec"), module.__dict__)

    cfg = TINY_WHISPER_CONFIG
    dims = ModelDimensions(n_mels=80, n_audio_ctx=cfg["max_source_positions"], n_audio_state=cfg["d_model"],
                           n_audio_head=cfg["encoder_attention_heads"], n_audio_layer=cfg["encoder_layers"],
                           n_vocab=cfg["vocab_size"], n_text_ctx=cfg["max_target_positions"],
                           n_text_state=cfg["d_model"], n_text_head=cfg["decoder_attention_heads"],
                           n_text_layer=cfg["decoder_layers"])
    model = Whisper(dims)
    for block in model.encoder.blocks:
        block.mlp = torch.nn.Sequential(Linear(cfg["d_model"], cfg["encoder_ffn_dim"]), torch.nn.GELU(),
                                        Linear(cfg["encoder_ffn_dim"], cfg["d_model"]))
    hf = {k[len("model.encoder."):]: v for k, v in load_file(str(whisper_dir / "model.safetensors")).items()
          if k.startswith("model.encoder.")}
    mapped = {}
    for key, value in hf.items():
        k = key.replace("layers.", "blocks.").replace("self_attn_layer_norm", "attn_ln")
        k = k.replace("self_attn.q_proj", "attn.query").replace("self_attn.k_proj", "attn.key")
        k = k.replace("self_attn.v_proj", "attn.value").replace("self_attn.out_proj", "attn.out")
        k = k.replace("fc1", "mlp.0").replace("fc2", "mlp.2").replace("final_layer_norm", "mlp_ln")
        k = k.replace("embed_positions.weight", "positional_embedding")
        if k.startswith("layer_norm."):
            k = "ln_post." + k[len("layer_norm."):]
        mapped[k] = value
    model.encoder.load_state_dict(mapped, strict=True)
    model = model.to("cpu").eval()
    a2f = module.Audio2Feature.__new__(module.Audio2Feature)
    a2f.whisper_model_type = "tiny"
    a2f.model = model
    return a2f


def original_features(a2f, samples16k: np.ndarray, fps: float) -> np.ndarray:
    with torch.no_grad():
        array = a2f.audio2feat(samples16k)  # transcribe() accepts an array: the int16-quantised 16 kHz samples
    chunks = a2f.feature2chunks(feature_array=array, fps=fps)
    return np.stack(chunks).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", default="/work/ref/MuseTalk")
    parser.add_argument("--out", default=str(ROOT / "tests/golden/audio"))
    parser.add_argument("--only", nargs="*", help="case names to record (default all)")
    args = parser.parse_args()
    ref = Path(args.reference).resolve()
    sys.path.insert(0, str(ref))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)

    import soundfile as sf

    work = Path(tempfile.mkdtemp(prefix="musetalk_golden_audio_"))
    whisper_dir = write(work, "v15", seed=WHISPER_SEED)
    proj = projections()
    a2f = None
    for name, seconds, rate, channels, seed, fps, mode in CASES:
        if args.only and name not in args.only:
            continue
        signal = seeded_signal(seconds, rate, channels, seed)  # int16 (C, S)
        if mode == "reference":
            wav = work / f"{name}.wav"
            sf.write(str(wav), signal.T, rate, subtype="PCM_16")
            feats = reference_features(ref, whisper_dir, wav, fps)
        else:
            assert rate == 16000 and channels == 1
            a2f = a2f or original_audio2feature(ref, whisper_dir)
            feats = original_features(a2f, signal[0].astype(np.float32) / 32768.0, fps)
        total = feats.shape[0]
        frames = pick_frames(total, fps)
        checksum = (feats.reshape(total, -1).astype(np.float64) @ proj.T).astype(np.float64)
        meta = {"name": name, "seconds": seconds, "sample_rate": rate, "channels": channels, "seed": seed,
                "fps": fps, "mode": mode, "whisper_seed": WHISPER_SEED, "num_frames": total,
                "projection_seed": PROJECTION_SEED}
        np.savez_compressed(out_dir / f"{name}.npz", meta=json.dumps(meta), frames=np.array(frames, np.int64),
                            features=feats[frames].astype(np.float32), checksum=checksum)
        print(f"{name}: {total} frames, stored {frames}, |x| max {np.abs(feats).max():.3f}", flush=True)


if __name__ == "__main__":
    main()
