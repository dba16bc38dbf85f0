"""Activation memory of one training step of every registered method at ImageNet scale, and the original code's.

    python benchmarks/memory.py                          # the whole table: CPU, no GPU needed
    python benchmarks/memory.py --methods CoCoOp --classes 1000 --precisions fp16 --fit ""   # counted at 1000
    python benchmarks/memory.py --check 8                # first: the count against a real step, at 8 classes
    python benchmarks/memory.py --size tiny --classes 3,5 --fit "" --variants-at 3 --check 2   # the CI's form

What is counted (restore.analysis.activation_memory, the measure of benchmarks/step_time.py): the unique
storages autograd saves for the backward pass in one training step (the method's `loss` on one batch, in
training mode), the model's parameters and buffers (the frozen CLIP, the prompts) excluded: what a step holds
on top of the weights at its peak, up to the temporaries of one operation. The saved tensors are dropped as
they are counted, so the forward pass runs at inference memory and steps that need far more memory than this
machine has are counted exactly. `--check N` first counts every row at N classes both ways, the second time
keeping the saved tensors and running the real backward pass, and stops on any difference.

By default (`--fit 16,24,32`) each row is counted at 16, 24 and 32 classes and its cells at larger class counts
are extrapolated: the count is affine in the class count (the text side runs C copies of one prompt; nothing else
depends on C, and `subsets` traces a fixed 8 classes once there are more), and the three counts are checked to
lie exactly on one line (equal whole bytes per class) before it is used. tests/test_activation_memory.py checks
that the line gives the direct count to the byte for every registered method; `--fit ""` counts at each class
count directly.

Settings of each row:
- every registered method with trainable parameters, on a random CLIP of ViT-B/16's shapes (224 px, 12 + 12
  layers, 77-token context; the count does not depend on the weights);
- its base-to-novel config (the yaml's values; the METHOD_OPTS a script adds are not applied): the ViT-B/16 CFG of
  the scripts/*/ script that runs it, else the shortest-named ViT-B/16
  config of its config folder that is not a testbed, cross-dataset or few-shot one (the table names it); that
  config's batch size and values, with the ImageNet dataset config (and the method's overrides for ImageNet);
- RESTORE's trace options (methods with TRAINER.RESTORE and FS.DEFINITION paper) as extra rows at the
  class count of --variants-at (ImageNet base-to-novel: 500): `recompute`, `no-grad`, `subsets`
  (FS.VISION_IMAGES batch/2, FS.TEXT_CLASSES 8), `no-grad+subsets`, as benchmarks/step_time.py defines them;
- class names: C names of NAME_TOKENS (12) BPE tokens each, the length of the longest ImageNet class name
  ("Mexican hairless dog (xoloitzcuintli)" in CLIP's ImageNet names, which CoOp's classnames.txt lists; it is
  among the 500 base classes). The text encoder runs every class prompt to the last EOT of all of them, so
  this gives a real ImageNet run's text length; `--classnames classnames.txt` uses the real file (the first
  C names: the base classes are the first half);
- precision fp32 (the CPU's) and fp16 (PREC fp16 as on a GPU: the frozen CLIP's weights in fp16,
  restore.engine.precision; the CPU runs the same operations in fp16).

Columns: `text tokens`, the positions the prompted text encoder runs; `ours`, the activation memory; `original`,
the same count for the original code (benchmarks/memory_originals.json: the original trainer's own
forward_backward in the real Dassl on the CPU, same config values, class count and precision, 77 text tokens
as the originals always run; each cell there names the command that measured it, with a harness that is not
part of this repository). A cell marked (e) was extrapolated along the class count from the original's counts
at a few small class counts: they lie exactly on one line (every class adds the same bytes: its prompt's
activations), and where both exist the line gives the measured count to the byte; `weights`, the model's
parameters and buffers as the run holds them (fp16: the CLIP in fp16, the method's own tensors in fp32) plus a
gradient and an SGD momentum buffer per trainable parameter; `total`, activations + weights: what a GPU holds at the step's peak, before the CUDA context
(~0.5 GB) and the allocator's slack.
"""
import argparse
import contextlib
import copy
import functools
import io
import itertools
import json
import os
import string
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # train.py (the run's config, as train.py builds it)

import restore  # noqa: E402
import restore.methods.promptsrc.model as promptsrc_module  # noqa: E402
from restore.adapters import input_resolution  # noqa: E402
from restore.analysis.activation_memory import SavedTensors  # noqa: E402
from restore.engine.precision import frozen_weights_to_fp16  # noqa: E402
from restore.methods import registry  # noqa: E402
from restore.methods.restore import RESTORE  # noqa: E402
from step_time import VITB16, variants  # noqa: E402  (benchmarks/ is the script's directory)

