"""Frames per second, stage by stage: this pack against the straightforward per-frame way, on the same inputs.

    python -m benchmarks.run --smoke                       # tiny networks, tiny frames: seconds (CI)
    python -m benchmarks.run --scale real --frames 8 --size 720p --detect-size 1080p --device cpu --dtype fp32
    python -m benchmarks.run --scale real --frames 64 --device cuda --dtype bf16 --batch-size 32

Every network is built at its real size (``--scale real``) with random weights, written as real-format files and
loaded through musetalk_core.weights.loading.load_models (nothing is downloaded; see benchmarks/networks.py). The clip is a
synthetic talking head (benchmarks/synthetic.py). Random networks find no face, so the boxes come from the drawn
face's exact landmarks: detection and landmarks still run in full, their results are then replaced by the truth
(``--no-truth`` keeps what the networks found).

Stages (units: source frames for the per-video stages, output frames for the per-audio ones; T = ratio x N):
detection (S3FD), landmarks (DWPose), parsing (BiSeNet + mask material), face_prepare (FaceDetectAndParse),
faces_video (FaceDetectAndParse on the clip as a VIDEO file, against the same frames as an IMAGE),
vae_encode (VAEEncodeMasked), audio (WhisperAudioEncode), unet, decode, unet_decode (MuseTalkUNetInpaint),
blend (BlendAndAssemble), whole_graph (frames in memory through the pipeline core, every stage), video_file (an H.264 file
in to an H.264 + AAC file out through the streaming core, as the CLI runs it: decode, every stage, encode),
avatar_file (a second audio on a video prepared before: ``lipsync --avatar``, the avatar made once outside the timing;
its files read, audio, UNet + decoder, blend, encode).
Output: a table on stdout and, with --json, every figure as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"  # noqa: A001

from . import networks as bench_networks  # noqa: E402
from . import straightforward as ref  # noqa: E402
from .synthetic import make_audio, make_frames, parse_size  # noqa: E402
from .timing import Measurement, measure, synchronize  # noqa: E402

STAGES = ("detection", "landmarks", "parsing", "face_prepare", "faces_video", "vae_encode", "audio", "unet",
          "decode", "unet_decode", "blend", "whole_graph", "video_file", "avatar_file")
PER_VIDEO = {"detection", "landmarks", "parsing", "face_prepare", "faces_video", "vae_encode"}
# faces_video's other side is not the reference: the same frames given to FaceDetectAndParse as an IMAGE
IMAGE_SIDE = "faces_video: the other side is this pack on the same frames as an IMAGE (the node's 'images' input)"
# The straightforward whole graph: the reference's stages in order (its parsing runs inside its blend).
REFERENCE_GRAPH = ("detection", "landmarks", "vae_encode", "audio", "unet", "decode", "blend")
# ... with the per-video material prepared before (upstream's realtime_inference.py on a prepared avatar): its
# blend is not counted (the straightforward blend parses every frame; upstream's avatar keeps the masks), so the
# sum is a lower bound of its time
REFERENCE_AVATAR = ("audio", "unet", "decode")


# ------------------------------------------------------------------------------------------------ helpers
def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _missing(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------------------ the bench
class Bench:
    def __init__(self, args):
        from musetalk_core.weights import loading

        self.args = args
        self.notes: list = []
        self.version = args.version
        self.networks = bench_networks.available_networks()
        folder = Path(args.models_dir) if args.models_dir else bench_networks.models_folder(
            args.scale, args.version, self.networks)
        self.models_dir = folder
        if getattr(args, "decoder", "vae") == "taesd" and not args.models_dir:
            bench_networks.write_taesd(folder)
        import time

        loading.clear_cache()
        t0 = time.perf_counter()
        self.models = loading.load_models([folder], version=args.version, precision=args.dtype, device=args.device,
                                          networks=self.networks)
        self.load_s = time.perf_counter() - t0
        self.device = self.models.device
        self.dtype = self.models.dtype
        # the straightforward side in its own precision (e.g. this pack in bf16 against the reference's fp32)
        self.ref_models = self.models
        ref_dtype = getattr(args, "reference_dtype", None)
        if ref_dtype and not args.no_reference and loading.resolve_dtype(ref_dtype, self.device) != self.dtype:
            self.ref_models = loading.load_models([folder], version=args.version, precision=ref_dtype,
                                                  device=args.device, networks=self.networks)
        n, ratio = args.frames, args.output_ratio
        self.n = n
        self.t = int(round(n * ratio))
        self.fps = float(args.fps)
        frames, marks = make_frames(n, args.size, seed=0)
        self.frames = frames  # uint8 (N, H, W, 3) RGB
        self.images = frames.to(torch.float32) / 255.0  # IMAGE
        self.truth = marks
        self.frames_bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames.numpy()]
        if parse_size(args.detect_size) == parse_size(args.size):
            self.det_frames, self.det_bgr = frames, self.frames_bgr
        else:
            self.det_frames, _ = make_frames(n, args.detect_size, seed=0)
            self.det_bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in self.det_frames.numpy()]
        # audio: T output frames (+ half a frame so flooring gives exactly T)
        self.audio = make_audio((self.t + 0.5) / self.fps)
        self.extra_margin = 10 if self.version == "v15" else None
        self.parsing_mode = "jaw" if self.version == "v15" else "raw"
        h = frames.shape[1]
        self.boxes = [ref.landmark_box(m, (0, 0, 1, 1), h, self.extra_margin) for m in marks]
        self._prepared: dict = {}

    # -------------------------------------------------------------- truth injection for the project's locate step
    @contextlib.contextmanager
    def truth_locate(self, stream: bool = False):
        """Run the project's face location for real, then hand the drawn face's landmarks on (random weights find
        no face). Patches musetalk_core.faces.locate.locate_faces for the duration only. ``stream``: the streaming
        core locates chunk after chunk in frame order, so a running count names each chunk's frames."""
        if self.args.no_truth:
            yield
            return
        from musetalk_core.faces import locate as face_locate

        original = face_locate.locate_faces
        truth = self

        done = [0]

        def locate(*a, **k):
            result = original(*a, **k)
            if not stream:
                return _with_truth(result, truth)
            n = int(result.num_frames)
            rows = np.arange(done[0], done[0] + n) % truth.n
            done[0] += n
            return _with_truth(result, truth, rows)

        face_locate.locate_faces = locate
        patched = []
        for modname in ("musetalk_core.faces.prepare",):
            mod = sys.modules.get(modname)
            if mod is not None and getattr(mod, "locate_faces", None) is original:
                mod.locate_faces = locate
                patched.append(mod)
        try:
            yield
        finally:
            face_locate.locate_faces = original
            for mod in patched:
                mod.locate_faces = original

    # -------------------------------------------------------------- inputs shared by the stages (computed once)
    def faces(self):
        if "faces" not in self._prepared:
            self._prepared["faces"] = self._make_faces()
        return self._prepared["faces"]

    def _make_faces(self):
        from musetalk_core.faces.prepare import prepare_faces

        with self.truth_locate():
            faces = prepare_faces(self.models, self.images, **self.face_settings())
        if isinstance(faces, tuple):
            faces = faces[0]
        if bool(faces.has_face.all()):
            return faces
        # only with --no-truth (random weights find no face): said in the report and on stderr
        note = (f"prepare_faces found a face in {int(faces.has_face.sum())} of {int(faces.has_face.numel())} frames; "
                "downstream stages use faces built from the drawn face's landmarks")
        self.notes.append(note)
        print(f"[bench] {note}", file=sys.stderr, flush=True)
        return self._truth_faces()

    def faces_from_source(self, video: bool) -> Callable[[], object]:
        """FaceDetectAndParse as the node runs it on its 'video' input (the clip's H.264 file read in chunks, the
        next chunk decoded on a thread, material spilled to disk) or on its 'images' input (the same frames as an
        IMAGE batch, material in memory)."""
        from musetalk_core.faces.material import build_faces
        from musetalk_core.io.previews import sample_indices
        from musetalk_core.io.sources import TensorSource, VideoFileSource
        from musetalk_core.io.spill import SpillFolder

        path = self.media_files()[0] if video else None

        def run():
            source = VideoFileSource(path, "video") if video else TensorSource(self.images, "images")
            spill = SpillFolder() if video else None
            try:
                with self.truth_locate(stream=True):
                    return build_faces(self.models, source, spill=spill, preview_indices=sample_indices(self.n),
                                       **self.face_settings())[0]
            finally:
                source.close()
                if spill is not None:
                    spill.close()
        return run

    def face_settings(self) -> dict:
        return dict(bbox_shift=0, extra_margin=10, parsing_mode="auto", left_cheek_width=90, right_cheek_width=90,
                    face_selection="highest_score", landmark_region="full_frame", box_smoothing=0.0,
                    detector_scale=self.args.detector_scale, batch_size=self.args.face_batch_size)

    def _truth_faces(self):
        import cv2

        from musetalk_core.faces import parsing
        from musetalk_core.io.frames import frames_fingerprint
        from musetalk_core.types import MuseTalkFaces

        frames = self.frames.numpy()
        masks, crop_boxes = self._our_parsing(frames, self.boxes)
        crops = np.stack([cv2.resize(f[b[1]:b[3], b[0]:b[2]], (256, 256), interpolation=cv2.INTER_LANCZOS4)
                          for f, b in zip(frames, self.boxes)])
        n = len(frames)
        return MuseTalkFaces(
            frame_size=tuple(frames.shape[1:3]), has_face=torch.ones(n, dtype=torch.bool),
            boxes=torch.tensor(self.boxes, dtype=torch.int64), landmarks=torch.from_numpy(self.truth.astype(np.int64)),
            crop_boxes=torch.tensor(crop_boxes, dtype=torch.int64),
            masks=tuple(torch.from_numpy(m) for m in masks), crops=torch.from_numpy(crops).to(self.device),
            bbox_range="", settings={"version": self.version, "parsing_mode": self.parsing_mode,
                                     "extra_margin": self.extra_margin, "expand": parsing.EXPAND, "bbox_shift": 0},
            frames_fingerprint=frames_fingerprint(self.frames))

    def _our_parsing(self, frames_rgb: np.ndarray, boxes):
        """The project's parsing functions, BiSeNet batched on the device (what FaceDetectAndParse does)."""
        from musetalk_core.faces import parsing

        parser = self.models.network("face_parser")
        masks, crop_boxes = [None] * len(boxes), [None] * len(boxes)
        if hasattr(parsing, "face_masks"):  # what prepare_faces calls, one parser batch per call
            for sl in _batches(len(boxes), self.args.face_batch_size):
                with torch.inference_mode():
                    cbs, ms = parsing.face_masks(parser, list(frames_rgb[sl]), list(boxes[sl]), self.parsing_mode,
                                                 device=self.device)
                crop_boxes[sl], masks[sl] = cbs, ms
            return masks, crop_boxes
        for sl in _batches(len(boxes), self.args.face_batch_size):
            inputs, cbs = [], []
            for i in range(sl.start, sl.stop):
                cb, _ = parsing.crop_box(boxes[i])
                cbs.append(cb)
                inputs.append(parsing.parser_input(parsing.expanded_crop(frames_rgb[i], cb)))
            with torch.inference_mode():
                labels = parser.parse(torch.from_numpy(np.stack(inputs)).to(self.device)).cpu().numpy()
            for j, i in enumerate(range(sl.start, sl.stop)):
                mask512 = parsing.labels_to_mask(labels[j], self.parsing_mode)
                masks[i] = parsing.mask_material(mask512, cbs[j], boxes[i])
                crop_boxes[i] = cbs[j]
        return masks, crop_boxes

    def latents(self):
        if "latents" not in self._prepared:
            from musetalk_core.generators.musetalk.latents import encode_faces

            self._prepared["latents"] = encode_faces(self.models, self.faces(), "sample", 0, self.args.batch_size)
        return self._prepared["latents"]

    def features(self):
        if "features" not in self._prepared:
            from musetalk_core.audio.windows import encode_audio

            out = encode_audio(self.models, self.audio, self.fps)
            self._prepared["features"] = out[0] if isinstance(out, tuple) else out
        return self._prepared["features"]

    def feature_tensor(self) -> torch.Tensor:
        """(T, 50, 384) audio windows: the project's (both sides' UNet stages get the same windows)."""
        return self.features().features[: self.t]

    def generated(self):
        if "generated" not in self._prepared:
            from musetalk_core.generators.musetalk.generate import generate_faces

            self._prepared["generated"] = generate_faces(self.models, self.latents(), self.features(), "bounce",
                                                         0, self.args.batch_size, **self.generation())
        return self._prepared["generated"]

    def generation(self) -> dict:
        """The generation options under test (--decoder, --acceleration)."""
        return {"decoder": getattr(self.args, "decoder", "vae"),
                "acceleration": getattr(self.args, "acceleration", "off")}

    def preds(self) -> list:
        """UNet outputs in batches (input of the decode stage)."""
        if "preds" not in self._prepared:
            self._prepared["preds"] = self._our_unet()
        return self._prepared["preds"]

    def _keep(self, key: str, fn: Callable[[], object], accept=None) -> Callable[[], object]:
        """Wrap ``fn`` so its first result also serves as a later stage's input (no extra untimed pass)."""
        def run():
            out = fn()
            if key not in self._prepared and (accept is None or accept(out)):
                self._prepared[key] = out
            return out
        return run

    # -------------------------------------------------------------- the project's way, stage by stage
    def ours(self, stage: str) -> Callable[[], object]:
        a = self.args
        m = self.models
        if stage == "detection":
            from musetalk_core.models import s3fd

            net = m.network("s3fd")
            h, w = self.det_frames.shape[1:3]
            # the same frames-per-forward budget as face_locate (bounded memory on huge frames)
            from musetalk_core.faces.locate import S3FD_PIXEL_BUDGET

            batch = max(1, min(a.face_batch_size, int(S3FD_PIXEL_BUDGET // (h * w * a.detector_scale ** 2))))

            def run():
                with m.use("s3fd"), torch.inference_mode():
                    return [s3fd.detect(net, self.det_frames[sl].to(self.device), scale=a.detector_scale)
                            for sl in _batches(self.n, batch)]
            return run
        if stage == "landmarks":
            from musetalk_core.models import dwpose

            net = m.network("landmarks")
            frames = self.det_frames.numpy()

            def run():
                with m.use("landmarks"), torch.inference_mode():
                    return [dwpose.predict_keypoints(net, frames[sl]) for sl in _batches(self.n, a.face_batch_size)]
            return run
        if stage == "parsing":
            frames = self.frames.numpy()

            def run():
                with m.use("face_parser"):
                    return self._our_parsing(frames, self.boxes)
            return run
        if stage == "face_prepare":
            from musetalk_core.faces.prepare import prepare_faces

            def run():
                with self.truth_locate():
                    out = prepare_faces(m, self.images, **self.face_settings())
                return out[0] if isinstance(out, tuple) else out
            return self._keep("faces", run, lambda f: bool(f.has_face.all()))
        if stage == "faces_video":
            return self.faces_from_source(video=True)
        if stage == "vae_encode":
            from musetalk_core.generators.musetalk.latents import encode_faces

            faces = self.faces()
            return self._keep("latents", lambda: encode_faces(m, faces, "sample", 0, a.batch_size))
        if stage == "audio":
            from musetalk_core.audio.windows import encode_audio

            return self._keep("features", lambda: _first(encode_audio(m, self.audio, self.fps)))
        if stage == "unet":
            self.latents()
            return self._keep("preds", self._our_unet)
        if stage == "decode":
            return self._our_decode()
        if stage == "unet_decode":
            from musetalk_core.generators.musetalk.generate import generate_faces

            latents, features = self.latents(), self.features()
            return self._keep("generated", lambda: generate_faces(m, latents, features, "bounce", 0, a.batch_size,
                                                                  **self.generation()))
        if stage == "blend":
            from musetalk_core.blend.blender import blend_frames

            faces, generated = self.faces(), self.generated()
            return lambda: blend_frames(self.images, faces, generated, chunk_size=a.chunk_size)
        if stage == "whole_graph":
            from musetalk_core.io.sources import TensorSource
            from musetalk_core.pipeline import lipsync_stream

            options = self.graph_options()

            def run():  # every stage over the frames in memory, the output frames collected in memory
                out = []
                with self.truth_locate():
                    lipsync_stream(m, TensorSource(self.images), self.audio, self.fps, options, out.append)
                return out
            return run
        if stage == "video_file":
            return self._video_file()
        if stage == "avatar_file":
            return self._avatar_file()
        raise KeyError(stage)

    def graph_options(self):
        from musetalk_core.options import LipsyncOptions

        a = self.args
        return LipsyncOptions(version=self.version, precision=a.dtype, device=a.device,
                                       detector_scale=a.detector_scale, face_batch_size=a.face_batch_size,
                                       vae_batch_size=a.batch_size, batch_size=a.batch_size, chunk_size=a.chunk_size,
                                       **self.generation())

    def media_files(self) -> Tuple[Path, Path]:
        """The clip as an H.264 file (N frames) and its audio as a 16-bit WAV (T frames long), written once."""
        if "media" not in self._prepared:
            import atexit
            import shutil
            import wave

            from musetalk_core.io import video_write

            folder = Path(tempfile.mkdtemp(prefix="musetalk-bench-"))
            atexit.register(shutil.rmtree, folder, True)
            video = folder / "in.mp4"
            video_write.write_video(video, self.frames, self.fps)
            wav = folder / "in.wav"
            samples = self.audio["waveform"][0].numpy().T  # (samples, channels)
            pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2")
            with wave.open(str(wav), "wb") as w:
                w.setnchannels(pcm.shape[1])
                w.setsampwidth(2)
                w.setframerate(int(self.audio["sample_rate"]))
                w.writeframes(pcm.tobytes())
            self._prepared["media"] = (video, wav)
        return self._prepared["media"]

    def _video_file(self, crf: int = 18, name: str = "out.mp4") -> Callable[[], object]:
        """What ``python -m musetalk_core lipsync`` does: demux, decode, every stage, H.264 + AAC encode, in chunks."""
        from musetalk_core.io import audio_file, video_read, video_write
        from musetalk_core.pipeline import lipsync_stream

        m, options = self.models, self.graph_options()
        video, wav = self.media_files()
        out = video.with_name(name)

        def run():
            source = video_read.open_video(video)
            try:
                audio = audio_file.read_audio(wav)
                h, w = source.frame_size
                rate, channels = audio_file.audio_layout(audio)
                with self.truth_locate(stream=True), \
                        video_write.VideoWriter(out, source.fps, w, h, crf, rate, channels) as writer:
                    result = lipsync_stream(m, source, audio, float(source.fps), options, writer.write)
                    writer.finish(result.audio)
            finally:
                source.close()
            if result.frame_count != self.t:
                raise RuntimeError(f"video_file wrote {result.frame_count} frames, expected {self.t}")
            return result.frame_count
        return run

    def avatar_folder(self) -> Path:
        """The clip's H.264 file prepared as an avatar (prepare_avatar, as ``python -m musetalk_core avatar``), once."""
        from musetalk_core.io.sources import VideoFileSource
        from musetalk_core.realtime.avatar import prepare_avatar

        video, _ = self.media_files()
        root = video.parent / "avatars"
        if not (root / "bench").is_dir():
            source = VideoFileSource(video)
            try:
                with self.truth_locate(stream=True):
                    prepare_avatar(self.models, source, source.fps, self.graph_options(), root, "bench")
            finally:
                source.close()
        return root / "bench"

    def _avatar_file(self, crf: int = 18, name: str = "out_avatar.mp4") -> Callable[[], object]:
        """What ``python -m musetalk_core lipsync --avatar`` does after loading: the avatar's files read, the
        audio, UNet + decoder, blend and H.264 + AAC encode (no decoding, faces or VAE encoding)."""
        from musetalk_core.generators.musetalk.generator import MuseTalkGenerator
        from musetalk_core.io import audio_file, video_write
        from musetalk_core.pipeline import lipsync_stream
        from musetalk_core.realtime.avatar import load_avatar
        from musetalk_core.realtime.avatar_lipsync import avatar_material

        m, options = self.models, self.graph_options()
        folder, (video, wav) = self.avatar_folder(), self.media_files()
        out = video.with_name(name)

        def run():
            avatar = load_avatar(folder, models=m)
            audio = audio_file.read_audio(wav)
            h, w = avatar.frame_size
            rate, channels = audio_file.audio_layout(audio)
            fps = avatar.exact_fps
            with video_write.VideoWriter(out, fps, w, h, crf, rate, channels) as writer:
                result = lipsync_stream(m, avatar.source(), audio, float(fps), options, writer.write,
                                        generator=MuseTalkGenerator(m, options),
                                        prepared_video=avatar_material(avatar, m))
                writer.finish(result.audio)
            if result.frame_count != self.t:
                raise RuntimeError(f"avatar_file wrote {result.frame_count} frames, expected {self.t}")
            return result.frame_count
        return run

    def avatar_output_matches(self) -> Optional[bool]:
        """Do avatar_file and video_file write the same frames (the promise of lipsync --avatar, checked on this
        device)? One more untimed run of each, lossless (crf 0): libx264's threads do not encode the same frames
        into the same bytes twice, so the timed runs' files cannot tell. None when a run fails."""
        from musetalk_core.io import video_read

        try:
            files = [self._video_file(0, "check_video.mp4"), self._avatar_file(0, "check_avatar.mp4")]
            for run in files:
                run()
        except Exception:  # noqa: BLE001 - the stage rows report the error
            return None
        video, _ = self.media_files()
        a, b = (video_read.read_video(video.with_name(n), with_audio=False).frames
                for n in ("check_video.mp4", "check_avatar.mp4"))
        return bool(a.shape == b.shape and torch.equal(a, b))

    def _our_unet(self) -> list:
        from musetalk_core.generators.musetalk import accel
        from musetalk_core.frame_mapping import source_indices
        from musetalk_core.generators.musetalk.generate import fixed_time_embedding

        m = self.models
        speed = accel.Acceleration.parse(self.generation()["acceleration"])
        latents = self.latents()
        features = self.feature_tensor()
        rows = latents.latent_slot()[source_indices(self.t, latents.num_frames, "bounce", 0)]
        preds = []
        with m.use("unet", "pe") as (unet, pe):
            udtype = next(unet.parameters()).dtype
            z = latents.latents.to(self.device, udtype)
            t0 = torch.zeros(1, dtype=torch.int64, device=self.device)
            accel.set_channels_last([unet], speed.channels_last)

            def forward(lat, audio):
                if speed.channels_last:
                    lat = lat.contiguous(memory_format=torch.channels_last)
                return unet(lat, t0, encoder_hidden_states=pe(audio)).sample

            with fixed_time_embedding(unet, self.device, udtype), accel.backend_flags(speed, self.device):
                run = forward
                if speed.static_shapes:  # the same runner generate uses, on the UNet alone
                    run = self._runner("unet", forward, speed, keep=(unet.time_embedding,))
                    unet.time_embedding = run.keep[0]
                for sl in _batches(self.t, self.args.batch_size):
                    out = run(z[rows[sl].to(self.device)], features[sl].to(self.device, udtype))
                    preds.append(out.clone() if speed.static_shapes else out)
        return preds

    def _our_decode(self) -> Callable[[], object]:
        """The decode stage: --decoder's decoder on the UNet outputs, with --acceleration as generate applies it."""
        from musetalk_core.generators.musetalk import accel
        from musetalk_core.generators.musetalk.generate import _convolutional, decode_faces, decode_faces_taesd
        from musetalk_core.weights.loading import ensure_network
        from musetalk_core.models.vae import scaling_factor

        m = self.models
        decoder = self.generation()["decoder"]
        speed = accel.Acceleration.parse(self.generation()["acceleration"])
        preds = self.preds()
        name = "vae" if decoder == "vae" else "taesd"
        if decoder == "taesd":
            ensure_network(m, "taesd")
        dec = m.network(name)
        scale = scaling_factor(dec) if decoder == "vae" else 1.0

        def decode(p):
            if speed.channels_last:
                p = p.contiguous(memory_format=torch.channels_last)
            return decode_faces(dec, p, scale) if decoder == "vae" else decode_faces_taesd(dec, p)

        def run():
            with m.use(name), accel.backend_flags(speed, self.device):
                accel.set_channels_last(_convolutional(m.network("unet"), dec, decoder)[1:], speed.channels_last)
                if not speed.static_shapes:
                    return [decode(p) for p in preds]
                runner = self._runner("decode", decode, speed)
                return [runner(p).clone() for p in preds]
        return run

    def _runner(self, what: str, fn, speed, keep=()):
        """One StaticRunner per stage and setting, kept for the bench's life (its build time is reported)."""
        from musetalk_core.generators.musetalk import accel

        key = ("runner", what, speed.name, self.generation()["decoder"])
        if key not in self._prepared:
            self._prepared[key] = accel.StaticRunner(fn, self.args.batch_size, self.device, speed, keep=keep)
        return self._prepared[key]

    def build_seconds(self) -> dict:
        """Compile / capture time of every static-shape runner made so far (stage -> seconds)."""
        out = {k[1]: round(r.build_s, 3) for k, r in self._prepared.items()
               if isinstance(k, tuple) and k[0] == "runner"}
        slot = self.models.extras.get("_accel_runner") if hasattr(self.models.extras, "get") else None
        if slot is not None:
            out["unet_decode"] = round(slot[1].build_s, 3)
        return out

    # -------------------------------------------------------------- the straightforward way
    def reference(self, stage: str) -> Optional[Callable[[], object]]:
        m = self.ref_models
        if stage == "detection":
            net = m.network("s3fd")
            return lambda: _nograd(ref.detect, net, self.det_bgr)
        if stage == "landmarks":
            net = m.network("landmarks")
            return lambda: _nograd(ref.landmarks, net, self.det_bgr)
        if stage == "parsing":
            parser = m.network("face_parser")
            return lambda: ref.parse(parser, self.frames_bgr, self.boxes, self.parsing_mode)
        if stage == "vae_encode":
            vae = m.network("vae")
            return lambda: ref.encode(vae, self.frames_bgr, self.boxes)
        if stage == "audio":
            return self._ref_audio
        if stage == "unet":
            unet, pe = m.network("unet"), m.network("pe")
            lat_cycle = self._ref_latent_cycle()
            feats = self.feature_tensor()
            return self._keep("ref_preds", lambda: ref.unet_frames(unet, pe, lat_cycle, feats))
        if stage == "decode":
            vae = m.network("vae")
            preds = self._ref_preds()
            return self._keep("ref_faces", lambda: ref.decode_batches(vae, preds))
        if stage == "unet_decode" and self.args.measure_reference_unet_decode:
            unet, pe, vae = m.network("unet"), m.network("pe"), m.network("vae")
            lat_cycle = self._ref_latent_cycle()
            feats = self.feature_tensor()
            return lambda: ref.decode_batches(vae, ref.unet_frames(unet, pe, lat_cycle, feats))
        if stage == "blend":
            parser = m.network("face_parser")
            faces = self._ref_faces_bgr()
            frames_c, boxes_c = ref.cycle(self.frames_bgr), ref.cycle(self.boxes)

            def run():
                if self.args.reference_png:
                    with tempfile.TemporaryDirectory() as tmp:
                        return ref.blend(parser, frames_c, boxes_c, faces, self.parsing_mode, png_dir=tmp)
                return ref.blend(parser, frames_c, boxes_c, faces, self.parsing_mode)
            return run
        if stage == "faces_video":  # compared with the same frames as an IMAGE, not with the reference
            return self.faces_from_source(video=False)
        return None  # face_prepare, unet_decode and whole_graph: sums of the stages (see summarise)

    def png_io(self) -> Callable[[], object]:
        return lambda: ref.png_roundtrip(self.frames_bgr)

    def _ref_audio(self):
        from transformers import WhisperFeatureExtractor

        if "fe" not in self._prepared:
            self._prepared["fe"] = WhisperFeatureExtractor.from_pretrained(str(self.models_dir / "whisper"))
        wave = self.audio["waveform"][0].mean(0).numpy()
        whisper = self.ref_models.network("whisper")
        with torch.no_grad():
            return ref.audio_features(whisper, self._prepared["fe"], wave, self.fps)

    def _ref_latent_cycle(self) -> list:
        if "ref_lat" not in self._prepared:
            z = self.latents().latents  # the project's latents: both sides' UNet stages start from the same rows
            lat = [z[i:i + 1] for i in range(z.shape[0])]
            self._prepared["ref_lat"] = ref.cycle(lat)
        return self._prepared["ref_lat"]

    def _ref_preds(self) -> list:
        if "ref_preds" not in self._prepared:
            self._prepared["ref_preds"] = ref.unet_frames(self.ref_models.network("unet"), self.ref_models.network("pe"),
                                                          self._ref_latent_cycle(), self.feature_tensor())
        return self._prepared["ref_preds"]

    def _ref_faces_bgr(self) -> list:
        if "ref_faces" not in self._prepared:
            self._prepared["ref_faces"] = ref.decode_batches(self.ref_models.network("vae"), self._ref_preds())
        return self._prepared["ref_faces"]


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _nograd(fn, *args):
    with torch.no_grad():
        return fn(*args)


def _with_truth(result, bench: "Bench", rows=None):
    """Replace what random-weight location found by the drawn face's landmarks and boxes (see truth_locate).

    ``result`` is musetalk_core.faces.locate.FaceLocations; the located frames are the bench's frames (or the
    bench's frames ``rows``)."""
    import dataclasses

    if not dataclasses.is_dataclass(result):
        return result
    n = result.num_frames if hasattr(result, "num_frames") else bench.n
    if rows is None:
        if n != bench.n:
            return result
        rows = np.arange(n)
    marks = bench.truth.astype(np.int64)[rows]
    boxes = np.array(bench.boxes, np.int64)[rows]
    values = {"has_face": np.ones(n, bool), "boxes": boxes, "landmarks": marks, "detector_boxes": boxes,
              "used_fallback": np.zeros(n, bool),
              "range_minus": [int(m[30, 1] - m[29, 1]) for m in marks],
              "range_plus": [int(m[29, 1] - m[28, 1]) for m in marks]}
    fields = {f.name for f in dataclasses.fields(result)}
    changes = {k: _like(v, getattr(result, k)) for k, v in values.items() if k in fields}
    if "landmark_scores" in fields and isinstance(result.landmark_scores, torch.Tensor):
        changes["landmark_scores"] = torch.ones_like(result.landmark_scores)
    return dataclasses.replace(result, **changes)


def _like(value, old):
    if isinstance(old, list):
        return list(value)
    if isinstance(old, torch.Tensor):
        return torch.as_tensor(value).to(dtype=old.dtype, device=old.device)
    if isinstance(old, np.ndarray):
        return value.astype(old.dtype)
    if isinstance(old, (list, tuple)):
        return type(old)(value[i] for i in range(len(value)))
    return value


# ------------------------------------------------------------------------------------------------ driver
@contextlib.contextmanager
def busy_neighbours(count: int):
    """``count`` other processes spinning on the CPU meanwhile: a machine shared with other work (a second job,
    a browser), where threads that spin instead of sleeping while they wait cost the stage real time."""
    import subprocess

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, int(count)))]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def run_benchmark(args) -> dict:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    import musetalk_core.pipeline as pipeline

    bench = Bench(args)
    log = (lambda *x: print(*x, file=sys.stderr, flush=True)) if args.verbose else (lambda *x: None)
    default_ahead = pipeline.GENERATE_AHEAD
    # the file stages' render (the frames are the same either way)
    pipeline.GENERATE_AHEAD = {"on": True, "off": False}.get(args.generate_ahead, "auto")
    try:
        with busy_neighbours(args.busy_neighbours):
            results = _run_stages(args, bench, log)
        summarise(results, bench)
        profiles = {}
        for stage in args.profile or ():
            log(f"[bench] {stage}: profile")
            try:
                profiles[stage] = profile_stage(bench.ours(stage), args.profile_top)
            except Exception as exc:  # noqa: BLE001
                profiles[stage] = [_missing(exc)]
    finally:
        pipeline.GENERATE_AHEAD = default_ahead
    report = {
        "benchmark": "musetalk-nodes stage fps",
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in args.argv),
        "machine": machine_info(),
        "settings": {"scale": args.scale, "version": args.version, "device": str(bench.device),
                     "dtype": str(bench.dtype).replace("torch.", ""),
                     "reference_dtype": str(bench.ref_models.dtype).replace("torch.", ""),
                     "frames": bench.n, "output_frames": bench.t,
                     "size": "x".join(map(str, parse_size(args.size))),
                     "detect_size": "x".join(map(str, parse_size(args.detect_size))),
                     "batch_size": args.batch_size, "face_batch_size": args.face_batch_size,
                     "reference_unet_batch": ref.UNET_BATCH, "warmup": args.warmup, "repeats": args.repeats,
                     "reference_png": args.reference_png, "truth_landmarks": not args.no_truth,
                     "detector_scale": args.detector_scale, "decoder": args.decoder,
                     "generate_ahead": args.generate_ahead,
                     "acceleration": args.acceleration, "busy_neighbours": args.busy_neighbours},
        "build_s": bench.build_seconds(),
        "load_s": round(bench.load_s, 3),
        "parameters": bench_networks.parameter_counts(bench.models),
        "s3fd_calibration": _read_json(bench.models_dir / "s3fd_calibration.json"),
        "stages": results,
        "notes": bench.notes,
    }
    if profiles:
        report["profiles"] = profiles
    return report


