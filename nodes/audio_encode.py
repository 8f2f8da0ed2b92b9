"""WhisperAudioEncode: any AUDIO -> per-video-frame Whisper windows for the MuseTalk UNet."""

from __future__ import annotations

from musetalk_core.types import AUDIO_TYPE, MODELS_TYPE
from musetalk_core.options import node_input

from . import checks, comfy_bridge

CATEGORY = "MuseTalk"


@comfy_bridge.run_early  # cheap: a too-short audio refuses the prompt before face detection runs
class WhisperAudioEncode:
    DESCRIPTION = ("Turns audio into MuseTalk's per-frame audio features: Whisper-tiny encoder states, a 10-step "
                   "window (50 tokens x 384) per video frame, as the reference does, at the exact video fps. "
                   "Also flags silent frames. Frame count = floor(audio duration x fps).")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (AUDIO_TYPE, "INT", "AUDIO")
    RETURN_NAMES = ("audio_features", "frame_count", "audio")
    OUTPUT_TOOLTIPS = (
        "Per video frame, the Whisper window the UNet attends to, plus silence flags (for MuseTalkUNetInpaint).",
        "Number of output video frames: floor(audio duration x fps).",
        "The input audio, unchanged, for muxing with the result.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "musetalk_models": (MODELS_TYPE, {"tooltip": "From Load MuseTalk Models (uses its Whisper encoder, "
                                                             "device and precision)."}),
                "audio": ("AUDIO", {"tooltip": "The speech to lip-sync: LoadAudio, a video's audio, a TTS node. "
                                               "One clip; stereo is mixed to mono and resampled to 16 kHz."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 0.01, "max": 240.0, "step": 0.001, "tooltip":
                                  "Frame rate of the video to generate. Wire the fps output of GetVideoComponents / "
                                  "your video loader. Used exactly (29.97 stays 29.97). MuseTalk was trained at 25."}),
                "audio_padding_left": node_input("audio_padding_left"),
                "audio_padding_right": node_input("audio_padding_right"),
                "feature_mode": node_input("feature_mode"),
                "silence_threshold_db": node_input("silence_threshold_db"),
            },
            "optional": {
                "video": ("VIDEO", {"tooltip": "Optional: take the frame rate from this VIDEO (exact, e.g. "
                                    "30000/1001) instead of the fps widget, without decoding any frame. Use it "
                                    "with core LoadVideo for long videos."}),
                # optional and last: workflows saved before it keep their widget positions and get the reference
                "audio_segments": node_input("audio_segments"),
            },
            # the graph, to refuse features a LatentSyncInpaint below cannot use before face detection runs
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    def encode(self, musetalk_models, audio, fps, audio_padding_left, audio_padding_right, feature_mode,
               silence_threshold_db, video=None, prompt=None, unique_id=None, audio_segments="reference"):
        from musetalk_core.audio.windows import encode_audio, num_segments

        store = None
        if video is not None:  # a long video: its fps, and the windows (77 KB per frame at fp32) kept on disk
            from musetalk_core.io.spill import SpillFolder, store_in

            fps = video_fps(video)
            store = store_in(SpillFolder(comfy_bridge.temp_directory()), "audio.bin")

        hooks = comfy_bridge.run_hooks(num_segments(audio, audio_segments))
        with comfy_bridge.NodeReport() as report:
            result = encode_audio(musetalk_models, audio, fps, audio_padding_left=audio_padding_left,
                                  audio_padding_right=audio_padding_right, feature_mode=feature_mode,
                                  silence_threshold_db=silence_threshold_db, hooks=hooks, store=store,
                                  audio_segments=audio_segments)
            result = with_encoder(result, musetalk_models, audio_padding_left, audio_padding_right, feature_mode,
                                  silence_threshold_db, video is not None, audio_segments)
            check_consumers(result, prompt, unique_id)
            report.show(summary(result, report))
        return (result, result.num_frames, audio)


def with_encoder(result, models, padding_left, padding_right, feature_mode, threshold, on_disk: bool,
                 audio_segments: str = "reference"):
    """``result`` able to encode its audio again with the same settings (a length-fit mode's longer output:
    audio.fit.fit_features); a VIDEO's windows go to a new spill folder then."""
    import dataclasses

    from musetalk_core.audio.windows import encode_audio

    def encoder(audio, fps, num_frames=None):
        store = None
        if on_disk:
            from musetalk_core.io.spill import SpillFolder, store_in

            store = store_in(SpillFolder(comfy_bridge.temp_directory()), "audio.bin")
        return encode_audio(models, audio, fps, audio_padding_left=padding_left, audio_padding_right=padding_right,
                            feature_mode=feature_mode, silence_threshold_db=threshold, store=store,
                            num_frames=num_frames, audio_segments=audio_segments)

    return dataclasses.replace(result, encoder=encoder)


def check_consumers(result, prompt, node_id) -> None:
    """A LatentSyncInpaint fed by this node refuses features it was not trained on: refuse them here already,
    as this node runs before face detection and LatentSyncInpaint after it."""
    from musetalk_core.generators.latentsync.generate import check_audio

    if any(node.get("class_type") == "LatentSyncInpaint" for _, node in checks.consumers(prompt, node_id, 0)):
        check_audio(result)


def summary(result, report) -> str:
    """One line on the node: frames, fps, duration, silent frames; a warning when every frame is silent."""
    settings = result.settings
    silent = int(result.silent.sum())
    total = result.num_frames
    threshold = settings.get("silence_threshold_db", -45.0)
    if total and silent == total:
        loudest = float(settings["level_db"].max()) if "level_db" in settings else float("nan")
        report.warn(f"WhisperAudioEncode: every one of the {total} frames is below the silence threshold "
                    f"({threshold:g} dBFS; the loudest is {loudest:.1f} dBFS). BlendAndAssemble with "
                    "silence_handling on keeps the original mouth in all of them. Check the audio, or lower "
                    "silence_threshold_db.")
    segments = ", overlapping segments" if settings.get("audio_segments") == "overlapping" else ""
    return (f"{total} frames at {result.fps:g} fps from {settings.get('duration_s', 0.0):.2f} s of audio "
            f"({result.feature_mode} features{segments}); {silent} silent (below {threshold:g} dBFS).")


def video_fps(video) -> float:
    """The exact frame rate of a VIDEO (ComfyUI's get_frame_rate(), else the file's stream, nothing decoded)."""
    from musetalk_core.errors import InputError
    from musetalk_core.io.sources import as_source

    rate = None
    if callable(getattr(video, "get_frame_rate", None)):
        try:
            rate = video.get_frame_rate()
        except Exception:  # noqa: BLE001 - older ComfyUI: fall back to reading the stream header
            rate = None
    if not rate:
        source = as_source(video, "video")
        rate = source.fps
        source.close()
    if not rate or float(rate) <= 0:
        raise InputError("'video' declares no frame rate; set the fps widget and disconnect 'video'.")
    return float(rate)
