"""Split files and split generation, shared by every reader (and by the synthetic testbed datasets).

The split_zhou format (CoOp): a JSON object `{"train": [...], "val": [...], "test": [...]}`, each entry
`[relative_image_path, label, classname]`, written with indent 4; paths are relative to the dataset's image
folder (StanfordCars: to the dataset folder). Generation follows CoOp exactly, including how it consumes
python's `random` (one `random.shuffle` per class, classes in the order CoOp visits them), so that the same
seed regenerates the same split as CoOp would.
"""
import json
import logging
import os
import random
from collections import defaultdict

from ..files import atomic_write
from .datum import Datum
from .errors import DatasetError

log = logging.getLogger(__name__)


def listdir_nohidden(path, sort=False):
    """Non-hidden entries of `path` (os.listdir order unless `sort`), as Dassl's helper."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def read_json(path):
    """Load a JSON file; a missing or malformed file gives a DatasetError naming it."""
    try:
        with open(path, "r") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"File not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON ({e}). Replace it with a good copy.") from None


def write_json(obj, path):
    """Write `obj` as JSON (indent 4, as Dassl), creating the folder; atomic (temp file + rename)."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=4, separators=(",", ": ")), text=True)


def read_split(filepath, path_prefix, check_files=True):
    """Read a split_zhou JSON into (train, val, test) lists of Datum with paths joined to `path_prefix`.

    With `check_files`, every image must exist; otherwise one DatasetError lists the first missing ones.
    """
    log.info(f"Reading split from {filepath}")
    split = read_json(filepath)
    if not isinstance(split, dict) or any(k not in split for k in ("train", "val", "test")):
        raise DatasetError(
            f"{filepath} is not a split file: expected a JSON object with keys \"train\", \"val\", \"test\", "
            f"each a list of [image_path, label, classname]. Replace it with the file from CoOp's DATASETS.md."
        )

    def convert(key):
        out = []
        for i, entry in enumerate(split[key]):
            try:
                impath, label, classname = entry
                out.append(Datum(impath=os.path.join(path_prefix, impath), label=int(label),
                                 classname=str(classname)))
            except (TypeError, ValueError):
                raise DatasetError(
                    f"{filepath}: entry {i} of \"{key}\" is {entry!r}, expected [image_path, label, classname]."
                ) from None
        return out

    train, val, test = convert("train"), convert("val"), convert("test")
    # The class count is the number of class names: a stray label (99 among 64 classes) is out of range
    # whichever part it is in, while a class missing from "train" gets DatasetBase's clearer message.
    num_classes = len({item.classname for item in train + val + test})
    check_labels({"train": train, "val": val, "test": test}, filepath, num_classes,
                 fix="Correct the label (labels are 0..number of classes - 1), or replace the file with the "
                     "one from CoOp's DATASETS.md.")
    if check_files:
        check_images_exist(train + val + test, f"the split file {filepath}", path_prefix)
    return train, val, test


def check_labels(parts, source, num_classes, fix):
    """Every item of `parts` ({name: list of Datum}) must be a Datum whose label is an int in
    [0, num_classes); otherwise one DatasetError naming `source`, the part, the item and its label.

    A label outside the range would silently add a class (in "train") or be dropped or scored against
    a class that does not exist (in "test").
    """
    for name, items in parts.items():
        if not isinstance(items, list):
            raise DatasetError(f"{source}: {name!r} is a {type(items).__name__}, not a list of images. {fix}")
        for i, item in enumerate(items):
            if not isinstance(item, Datum):
                raise DatasetError(f"{source}: item {i} of {name!r} is a {type(item).__name__}, not an image "
                                   f"record (Datum). {fix}")
            label = item.label
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
                raise DatasetError(
                    f"{source}: item {i} of {name!r} ({item.impath}, {item.classname!r}) has label {label!r}, "
                    f"outside 0..{num_classes - 1} ({num_classes} classes). {fix}")


def check_entries(parts, source, dataset_dir):
    """Every entry of a split ({part: list of Datum}) once, with a class name, one name per label;
    otherwise one DatasetError naming `source`, the part, the entry and the fix.

    An image listed twice is sampled twice into a few-shot set (or is tested on what was trained on);
    an empty name becomes an empty prompt; a label named two ways is named by whichever comes first.
    (One name for two labels is legal: ImageNet has two classes named "crane".) Returns {label: name}.
    """
    fix = "Correct the entry, or replace the file with the original (DATASETS.md)."
    entries = [(part, i, item) for part, items in parts.items() for i, item in enumerate(items)]

    def where(n):
        part, i, item = entries[n]
        return f"entry {i} of {part!r} ({os.path.relpath(item.impath, dataset_dir)}, label {item.label})"
    seen, names = {}, {}
    for n, (_, _, item) in enumerate(entries):  # ImageNet: 1.3 million; messages only for a bad one
        first, name = seen.setdefault(item.impath, n), names.setdefault(item.label, item.classname)
        if first == n and name == item.classname:
            continue
        if not str(item.classname).strip():
            raise DatasetError(f"{source}: {where(n)} has an empty class name. {fix}")
        if first != n:
            part, i, _ = entries[first]
            raise DatasetError(f"{source} lists an image twice: {where(n)} is also entry {i} of {part!r}. {fix}")
        if name != item.classname:
            raise DatasetError(f"{source}: {where(n)} is named {item.classname!r}, other entries of label "
                               f"{item.label} {name!r}: every entry of a class must carry its one name. {fix}")
    for label, name in names.items():  # a class whose every entry has the empty name
        if not str(name).strip():
            n = next(n for n, (_, _, item) in enumerate(entries) if item.label == label)
            raise DatasetError(f"{source}: {where(n)} has an empty class name. {fix}")
    return names


