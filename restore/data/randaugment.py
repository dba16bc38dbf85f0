"""RandAugment(n, m) as Dassl computes it (dassl/data/transforms/randaugment.py, `RandAugment`, the
"randaugment" choice of INPUT.TRANSFORMS), so that the native engine makes the same images from the same
random streams as the Dassl engine and the originals (CoPrompt trains on it).

Per image: `random.choices(OPS, k=n)` (Python's `random`: n draws), then each chosen op with the value
`m / 30 * (max - min) + min` of its range, in order. Further draws: a sign `random.random() > 0.5` (negate)
for Rotate, ShearX/Y and TranslateX/Yabs; two `np.random.uniform(size)` for CutoutAbs (numpy's global
generator; `uniform(low=w)`, i.e. between 1 and w, as Dassl calls it). Magnitudes are absolute: degrees,
pixels (TranslateXabs/Yabs up to 100 px, CutoutAbs up to 40 px: tuned for 224 px images). PIL's defaults
as Dassl relies on them: nearest-neighbour resampling, black fill. SolarizeAdd adds in integers widened to
float by the addition, clips to [0, 255] and truncates to uint8 (Dassl's `astype(np.int)`, `int` since
numpy 1.24 removed the alias), then solarizes at 128.
"""
import random
from typing import Callable, List, Tuple

import numpy as np
import PIL.ImageDraw
import PIL.ImageEnhance
import PIL.ImageOps
from PIL import Image


def _sign(v: float) -> float:
    return -v if random.random() > 0.5 else v


def _affine(img, coefficients):
    return img.transform(img.size, Image.AFFINE, coefficients)


def auto_contrast(img, _):
    return PIL.ImageOps.autocontrast(img)


def equalize(img, _):
    return PIL.ImageOps.equalize(img)


def invert(img, _):
    return PIL.ImageOps.invert(img)


def rotate(img, v):
    return img.rotate(_sign(v))


def posterize(img, v):
    return PIL.ImageOps.posterize(img, int(v))


def solarize(img, v):
    return PIL.ImageOps.solarize(img, v)


def solarize_add(img, addition=0, threshold=128):
    pixels = np.clip(np.array(img).astype(int) + addition, 0, 255).astype(np.uint8)
    return PIL.ImageOps.solarize(Image.fromarray(pixels), threshold)


def color(img, v):
    return PIL.ImageEnhance.Color(img).enhance(v)


def contrast(img, v):
    return PIL.ImageEnhance.Contrast(img).enhance(v)


def brightness(img, v):
    return PIL.ImageEnhance.Brightness(img).enhance(v)


def sharpness(img, v):
    return PIL.ImageEnhance.Sharpness(img).enhance(v)


def shear_x(img, v):
    return _affine(img, (1, _sign(v), 0, 0, 1, 0))


def shear_y(img, v):
    return _affine(img, (1, 0, 0, _sign(v), 1, 0))


def cutout_abs(img, v):
    """A grey (125, 123, 114) square of side v at a random place (Dassl's CutoutAbs)."""
    if v < 0:
        return img
    w, h = img.size
    x0, y0 = np.random.uniform(w), np.random.uniform(h)
    x0, y0 = int(max(0, x0 - v / 2.0)), int(max(0, y0 - v / 2.0))
    box = (x0, y0, min(w, x0 + v), min(h, y0 + v))
    img = img.copy()
    PIL.ImageDraw.Draw(img).rectangle(box, (125, 123, 114))
    return img


def translate_x_abs(img, v):
    return _affine(img, (1, 0, _sign(v), 0, 1, 0))


def translate_y_abs(img, v):
    return _affine(img, (1, 0, 0, 0, 1, _sign(v)))


# Dassl's randaugment_list(): the 16 ops and their value ranges, in its order (the draws index it).
OPS: List[Tuple[Callable, float, float]] = [
    (auto_contrast, 0, 1), (equalize, 0, 1), (invert, 0, 1), (rotate, 0, 30), (posterize, 4, 8),
    (solarize, 0, 256), (solarize_add, 0, 110), (color, 0.1, 1.9), (contrast, 0.1, 1.9),
    (brightness, 0.1, 1.9), (sharpness, 0.1, 1.9), (shear_x, 0.0, 0.3), (shear_y, 0.0, 0.3),
    (cutout_abs, 0, 40), (translate_x_abs, 0.0, 100), (translate_y_abs, 0.0, 100),
]


class RandAugment:
    """n random ops of `OPS` at magnitude m (0..30) per call, on a PIL RGB image."""

    def __init__(self, n: int = 2, m: int = 10):
        if not 0 <= m <= 30:
            raise ValueError(f"INPUT.RANDAUGMENT_M is {m}; it must be between 0 and 30.")
        self.n, self.m = n, m

    def __call__(self, img):
        for op, low, high in random.choices(OPS, k=self.n):
            img = op(img, (self.m / 30) * (high - low) + low)
        return img

    def __repr__(self):
        return f"RandAugment(n={self.n}, m={self.m})"
