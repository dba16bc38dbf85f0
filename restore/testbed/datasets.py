"""The testbed's datasets: class vocabularies, label order, nuisance ranges, split sizes, hand prompts.

Label order is chosen so that CoOp's base/new subsampling (sorted labels, first ceil(n/2) = base) splits
by SHAPE (or digit): every base and every new class set keeps all colours / patterns.

Roles (`role`):
- "base2new": base-to-novel datasets with distinct vocabularies (shapes, patterns, digits).
- "source": the larger source dataset (16 shapes x 8 colours) for cross-dataset / domain generalisation.
- "domain": renderings of the source's classes under a domain shift (test targets for DG).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from . import render as R


@dataclass(frozen=True)
class ClassDef:
    name: str            # class name in words, e.g. "red circle"
    kind: str            # "shape" | "digit"
    shape: str           # shape or digit word
    colour: str = ""     # "" = random nuisance colour
    pattern: str = "solid"


@dataclass(frozen=True)
class TestbedDataset:
    key: str             # config / CLI name, e.g. "shapes"
    registry_name: str   # DATASET.NAME, e.g. "TestbedShapes"
    dataset_dir: str     # folder under DATASET.ROOT
    role: str
    classes: Tuple[ClassDef, ...]
    n_train: int         # images per class and split
    n_val: int
    n_test: int
    template: str        # the dataset's own hand prompt; a domain target's names its shift
    description: str
    style: str = "photo"
    noise: Tuple[float, float] = (0.0, 0.04)
    clutter: Tuple[int, int] = (0, 0)
    radius: Tuple[float, float] = R.DOWNSTREAM_RADIUS

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.registry_name}.json"

    @property
    def zeroshot_template(self) -> str:
        """The prompt ZeroshotCLIP is evaluated with. A domain target takes its source's prompt, as
        CoOp evaluates the ImageNet variants with ImageNet's "a photo of a {}.": no tuned method is told
        the domain, so neither is the zero-shot baseline. Other datasets take their own prompt."""
        return DATASETS["objects"].template if self.role == "domain" else self.template

    @property
    def classnames(self) -> List[str]:
        return [c.name for c in self.classes]

    @property
    def num_base(self) -> int:
        return (len(self.classes) + 1) // 2


def _colour_shape(shapes) -> Tuple[ClassDef, ...]:
    return tuple(ClassDef(f"{c} {s}", "shape", s, colour=c) for s in shapes for c in R.COLOUR_NAMES)


def _pattern_shape(shapes) -> Tuple[ClassDef, ...]:
    return tuple(ClassDef(f"{p} {s}", "shape", s, colour="", pattern=p) for s in shapes for p in R.PATTERNS)


def _colour_digit() -> Tuple[ClassDef, ...]:
    return tuple(ClassDef(f"{c} {d}", "digit", d, colour=c) for d in R.DIGITS for c in R.COLOUR_NAMES)


_SOURCE = _colour_shape(R.SHAPE_NAMES)
_SRC_DESC = "16 shapes x 8 colours, large objects"

DATASETS: Dict[str, TestbedDataset] = {d.key: d for d in [
    TestbedDataset("shapes", "TestbedShapes", "testbed_shapes", "base2new", _colour_shape(R.SHAPES_A),
                   20, 5, 100, "a picture of a large {}.",
                   "colour x shape (8 x 8), large solid objects; base = circle/square/triangle/star"),
    TestbedDataset("patterns", "TestbedPatterns", "testbed_patterns", "base2new", _pattern_shape(R.SHAPES_B),
                   20, 5, 100, "a picture of a large {}.",
                   "fill pattern x shape (4 x 8), random colour; base = crescent/ring/arrow/semicircle"),
    TestbedDataset("digits", "TestbedDigits", "testbed_digits", "base2new", _colour_digit(),
                   20, 5, 75, "a picture of a large {}.",
                   "colour x digit (8 x 10), stroke digits; base = zero..four"),
    TestbedDataset("objects", "TestbedObjects", "testbed_objects", "source", _SOURCE,
                   20, 5, 25, "a picture of a large {}.", _SRC_DESC),
    TestbedDataset("objects_v2", "TestbedObjectsV2", "testbed_objects_v2", "domain", _SOURCE,
                   4, 2, 25, "a picture of a large {}.", "a fresh sample of the source distribution (no shift)"),
    TestbedDataset("objects_sketch", "TestbedObjectsSketch", "testbed_objects_sketch", "domain", _SOURCE,
                   4, 2, 25, "a sketch of a large {}.", "outline sketches on near-white paper",
                   style="sketch", noise=(0.0, 0.03)),
    TestbedDataset("objects_noise", "TestbedObjectsNoise", "testbed_objects_noise", "domain", _SOURCE,
                   4, 2, 25, "a noisy photo of a large {}.",
                   "heavy Gaussian pixel noise (std 0.25-0.35; pretraining saw 0.08-0.18)",
                   style="noisy", noise=(0.25, 0.35)),
    TestbedDataset("objects_clutter", "TestbedObjectsClutter", "testbed_objects_clutter", "domain", _SOURCE,
                   4, 2, 25, "a cluttered photo of a large {}.",
                   "8-12 distractor blobs and bars behind the object (pretraining saw 2-5)",
                   style="cluttered", clutter=(8, 12)),
]}

SPLITS = ("train", "val", "test")


def get(name: str) -> TestbedDataset:
    """A dataset by key ("shapes"), registry name ("TestbedShapes") or folder ("testbed_shapes")."""
    for d in DATASETS.values():
        if name in (d.key, d.registry_name, d.dataset_dir):
            return d
    raise KeyError(f"unknown testbed dataset {name!r}; known: {', '.join(DATASETS)}")


def _stable(s: str) -> int:
    return zlib.crc32(s.encode("utf-8"))


def image_rng(seed: int, ds: TestbedDataset, split: str, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _stable(ds.key), SPLITS.index(split), int(label), int(index)])


def sample_spec(ds: TestbedDataset, cls: ClassDef, rng: np.random.Generator) -> R.Spec:
    colour = cls.colour or R.COLOUR_NAMES[int(rng.integers(len(R.COLOUR_NAMES)))]
    return R.Spec(
        kind=cls.kind, shape=cls.shape, colour=colour, pattern=cls.pattern, style=ds.style,
        radius=float(rng.uniform(*ds.radius)), noise=float(rng.uniform(*ds.noise)),
        clutter=int(rng.integers(ds.clutter[0], ds.clutter[1] + 1)) if ds.clutter[1] else 0)


def count(ds: TestbedDataset, split: str) -> int:
    return {"train": ds.n_train, "val": ds.n_val, "test": ds.n_test}[split]


def render_image(ds: TestbedDataset, split: str, label: int, index: int, seed: int = 0) -> np.ndarray:
    """The uint8 (32, 32, 3) image number ``index`` of class ``label`` in ``split``."""
    rng = image_rng(seed, ds, split, label, index)
    return R.render(sample_spec(ds, ds.classes[label], rng), rng)


def _render_class(args):
    key, split, y, n, seed = args
    ds = get(key)
    return np.stack([render_image(ds, split, y, i, seed) for i in range(n)])


def render_split(ds: TestbedDataset, split: str, seed: int = 0, per_class: int | None = None,
                 labels=None, processes: int = 1):
    """All images of a split as (uint8 array N x 32 x 32 x 3, int64 labels), in file order."""
    n = count(ds, split) if per_class is None else per_class
    labels = list(range(len(ds.classes)) if labels is None else labels)
    if processes > 1:
        import multiprocessing as mp
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(processes) as pool:
            parts = pool.map(_render_class, [(ds.key, split, y, n, seed) for y in labels])
        return np.concatenate(parts), np.repeat(np.asarray(labels, np.int64), n)
    imgs, ys = [], []
    for y in labels:
        for i in range(n):
            imgs.append(render_image(ds, split, y, i, seed))
            ys.append(y)
    return np.stack(imgs), np.asarray(ys, np.int64)
