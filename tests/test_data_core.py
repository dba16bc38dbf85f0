"""Datum and Dassl-compatible pickles, few-shot sampling against an independent re-implementation of
Dassl's, base/new subsampling, the registry, the generic split-JSON dataset, and every user error."""
import json
import os
import pickle
import random
import shutil
import sys
import types

import pytest

from restore import get_cfg_default
from restore.data import (
    DATASETS,
    DatasetBase,
    DatasetError,
    Datum,
    SplitJSONDataset,
    build_dataset,
    generate_fewshot_dataset,
    load_pickle,
    read_split,
    register_dataset,
    save_pickle,
    save_split,
    subsample_classes,
)
from test_data_fakes import FAKES, write_image, write_text
from test_data_readers import make_cfg, rows

DASSL_PATH = "dassl.data.datasets.base_dataset"


@pytest.fixture
def fake_dassl(monkeypatch):
    """A stand-in `dassl.data.datasets.base_dataset` module with a Datum class like Dassl's."""
    class FakeDasslDatum:
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    FakeDasslDatum.__module__ = DASSL_PATH
    FakeDasslDatum.__qualname__ = FakeDasslDatum.__name__ = "Datum"
    parts = DASSL_PATH.split(".")
    for i in range(len(parts)):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i + 1]), types.ModuleType(".".join(parts[:i + 1])))
    sys.modules[DASSL_PATH].Datum = FakeDasslDatum
    return FakeDasslDatum


