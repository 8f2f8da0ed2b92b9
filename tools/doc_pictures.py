"""Draw the pictures of docs/dialogue.md into docs/images/ (PIL and numpy only, no plotting library).

    python tools/doc_pictures.py      # rewrites docs/images/length_fit.png, speakers.png, auto_match.png

What they show comes from the pack's own code, not from hand-typed numbers: ``frame_mapping`` gives the source frame
of every output frame in each length-fit mode; ``faces.tracks.link_tracks`` numbers the faces of a synthetic
three-head clip (benchmarks.synthetic.make_multi_clip, detections from benchmarks.standins.heads_detector); and
``faces.selection.auto_track`` scores each face's mouth against one head's voice as speaker selection 'auto' does.
Deterministic: the same pictures every run (seeded clip, Pillow's built-in font).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the pack and benchmarks/ import from the repository root

OUT = ROOT / "docs" / "images"
INK, GREY, LIGHT, RED, BLUE = (30, 30, 36), (120, 120, 128), (236, 236, 240), (200, 40, 40), (40, 90, 200)
TRACK_COLOURS = [(230, 60, 60), (40, 170, 80), (50, 110, 230), (230, 160, 20)]


def font(size: int):
    return ImageFont.load_default(size=size)


def dashed_line(draw, x, y0, y1, colour, width=2, dash=4):
    for y in range(int(y0), int(y1), 2 * dash):
        draw.line([(x, y), (x, min(y + dash, y1))], fill=colour, width=width)


def frame_colour(j: int, n: int):
    """A colour per source frame: blue (first) to yellow (last), so repeats and reversals show at a glance."""
    stops = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], float)
    t = j / max(n - 1, 1) * (len(stops) - 1)
    k = min(int(t), len(stops) - 2)
    c = stops[k] + (stops[k + 1] - stops[k]) * (t - k)
    return tuple(int(v) for v in c)


def text_on(colour) -> tuple:
    return INK if sum(colour) > 380 else (255, 255, 255)


# ---- length_fit.png: the six length-fit modes ----

MODES = [("bounce", "default; forward, backward, ..."), ("loop", "restart from frame 0"),
         ("once_hold", "once, then hold the last"), ("cut_off", "ends with the shorter"),
         ("silence", "the whole video once"), ("remap", "video stretched to the audio")]
CELL, ROW_H, LABEL_W, PANEL_W = 27, 58, 215, 440


def draw_mapping_row(draw, x0, y0, mode: str, audio_frames: int, num_source: int) -> None:
    """One mode for one audio length: an output frame per cell (its source frame's number and colour), under it
    the audio as a bar of ``audio_frames`` cells; striped cells: output past the audio; red bar: audio cut off."""
    from musetalk_core.frame_mapping import output_length, source_indices

    t = output_length(audio_frames, num_source, mode)
    mapping = source_indices(t, num_source, mode).tolist()
    small = font(12)
    for i, j in enumerate(mapping):
        x = x0 + i * CELL
        colour = frame_colour(j, num_source)
        draw.rectangle([x, y0, x + CELL - 2, y0 + 22], fill=colour)
        draw.text((x + CELL / 2 - 1, y0 + 11), str(j), fill=text_on(colour), font=small, anchor="mm")
        if i >= audio_frames:  # no audio left: silence drives this frame
            for s in range(-22, CELL, 6):
                draw.line([(x + max(s, 0), y0 + 22 - max(-s, 0)), (x + min(s + 22, CELL - 2),
                           y0 + 22 - min(22, CELL - 2 - s))], fill=(255, 255, 255), width=1)
    bar_y = y0 + 27
    kept = min(audio_frames, t)
    draw.rectangle([x0, bar_y, x0 + kept * CELL - 2, bar_y + 5], fill=INK)
    if audio_frames > t:  # audio past the output's end is dropped
        draw.rectangle([x0 + t * CELL, bar_y, x0 + audio_frames * CELL - 2, bar_y + 5], fill=(240, 170, 170))
        draw.text((x0 + (t + audio_frames) * CELL / 2, bar_y + 13), "audio cut", fill=RED, font=small, anchor="mm")
    if t > audio_frames:
        draw.text((x0 + (audio_frames + t) * CELL / 2, bar_y + 13), "silence", fill=GREY, font=small, anchor="mm")
        dashed_line(draw, x0 + audio_frames * CELL - 1, y0 - 4, bar_y + 8, BLUE)
    if t < audio_frames:
        draw.line([(x0 + t * CELL - 1, y0 - 4), (x0 + t * CELL - 1, bar_y + 8)], fill=RED, width=2)
    draw.text((x0 + t * CELL + 6, y0 + 11), f"T = {t}", fill=INK, font=font(13), anchor="lm")


def length_fit_picture(num_source: int = 8, audios=(5, 13)) -> Image.Image:
    width = LABEL_W + PANEL_W * len(audios) + 10
    height = 120 + ROW_H * len(MODES) + 50
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((12, 12), f"Length-fit modes (frame_mapping): which of N = {num_source} source frames each output "
              "frame shows", fill=INK, font=font(16))
    draw.text((12, 44), "source video", fill=INK, font=font(13))
    for j in range(num_source):
        x = LABEL_W + j * CELL
        draw.rectangle([x, 40, x + CELL - 2, 62], fill=frame_colour(j, num_source))
        draw.text((x + CELL / 2 - 1, 51), str(j), fill=text_on(frame_colour(j, num_source)), font=font(12),
                  anchor="mm")
    for p, a in enumerate(audios):
        relation = "shorter than" if a < num_source else "longer than"
        draw.text((LABEL_W + p * PANEL_W, 84), f"audio of A = {a} frames ({relation} the video)", fill=INK,
                  font=font(14))
    for r, (mode, note) in enumerate(MODES):
        y = 118 + r * ROW_H
        draw.text((12, y + 2), mode, fill=INK, font=font(15))
        draw.text((12, y + 22), note, fill=GREY, font=font(12))
        for p, a in enumerate(audios):
            draw_mapping_row(draw, LABEL_W + p * PANEL_W, y, mode, a, num_source)
    y = height - 38
    draw.text((12, y), "Each cell is an output frame showing the source frame numbered in it; T = output frames. "
              "Bar under the cells: the audio.", fill=INK, font=font(12))
    draw.text((12, y + 17), "Striped cells, blue dashes: past the audio's end (silence drives the mouth). "
              "Red line, pink bar: the output ends, the rest of the audio is cut off.", fill=INK, font=font(12))
    return img


# ---- speakers.png and auto_match.png: face tracks of a synthetic three-head clip ----

def tracked_clip(n: int = 150, heads: int = 3, seed: int = 0):
    """(clip, tracks): make_multi_clip with every event, its stand-in detections linked into face tracks."""
    from benchmarks.standins import heads_detector
    from benchmarks.synthetic import make_multi_clip
    from musetalk_core.faces.tracks import link_tracks

    clip = make_multi_clip(n, heads=heads, size="360p", seed=seed, events=("cross", "cutaway", "leave"))
    detections = heads_detector(clip)(None, clip.frames)
    h, w = clip.frames.shape[1:3]
    return clip, link_tracks(detections, (h, w))


def draw_tracks(frame: np.ndarray, tracks, i: int, scale: float, point=None) -> Image.Image:
    img = Image.fromarray(frame).resize((round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
                                        Image.LANCZOS)
    draw = ImageDraw.Draw(img)
    for k in range(tracks.num_tracks):
        box = tracks.box(k, i)
        if box is None:
            continue
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        colour = TRACK_COLOURS[k % len(TRACK_COLOURS)]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=3)
        draw.rectangle([x1, y1 - 20, x1 + 64, y1], fill=colour)
        draw.text((x1 + 4, y1 - 10), f"track {k}", fill=(255, 255, 255), font=font(13), anchor="lm")
    if point is not None:
        x, y = point[0] * scale, point[1] * scale
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline=(255, 255, 255), width=3)
        draw.line([(x - 11, y), (x + 11, y)], fill=(255, 255, 255), width=2)
        draw.line([(x, y - 11), (x, y + 11)], fill=(255, 255, 255), width=2)
    return img


def speakers_picture(clip, tracks, early: int = 2, late: int = 100, scale: float = 0.75) -> Image.Image:
    from musetalk_core.faces.selection import parse_selection, track_for

    frames = clip.frames.numpy()
    box = tracks.box(1, early)
    px, py = round(float(box[0] + box[2]) / 2), round(float(box[1] + box[3]) * 0.55)
    selection = parse_selection(f"point {px} {py} {early}")
    picked = track_for(selection, tracks)
    panels = [(draw_tracks(frames[early], tracks, early, scale, (px, py)),
               [f"frame {early}: tracks numbered left to right where each face first appears",
                f"'{selection.text()}' (the white mark) -> track {picked}"]),
              (draw_tracks(frames[late], tracks, late, scale),
               [f"frame {late}: after the two left faces crossed, each track",
                "still follows its own face (track 0 is now in the middle)"])]
    pw, ph = panels[0][0].size
    img = Image.new("RGB", (2 * pw + 30, ph + 62), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for p, (panel, caption) in enumerate(panels):
        x = 10 + p * (pw + 10)
        img.paste(panel, (x, 10))
        for line, text in enumerate(caption):
            draw.text((x, ph + 18 + 18 * line), text, fill=INK, font=font(13))
    return img


def auto_match_picture(clip, tracks, voice: int = 1) -> Image.Image:
    """Speaker selection 'auto' for one head's voice: the audio's loudness over the frames, each track's mouth
    openness, and the scores auto_track gives (the best is chosen)."""
    import torch

    from musetalk_core.faces.selection import auto_track
    from musetalk_core.faces.speaker_match import audio_envelope, mouth_openness

    n = clip.frames.shape[0]
    landmarks_of = track_landmarks(clip, tracks)
    audio = clip.audios[voice]
    best, scores = auto_track(tracks, landmarks_of, audio, clip.fps, torch.arange(n))
    envelope = audio_envelope(audio["waveform"], int(audio["sample_rate"]), clip.fps, n)
    series = []
    for k in range(tracks.num_tracks):
        marks = torch.full((n, 68, 2), -1, dtype=torch.int64)
        present = [j for j in range(n) if bool(tracks.present(k)[j])]
        marks[present] = torch.as_tensor(landmarks_of(k, present), dtype=torch.int64)
        series.append(mouth_openness(marks))
    rows = [(f"audio of head {voice} (loudness)", envelope, INK, "")] + [
        (f"track {k} mouth openness", s, TRACK_COLOURS[k % len(TRACK_COLOURS)],
         f"score {scores[k]:.2f}" + ("  <- chosen" if k == best else "")) for k, s in enumerate(series)]
    return plot_rows(rows, n, f"speaker_selection 'auto': which face's mouth follows this audio? ({n} frames)",
                     "score: the best correlation of openness and loudness over lags of -2..+2 frames (synthetic "
                     "clip, exact landmarks)")


def track_landmarks(clip, tracks):
    """landmarks_of(k, frames) as speakers.track_landmarks gives it, from the clip's drawn points: the visible
    head whose box centre is nearest track k's box (the stand-in for DWPose on that box)."""
    def landmarks_of(k, frames):
        out = []
        for j in frames:
            box = tracks.box(k, j).numpy()
            centre = (box[:2] + box[2:]) / 2
            heads = np.flatnonzero(clip.visible[:, j])
            dist = [np.hypot(*((clip.boxes[h, j, :2] + clip.boxes[h, j, 2:]) / 2 - centre)) for h in heads]
            out.append(clip.landmarks[heads[int(np.argmin(dist))], j])
        return np.stack(out) if out else np.zeros((0, 68, 2), np.int32)

    return landmarks_of


def plot_rows(rows, n: int, title: str, footnote: str, width: int = 900, row_h: int = 62) -> Image.Image:
    left, right = 200, 150
    img = Image.new("RGB", (width, 44 + row_h * len(rows) + 50), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((12, 12), title, fill=INK, font=font(15))
    plot_w = width - left - right
    for r, (label, values, colour, note) in enumerate(rows):
        y0 = 44 + r * row_h
        draw.rectangle([left, y0, left + plot_w, y0 + row_h - 12], fill=(247, 247, 250))
        draw.text((12, y0 + (row_h - 12) / 2), label, fill=INK, font=font(13), anchor="lm")
        draw.text((left + plot_w + 10, y0 + (row_h - 12) / 2), note, fill=colour, font=font(13), anchor="lm")
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        points = []
        for i, v in enumerate(values):
            if not np.isfinite(v):  # the face is absent here: the line breaks
                if len(points) > 1:
                    draw.line(points, fill=colour, width=2)
                points = []
                continue
            points.append((left + i * plot_w / max(n - 1, 1), y0 + row_h - 14 - (row_h - 18) * float(v) / top))
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
    y = 44 + row_h * len(rows)
    draw.text((left, y), "0", fill=GREY, font=font(12))
    draw.text((left + plot_w, y), f"frame {n - 1}", fill=GREY, font=font(12), anchor="ra")
    draw.text((left + plot_w / 2, y), "gaps: the face is not seen (hidden, out of the frame, a cut-away)",
              fill=GREY, font=font(12), anchor="ma")
    draw.text((12, y + 22), footnote, fill=INK, font=font(12))
    return img


def save(img: Image.Image, name: str, colours: int = 0) -> Path:
    """PNG, optionally reduced to a palette (the photos' noise would otherwise make large files)."""
    OUT.mkdir(parents=True, exist_ok=True)
    if colours:
        img = img.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = OUT / name
    img.save(path, optimize=True)
    return path


def main() -> None:
    written = [save(length_fit_picture(), "length_fit.png", colours=64)]
    clip, tracks = tracked_clip()
    written.append(save(speakers_picture(clip, tracks), "speakers.png", colours=64))
    written.append(save(auto_match_picture(clip, tracks), "auto_match.png", colours=32))
    for path in written:
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
