"""Dataset base class, few-shot sampling and caching, base/new class subsampling, the dataset registry,
and `SplitJSONDataset`: the generic "dataset described by a split_zhou JSON" that readers subclass.

Semantics are Dassl's `DatasetBase` and CoOp's dataset code (docs/REPRODUCING.md section 3), so
that the same seed gives the same few-shot images in the same order in both engines.
"""
import importlib
import importlib.util
import logging
import math
import os
import random
from collections import defaultdict

from ..suggest import did_you_mean
from .cache_check import check_fewshot_sample, relocate, say_relocated
from .datum import Datum, load_pickle, save_pickle
from .errors import DatasetError
from .splits import check_entries, check_images_exist, check_labels, read_split, save_split

log = logging.getLogger(__name__)

SUBSAMPLE_CHOICES = ("all", "base", "new")
# An empty file of this name in a dataset folder says "this copy holds some classes on purpose".
SUBSET_MARKER = "SUBSET"


class DatasetBase:
    """train_x / train_u / val / test lists of Datum, with Dassl's derived attributes.

    `num_classes` = max label in train_x + 1; `lab2cname` and `classnames` (ordered by label) come from
    train_x only, as in Dassl.
    """

    dataset_dir = ""  # folder name under DATASET.ROOT (an absolute path on instances of the readers)
    domains = []
    # The class count of the published dataset (set by the benchmark readers; None: none published,
    # as for the testbed). A copy with another count is refused by `check_complete`.
    published_classes = None

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        if not train_x:
            raise DatasetError(
                f"{type(self).__name__}: the training split is empty, so the classes are unknown. Check the "
                f"split file and DATASET.SUBSAMPLE_CLASSES."
            )
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)
        if len(self._classnames) != self._num_classes:
            # Dassl would silently shift `classnames` against the labels; say which classes are empty.
            empty = sorted(set(range(self._num_classes)) - set(self._lab2cname))
            names = {item.label: item.classname for item in (test or []) + (val or [])}
            shown = ", ".join(f"{y} ({names[y]!r})" if y in names else str(y) for y in empty[:10])
            raise DatasetError(
                f"{type(self).__name__}: {len(empty)} class label(s) in 0..{self._num_classes - 1} have no "
                f"training images: {shown}. Every class needs at least one training image; check the split "
                f"file or the class folders."
            )

    def check_complete(self, parts, source):
        """What every reader checks on its whole split, before few-shot sampling, base/new and any
        other work: each image once, every entry named, one name per label (`check_entries`), and
        the class count of the published dataset. `parts`: {part: list of Datum}; `source`: the
        file or folder they were read from, named by the messages. A copy with another class count
        (ImageNet-A with 120 of its 200 class folders extracted) is refused unless its folder holds
        the file SUBSET_MARKER, which says that the subset is deliberate (then a note says so)."""
        names = check_entries(parts, source, self.dataset_dir)
        expected = type(self).published_classes
        if expected is None or len(names) == expected:
            return
        name, marker = type(self).__name__, os.path.join(self.dataset_dir, SUBSET_MARKER)
        if os.path.exists(marker):
            log.warning(f"Note: {marker} says this copy is a subset: {len(names)} of {name}'s {expected} classes.")
            return
        raise DatasetError(
            f"{name}: {len(names)} classes in {source}, but the published dataset has {expected}: it is "
            f"incomplete (e.g. not all class folders extracted) or not the official split. Complete it as "
            f"DATASETS.md describes; a deliberate subset says so with an empty file {marker}.")

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data_source):
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        """({label: classname}, [classnames sorted by label]) over the labels present in `data_source`."""
        mapping = {}
        for item in data_source:
            mapping.setdefault(item.label, item.classname)
        labels = sorted(mapping)
        return {y: mapping[y] for y in labels}, [mapping[y] for y in labels]

    @staticmethod
    def split_dataset_by_label(data_source):
        """{label: [items]} in first-appearance order of the labels (Dassl's grouping)."""
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source):
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        return generate_fewshot_dataset(*data_sources, num_shots=num_shots, repeat=repeat)

    @staticmethod
    def subsample_classes(*splits, subsample="all"):
        return subsample_classes(*splits, subsample=subsample)