def _run_stages(args, bench: Bench, log) -> dict:
    stages = [s for s in STAGES if not args.stages or s in args.stages]
    results: dict = {}
    for stage in stages:
        units = bench.n if stage in PER_VIDEO else bench.t
        row = {"units": "source frames" if stage in PER_VIDEO else "output frames", "frames": units}
        log(f"[bench] {stage}: ours")
        try:
            fn = bench.ours(stage)
            row["ours"] = measure(fn, units, bench.device, args.warmup, args.repeats).as_dict()
        except Exception as exc:  # noqa: BLE001 - one failing stage must not hide the others (--strict raises)
            if args.strict:
                raise
            row["ours"] = {"error": _missing(exc)}
        if not args.no_reference:
            log(f"[bench] {stage}: straightforward")
            try:
                fn = bench.reference(stage)
                if fn is not None:
                    row["reference"] = measure(fn, units, bench.device, args.warmup, args.repeats).as_dict()
            except Exception as exc:  # noqa: BLE001
                if args.strict:
                    raise
                row["reference"] = {"error": _missing(exc)}
        results[stage] = row
        synchronize(bench.device)
    if not args.no_reference and args.reference_png:
        log("[bench] png_io: straightforward")
        results["png_io"] = {"units": "source frames", "frames": bench.n, "ours": {"note": "no disk round trip"},
                             "reference": measure(bench.png_io(), bench.n, bench.device, args.warmup,
                                                  args.repeats).as_dict()}
    return results