def no_dassl(monkeypatch):
    """Make `import dassl` fail, whatever is installed."""
    for name in [m for m in sys.modules if m == "dassl" or m.startswith("dassl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dassl", None)


# ---------------------------------------------------------------------------------------------- Datum


def test_datum_is_read_only_with_dassl_attribute_names():
    d = Datum(impath="/x/a.jpg", label=3, domain=1, classname="cat")
    assert (d.impath, d.label, d.domain, d.classname) == ("/x/a.jpg", 3, 1, "cat")
    assert vars(d) == {"_impath": "/x/a.jpg", "_label": 3, "_domain": 1, "_classname": "cat"}
    with pytest.raises(AttributeError):
        d.label = 4
    assert (Datum().impath, Datum().label, Datum().domain, Datum().classname) == ("", 0, 0, "")


def test_cache_pickled_with_dassl_datums_loads_without_dassl(tmp_path, monkeypatch, fake_dassl):
    """A CoOp-lineage cache (pickled dassl Datums) is read by the reader instead of sampling."""
    name, make, _ = FAKES["oxford_pets"]
    exp = make(tmp_path)
    # hand-picked "sample": last two train images of each class, in reverse order; one val image per class
    chosen_train = [it for y in range(4) for it in [t for t in exp.train if t[1] == y][::-1][:2]]
    chosen_val = [t for t in exp.val]
    cache = tmp_path / "oxford_pets" / "split_fewshot" / "shot_2-seed_7.pkl"
    cache.parent.mkdir(parents=True)
    with open(cache, "wb") as f:
        pickle.dump({"train": [fake_dassl(p, y, 0, c) for p, y, c in chosen_train],
                     "val": [fake_dassl(p, y, 0, c) for p, y, c in chosen_val]}, f, protocol=pickle.HIGHEST_PROTOCOL)
    assert DASSL_PATH.encode() in cache.read_bytes()
    monkeypatch.undo()  # the fake Dassl is gone again ...
    no_dassl(monkeypatch)  # ... and a real one cannot be imported
    ds = build_dataset(make_cfg(tmp_path, name, shots=2, seed=7))
    assert rows(ds.train_x) == chosen_train and rows(ds.val) == chosen_val
    assert all(type(d) is Datum for d in ds.train_x + ds.val)


def test_our_cache_loads_as_dassl_datums_with_dassl(tmp_path, monkeypatch):
    """Caches we write record Dassl's class path: code with Dassl unpickles them as dassl Datums."""
    name, make, _ = FAKES["dtd"]
    make(tmp_path)
    no_dassl(monkeypatch)
    random.seed(1)
    ds = build_dataset(make_cfg(tmp_path, name, shots=2, seed=1))
    cache = tmp_path / "dtd" / "split_fewshot" / "shot_2-seed_1.pkl"
    raw = cache.read_bytes()
    assert DASSL_PATH.encode() in raw and b"restore.data" not in raw
    monkeypatch.undo()
    # now "with Dassl": plain pickle.load, as CoOp does
    parts = DASSL_PATH.split(".")
    fake = None
    with monkeypatch.context() as m:
        for i in range(len(parts)):
            m.setitem(sys.modules, ".".join(parts[:i + 1]), types.ModuleType(".".join(parts[:i + 1])))
        fake = type("Datum", (), {"__module__": DASSL_PATH})
        sys.modules[DASSL_PATH].Datum = fake
        with open(cache, "rb") as f:
            data = pickle.load(f)
    assert all(type(d) is fake for d in data["train"] + data["val"])
    assert [(d._impath, d._label, d._domain, d._classname) for d in data["train"]] == \
        [(d.impath, d.label, d.domain, d.classname) for d in ds.train_x]


def test_save_pickle_round_trip_and_atomic(tmp_path):
    items = [Datum(f"/d/{i}.jpg", i % 3, 0, f"c{i % 3}") for i in range(7)]
    path = tmp_path / "sub" / "c.pkl"
    save_pickle({"train": items, "other": [1, "x", {"k": (2, 3)}]}, str(path))
    back = load_pickle(str(path))
    assert rows(back["train"]) == rows(items) and back["other"] == [1, "x", {"k": (2, 3)}]
    assert os.listdir(path.parent) == ["c.pkl"]  # no temp file left


def test_moved_dataset_keeps_its_cached_sample(tmp_path):
    """A dataset moved after its cache was made: the cache's absolute paths point to the old place; they
    are re-rooted onto the new folder, so the run uses the same few-shot images."""
    name, make, _ = FAKES["dtd"]
    make(tmp_path / "old")
    ds = build_dataset(make_cfg(tmp_path / "old", name, shots=1, seed=1))
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    shutil.rmtree(tmp_path / "old")
    random.seed(12345)  # another seed state: a re-sample would (almost surely) pick other images
    moved = build_dataset(make_cfg(tmp_path / "new", name, shots=1, seed=1))
    old, new = str(tmp_path / "old") + os.sep, str(tmp_path / "new") + os.sep
    assert rows(moved.train_x) == [(p.replace(old, new), y, c) for p, y, c in rows(ds.train_x)]
    assert all(os.path.isfile(it.impath) for it in moved.train_x)


def test_corrupt_cache_is_a_clear_error(tmp_path):
    name, make, _ = FAKES["dtd"]
    make(tmp_path)
    cache = tmp_path / "dtd" / "split_fewshot" / "shot_1-seed_1.pkl"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x80\x05garbage")
    with pytest.raises(DatasetError, match="Delete it") as e:
        build_dataset(make_cfg(tmp_path, name, shots=1, seed=1))
    assert str(cache) in str(e.value)


# ------------------------------------------------------------------------------------ few-shot sampling


def dassl_fewshot_reference(items, k):
    """Independent re-implementation of Dassl's sampling: group by label keeping first appearance,
    then random.sample per group (all items if fewer than k)."""
    order, groups = [], {}
    for it in items:
        if it.label not in groups:
            order.append(it.label)
            groups[it.label] = []
        groups[it.label].append(it)
    out = []
    for label in order:
        g = groups[label]
        out += random.sample(g, k) if len(g) >= k else g
    return out


def test_fewshot_matches_dassl_reference_same_seed_same_order(tmp_path):
    name, make, _ = FAKES["oxford_pets"]
    make(tmp_path)
    split_file = str(tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json")
    image_dir = str(tmp_path / "oxford_pets" / "images")
    for seed, k in ((1, 1), (2, 2), (3, 3), (4, 16)):
        random.seed(seed)
        ds = build_dataset(make_cfg(tmp_path, name, shots=k, seed=seed))
        train, val, _ = read_split(split_file, image_dir)
        random.seed(seed)
        ref_train = dassl_fewshot_reference(train, k)
        ref_val = dassl_fewshot_reference(val, min(k, 4))
        assert [d.impath for d in ds.train_x] == [d.impath for d in ref_train]
        assert [d.impath for d in ds.val] == [d.impath for d in ref_val]
    random.seed(1)
    a = generate_fewshot_dataset(train, num_shots=2)
    random.seed(2)
    b = generate_fewshot_dataset(train, num_shots=2)
    assert [d.impath for d in a] != [d.impath for d in b]  # the seed matters


def test_fewshot_interleaved_labels_first_appearance_order():
    items = [Datum(f"/{i}.jpg", label=y) for i, y in enumerate([2, 0, 2, 1, 0, 2, 1, 0])]
    random.seed(0)
    out = generate_fewshot_dataset(items, num_shots=2)
    assert [d.label for d in out] == [2, 2, 0, 0, 1, 1]
    random.seed(0)
    assert [d.impath for d in out] == [d.impath for d in dassl_fewshot_reference(items, 2)]
    # several sources -> list of lists; repeat -> K per class even when fewer; K < 1 -> unchanged
    many = generate_fewshot_dataset(items, items[:3], num_shots=1)
    assert len(many) == 2 and [d.label for d in many[1]] == [2, 0]
    random.seed(0)
    rep = generate_fewshot_dataset(items, num_shots=4, repeat=True)
    assert [d.label for d in rep] == [2] * 4 + [0] * 4 + [1] * 4
    assert generate_fewshot_dataset(items, num_shots=0) is items


# ----------------------------------------------------------------------------------------- base / new


def test_subsample_classes_uses_first_split_labels_and_relabels():
    train = [Datum(f"/t{y}.jpg", y, 1, f"c{y}") for y in (4, 0, 6, 2, 8)]  # 5 labels, not contiguous
    test = [Datum(f"/s{y}.jpg", y, 1, f"c{y}") for y in (0, 2, 4, 6, 8, 9)]  # 9 is not in train
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert [(d.label, d.classname) for d in base_train] == [(2, "c4"), (0, "c0"), (1, "c2")]  # 0,2,4 -> 0,1,2
    assert [d.label for d in base_test] == [0, 1, 2]
    assert all(d.domain == 0 for d in base_train)  # new Datums, domain reset (as CoOp)
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(d.label, d.classname) for d in new_train] == [(0, "c6"), (1, "c8")]
    assert [d.classname for d in new_test] == ["c6", "c8"]
    assert subsample_classes(train, test, subsample="all") == (train, test)
    with pytest.raises(DatasetError, match="SUBSAMPLE_CLASSES"):
        subsample_classes(train, subsample="novel")


def test_datasetbase_attributes_from_train_x():
    train = [Datum("/a", 1, 0, "b"), Datum("/b", 0, 0, "a"), Datum("/c", 2, 0, "c")]
    ds = DatasetBase(train_x=train, test=[Datum("/d", 5, 0, "z")])
    assert ds.num_classes == 3 and ds.classnames == ["a", "b", "c"] and ds.lab2cname == {0: "a", 1: "b", 2: "c"}
    with pytest.raises(DatasetError, match=r"1 \('mid'\)"):  # label 1 has no training image
        DatasetBase(train_x=[Datum("/a", 0), Datum("/b", 2)], test=[Datum("/c", 1, 0, "mid")])
    with pytest.raises(DatasetError, match="training split is empty"):
        DatasetBase(train_x=[])


# ------------------------------------------------------------------------- registry and the generic class


class Shapes(SplitJSONDataset):
    """A synthetic dataset as the testbed would declare one."""
    dataset_dir = "shapes"
    image_dir = "images"
    split_file = "split_shapes.json"


def write_shapes(root, classes=("circle", "square", "star", "ring"), n=(3, 1, 2)):
    image_dir = os.path.join(root, "shapes", "images")
    splits = {"train": [], "val": [], "test": []}
    for y, c in enumerate(classes):
        i = 0
        for part, k in zip(("train", "val", "test"), n):
            for _ in range(k):
                write_image(os.path.join(image_dir, c, f"{i}.png"), seed=i)
                splits[part].append(Datum(os.path.join(image_dir, c, f"{i}.png"), y, 0, c))
                i += 1
    save_split(splits["train"], splits["val"], splits["test"], os.path.join(root, "shapes", "split_shapes.json"),
               image_dir)
    return splits


def test_split_json_dataset_subclass(tmp_path, monkeypatch):
    splits = write_shapes(str(tmp_path))
    with open(tmp_path / "shapes" / "split_shapes.json") as f:
        raw = json.load(f)
    assert raw["train"][0] == ["circle/0.png", 0, "circle"]  # relative to image_dir, CoOp's format
    monkeypatch.setitem(DATASETS, "Shapes", Shapes)
    ds = build_dataset(make_cfg(tmp_path, "Shapes", shots=2, subsample="new", seed=1))
    assert isinstance(ds, Shapes) and ds.classnames == ["star", "ring"]
    assert [d.label for d in ds.train_x] == [0, 0, 1, 1] and len(ds.val) == 2 and len(ds.test) == 4
    assert ds.split_path == str(tmp_path / "shapes" / "split_shapes.json")
    assert os.path.isfile(tmp_path / "shapes" / "split_fewshot" / "shot_2-seed_1.pkl")
    assert rows(read_split(ds.split_path, ds.image_dir)[0]) == rows(splits["train"])


def test_fewshot_val_gets_at_most_four_shots(tmp_path, monkeypatch):
    write_shapes(str(tmp_path), n=(7, 6, 1))
    monkeypatch.setitem(DATASETS, "Shapes", Shapes)
    ds = build_dataset(make_cfg(tmp_path, "Shapes", shots=5, seed=2))
    assert [d.label for d in ds.train_x] == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    assert [d.label for d in ds.val] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4  # min(K, 4)
    assert len(ds.test) == 4


def test_register_dataset_and_unknown_name(tmp_path, monkeypatch):
    monkeypatch.setattr("restore.data.base.DATASETS", dict(DATASETS))
    from restore.data import base

    @register_dataset(name="Shapes2")
    class Other(Shapes):
        pass

    assert base.DATASETS["Shapes2"] is Other
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(type("OxfordPets", (Shapes,), {}))
    with pytest.raises(DatasetError) as e:
        build_dataset(make_cfg(tmp_path, "OxfordPet"))
    msg = str(e.value)
    assert "'OxfordPet'" in msg and "Did you mean 'OxfordPets'" in msg
    for name in ("ImageNet", "DescribableTextures", "ImageNetR", "UCF101"):
        assert name in msg
    with pytest.raises(DatasetError, match="DATASET.NAME is empty"):
        build_dataset(make_cfg(tmp_path, ""))


def test_configs_name_registered_classes():
    from restore.data import BENCHMARK_DATASETS
    import yaml
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for key, name in BENCHMARK_DATASETS.items():
        with open(os.path.join(here, "configs", "datasets", f"{key}.yaml")) as f:
            assert yaml.safe_load(f) == {"DATASET": {"NAME": name}}
        assert name in DATASETS
    assert sorted(BENCHMARK_DATASETS) == sorted(FAKES)


# ------------------------------------------------------------------------------------------ user errors


def test_error_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="DATASET.ROOT is empty.*--root"):
        build_dataset(make_cfg("", "OxfordPets"))
    with pytest.raises(DatasetError, match="DATASET.ROOT does not exist"):
        build_dataset(make_cfg(tmp_path / "nope", "OxfordPets"))