ORIGINALS = os.path.join(REPO, "benchmarks", "memory_originals.json")
DATASET_CONFIG = os.path.join(REPO, "configs", "datasets", "imagenet.yaml")
SIZES = {"vitb16": VITB16, "tiny": {}}  # tiny: restore.backbone.tiny_clip_dims(), the tests' CLIP
NAME_TOKENS = 12  # BPE tokens of the longest ImageNet class name
# Inputs a user supplies for a real run, stood in for by ones that cost a step the same: CoPrompt's class
# descriptions are encoded once at build (a buffer, counted with the weights) and a step reads one row.
STAND_INS = {"TRAINER.COPROMPT.DESCRIPTIONS": "captions"}
MiB = 2 ** 20


# ----------------------------------------------------------------------------------------- settings
def script_config(name):
    """The ViT-B/16 CFG of the scripts/*/ script that sets TRAINER=<name> (its first `CFG=vit_b16...`), or None."""
    folder = os.path.join(REPO, "scripts")
    for script in sorted(os.listdir(folder)):
        for file in ("method.sh", "base2new_train.sh"):
            path = os.path.join(folder, script, file)
            if not os.path.exists(path):
                continue
            lines = [line.strip() for line in open(path)]
            if f"TRAINER={name}" in lines:
                cfg = next((line[4:] for line in lines if line.startswith("CFG=vit_b16")), None)
                if cfg:
                    return cfg
    return None


def base_to_novel_config(name):
    """The yaml file of `name`'s base-to-novel run (see the module docstring), or None."""
    cfg = script_config(name) or registry.get(name).config("base2new")  # a script's ViT-B/16 one, else the spec's
    if cfg:
        return registry.config_file(name, cfg)
    folder = config_folder(name)
    skip = ("testbed", "cross", "few_shot")
    found = sorted((f for f in os.listdir(folder) if f.startswith("vit_b16") and f.endswith(".yaml")
                    and not any(s in f for s in skip)), key=lambda f: (len(f), f)) \
        if os.path.isdir(folder) else []
    return os.path.join(folder, found[0]) if found else None


def config_folder(name):
    return os.path.dirname(registry.config_file(name, "testbed"))


@functools.lru_cache(maxsize=None)
def run_cfg(name, config, overrides, size):
    """The config train.py would run: the method's yaml, the ImageNet dataset config, `overrides`
    ((key, value) pairs)."""
    import train
    opts = []
    paths = {node.path for node in registry.get(name).nodes}
    for key, value in STAND_INS.items():
        if key.rsplit(".", 1)[0] in paths:
            opts += [key, value]
    for key, value in overrides:
        opts += [key, str(value)]
    if size == "tiny":  # fitted to the tests' CLIP: its input size, the method's small depths
        opts += ["INPUT.SIZE", "(32, 32)"] + [str(v) for v in registry.get(name).tiny]
    argv = ["--trainer", name, "--config-file", config, "--dataset-config-file", DATASET_CONFIG,
            "USE_CUDA", "False"] + opts
    with contextlib.redirect_stdout(io.StringIO()):
        return train.setup_cfg(train.build_parser().parse_args(argv))


def rows(methods, size):
    """[(row name, method, config file, TRAINER.RESTORE.FS overrides)], RESTORE's trace options after
    their method."""
    out = []
    for name in methods:
        config = base_to_novel_config(name)
        if config is None:
            print(f"Note: {name} has no ViT-B/16 base-to-novel config (scripts/*/ CFG or "
                  f"{config_folder(name)}/vit_b16*.yaml): left out.")
            continue
        out.append((name, name, config, {}))
        cfg = run_cfg(name, config, (), size)
        if RESTORE in registry.get(name).nodes and cfg.TRAINER.RESTORE.FS.DEFINITION == "paper":
            out += [(f"{name} {v}", name, config, o)
                    for v, o in variants(cfg.DATALOADER.TRAIN_X.BATCH_SIZE).items() if v != "exact"]
    return out


def class_names(n, classnames_file=None):
    """n class names: the first n of CoOp's classnames.txt, or names of NAME_TOKENS one-letter tokens."""
    if classnames_file:
        from restore.data.imagenet import read_classnames
        names = list(read_classnames(classnames_file).values())
        if len(names) < n:
            raise SystemExit(f"--classnames {classnames_file}: {len(names)} names, fewer than {n}")
        return names[:n]
    words = itertools.product(string.ascii_lowercase, repeat=NAME_TOKENS)
    return [" ".join(w) for w, _ in zip(words, range(n))]


