"""Procedural renderer of the testbed: coloured shapes, patterns and digits on varied backgrounds.

Everything is drawn from an explicit ``numpy.random.Generator``: the same generator state gives the same
pixels on every machine (PIL polygon/line rasterisation and numpy arithmetic only, no fonts). Objects are
drawn at 4x super-sampling and box-filtered down to the output size.

Geometry: an object's *radius* is a fraction of the image half-width. Pretraining draws radii in
``PRETRAIN_RADIUS`` (0.25-0.58); the downstream datasets draw LARGER objects (``DOWNSTREAM_RADIUS``, 0.5-0.7),
the shift a hand prompt can name ("a picture of a large {}.") and that pretraining covers only partly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 32
SUPERSAMPLE = 4
PRETRAIN_RADIUS = (0.25, 0.58)
DOWNSTREAM_RADIUS = (0.5, 0.7)
SMALL_BELOW = 0.36  # pretraining captions call objects "small" below this radius...
LARGE_ABOVE = 0.47  # ...and "large" above this one

COLOURS = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.97, 0.52, 0.05),
    "yellow": (0.96, 0.90, 0.12),
    "green": (0.10, 0.66, 0.16),
    "cyan": (0.12, 0.82, 0.86),
    "blue": (0.10, 0.22, 0.92),
    "purple": (0.56, 0.14, 0.76),
    "pink": (0.98, 0.52, 0.76),
}
COLOUR_NAMES = list(COLOURS)

# Two disjoint shape vocabularies (A: the "shapes" dataset, B: the "patterns" dataset); the source
# dataset uses both. Order matters: CoOp's base/new split takes the first half of the sorted labels.
SHAPES_A = ["circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon"]
SHAPES_B = ["crescent", "ring", "arrow", "semicircle", "pentagon", "trapezoid", "rectangle", "ellipse"]
SHAPE_NAMES = SHAPES_A + SHAPES_B
PATTERNS = ["solid", "striped", "dotted", "checkered"]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
STYLES = ["photo", "sketch", "noisy", "cluttered"]


# ----------------------------------------------------------------------------------------------------
# geometry (unit radius, x right, y down)

def _circle_pts(n=48, rx=1.0, ry=1.0, cx=0.0, cy=0.0, a0=0.0, a1=2 * math.pi):
    return [(cx + rx * math.cos(a0 + (a1 - a0) * i / n), cy + ry * math.sin(a0 + (a1 - a0) * i / n))
            for i in range(n + 1 if a1 - a0 < 2 * math.pi else n)]


def _regular(n, r=1.0, rot=-math.pi / 2, dy=0.0):
    return [(r * math.cos(rot + 2 * math.pi * i / n), r * math.sin(rot + 2 * math.pi * i / n) + dy) for i in range(n)]


def _star():
    pts = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.45
        a = -math.pi / 2 + math.pi * i / 5
        pts.append((r * math.cos(a), r * math.sin(a) + 0.08))
    return pts


def _heart():
    pts = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x / 16.5, y / 16.5 + 0.05))
    return pts


# Each shape: list of (polygon, value) drawn in order (value 1 = fill, 0 = cut a hole).
SHAPE_GEOMETRY = {
    "circle": [(_circle_pts(), 1)],
    "square": [([(-0.78, -0.78), (0.78, -0.78), (0.78, 0.78), (-0.78, 0.78)], 1)],
    "triangle": [(_regular(3, 1.1, dy=0.22), 1)],
    "star": [(_star(), 1)],
    "heart": [(_heart(), 1)],
    "cross": [([(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
                (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)], 1)],
    "diamond": [([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)], 1)],
    "hexagon": [(_regular(6, 1.0, rot=0.0), 1)],
    "crescent": [(_circle_pts(), 1), (_circle_pts(rx=0.8, ry=0.8, cx=0.42, cy=-0.12), 0)],
    "ring": [(_circle_pts(), 1), (_circle_pts(rx=0.55, ry=0.55), 0)],
    "arrow": [([(-1, -0.22), (0.15, -0.22), (0.15, -0.62), (1, 0), (0.15, 0.62), (0.15, 0.22), (-1, 0.22)], 1)],
    "semicircle": [(_circle_pts(24, a0=math.pi, a1=2 * math.pi, cy=0.42), 1)],
    "pentagon": [(_regular(5, 1.0, dy=0.08), 1)],
    "trapezoid": [([(-1, 0.55), (1, 0.55), (0.45, -0.55), (-0.45, -0.55)], 1)],
    "rectangle": [([(-1, -0.45), (1, -0.45), (1, 0.45), (-1, 0.45)], 1)],
    "ellipse": [(_circle_pts(rx=1.0, ry=0.52), 1)],
}


def _arc(cx, cy, rx, ry, a0_deg, a1_deg, n=16):
    a0, a1 = math.radians(a0_deg), math.radians(a1_deg)
    return [(cx + rx * math.cos(a0 + (a1 - a0) * i / n), cy + ry * math.sin(a0 + (a1 - a0) * i / n)) for i in range(n + 1)]


# Digits: polylines in the box x in [-0.55, 0.55], y in [-1, 1] (angles in degrees, y down).
DIGIT_STROKES = {
    "zero": [_arc(0, 0, 0.5, 0.92, 0, 360, 32)],
    "one": [[(-0.3, -0.62), (0.05, -0.95), (0.05, 0.95)], [(-0.3, 0.95), (0.4, 0.95)]],
    "two": [_arc(0, -0.45, 0.48, 0.48, 200, 380, 14) + [(-0.5, 0.95), (0.55, 0.95)]],
    "three": [_arc(0, -0.48, 0.45, 0.46, 200, 450, 16), _arc(0, 0.46, 0.5, 0.5, 270, 520, 16)],
    "four": [[(0.25, 0.95), (0.25, -0.95), (-0.55, 0.38), (0.55, 0.38)]],
    "five": [[(0.5, -0.95), (-0.38, -0.95), (-0.45, -0.08)] + _arc(0.0, 0.42, 0.52, 0.52, 230, 495, 16)],
    "six": [_arc(0.0, 0.45, 0.48, 0.48, 0, 360, 24), [(-0.48, 0.45), (-0.35, -0.4), (0.3, -0.95)]],
    "seven": [[(-0.55, -0.95), (0.55, -0.95), (-0.12, 0.95)]],
    "eight": [_arc(0, -0.5, 0.4, 0.42, 0, 360, 24), _arc(0, 0.45, 0.5, 0.5, 0, 360, 24)],
    "nine": [_arc(0.0, -0.45, 0.48, 0.48, 0, 360, 24), [(0.48, -0.45), (0.35, 0.4), (-0.3, 0.95)]],
}


# ----------------------------------------------------------------------------------------------------
@dataclass
class Spec:
    """What to draw. ``kind`` is "shape" (``shape`` in SHAPE_NAMES) or "digit" (``shape`` in DIGITS)."""
    kind: str
    shape: str
    colour: str
    pattern: str = "solid"
    style: str = "photo"
    radius: float = 0.6
    noise: float = 0.02          # std of additive Gaussian pixel noise (0..1 scale)
    clutter: int = 0             # number of distractor blobs behind the object
    extras: dict = field(default_factory=dict)


def _transform(pts, cx, cy, r, rot, sx):
    c, s = math.cos(rot), math.sin(rot)
    out = []
    for x, y in pts:
        x = x * sx
        out.append((cx + r * (c * x - s * y), cy + r * (s * x + c * y)))
    return out


def _object_mask(spec: Spec, rng: np.random.Generator, big: int) -> np.ndarray:
    """Float mask (big x big) in [0, 1] of the object, plus the pattern coordinates frame."""
    half = big / 2.0
    r = spec.radius * half
    rot = math.radians(rng.uniform(-20, 20) if spec.kind == "shape" else rng.uniform(-12, 12))
    sx = rng.uniform(0.9, 1.1)
    slack = max(0.0, half - r * 1.02)
    cx = half + rng.uniform(-slack, slack) * 0.9
    cy = half + rng.uniform(-slack, slack) * 0.9
    m = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(m)
    if spec.kind == "shape":
        for poly, val in SHAPE_GEOMETRY[spec.shape]:
            d.polygon(_transform(poly, cx, cy, r, rot, sx), fill=255 * val)
    elif spec.kind == "digit":
        w = max(2, int(round(0.26 * r)))
        for line in DIGIT_STROKES[spec.shape]:
            pts = _transform(line, cx, cy, r, rot, sx)
            d.line(pts, fill=255, width=w, joint="curve")
            for px, py in (pts[0], pts[-1]):
                d.ellipse([px - w / 2, py - w / 2, px + w / 2, py + w / 2], fill=255)
    else:
        raise ValueError(f"unknown kind {spec.kind!r}")
    if spec.style == "sketch":
        k = 2 * int(round(0.09 * r)) + 1
        k = max(k, 5)
        eroded = m.filter(ImageFilter.MinFilter(k))
        mask = (np.asarray(m, np.float32) - np.asarray(eroded, np.float32)) / 255.0
    else:
        mask = np.asarray(m, np.float32) / 255.0
    return mask, (cx, cy, r, rot)


_GRID_CACHE: dict = {}


def _grid(big: int):
    if big not in _GRID_CACHE:
        yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) + 0.5
        _GRID_CACHE[big] = (xx, yy)
    return _GRID_CACHE[big]


def _pattern(pattern: str, frame, big: int, rng) -> np.ndarray:
    """1 where the object shows its colour, 0 where it shows the pattern's second tone."""
    if pattern == "solid":
        return None
    cx, cy, r, rot = frame
    xx, yy = _grid(big)
    c, s = math.cos(-rot), math.sin(-rot)
    u = c * (xx - cx) - s * (yy - cy)
    v = s * (xx - cx) + c * (yy - cy)
    period = max(0.5 * r, 3.2 * SUPERSAMPLE)
    phase = rng.uniform(0, period)
    if pattern == "striped":
        return ((np.floor((u + phase) / (period / 2)) % 2) == 0).astype(np.float32)
    if pattern == "checkered":
        a = np.floor((u + phase) / (period / 2))
        b = np.floor((v + phase) / (period / 2))
        return (((a + b) % 2) == 0).astype(np.float32)
    if pattern == "dotted":
        du = ((u + phase) % period) - period / 2
        dv = ((v + phase) % period) - period / 2
        return (du * du + dv * dv > (0.3 * period) ** 2).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def _down(a: np.ndarray, size: int) -> np.ndarray:
    """Box-filter a (size*SUPERSAMPLE)^2 array down to size^2."""
    return a.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def _luminance(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _background(spec: Spec, rng, size: int, obj_rgb) -> np.ndarray:
    """Background at output resolution (size, size, 3), float in [0, 1]."""
    if spec.style == "sketch":
        g = rng.uniform(0.86, 1.0)
        return np.full((size, size, 3), g, np.float32) + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    lum = _luminance(obj_rgb)
    for _ in range(20):
        g = rng.uniform(0.08, 0.92)
        if abs(g - lum) > 0.25:
            break
    tint = rng.uniform(-0.07, 0.07, 3)
    amp = rng.uniform(0, 0.12)
    ang = rng.uniform(0, 2 * math.pi)
    xx, yy = _grid(size)
    ramp = amp * (math.cos(ang) * (xx / size - 0.5) + math.sin(ang) * (yy / size - 0.5))
    bg = (np.clip(g + tint, 0, 1).astype(np.float32)[None, None, :] + ramp[..., None]).astype(np.float32)
    if spec.clutter:
        big = size * SUPERSAMPLE
        img = Image.fromarray((np.clip(bg, 0, 1) * 255).astype(np.uint8)).resize((big, big), Image.NEAREST)
        d = ImageDraw.Draw(img)
        for _ in range(spec.clutter):
            level = int(rng.uniform(0, 255))
            fill = tuple(int(np.clip(level + rng.uniform(-25, 25), 0, 255)) for _ in range(3))
            x0, y0 = rng.uniform(-0.1, 1.0, 2) * big
            w, h = rng.uniform(0.1, 0.45, 2) * big
            t = rng.integers(0, 3)
            if t == 0:
                d.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
            elif t == 1:
                d.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
            else:
                d.line([(x0, y0), (x0 + w * rng.choice([-1, 1]), y0 + h)], fill=fill, width=int(big * 0.04))
        arr = np.asarray(img, np.float32) / 255.0
        bg = arr.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return bg


def render(spec: Spec, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render ``spec`` to a uint8 array (size, size, 3). All randomness comes from ``rng``."""
    big = size * SUPERSAMPLE
    base = np.asarray(COLOURS[spec.colour], np.float32)
    rgb = np.clip(base + rng.uniform(-0.05, 0.05, 3).astype(np.float32), 0, 1)
    bg = _background(spec, rng, size, rgb)
    mask, frame = _object_mask(spec, rng, big)
    pat = _pattern(spec.pattern, frame, big, rng) if spec.style != "sketch" else None
    if pat is None:
        w1 = _down(mask, size)[..., None]
        img = w1 * rgb + (1 - w1) * bg
    else:
        second = 0.15 * rgb + 0.85 * (1.0 if _luminance(rgb) < 0.6 else 0.08)
        w1 = _down(mask * pat, size)[..., None]
        w2 = _down(mask * (1 - pat), size)[..., None]
        img = w1 * rgb + w2 * second + (1 - w1 - w2) * bg
    if spec.noise > 0:
        img = img + rng.normal(0, spec.noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