def generate_fewshot_dataset(*data_sources, num_shots=-1, repeat=False):
    """Dassl's few-shot sampling: per source, per label in first-appearance order, `random.sample(items, K)`
    (all items when fewer than K, or `random.choices(items, k=K)` with `repeat`).

    `num_shots < 1` returns the inputs unchanged. One source -> a list; several -> a list of lists.
    """
    if num_shots < 1:
        return data_sources[0] if len(data_sources) == 1 else data_sources
    log.info(f"Creating a {num_shots}-shot dataset")
    output = []
    for data_source in data_sources:
        dataset = []
        for items in DatasetBase.split_dataset_by_label(data_source).values():
            if len(items) >= num_shots:
                dataset.extend(random.sample(items, num_shots))
            elif repeat:
                dataset.extend(random.choices(items, k=num_shots))
            else:
                dataset.extend(items)
        output.append(dataset)
    return output[0] if len(output) == 1 else output


def say_small_classes(sample, num_shots, what):
    """Note the classes of a K-shot `sample` that hold fewer than K images: CoOp's sampling takes all
    of theirs (kept), and says nothing (said here, with each one's count)."""
    counts, names = defaultdict(int), {}
    for item in sample:
        counts[item.label] += 1
        names.setdefault(item.label, item.classname)
    small = [(y, n) for y, n in sorted(counts.items()) if n < num_shots]
    if not small:
        return
    shown = ", ".join(f"{names[y]} {n}" for y, n in small[:10]) + (", ..." if len(small) > 10 else "")
    log.warning(f"Note: {len(small)} of {len(counts)} classes have fewer than {num_shots} {what} images, so "
                f"all of theirs are used (as CoOp does): {shown}.")


def cfg_subsample(cfg):
    """DATASET.SUBSAMPLE_CLASSES, "all" when the config lacks the key (a plain Dassl config)."""
    return cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")


