"""Draw docs/icon.png, the pack's icon on the Comfy Registry (pyproject.toml [tool.comfy] Icon): 256x256 RGBA.

    python tools/make_icon.py      # rewrites docs/icon.png (deterministic: same bytes every run)

Plain Python (zlib + struct), no image library: a rounded square, a pair of lips and three sound waves.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

SIZE = 256
OUT = Path(__file__).resolve().parents[1] / "docs" / "icon.png"
SAMPLES = 4  # per axis, for anti-aliasing


def _mix(a, b, t):
    return tuple(x + (y - x) * t for x, y in zip(a, b))


def _over(dst, src, alpha):
    """src (rgb) with coverage alpha over dst (rgba)."""
    a = alpha + dst[3] * (1 - alpha)
    if a <= 0:
        return (0.0, 0.0, 0.0, 0.0)
    rgb = tuple((s * alpha + d * dst[3] * (1 - alpha)) / a for s, d in zip(src, dst[:3]))
    return rgb + (a,)


def _rounded_square(x, y, r=52.0, m=8.0):
    cx = min(max(x, m + r), SIZE - m - r)
    cy = min(max(y, m + r), SIZE - m - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


MOUTH = (104.0, 132.0)


def _layers(x, y):
    """(rgb, alpha) layers at one sample point, bottom first."""
    if not _rounded_square(x, y):
        return []
    top, bottom = (0.16, 0.10, 0.34), (0.05, 0.36, 0.42)
    out = [(_mix(top, bottom, y / SIZE), 1.0)]
    mx, my = MOUTH
    # lips: an ellipse with a cupid's-bow notch on top, the dark opening and a strip of teeth inside
    notch = _ellipse(x, y, mx, my - 40, 12, 14)
    if _ellipse(x, y, mx, my, 70, 38) and not notch:
        out.append(((0.90, 0.30, 0.40), 1.0))
    if _ellipse(x, y, mx, my + 2, 48, 16):
        out.append(((0.20, 0.05, 0.12), 1.0))
        if y < my - 4:
            out.append(((0.97, 0.96, 0.93), 1.0))
    # sound waves: three arcs around the mouth, on the right
    d = math.hypot(x - mx, y - my)
    angle = abs(math.degrees(math.atan2(y - my, x - mx)))
    for radius in (92.0, 114.0, 136.0):
        if abs(d - radius) <= 5.0 and angle <= 38.0 and x > mx:
            out.append(((1.0, 1.0, 1.0), 0.9))
    return out


def render() -> bytes:
    rows = []
    for py in range(SIZE):
        row = bytearray([0])  # filter type 0
        for px in range(SIZE):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x, y = px + (sx + 0.5) / SAMPLES, py + (sy + 0.5) / SAMPLES
                    pix = (0.0, 0.0, 0.0, 0.0)
                    for rgb, alpha in _layers(x, y):
                        pix = _over(pix, rgb, alpha)
                    for i in range(3):
                        acc[i] += pix[i] * pix[3]
                    acc[3] += pix[3]
            n = SAMPLES * SAMPLES
            a = acc[3] / n
            rgb = [acc[i] / acc[3] if acc[3] else 0.0 for i in range(3)]
            row += bytes(int(round(min(max(v, 0.0), 1.0) * 255)) for v in rgb + [a])
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    OUT.write_bytes(render())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
