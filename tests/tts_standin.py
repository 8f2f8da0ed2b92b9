"""Stand-ins for the two TTS Audio Suite nodes (github.com/diodiogod/TTS-Audio-Suite, registry id tts_audio_suite) that
workflows/*/text_to_talking_video.json uses. That pack is not installed here or in CI (it pulls in gigabytes of
TTS models), so the workflow tests run these instead: the same node ids, input names, types, defaults and ranges,
and outputs as the suite registers them (read from its 5.5.2 source: nodes.py, nodes/engines/chatterbox_engine_node.py,
nodes/unified/tts_text_node.py), so a prompt made for the suite validates against them as it would there. The speech
is a synthetic speech-like signal (benchmarks.synthetic.make_audio) of SECONDS at ChatterBox's output rate.

Loaded by the in-process runner (tests/workflow_runner.py) and, as a custom node file that imports this module, by
the real ComfyUI of tests/test_comfyui_integration.py.
"""

from __future__ import annotations

PACK_ID = "tts_audio_suite"
SECONDS = 0.36          # 9 frames at 25 fps: the speech the workflow tests expect in the saved video
SAMPLE_RATE = 24000     # ChatterBox's output rate (the Whisper encoder resamples to 16 kHz)
CATEGORY = "TTS Audio Suite (test stand-in)"
# ChatterBox's languages as the suite lists them when no local model is installed
LANGUAGES = ["English", "German", "German (SebastianBodza)", "German (havok2)", "Norwegian", "French", "Russian",
             "Armenian", "Georgian", "Japanese", "Korean", "Italian"]


class AnyType(str):
    """The suite's wildcard input type ('*', equal to every type)."""

    def __ne__(self, other):
        return False


def _float(default, low, high, step=0.05):
    return ("FLOAT", {"default": default, "min": low, "max": high, "step": step})


class ChatterBoxEngineNode:
    RETURN_TYPES = ("TTS_ENGINE",)
    RETURN_NAMES = ("TTS_engine",)
    FUNCTION = "create_engine_adapter"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "language": (LANGUAGES, {"default": "English"}),
            "device": (["auto", "cuda", "xpu", "cpu", "mps"], {"default": "auto"}),
            "exaggeration": _float(0.5, 0.25, 2.0),
            "temperature": _float(0.8, 0.05, 5.0),
            "cfg_weight": _float(0.5, 0.0, 1.0),
            "crash_protection_template": ("STRING", {"default": "hmm ,, {seg} hmm ,,"}),
        }}

    def create_engine_adapter(self, **config):
        return ({"engine_type": "chatterbox", "config": config},)


class UnifiedTTSTextNode:
    RETURN_TYPES = ("AUDIO", "STRING")
    RETURN_NAMES = ("audio", "generation_info")
    FUNCTION = "generate_speech"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "TTS_engine": ("TTS_ENGINE", {}),
                "text": ("STRING", {"multiline": True, "default": "Hello! This is unified TTS."}),
                "narrator_voice": (["none"], {"default": "none"}),  # plus the files of the suite's voice folders
                "seed": ("INT", {"default": 1, "min": 0, "max": 2 ** 32 - 1}),
            },
            "optional": {
                "opt_narrator": (AnyType("*"), {}),
                "enable_chunking": ("BOOLEAN", {"default": True}),
                "max_chars_per_chunk": ("INT", {"default": 400, "min": 100, "max": 1000, "step": 50}),
                "chunk_combination_method": (["auto", "concatenate", "silence_padding", "crossfade"],
                                             {"default": "auto"}),
                "silence_between_chunks_ms": ("INT", {"default": 100, "min": 0, "max": 500, "step": 25}),
                "enable_audio_cache": ("BOOLEAN", {"default": True}),
                "batch_size": ("INT", {"default": 0, "min": 0, "max": 32, "step": 1}),
            },
        }

    def generate_speech(self, TTS_engine, text, narrator_voice, seed, opt_narrator=None, **options):
        from benchmarks.synthetic import make_audio

        if TTS_engine.get("engine_type") != "chatterbox" or not text.strip():
            raise ValueError("the stand-in speaks non-empty text with the ChatterBox engine stand-in")
        audio = make_audio(SECONDS, SAMPLE_RATE, seed=seed)  # {"waveform": [1, 1, n], "sample_rate"}: ComfyUI's AUDIO
        return (audio, f"stand-in speech: {SECONDS} s for {len(text)} characters")


NODE_CLASS_MAPPINGS = {"ChatterBoxEngineNode": ChatterBoxEngineNode, "UnifiedTTSTextNode": UnifiedTTSTextNode}
