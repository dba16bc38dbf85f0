"""The 15 benchmark readers on tiny fake copies in their exact on-disk layouts (tests/test_data_fakes.py):
class names (renamings included), labels, counts, few-shot counts, base/new split and relabelling, the
few-shot cache round trip, and split generation from the original annotation files."""
import math
import os
import random
from collections import Counter

import pytest

from restore import get_cfg_default
from restore.data import DATASETS, Datum, build_dataset, load_pickle
from test_data_fakes import FAKES

GENERATED_COUNTS = {  # per class (train, val, test) after CoOp's split generation
    "dtd": (2, 1, 2), "caltech101": (2, 1, 2), "eurosat": (2, 1, 2), "food101": (2, 1, 2),
    "oxford_flowers": (2, 1, 2),  # 5 images per class: round(2.5) = 2, round(1.0) = 1, rest 2
    "oxford_pets": (4, 1, 3), "stanford_cars": (4, 1, 3), "sun397": (4, 1, 3), "ucf101": (4, 1, 3),
    # 5 train+val -> round(1.0) = 1 val, 4 train; 3 test from the test list
}


def make_cfg(root, name, shots=-1, subsample="all", seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    cfg.VERBOSE = False
    return cfg


def rows(items):
    return None if items is None else [(d.impath, d.label, d.classname) for d in items]


def same_items(got, expected, order_fixed):
    got = rows(got)
    return got == expected if order_fixed else sorted(got) == sorted(expected)


def per_label(items):
    return Counter(d.label for d in items)


@pytest.mark.parametrize("key", list(FAKES))
def test_reader_full_dataset(tmp_path, key):
    name, make, _ = FAKES[key]
    exp = make(tmp_path)
    ds = build_dataset(make_cfg(tmp_path, name))
    assert type(ds).__name__ == name and DATASETS[name] is type(ds)
    assert ds.classnames == exp.classnames
    assert ds.num_classes == len(exp.classnames)
    assert ds.lab2cname == dict(enumerate(exp.classnames))
    assert same_items(ds.train_x, exp.train, exp.order_fixed)
    assert same_items(ds.test, exp.test, exp.order_fixed)
    if exp.val is None:
        assert ds.val is None
    else:
        assert same_items(ds.val, exp.val, exp.order_fixed)
    assert all(type(d) is Datum and d.domain == 0 for d in ds.train_x)


@pytest.mark.parametrize("key", list(FAKES))
def test_reader_fewshot_and_base_new(tmp_path, key):
    name, make, _ = FAKES[key]
    exp = make(tmp_path)
    n_cls = len(exp.classnames)
    train_per_class = Counter(y for _, y, _ in exp.train)
    val_per_class = Counter(y for _, y, _ in exp.val) if exp.val else Counter()

    random.seed(3)
    ds = build_dataset(make_cfg(tmp_path, name, shots=2, seed=3))
    cache = os.path.join(ds.dataset_dir, "split_fewshot", "shot_2-seed_3.pkl")
    if exp.test_only:  # ImageNet variants: no few-shot, everything is train_x and test
        assert len(ds.train_x) == len(exp.train) and not os.path.exists(cache)
    else:
        assert per_label(ds.train_x) == {y: min(2, n) for y, n in train_per_class.items()}
        if exp.fewshot_val:
            assert per_label(ds.val) == {y: min(2, n) for y, n in val_per_class.items()}
        else:  # ImageNet: val = test = the whole val set
            assert ds.val is ds.test and len(ds.test) == len(exp.test)
        # every sampled item is a real item of that split with its label and name
        assert set(rows(ds.train_x)) <= set(exp.train)
        # cache round trip: present, loaded as our Datums, and reused whatever the random state
        assert os.path.isfile(cache)
        data = load_pickle(cache)
        assert sorted(data) == (["train", "val"] if exp.fewshot_val else ["train"])
        assert rows(data["train"]) == rows(ds.train_x)
        random.seed(999)
        again = build_dataset(make_cfg(tmp_path, name, shots=2, seed=3))
        assert rows(again.train_x) == rows(ds.train_x) and rows(again.val) == rows(ds.val)

    # base / new: ceil(n/2) first classes vs the rest, relabelled 0..
    m = math.ceil(n_cls / 2)
    for sub, names in (("base", exp.classnames[:m]), ("new", exp.classnames[m:])):
        part = build_dataset(make_cfg(tmp_path, name, shots=-1, subsample=sub))
        if exp.test_only:  # CoOp ignores SUBSAMPLE_CLASSES for the test-only variants
            assert part.classnames == exp.classnames
            continue
        assert part.classnames == names and part.num_classes == len(names)
        offset = 0 if sub == "base" else m
        want_train = [(p, y - offset, c) for p, y, c in exp.train if (y < m) == (sub == "base")]
        want_test = [(p, y - offset, c) for p, y, c in exp.test if (y < m) == (sub == "base")]
        assert same_items(part.train_x, want_train, exp.order_fixed)
        assert same_items(part.test, want_test, exp.order_fixed)
        assert all(d.classname == names[d.label] for d in part.train_x + part.test + (part.val or []))


@pytest.mark.parametrize("key", sorted(GENERATED_COUNTS))
def test_reader_generates_split_as_coop(tmp_path, key):
    name, make, can_generate = FAKES[key]
    assert can_generate
    exp = make(tmp_path, split=False)
    random.seed(0)
    ds = build_dataset(make_cfg(tmp_path, name))
    assert ds.classnames == exp.classnames  # renamings: Caltech, EuroSAT, Pets, Cars, SUN, UCF, Flowers
    n_tr, n_va, n_te = GENERATED_COUNTS[key]
    labels = range(len(exp.classnames))
    assert per_label(ds.train_x) == {y: n_tr for y in labels}
    assert per_label(ds.val) == {y: n_va for y in labels}
    assert per_label(ds.test) == {y: n_te for y in labels}
    # a partition of all the images, each with its label and class name
    got = rows(ds.train_x) + rows(ds.val) + rows(ds.test)
    assert sorted(got) == sorted(exp.items)
    # the split file is written (CoOp's format) and read back on the next run, whatever the random state
    split_file = os.path.join(ds.dataset_dir, f"split_zhou_{name}.json")
    assert os.path.isfile(split_file)
    random.seed(12345)
    again = build_dataset(make_cfg(tmp_path, name))
    assert rows(again.train_x) == rows(ds.train_x) and rows(again.val) == rows(ds.val)
    assert rows(again.test) == rows(ds.test)


def test_generated_split_depends_on_seed_only(tmp_path):
    """Same seed -> same generated split (two fresh copies); another seed -> another split."""
    name, make, _ = FAKES["dtd"]
    splits = []
    for i, seed in enumerate((5, 5, 6)):
        root = tmp_path / str(i)
        make(root, split=False)
        random.seed(seed)
        ds = build_dataset(make_cfg(root, name))
        splits.append(sorted(os.path.basename(d.impath) + d.classname for d in ds.train_x))
    assert splits[0] == splits[1] and splits[0] != splits[2]


def test_imagenet_uses_preprocessed_cache(tmp_path):
    """imagenet/preprocessed.pkl is written on first read and used afterwards (CoOp), even if folders change."""
    name, make, _ = FAKES["imagenet"]
    make(tmp_path)
    first = build_dataset(make_cfg(tmp_path, name))
    pkl = tmp_path / "imagenet" / "preprocessed.pkl"
    assert pkl.is_file() and sorted(load_pickle(str(pkl))) == ["test", "train"]
    os.remove(tmp_path / "imagenet" / "classnames.txt")  # not needed once cached
    second = build_dataset(make_cfg(tmp_path, name))
    assert rows(second.train_x) == rows(first.train_x) and rows(second.test) == rows(first.test)
