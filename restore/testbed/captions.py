"""Pretraining captions: what the tiny CLIP saw. Every testbed class name occurs in them, in varied
templates, with style words tied to the rendering ("a sketch of ...", "a noisy photo of ...") and size
words tied to the object's radius ("small" / "large"), so that hand prompts can name a shift."""
from __future__ import annotations

import numpy as np

from . import render as R

TEMPLATES = {
    "photo": ["a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {}.", "a rendering of a {}.",
              "a photo of the {}.", "a {} in the picture.", "a good photo of a {}."],
    "sketch": ["a sketch of a {}.", "a drawing of a {}.", "an outline of a {}.", "a sketch of the {}."],
    "noisy": ["a noisy photo of a {}.", "a noisy picture of a {}.", "a noisy image of a {}."],
    "cluttered": ["a cluttered photo of a {}.", "a busy picture of a {}.", "a cluttered image of a {}."],
}
STYLE_PROBS = {"photo": 0.79, "sketch": 0.07, "noisy": 0.07, "cluttered": 0.07}
DIGIT_PROB = 0.28
PATTERN_PROBS = {"solid": 0.55, "striped": 0.15, "dotted": 0.15, "checkered": 0.15}


def sample_concept(rng: np.random.Generator) -> R.Spec:
    """One pretraining image description (photo-like objects of radius 0.25-0.58, some styled)."""
    styles = list(STYLE_PROBS)
    style = styles[rng.choice(len(styles), p=list(STYLE_PROBS.values()))]
    colour = R.COLOUR_NAMES[int(rng.integers(len(R.COLOUR_NAMES)))]
    if rng.random() < DIGIT_PROB:
        kind, shape, pattern = "digit", R.DIGITS[int(rng.integers(len(R.DIGITS)))], "solid"
    else:
        kind, shape = "shape", R.SHAPE_NAMES[int(rng.integers(len(R.SHAPE_NAMES)))]
        pats = list(PATTERN_PROBS)
        pattern = pats[rng.choice(len(pats), p=list(PATTERN_PROBS.values()))]
    noise = float(rng.uniform(0.08, 0.18)) if style == "noisy" else float(rng.uniform(0.0, 0.04))
    clutter = int(rng.integers(2, 6)) if style == "cluttered" else 0
    return R.Spec(kind=kind, shape=shape, colour=colour, pattern=pattern, style=style,
                  radius=float(rng.uniform(*R.PRETRAIN_RADIUS)), noise=noise, clutter=clutter)


def caption(spec: R.Spec, rng: np.random.Generator) -> str:
    words = []
    if spec.radius < R.SMALL_BELOW and rng.random() < 0.6:
        words.append("small")
    elif spec.radius > R.LARGE_ABOVE and rng.random() < 0.6:
        words.append("large")
    if spec.kind == "shape" and spec.style != "sketch":
        if spec.pattern != "solid":
            if rng.random() < 0.85:
                words.append(spec.pattern)
        elif rng.random() < 0.25:
            words.append("solid")
    if rng.random() < 0.85:
        words.append(spec.colour)
    words.append(spec.shape)
    tpl = TEMPLATES[spec.style]
    tpl = tpl[int(rng.integers(len(tpl)))]
    while n_tokens(tpl.format(" ".join(words))) > CONTEXT_LENGTH - 2 and len(words) > 1:
        words.pop(0)  # too long for the 16-token context: drop the leading adjective (size, then pattern)
    return tpl.format(" ".join(words))


def class_descriptions(classname: str) -> list:
    """Descriptions of a class in the captions' words: every template of every style, in table order (18,
    the same number for every class). CoPrompt's text targets on the testbed, which has no description file."""
    return [t.format(classname) for ts in TEMPLATES.values() for t in ts]


CONTEXT_LENGTH = 16
_TOKENIZER = None


def n_tokens(text: str) -> int:
    """BPE tokens of ``text`` (without SOT/EOT)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from clip.simple_tokenizer import SimpleTokenizer
        _TOKENIZER = SimpleTokenizer()
    return len(_TOKENIZER.encode(text))


def all_words() -> list:
    """Every word any caption can contain (for the set of trained token-embedding rows)."""
    texts = [t for ts in TEMPLATES.values() for t in ts]
    vocab = ["small", "large", "solid"] + R.PATTERNS + R.COLOUR_NAMES + R.SHAPE_NAMES + R.DIGITS
    return texts + vocab