def test_error_missing_dataset_folder_shows_tree(tmp_path):
    with pytest.raises(DatasetError) as e:
        build_dataset(make_cfg(tmp_path, "StanfordCars"))
    msg = str(e.value)
    assert str(tmp_path / "stanford_cars") in msg
    for part in ("cars_train/", "devkit/", "split_zhou_StanfordCars.json", "DATASETS.md"):
        assert part in msg
    with pytest.raises(DatasetError, match="imagenet-r/"):
        build_dataset(make_cfg(tmp_path, "ImageNetR"))


def test_error_missing_split_file(tmp_path, monkeypatch):
    (tmp_path / "oxford_pets" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError) as e:
        build_dataset(make_cfg(tmp_path, "OxfordPets"))
    msg = str(e.value)
    assert "split_zhou_OxfordPets.json" in msg and "annotations/trainval.txt" in msg and "CoOp's DATASETS.md" in msg
    (tmp_path / "shapes").mkdir()
    monkeypatch.setitem(DATASETS, "Shapes", Shapes)
    with pytest.raises(DatasetError, match="split file not found: .*split_shapes.json"):
        build_dataset(make_cfg(tmp_path, "Shapes"))


def test_error_bad_split_file_and_missing_images(tmp_path):
    name, make, _ = FAKES["eurosat"]
    exp = make(tmp_path)
    split = tmp_path / "eurosat" / "split_zhou_EuroSAT.json"
    split.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        build_dataset(make_cfg(tmp_path, name))
    split.write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(DatasetError, match='keys "train", "val", "test"'):
        build_dataset(make_cfg(tmp_path, name))
    split.write_text(json.dumps({"train": [["a.jpg", 0]], "val": [], "test": []}))
    with pytest.raises(DatasetError, match=r"entry 0 of \"train\""):
        build_dataset(make_cfg(tmp_path, name))
    make(tmp_path)
    os.remove(exp.train[2][0])
    with pytest.raises(DatasetError) as e:
        build_dataset(make_cfg(tmp_path, name))
    assert exp.train[2][0] in str(e.value) and "1 of 25 images" in str(e.value)


