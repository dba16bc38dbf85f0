"""Check a dataset folder against DATASETS.md before a run finds out an hour in.

    python -m restore.data.check oxford_pets --root /path/to/datasets [--max-images N]

DATASET is a config name (configs/datasets/<name>.yaml, e.g. oxford_pets) or a DATASET.NAME (OxfordPets).
It reads the dataset exactly as a run does (folder layout, split file or its generation, class-name files,
and what every run checks first: each image listed once, every class named once, the published class
count), then checks what a run would only meet later: every class appears in train and test, and every
listed image opens. Each problem is printed with its fix;
the exit status is 0 when there is none, 1 otherwise. A missing split file that can be generated from the
annotation files is generated and saved, as a run would do, and reported as not the official split.
"""
import argparse
import os
import random
import sys

from restore.cli import ArgumentParser, check_data_root, check_dataset
from restore.errors import UserError


def dataset_name(name):
    """The DATASET.NAME of a config name or DATASET.NAME; UserError otherwise (restore.cli.check_dataset:
    the message every entry point gives, naming the valid ones)."""
    return check_dataset(name, accept="either")


def check_arguments(name, root, source="--root"):
    """The DATASET.NAME of `name`, when `root` (given as `source`: --root, or DATA, its default) may hold
    the data; UserError otherwise, in one message: an unknown dataset, no folder given, the repository's
    datasets/ package (restore.cli.check_data_root)."""
    name = dataset_name(name)
    if not root:
        raise UserError("No data folder given: pass --root /path/to/datasets or set DATA to it (the folder that "
                        "holds one folder per dataset, DATASETS.md; a testbed dataset is generated there).")
    check_data_root(root, source)
    return name


def split_status(name, cfg):
    """(split file path, whether it exists) for a dataset read from a split_zhou file (generated when
    absent), or (None, None) for the others: the ImageNet family and FGVCAircraft read lists of their own,
    and a testbed dataset renders itself, split file included."""
    from restore.data import DATASETS, SplitJSONDataset, resolve_dataset_dir
    from restore.data.testbed import TestbedDataset
    cls = DATASETS[name]
    if (not issubclass(cls, SplitJSONDataset) or issubclass(cls, TestbedDataset)
            or cls.load_split is not SplitJSONDataset.load_split):
        return None, None
    try:
        folder = resolve_dataset_dir(cfg, name, cls.dataset_dir, cls.expected_tree())
    except ValueError:
        return None, None  # the build reports the missing folder
    path = os.path.join(folder, cls.split_file_name())
    return path, os.path.isfile(path)


def class_problems(name, dataset):
    """Problems with labels across train, val and test that a run meets only later (what a run
    refuses at once, the reader's `check_complete`, has stopped the build before)."""
    problems = []
    parts = {"train": dataset.train_x, "val": dataset.val or [], "test": dataset.test}
    labels = sorted({item.label for items in parts.values() for item in items})
    if labels != list(range(len(labels))):
        missing = sorted(set(range(max(labels) + 1)) - set(labels)) if labels else []
        problems.append(f"labels are not 0..{len(labels) - 1}: missing {missing[:10]}; number the classes "
                        f"0, 1, ... without gaps.")
    for part in ("train", "test"):
        present = {item.label for item in parts[part]}
        absent = [label for label in labels if label not in present]
        if absent:
            problems.append(f"{len(absent)} class(es) have no {part} image (labels {absent[:10]}): add "
                            f"{part} entries for them.")
    return problems


def image_problems(dataset, max_images=0, seed=0):
    """Images that do not open, as `read_image` opens them in a run; at most `max_images` (0 = all) are
    tried, a uniform random sample when there are more."""
    from restore.data import DatasetError, read_image
    paths = sorted({item.impath for part in (dataset.train_x, dataset.val or [], dataset.test) for item in part})
    if max_images and len(paths) > max_images:
        paths = sorted(random.Random(seed).sample(paths, max_images))
    bad = []
    for path in paths:
        try:
            read_image(path)
        except DatasetError as e:
            bad.append(str(e).splitlines()[0])
    problems = []
    if bad:
        problems.append(f"{len(bad)} of {len(paths)} images checked cannot be read; replace them with good "
                        f"copies (re-extract the archive):\n    " + "\n    ".join(bad[:10]) +
                        ("\n    ..." if len(bad) > 10 else ""))
    return problems, len(paths)


def check(name, root, max_images=0, out=print):
    """Check dataset `name` under `root`; print the findings with `out`; return the list of problems."""
    from restore.config import get_cfg_default
    from restore.data import DatasetError, build_dataset
    try:
        name = check_arguments(name, root)
    except UserError as e:
        out(f"PROBLEM: {e}")
        return [str(e)]
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME = root, name
    cfg.DATASET.NUM_SHOTS = -1  # every image; no few-shot cache is written
    split_path, official = split_status(name, cfg)
    out(f"Checking {name} under {os.path.abspath(os.path.expanduser(root))}")
    try:
        dataset = build_dataset(cfg)
    except DatasetError as e:
        out(f"PROBLEM: {e}")
        return [str(e)]
    if split_path is not None:
        if official:
            out(f"split file: {split_path}")
        else:
            out(f"NOTE: {os.path.basename(split_path)} was missing and has been GENERATED from the annotation "
                f"files (saved to {split_path}). It is not the official split: numbers on it are not "
                f"comparable with published ones. Download the official file (DATASETS.md) to compare.")
    sizes = f"{len(dataset.train_x)} train, {len(dataset.val or [])} val, {len(dataset.test)} test"
    out(f"{dataset.num_classes} classes; {sizes} images")
    problems = class_problems(name, dataset)
    found, checked = image_problems(dataset, max_images)
    problems += found
    for p in problems:
        out(f"PROBLEM: {p}")
    if problems:
        out(f"{len(problems)} problem(s) in {name}: fix them before training.")
    else:
        out(f"OK: {name} is ready ({checked} images opened).")
    return problems


def main(argv=None):
    p = ArgumentParser(prog="python -m restore.data.check", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="config name (oxford_pets) or DATASET.NAME (OxfordPets)")
    p.add_argument("--root", default=None, help="the folder holding the datasets (default: $DATA)")
    p.add_argument("--max-images", type=int, default=0,
                   help="open at most this many images, a random sample (default 0: all)")
    args = p.parse_args(argv)
    source = "--root" if args.root is not None else "DATA"
    if args.root is None:
        args.root = os.environ.get("DATA", "")
    try:  # the arguments first, as every entry point checks them (restore.cli), before torch is imported
        check_arguments(args.dataset, args.root, source)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 1 if check(args.dataset, args.root, args.max_images) else 0


if __name__ == "__main__":
    sys.exit(main())