def profile_stage(fn: Callable[[], object], top: int = 25) -> list:
    """One call under cProfile: the ``top`` functions by cumulative time, as text lines."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return [ln for ln in buf.getvalue().splitlines() if ln.strip()]


def summarise(results: dict, bench: Bench) -> None:
    """fps / reference_fps / ratio on every row; sums for the straightforward rows that are sequences of stages."""
    def med(stage, side):
        r = results.get(stage, {}).get(side, {})
        return r.get("median_s")

    if "face_prepare" in results and "reference" not in results["face_prepare"]:
        parts = [med(s, "reference") for s in ("detection", "landmarks", "parsing")]
        if all(p is not None for p in parts):
            results["face_prepare"]["reference"] = {"median_s": sum(parts), "fps": bench.n / sum(parts),
                                                    "derived": "sum of detection + landmarks + parsing"}
    if isinstance(results.get("faces_video", {}).get("reference"), dict):
        results["faces_video"]["reference"]["compared"] = IMAGE_SIDE
    if "unet_decode" in results and "reference" not in results["unet_decode"]:
        parts = [med(s, "reference") for s in ("unet", "decode")]
        if all(p is not None for p in parts):
            results["unet_decode"]["reference"] = {"median_s": sum(parts), "fps": bench.t / sum(parts),
                                                   "derived": "sum of unet + decode (the reference runs them "
                                                              "back to back per batch)"}
    parts = [med(s, "reference") for s in REFERENCE_GRAPH]
    for graph in ("whole_graph", "video_file"):  # the reference's ffmpeg decode/encode is not counted: a lower bound
        if graph in results and "reference" not in results[graph] and all(p is not None for p in parts):
            total = sum(parts)
            derived = "sum of " + " + ".join(REFERENCE_GRAPH)
            if "png_io" in results and med("png_io", "reference") is not None:
                total += med("png_io", "reference")
                derived += " + png_io"
            results[graph]["reference"] = {"median_s": total, "fps": bench.t / total, "derived": derived}
    if "avatar_file" in results and "video_file" in results:
        results["avatar_file"]["same_frames_as_video_file"] = bench.avatar_output_matches()
    parts = [med(s, "reference") for s in REFERENCE_AVATAR]
    if "avatar_file" in results and "reference" not in results["avatar_file"] and all(p is not None for p in parts):
        results["avatar_file"]["reference"] = {"median_s": sum(parts), "fps": bench.t / sum(parts),
                                               "derived": "sum of " + " + ".join(REFERENCE_AVATAR)
                                                          + " (its blend not counted: a lower bound)"}
    for row in results.values():
        ours, reference = row.get("ours", {}), row.get("reference", {})
        row["fps"] = ours.get("fps")
        row["reference_fps"] = reference.get("fps")
        row["ratio"] = (row["fps"] / row["reference_fps"]) if row["fps"] and row["reference_fps"] else None


def format_table(report: dict) -> str:
    s = report["settings"]
    lines = [f"MuseTalk stage fps — {s['device']} {s['dtype']}"
             f"{' (straightforward ' + s['reference_dtype'] + ')' if s.get('reference_dtype', s['dtype']) != s['dtype'] else ''}"
             f"{', detector_scale ' + format(s['detector_scale'], 'g') if s.get('detector_scale', 1.0) != 1.0 else ''}"
             f", {s['scale']} networks, N={s['frames']} source / "
             f"T={s['output_frames']} output frames at {s['size']} (detection/landmarks at {s['detect_size']}), "
             f"batch {s['batch_size']}",
             f"{'stage':<13}{'frames':>7}{'ours fps':>11}{'median s':>10}{'spread':>8}{'ref fps':>10}"
             f"{'speed-up':>10}{'peak RSS MB':>13}{'peak VRAM MB':>14}"]

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for name, row in report["stages"].items():
        ours = row.get("ours", {})
        spread = ours.get("spread_pct")
        lines.append(f"{name:<13}{row.get('frames', 0):>7}{num(row.get('fps'), '.3f'):>11}"
                     f"{num(ours.get('median_s'), '.3f'):>10}{(num(spread, '.0f') + '%') if spread is not None else '-':>8}"
                     f"{num(row.get('reference_fps'), '.3f'):>10}"
                     f"{(num(row.get('ratio'), '.2f') + 'x') if row.get('ratio') else '-':>10}"
                     f"{num(ours.get('peak_rss_mb'), '.0f'):>13}{num(ours.get('peak_vram_mb'), '.0f'):>14}")
        if ours.get("error"):
            lines.append(f"{'':<13}ours: {ours['error'][:110]}")
        if row.get("reference", {}).get("error"):
            lines.append(f"{'':<13}reference: {row['reference']['error'][:110]}")
    lines.append(f"load: {report['load_s']:.2f} s (load_models, {sum(report['parameters'].values()) / 1e6:.1f} M "
                 "parameters)")
    if s.get("decoder", "vae") != "vae" or s.get("acceleration", "off") != "off":
        lines.append(f"decoder {s.get('decoder', 'vae')}, acceleration {s.get('acceleration', 'off')}; one-off "
                     f"compile/capture seconds (in the warm-up, not the timings): {report.get('build_s') or '-'}")
    for note in report.get("notes", []):
        lines.append("note: " + note)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The figures as a Markdown table (what BENCHMARKS.md shows), with the command, machine and date."""
    s, mach = report["settings"], report["machine"]

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "–"

    out = [f"Command: `{report['command']}`  ",
           f"Date: {report['date']}; machine: {mach.get('cpu', '?')}, {mach.get('cpu_count')} cores"
           f"{', %s GB RAM' % mach['ram_gb'] if 'ram_gb' in mach else ''}"
           f"{', GPU ' + mach['gpu'] if mach.get('gpu') else ''}; torch {mach.get('torch')}  ",
           f"Settings: {s['device']} {s['dtype']}"
           f"{' (straightforward side ' + s['reference_dtype'] + ')' if s.get('reference_dtype', s['dtype']) != s['dtype'] else ''}"
           f"{', detector_scale ' + format(s['detector_scale'], 'g') if s.get('detector_scale', 1.0) != 1.0 else ''}"
           f", {s['scale']} networks, N = {s['frames']} source frames at "
           f"{s['size']} (detection/landmarks at {s['detect_size']}), T = {s['output_frames']} output frames, "
           f"batch {s['batch_size']} (reference UNet batch {s['reference_unet_batch']}), warm-up {s['warmup']}, "
           f"{s['repeats']} timed run(s), median. Load: {report['load_s']:.1f} s.",
           "",
           "| stage | frames | ours fps | ours median s (spread) | straightforward fps | speed-up | peak RSS MB |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in report["stages"].items():
        ours = row.get("ours", {})
        spread = ours.get("spread_pct")
        med = num(ours.get("median_s"), ".2f") + (f" (±{spread / 2:.0f}%)" if spread else "")
        refd = row.get("reference", {})
        ref_fps = num(row.get("reference_fps"), ".3f") + (" †" if refd.get("derived") else "") + \
            (" ‡" if refd.get("compared") else "")
        out.append(f"| {name} | {row.get('frames', '')} | {num(row.get('fps'), '.3f')} | {med} | {ref_fps} | "
                   f"{(num(row.get('ratio'), '.2f') + '×') if row.get('ratio') else '–'} | "
                   f"{num(ours.get('peak_rss_mb'), '.0f')} |")
    derived = sorted({r["reference"]["derived"] for r in report["stages"].values()
                      if isinstance(r.get("reference"), dict) and r["reference"].get("derived")})
    if derived:
        out.append("")
        out.append("† derived: " + "; ".join(derived) + ".")
    if any(isinstance(r.get("reference"), dict) and r["reference"].get("compared") for r in report["stages"].values()):
        out.append(f"‡ {IMAGE_SIDE}.")
    for note in report.get("notes", []):
        out.append(f"Note: {note}")
    return "\n".join(out) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="smallest mode: tiny networks, 128x160 frames, N=2, one timed run (CI, seconds)")
    p.add_argument("--scale", choices=("tiny", "real"), default="real", help="network sizes (default real)")
    p.add_argument("--models-dir", help="use this models folder instead of writing random-weight files")
    p.add_argument("--version", choices=("v15", "v1"), default="v15")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="fp32", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--reference-dtype", choices=("auto", "fp32", "fp16", "bf16"), default=None,
                   help="precision of the straightforward side (default: --dtype)")
    p.add_argument("--frames", type=int, default=8, help="N source frames")
    p.add_argument("--output-ratio", type=float, default=2.0,
                   help="T = ratio x N output frames (2 = one full ping-pong cycle)")
    p.add_argument("--size", default="720p", help="720p, 1080p, 360p, tiny or HxW")
    p.add_argument("--detect-size", default=None, help="frame size for detection and landmarks (default --size)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--batch-size", type=int, default=8, help="VAE / UNet batch size (the nodes' batch_size)")
    p.add_argument("--face-batch-size", type=int, default=8, help="FaceDetectAndParse batch_size")
    p.add_argument("--chunk-size", type=int, default=16, help="BlendAndAssemble chunk_size")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stages", nargs="*", choices=STAGES, help="only these stages")
    p.add_argument("--no-reference", action="store_true", help="skip the straightforward side")
    p.add_argument("--reference-png", action=argparse.BooleanOptionalAction, default=True,
                   help="the straightforward side writes result frames as PNG and round-trips the source frames "
                        "through PNG, as the reference does (default on)")
    p.add_argument("--measure-reference-unet-decode", action="store_true",
                   help="time the straightforward UNet+decode as one call (default: the sum of its two rows)")
    p.add_argument("--detector-scale", type=float, default=1.0,
                   help="FaceDetectAndParse detector_scale for this pack's side (1 = full resolution = reference)")
    p.add_argument("--profile", nargs="*", choices=STAGES, default=None,
                   help="after timing, run these stages (of this pack) once under cProfile; top entries go to the JSON")
    p.add_argument("--profile-top", type=int, default=25, help=argparse.SUPPRESS)
    p.add_argument("--decoder", choices=("vae", "taesd"), default="vae",
                   help="decoder for decode / unet_decode / blend / whole_graph (taesd: a random-weight TAESD file "
                        "is written next to the networks)")
    p.add_argument("--acceleration", default="off",
                   help="musetalk_core.generators.musetalk.accel settings for unet / decode / unet_decode / whole_graph, e.g. "
                        "channels_last+cuda_graphs (default off)")
    p.add_argument("--generate-ahead", choices=("auto", "on", "off"), default="auto",
                   help="file stages: the generator's batches made on a worker thread ahead of the blend (on), "
                        "when a chunk needs them (off), or when the generator runs on a CUDA GPU (auto: "
                        "pipeline.GENERATE_AHEAD)")
    p.add_argument("--markdown", help="also write the table as Markdown here")
    p.add_argument("--no-truth", action="store_true", help="keep what random-weight detection/landmarks found")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--busy-neighbours", type=int, default=0,
                   help="this many other processes spin on the CPU during the measurements (a shared machine)")
    p.add_argument("--strict", action="store_true", help="raise on the first failing stage")
    p.add_argument("--json", help="write the full report as JSON here")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.smoke:
        args.scale, args.size = "tiny", "tiny"
        args.frames = min(args.frames, 2) if "--frames" in argv else 2
        if "--warmup" not in argv:
            args.warmup = 0
        if "--repeats" not in argv:
            args.repeats = 1
    args.detect_size = args.detect_size or args.size
    report = run_benchmark(args)
    print(format_table(report))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(format_markdown(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