def test_error_missing_class_name_files(tmp_path):
    for key, missing in (("imagenet", "imagenet/classnames.txt"), ("imagenet_sketch", "imagenet-sketch/classnames.txt"),
                         ("fgvc_aircraft", "fgvc_aircraft/variants.txt")):
        name, make, _ = FAKES[key]
        root = tmp_path / key
        make(root)
        os.remove(root / missing)
        with pytest.raises(DatasetError) as e:
            build_dataset(make_cfg(root, name))
        assert str(root / missing) in str(e.value) and "not found" in str(e.value)
    # a folder without a line in classnames.txt
    name, make, _ = FAKES["imagenet_a"]
    make(tmp_path / "a")
    write_image(str(tmp_path / "a" / "imagenet-adversarial" / "imagenet-a" / "n99999999" / "x.jpg"))
    with pytest.raises(DatasetError, match="n99999999 has no line in"):
        build_dataset(make_cfg(tmp_path / "a", name))


def test_error_empty_class(tmp_path):
    name, make, _ = FAKES["imagenet_sketch"]
    make(tmp_path / "s")
    empty = tmp_path / "s" / "imagenet-sketch" / "images" / "n01440764"
    for f in os.listdir(empty):
        os.remove(empty / f)
    with pytest.raises(DatasetError, match=f"Class folder {empty} is empty"):
        build_dataset(make_cfg(tmp_path / "s", name))
    name, make, _ = FAKES["dtd"]
    make(tmp_path / "d", split=False)
    (tmp_path / "d" / "dtd" / "images" / "zigzagged").mkdir()
    with pytest.raises(DatasetError, match="zigzagged is empty"):
        build_dataset(make_cfg(tmp_path / "d", name))
    # a class listed in the split with no training image
    name, make, _ = FAKES["food101"]
    exp = make(tmp_path / "f")
    split = tmp_path / "f" / "food-101" / "split_zhou_Food101.json"
    raw = json.loads(split.read_text())
    raw["train"] = [e for e in raw["train"] if e[1] != 2]
    split.write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match=r"no training images: 2 \('baklava'\)"):
        build_dataset(make_cfg(tmp_path / "f", name))


def test_error_too_small_to_generate_split(tmp_path):
    write_text(str(tmp_path / "oxford_pets" / "annotations" / "trainval.txt"), ["Bengal_1 1 1 1", "Bengal_2 1 1 1"])
    write_text(str(tmp_path / "oxford_pets" / "annotations" / "test.txt"), ["Bengal_3 1 1 1"])
    with pytest.raises(DatasetError, match="'bengal'.*too few"):
        build_dataset(make_cfg(tmp_path, "OxfordPets"))
