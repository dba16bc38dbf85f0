"""Helpers of the engine / CLI / parser tests (no tests here): a tiny fake OxfordPets in CoOp's on-disk
format (images under oxford_pets/images + split_zhou_OxfordPets.json), so that the real readers, few-shot
sampling and base/new subsampling run, and small configs for the random tiny CLIP (32 px input)."""
import json
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CLASSNAMES = ["abyssinian", "beagle", "boxer", "chihuahua", "persian", "pug"]



def tiny_opts(trainer):
    """Options that make the method small enough for the 3-layer tiny CLIP and fast: its spec's `tiny`."""
    from restore.methods import registry
    return list(registry.get(trainer).tiny)


def trainers():
    """Every registered method."""
    from restore.methods import registry
    return registry.names()


# Common options: tiny random CLIP, 32 px, small batches, CPU, no workers.
BASE_OPTS = [
    "MODEL.BACKBONE.NAME", "tiny-random",
    "INPUT.SIZE", "(32, 32)",
    "INPUT.INTERPOLATION", "bicubic",
    "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
    "INPUT.PIXEL_MEAN", "[0.48145466, 0.4578275, 0.40821073]",
    "INPUT.PIXEL_STD", "[0.26862954, 0.26130258, 0.27577711]",
    "DATALOADER.NUM_WORKERS", 0,
    "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
    "DATALOADER.TEST.BATCH_SIZE", 8,
    "OPTIM.NAME", "sgd",
    "OPTIM.LR", 0.01,
    "OPTIM.MAX_EPOCH", 1,
    "OPTIM.LR_SCHEDULER", "cosine",
    "OPTIM.WARMUP_EPOCH", 1,
    "OPTIM.WARMUP_TYPE", "constant",
    "OPTIM.WARMUP_CONS_LR", 1e-5,
    "TRAIN.PRINT_FREQ", 2,
    "USE_CUDA", False,
]


def write_image(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(40, 36, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="PNG")


def make_oxford_pets(root, n_train=6, n_val=2, n_test=3, classnames=CLASSNAMES):
    """Write a fake OxfordPets under `root`; returns the dataset folder."""
    ddir = os.path.join(root, "oxford_pets")
    idir = os.path.join(ddir, "images")
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(classnames):
        i = 0
        for part, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            for _ in range(n):
                i += 1
                rel = f"{name}_{i}.png"
                write_image(os.path.join(idir, rel), seed=label * 1000 + i)
                split[part].append([rel, label, name])
    with open(os.path.join(ddir, "split_zhou_OxfordPets.json"), "w") as f:
        json.dump(split, f, indent=4)
    open(os.path.join(ddir, "SUBSET"), "w").close()  # a few of the 37 classes, on purpose
    return ddir


def make_cfg(trainer, root, output_dir, *opts):
    """The engine's config for `trainer` on the fake OxfordPets (all the yaml-level keys as opts)."""
    import restore
    cfg = restore.get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", "OxfordPets", "DATASET.ROOT", str(root),
                         "OUTPUT_DIR", str(output_dir), "TRAINER.NAME", trainer]
                        + BASE_OPTS + tiny_opts(trainer) + list(opts))
    return cfg


def cli_opts(trainer, *extra):
    """BASE_OPTS + tiny_opts as strings for train.py's trailing KEY VALUE pairs."""
    return [str(x) for x in BASE_OPTS + tiny_opts(trainer) + list(extra)]


def script_train_calls(tmp_path, script, *args, unset=(), **env):
    """The train.py argument lists `bash scripts/<script>.sh ARGS` runs, from a stand-in PYTHON that records
    them and answers --check-finished with "not finished" (3); the scripts' name and data checks
    (`python -m restore.cli ...`) run in the real interpreter. `unset`: environment variables removed
    first (besides DATA, OUTPUT and SHOTS), `env`: those set."""
    import subprocess
    fake, calls = tmp_path / "python", tmp_path / "calls.txt"
    fake.write_text(f'#!/bin/bash\n[ "$1 $2" = "-m restore.cli" ] && exec {sys.executable} "$@"\n'
                    'printf "%s\\n" "$*" >> "$CALLS"\n'
                    'for a in "$@"; do [ "$a" = --check-finished ] && exit 3; done; exit 0\n')
    fake.chmod(0o755)
    calls.unlink(missing_ok=True)
    full = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS", *unset)}
    full.update(PYTHON=str(fake), CALLS=str(calls), DATA=str(tmp_path), **env)
    proc = subprocess.run(["bash", f"scripts/{script}.sh", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line.split() for line in calls.read_text().splitlines() if "--check-finished" not in line]


def trailing_pairs(argv):
    """{KEY: VALUE} of a train.py argument list's trailing KEY VALUE pairs."""
    import re
    i = next(j for j, a in enumerate(argv) if re.match(r"^[A-Z][A-Z0-9_]*\.[A-Z]", a))
    return dict(zip(argv[i::2], argv[i + 1::2]))