# -------------------------------------------------------------------------------------- measuring
class Cell:
    """One measurement: activation bytes, weights and text length of `method` at `classes`."""

    def __init__(self, model, batch, keep):
        model.train()
        size = input_resolution(model.clip)
        g = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, size, size, generator=g)
        labels = torch.randint(0, len(model.classnames), (batch,), generator=g)
        torch.manual_seed(0)
        with SavedTensors(model, keep=keep) as saved:
            loss, _ = model.loss({"img": images, "label": labels})
        if keep:
            loss.backward()
        del loss
        self.activations, self.storages = saved.nbytes, saved.count
        tensors = {t.untyped_storage()._cdata: t for t in [*model.parameters(), *model.buffers()]}
        trainable = sum(p.nbytes for p in model.trainable_parameters())
        self.weights = sum(t.untyped_storage().nbytes() for t in tensors.values()) + 2 * trainable
        self.text_tokens = int(model.eot.max()) + 1 if hasattr(model, "eot") else None


def affine(points, what):
    """{classes: bytes} at three or more class counts -> (bytes at 0 classes, bytes per class), checked exact:
    every step between the counts costs the same whole number of bytes per class. SystemExit otherwise."""
    (c0, b0), *rest = sorted(points.items())
    steps = {(b - b0) / (c - c0) for c, b in rest}
    if len(rest) < 2 or len(steps) != 1 or not steps.pop().is_integer():
        raise SystemExit(f"{what}: not affine in the class count: {points}")
    step = (rest[0][1] - b0) // (rest[0][0] - c0)
    return b0 - step * c0, step


class Fitted:
    """A Cell at `classes` from Cells at the class counts of `cells` ({classes: Cell}), on the affine law."""

    def __init__(self, cells, classes, what):
        for field in ("activations", "weights"):
            base, step = affine({c: getattr(cell, field) for c, cell in cells.items()}, f"{what} {field}")
            setattr(self, field, base + step * classes)
        tokens = {cell.text_tokens for cell in cells.values()}
        if len(tokens) != 1:
            raise SystemExit(f"{what}: the text length depends on the class count: {tokens}")
        self.text_tokens = tokens.pop()


def build(name, config, fs, precision, classes, clip_model, args):
    cfg = run_cfg(name, config, tuple((f"TRAINER.RESTORE.FS.{k}", v) for k, v in fs.items()), args.size)
    torch.manual_seed(0)
    model = restore.build_model(cfg, class_names(classes, args.classnames), copy.deepcopy(clip_model))
    if precision == "fp16":
        frozen_weights_to_fp16(model)
    return model, cfg.DATALOADER.TRAIN_X.BATCH_SIZE


def originals():
    if not os.path.exists(ORIGINALS):
        return {}
    with open(ORIGINALS) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def original_cell(original, batch):
    """(the original's bytes to compare with ours, or None; the mark after them) of a memory_originals.json
    cell: only a count at our batch size is compared; one at another batch is named, not compared."""
    theirs = original.get("activation_bytes")
    if not theirs:
        return None, ""
    if original.get("batch") != batch:
        return None, f"(batch {original.get('batch')}: not compared)"
    return theirs, " (e)" if original.get("how") != "measured" else ""