def num_labels(items):
    """The number of distinct labels of a list of Datum (0 for anything else)."""
    if not isinstance(items, list):
        return 0
    return len({item.label for item in items if isinstance(item, Datum)})


def check_images_exist(items, source, image_dir, fix=None):
    """Raise one DatasetError listing the images of `items` that are not files (`fix`: what to do)."""
    missing = [it.impath for it in items if not os.path.isfile(it.impath)]
    if not missing:
        return
    if fix is None and not os.path.isdir(image_dir):
        raise DatasetError(
            f"Image folder not found: {image_dir} (the images of {source} are read from there).\n"
            f"Extract the images so that they sit under that folder (see DATASETS.md)."
        )
    shown = "\n  ".join(missing[:5])
    more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
    if fix is None:
        fix = (f"Check that the images were extracted completely under {image_dir}, or that the split file "
               f"belongs to this copy of the dataset.")
    raise DatasetError(f"{len(missing)} of {len(items)} images listed in {source} are missing:\n  {shown}{more}\n{fix}")


def save_split(train, val, test, filepath, path_prefix):
    """Write (train, val, test) to a split_zhou JSON with paths relative to `path_prefix`."""
    prefix = path_prefix.rstrip("/")

    def extract(items):
        out = []
        for item in items:
            impath = item.impath
            if impath.startswith(prefix):
                impath = impath[len(prefix):]
            if impath.startswith("/"):
                impath = impath[1:]
            out.append((impath, item.label, item.classname))
        return out

    write_json({"train": extract(train), "val": extract(val), "test": extract(test)}, filepath)
    log.info(f"Saved split to {filepath}")


def split_trainval(trainval, p_val=0.2):
    """CoOp's train/val split: per label (first-appearance order), shuffle, first round(n*p_val) -> val."""
    p_trn = 1 - p_val
    log.info(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    tracker = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)

    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise DatasetError(
                f"Class {label} ({trainval[idxs[0]].classname!r}) has {len(idxs)} train+val image(s): too few to "
                f"hold out {p_val:.0%} for validation. Use the official split file from CoOp's DATASETS.md."
            )
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_by_ratio(tracker, p_trn=0.5, p_val=0.2, where=""):
    """CoOp's 50/20/30 split of {label: (classname, [impaths])}, in the dict's order, one shuffle per class.

    Returns (train, val, test) lists of Datum. A class too small to give every part an image -> DatasetError.
    """
    train, val, test = [], [], []
    for label, (classname, impaths) in tracker.items():
        random.shuffle(impaths)
        n_total = len(impaths)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if n_train < 1 or n_val < 1 or n_test < 1:
            raise DatasetError(
                f"Class {classname!r}{where} has {n_total} image(s): too few to split into train/val/test "
                f"({p_trn:.0%}/{p_val:.0%}/{1 - p_trn - p_val:.0%}). Use the official split file from CoOp's "
                f"DATASETS.md, or give every class at least 5 images."
            )
        train += [Datum(impath=p, label=label, classname=classname) for p in impaths[:n_train]]
        val += [Datum(impath=p, label=label, classname=classname) for p in impaths[n_train:n_train + n_val]]
        test += [Datum(impath=p, label=label, classname=classname) for p in impaths[n_train + n_val:]]
    return train, val, test


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
    """CoOp's split of a folder-per-class tree (DTD, Caltech101, EuroSAT, Food101).

    Classes are the sorted non-hidden sub-folders minus `ignored`, labelled 0.. in that order; images are
    listed in os.listdir order (as CoOp) and shuffled per class; `new_cnames` renames classes.
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    p_tst = 1 - p_trn - p_val
    log.info(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")
    tracker = {}
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        if not os.path.isdir(category_dir):
            raise DatasetError(
                f"{category_dir} is not a folder: {image_dir} must hold one sub-folder of images per class. "
                f"Move or delete that entry."
            )
        impaths = [os.path.join(category_dir, im) for im in listdir_nohidden(category_dir)]
        if not impaths:
            raise DatasetError(f"Class folder {category_dir} is empty: add its images or delete the folder.")
        classname = new_cnames[category] if new_cnames and category in new_cnames else category
        tracker[label] = (classname, impaths)
    if not tracker:
        raise DatasetError(f"No class folders found in {image_dir}: extract the images there (see DATASETS.md).")
    return split_by_ratio(tracker, p_trn, p_val, where=f" in {image_dir}")