def subsample_classes(*splits, subsample="all"):
    """CoOp's base/new split: the labels present in the FIRST split, sorted; m = ceil(n/2); "base" keeps the
    first m, "new" the rest; kept labels are renumbered 0.. in sorted order in every split (new Datums,
    domain reset to 0). "all" returns the inputs unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise DatasetError(
            f"DATASET.SUBSAMPLE_CLASSES is {subsample!r}; it must be one of {', '.join(SUBSAMPLE_CHOICES)}."
        )
    if subsample == "all":
        return splits
    labels = sorted({item.label for item in splits[0]})
    m = math.ceil(len(labels) / 2)
    log.info(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: y_new for y_new, y in enumerate(selected)}
    return [
        [Datum(impath=item.impath, label=relabel[item.label], classname=item.classname)
         for item in split if item.label in relabel]
        for split in splits
    ]


# --------------------------------------------------------------------------------------------------------
# Registry


DATASETS = {}


def register_dataset(cls=None, *, name=None):
    """Register a dataset class under `name` (default: its class name, as Dassl's registry).

    Usable as `@register_dataset` or `@register_dataset(name="X")`. Re-registering the same class (or a
    reloaded copy of it) replaces it; another class under a taken name is a programming error (ValueError).
    """
    def do(c):
        key = name or c.__name__
        old = DATASETS.get(key)
        if old is not None and old is not c and (old.__module__, old.__qualname__) != (c.__module__, c.__qualname__):
            raise ValueError(f"Dataset name {key!r} is already registered by {old.__module__}.{old.__qualname__}")
        DATASETS[key] = c
        return c

    return do if cls is None else do(cls)


def import_readers(include_testbed=False):
    """Import (hence register) the built-in readers, and restore.data.testbed if asked and present."""
    from . import imagenet, readers  # noqa: F401  (registering)
    if include_testbed and importlib.util.find_spec(f"{__package__}.testbed") is not None:
        importlib.import_module(f"{__package__}.testbed")


def build_dataset(cfg):
    """Construct the dataset named by cfg.DATASET.NAME (a registered class name, e.g. "OxfordPets")."""
    name = cfg.DATASET.NAME
    import_readers()
    if name not in DATASETS:
        import_readers(include_testbed=True)
    if name not in DATASETS:
        valid = sorted(DATASETS)
        hint = did_you_mean(name, valid, fmt="'{}'")
        what = "is empty" if not name else f"is {name!r}, which is not a known dataset"
        raise DatasetError(
            f"DATASET.NAME {what}.{hint} Valid names: {', '.join(valid)}.\n"
            f"Pass --dataset-config-file configs/datasets/<name>.yaml or set DATASET.NAME."
        )
    if cfg.VERBOSE:
        log.info(f"Loading dataset: {name}")
    return DATASETS[name](cfg)


# --------------------------------------------------------------------------------------------------------
# Paths and the few-shot cache


def dataset_root(cfg):
    """The absolute DATASET.ROOT; empty or missing -> DatasetError."""
    root = cfg.DATASET.ROOT
    if not root:
        raise DatasetError(
            "DATASET.ROOT is empty: pass --root /path/to/data (the folder that holds one folder per dataset, "
            "see DATASETS.md) or set DATASET.ROOT in the config."
        )
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetError(f"DATASET.ROOT does not exist: {root}\nPass --root with the folder that holds your datasets.")
    return root


def resolve_dataset_dir(cfg, name, dataset_dir, tree):
    """`<DATASET.ROOT>/<dataset_dir>` as an absolute path; missing -> DatasetError showing the expected `tree`."""
    root = dataset_root(cfg)
    path = os.path.join(root, dataset_dir)
    if not os.path.isdir(path):
        tree = "\n".join("    " + line for line in tree.splitlines())
        raise DatasetError(
            f"{name}: dataset folder not found: {path}\n"
            f"Expected under DATASET.ROOT ({root}):\n{tree}\n"
            f"Prepare it as described in DATASETS.md, or fix --root / DATASET.ROOT."
        )
    return path


def fewshot_cache_path(dataset_dir, num_shots, seed):
    return os.path.join(dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.pkl")


def load_or_create_fewshot(dataset, cfg, train, val=None):
    """CoOp's few-shot step with its cache `<dataset_dir>/split_fewshot/shot_K-seed_S.pkl`.

    K = DATASET.NUM_SHOTS (< 1: returns the inputs). A present cache is loaded (no randomness consumed);
    otherwise train gets K shots and val min(K, 4) (`val=None`, as ImageNet: only train is sampled and
    cached) and the cache is written (our Datums under Dassl's class path). Returns (train, val).

    SEED -1 (unseeded) draws a new sample every run and neither reads nor writes a cache: a file named for
    seed -1 would hold one arbitrary draw as if it were a seed's (CoOp writes and reuses
    shot_K-seed_-1.pkl; an existing one is ignored, with a note).
    """
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(dataset.dataset_dir, num_shots, cfg.SEED)
    unseeded = cfg.SEED < 0
    if unseeded and os.path.exists(path):
        log.warning(f"Note: SEED is -1 (unseeded): {path} is not used; a new {num_shots}-shot sample is drawn "
                    "and not cached (CoOp would reuse that file as if it were a seed's sample).")
    dataset.fewshot_cache = None if unseeded else path  # recorded in the run's provenance
    if not unseeded and os.path.exists(path):
        log.info(f"Loading preprocessed few-shot data from {path}")
        data = load_pickle(path, trust=cfg.TRUST_FILES)
        keys = ("train",) if val is None else ("train", "val")
        if not isinstance(data, dict) or any(k not in data for k in keys):
            raise DatasetError(
                f"The few-shot cache {path} does not hold {' and '.join(repr(k) for k in keys)}: it was not "
                f"written for this dataset. Delete it; it is regenerated on the next run."
            )
        num_classes = max((item.label for item in train), default=-1) + 1  # of the split it was sampled from
        check_labels({k: data[k] for k in keys}, f"The few-shot cache {path}", num_classes,
                     fix="Delete the cache; it is regenerated on the next run.")
        # Valid only for the dataset it was sampled from: re-rooted when the dataset moved, refused
        # when the split changed.
        source = f"The few-shot cache {path}"
        cached_train, old = relocate(data["train"], dataset.dataset_dir, source)
        check_fewshot_sample(path, cached_train, train, dataset.dataset_dir)
        if val is not None:
            cached_val, old_val = relocate(data["val"], dataset.dataset_dir, source)
            check_fewshot_sample(path, cached_val, val, dataset.dataset_dir)
            val, old = cached_val, old or old_val
        train = cached_train
        say_relocated(source, old, dataset.dataset_dir)
        check_images_exist(
            train + (val or []), f"the few-shot cache {path}", dataset.dataset_dir,
            fix="Images were removed since the cache was made: restore them, or delete the cache to draw a new "
                "sample.")
        say_small_classes(train, num_shots, "training")
        say_small_classes(val or [], min(num_shots, 4), "validation")
        return train, val
    train = generate_fewshot_dataset(train, num_shots=num_shots)
    data = {"train": train}
    if val is not None:
        val = generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        data["val"] = val
    # Drawn from lists that may predate a deleted image (ImageNet's preprocessed.pkl): none is cached
    # or trained on unless it exists.
    check_images_exist(train + (val or []), f"the {num_shots}-shot sample of {dataset.dataset_dir}",
                       dataset.dataset_dir, fix="Restore the images, or delete the dataset's cached lists "
                       "(ImageNet: preprocessed.pkl) to read the folders anew.")
    say_small_classes(train, num_shots, "training")
    say_small_classes(val or [], min(num_shots, 4), "validation")
    if unseeded:
        return train, val
    log.info(f"Saving preprocessed few-shot data to {path}")
    try:
        save_pickle(data, path)
    except OSError as e:
        log.warning(f"Warning: could not write the few-shot cache {path} ({e}); continuing without it.")
    return train, val


# --------------------------------------------------------------------------------------------------------
# The generic split-JSON dataset


class SplitJSONDataset(DatasetBase):
    """A dataset described by a split_zhou JSON under `<DATASET.ROOT>/<dataset_dir>/`.

    Subclass and set the class attributes:
      dataset_dir  folder under DATASET.ROOT
      image_dir    folder under dataset_dir that the JSON's image paths are relative to ("" = dataset_dir)
      split_file   the JSON's file name under dataset_dir (default "split_zhou_<ClassName>.json")
      tree         optional text of the expected folder tree, shown when the folder is missing
    and, for datasets whose split can be (re)generated from the raw files, override `generate_split()`
    to return (train, val, test); it is then saved as the split file. Without it, a missing split file
    is a DatasetError that names the file.

    Construction: read (or generate) the split -> few-shot (DATASET.NUM_SHOTS, SEED; cached in
    split_fewshot/) -> base/new (DATASET.SUBSAMPLE_CLASSES) -> DatasetBase(train, val, test).
    On instances, `dataset_dir`, `image_dir`, `split_path` and `split_fewshot_dir` are absolute paths.
    """

    dataset_dir = ""
    image_dir = ""
    split_file = ""
    tree = ""

    def __init__(self, cfg):
        self._set_paths(cfg)
        train, val, test = self.load_split()
        self.check_complete({"train": train, "val": val, "test": test}, self.split_source())
        train, val = load_or_create_fewshot(self, cfg, train, val)
        train, val, test = subsample_classes(train, val, test, subsample=cfg_subsample(cfg))
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def split_file_name(cls):
        return cls.split_file or f"split_zhou_{cls.__name__}.json"

    @classmethod
    def expected_tree(cls):
        if cls.tree:
            return cls.tree
        lines = [f"{cls.dataset_dir}/"]
        if cls.image_dir:
            lines.append(f"    {cls.image_dir}/")
        lines.append(f"    {cls.split_file_name()}")
        return "\n".join(lines)

    def _set_paths(self, cfg):
        cls = type(self)
        self.dataset_dir = resolve_dataset_dir(cfg, cls.__name__, cls.dataset_dir, cls.expected_tree())
        self.image_dir = os.path.join(self.dataset_dir, cls.image_dir) if cls.image_dir else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, cls.split_file_name())
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

    def split_source(self):
        """The file the split is read from (or saved to, when generated), for messages."""
        return self.split_path

    def load_split(self):
        """(train, val, test) from the split file, or generated (and saved) when it is absent."""
        if os.path.exists(self.split_path):
            return read_split(self.split_path, self.image_dir)
        log.warning(f"Note: {self.split_path} not found: GENERATING the split from the annotation files as CoOp "
                    f"does. It is not the official split; numbers on it are not comparable with published ones.")
        train, val, test = self.generate_split()
        check_images_exist(train + val + test, f"the annotations of {type(self).__name__}", self.image_dir)
        try:
            save_split(train, val, test, self.split_path, self.image_dir)
        except OSError as e:
            log.warning(f"Warning: could not save the generated split to {self.split_path} ({e}).")
        return train, val, test

    def source_path(self, relpath, is_dir=False):
        """`<dataset_dir>/<relpath>`, needed to generate the split; missing -> DatasetError with both fixes."""
        path = os.path.join(self.dataset_dir, relpath)
        if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
            raise DatasetError(
                f"{type(self).__name__}: split file not found: {self.split_path}\n"
                f"It cannot be generated either, because {path} is missing.\n"
                f"Download {os.path.basename(self.split_path)} (linked in CoOp's DATASETS.md) into "
                f"{self.dataset_dir}, or add the original annotation files (see DATASETS.md)."
            )
        return path

    def generate_split(self):
        """Override to build (train, val, test) from the raw files when the split file is absent."""
        raise DatasetError(
            f"{type(self).__name__}: split file not found: {self.split_path}\n"
            f"Put {os.path.basename(self.split_path)} there (see DATASETS.md)."
        )