def fmt(value, unit=MiB, digits=1):
    return "" if value is None else f"{value / unit:,.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="", help="comma-separated registered methods (default: all)")
    parser.add_argument("--classes", default="500,1000", help="class counts (comma-separated)")
    parser.add_argument("--precisions", default="fp32,fp16", help="fp32 and/or fp16 (PREC fp16, as on a GPU)")
    parser.add_argument("--variants-at", type=int, default=500,
                        help="the class count of the rows of RESTORE's trace options (0: none)")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="first count every row at N classes also with a real step (keep=True) and "
                             "stop on a difference")
    parser.add_argument("--fit", default="16,24,32", metavar="COUNTS",
                        help="count each row at these class counts and extrapolate along the class count, "
                             "checked exact (default 16,24,32; '' counts at --classes directly)")
    parser.add_argument("--classnames", default="", help="CoOp's ImageNet classnames.txt (default: names of "
                                                         f"{NAME_TOKENS} tokens)")
    parser.add_argument("--size", default="vitb16", choices=SIZES, help="the CLIP's shapes (tiny: the tests')")
    args = parser.parse_args(argv)
    known = registry.names()
    methods = [m for m in args.methods.split(",") if m] or known
    unknown = [m for m in methods if m not in known]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; registered: {', '.join(known)}")
    precisions = [p for p in args.precisions.split(",") if p]
    if any(p not in ("fp32", "fp16") for p in precisions):
        parser.error(f"--precisions: {args.precisions!r}; choose from fp32, fp16")
    counts = [int(c) for c in args.classes.split(",") if c]
    args.fit = [int(c) for c in args.fit.split(",") if c]
    if args.fit and (len(args.fit) < 3 or min(args.fit) <= 8):
        parser.error(f"--fit {args.fit}: three or more class counts above 8 (the `subsets` rows trace 8 "
                     "classes once there are more)")

    start = time.time()
    promptsrc_module.PROMPTSRC_TEMPLATES = ["a photo of a {}."]  # frozen targets: a build-time cost only
    clip_model = restore.tiny_clip(seed=0, **SIZES[args.size])
    print(f"torch {torch.__version__}, CPU, threads {torch.get_num_threads()}; CLIP: {args.size} shapes "
          f"(random), {input_resolution(clip_model)} px; class names: "
          f"{args.classnames or f'{NAME_TOKENS} tokens each'}; original: "
          f"{os.path.relpath(ORIGINALS, REPO) if args.size == 'vitb16' else 'none at this size'}")
    table = rows(methods, args.size)
    if args.check:
        check(table, args, clip_model)
    orig = originals() if args.size == "vitb16" else {}
    fitted = {}
    print("ours: " + (f"counted at {', '.join(map(str, args.fit))} classes and extrapolated along the class "
                      "count (the per-class steps checked equal)" if args.fit else "counted at each class count"))
    print("| method | config | batch | precision | classes | text tokens | ours (MiB) | original (MiB) | "
          "ours / original | weights (MiB) | total (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for precision in precisions:
        for row, name, config, fs in table:
            for classes in (counts if not fs else [c for c in counts if c == args.variants_at]):
                cell, batch = measure(name, config, fs, precision, classes, clip_model, args, fitted)
                if cell is None:
                    if precision == precisions[0] and classes == counts[0]:
                        print(f"| {row} | {os.path.basename(config)[:-5]} | | | | | (nothing to train: "
                              "no training step) | | | | |")
                    break
                original = orig.get(row, {}).get("cells", {}).get(f"{classes}/{precision}", {})
                theirs, mark = original_cell(original, batch)
                ratio = f"{cell.activations / theirs:.2f}" if theirs else ""
                print(f"| {row} | {os.path.basename(config)[:-5]} | {batch} | {precision} | {classes} | "
                      f"{cell.text_tokens or ''} | {fmt(cell.activations)} | {fmt(theirs)}{mark} | {ratio} | "
                      f"{fmt(cell.weights)} | {fmt(cell.activations + cell.weights, 2 ** 30, 2)} |",
                      flush=True)
    if orig:
        print("(e): the original's count extrapolated along the class count from its counts at a few small ones, "
              "which lie exactly on one line (memory_originals.json: how, fitted); the other originals' cells "
              "were measured at that class count.")
    print(f"({time.time() - start:.0f} s)")


def measure(name, config, fs, precision, classes, clip_model, args, fitted):
    """(Cell or Fitted, batch size) of one table cell; (None, None) for a method with nothing to train.
    With --fit the counts at the fit's class counts are kept in `fitted` for the row's other cells."""
    if not args.fit or classes <= min(args.fit):  # the law is checked from the fit's counts up
        model, batch = build(name, config, fs, precision, classes, clip_model, args)
        return (Cell(model, batch, keep=False) if model.trainable_parameters() else None), batch
    key = (name, config, tuple(sorted(fs.items())), precision)
    if key not in fitted:
        cells = {}
        for c in args.fit:
            model, batch = build(name, config, fs, precision, c, clip_model, args)
            if not model.trainable_parameters():
                return None, None
            cells[c] = Cell(model, batch, keep=False)
            del model
        fitted[key] = cells, batch
    cells, batch = fitted[key]
    return Fitted(cells, classes, f"{name} {fs or ''} {precision}"), batch


def check(table, args, clip_model):
    """Every row at args.check classes: the count without keeping against a real step (keep=True)."""
    for row, name, config, fs in table:
        model, batch = build(name, config, fs, "fp32", args.check, clip_model, args)
        if not model.trainable_parameters():
            continue
        dropped, kept = Cell(model, batch, keep=False), Cell(model, batch, keep=True)
        same = (dropped.activations, dropped.storages) == (kept.activations, kept.storages)
        print(f"check {row} at {args.check} classes: {dropped.activations} bytes in {dropped.storages} storages "
              f"counted, {kept.activations} in {kept.storages} kept by a real step: "
              f"{'equal' if same else 'DIFFERENT'}", flush=True)
        if not same:
            raise SystemExit(f"{row}: the count without keeping differs from the real step's")


if __name__ == "__main__":
    main()
