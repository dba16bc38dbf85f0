"""A dataset is complete or the run stops: what every reader checks on its whole split before any
work (the published class count, each image once, every class named, one name per label), the
few-shot sample's files, and the note on classes with fewer images than the shots."""
import json
import os
import re

import pytest

from restore.config import get_cfg_default
from restore.data import DATASETS, DatasetError, build_dataset, load_pickle
from restore.data.base import SUBSET_MARKER, fewshot_cache_path
from restore.data.testbed import TESTBED_DATASETS

from test_data_fakes import FAKES
from test_engine_fakes import ROOT

# The class counts of the published datasets (CoOp's datasets/*.py, as its DATASETS.md lists them).
PUBLISHED = {"ImageNet": 1000, "Caltech101": 100, "OxfordPets": 37, "StanfordCars": 196,
             "OxfordFlowers": 102, "Food101": 101, "FGVCAircraft": 100, "SUN397": 397,
             "DescribableTextures": 47, "EuroSAT": 10, "UCF101": 101, "ImageNetV2": 1000,
             "ImageNetSketch": 1000, "ImageNetA": 200, "ImageNetR": 200}


def cfg_for(root, name, shots=-1, seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), name, shots, seed
    return cfg


def make(root, key):
    """A fake of FAKES[key] under root; returns (DATASET.NAME, its dataset folder)."""
    name, builder, _ = FAKES[key]
    builder(str(root))
    return name, os.path.join(str(root), DATASETS[name].dataset_dir)


def test_published_class_counts_are_declared_by_the_readers_and_nowhere_else():
    import restore.data.check as checker
    assert {name: DATASETS[name].published_classes for name in PUBLISHED} == PUBLISHED
    assert all(DATASETS[name].published_classes is None for name in TESTBED_DATASETS.values())
    assert not hasattr(checker, "EXPECTED_CLASSES")


@pytest.mark.parametrize("key", sorted(FAKES))
def test_a_published_dataset_with_another_class_count_is_refused(key, tmp_path, capsys):
    name, folder = make(tmp_path, key)
    build_dataset(cfg_for(tmp_path, name))  # marked a deliberate subset: read, with a note
    marker = os.path.join(folder, SUBSET_MARKER)
    assert f"Note: {marker} says this copy is a subset: " in capsys.readouterr().out
    os.remove(marker)
    with pytest.raises(DatasetError) as err:
        build_dataset(cfg_for(tmp_path, name, shots=2))
    msg = str(err.value)
    assert msg.startswith(f"{name}: ") and f"but the published dataset has {PUBLISHED[name]}" in msg
    assert not os.path.exists(os.path.join(folder, "split_fewshot"))  # refused before any work
    named = re.fullmatch(r".*a deliberate subset says so with an empty file (\S+)\.", msg).group(1)
    open(named, "w").close()  # the file the message names is the fix
    assert build_dataset(cfg_for(tmp_path, name, shots=2)).num_classes > 0


def test_imagenet_a_with_classes_missing_stops_train_py(tmp_path, capsys):
    """The issue's case: ImageNet-A with part of its class folders ran to a 0.8% accuracy."""
    import train
    _, folder = make(tmp_path / "data", "imagenet_a")
    os.remove(os.path.join(folder, SUBSET_MARKER))
    with pytest.raises(SystemExit) as exit_:
        train.main(["--root", str(tmp_path / "data"), "--trainer", "ZeroshotCLIP", "--engine", "native",
                    "--dataset-config-file", f"{ROOT}/configs/datasets/imagenet_a.yaml",
                    "--output-dir", str(tmp_path / "out"), "--eval-only", "MODEL.BACKBONE.NAME",
                    "tiny-random", "DATALOADER.NUM_WORKERS", "0", "USE_CUDA", "False"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.splitlines()[0]
    assert err == (f"Error: ImageNetA: 3 classes in the class folders of {folder}/imagenet-a, but the "
                   f"published dataset has 200: it is incomplete (e.g. not all class folders extracted) or "
                   f"not the official split. Complete it as DATASETS.md describes; a deliberate subset says "
                   f"so with an empty file {folder}/{SUBSET_MARKER}.")
    assert not (tmp_path / "out").exists()  # refused before the run started: no folder, log or result


def edit_split(folder, edit):
    path = os.path.join(folder, "split_zhou_OxfordPets.json")
    with open(path) as f:
        split = json.load(f)
    edit(split)
    with open(path, "w") as f:
        json.dump(split, f)
    return path


@pytest.mark.parametrize("where", ["same part", "train and test"])
def test_an_image_listed_twice_is_refused(where, tmp_path):
    """Listed twice, an image could be sampled twice into a few-shot set (or tested on after training)."""
    name, folder = make(tmp_path, "oxford_pets")
    twice = lambda s: s["train" if where == "same part" else "test"].append(s["train"][2])  # noqa: E731
    path = edit_split(folder, twice)
    with open(path) as f:
        entry = json.load(f)["train"][2]
    with pytest.raises(DatasetError) as err:
        build_dataset(cfg_for(tmp_path, name, shots=6))
    part, index = ("train", 16) if where == "same part" else ("test", 12)
    assert str(err.value) == (f"{path} lists an image twice: entry {index} of {part!r} (images/{entry[0]}, "
                              f"label {entry[1]}) is also entry 2 of 'train'. Correct the entry, or replace "
                              f"the file with the original (DATASETS.md).")


def test_a_variant_list_naming_an_image_twice_is_refused(tmp_path):
    name, folder = make(tmp_path, "fgvc_aircraft")
    lists = os.path.join(folder, "images_variant_test.txt")
    with open(lists) as f:
        first = f.readline()
    with open(lists, "a") as f:
        f.write(first)
    with pytest.raises(DatasetError, match=r"images_variant_\{train,val,test\}\.txt lists an image twice"):
        build_dataset(cfg_for(tmp_path, name))


def test_an_empty_class_name_is_refused(tmp_path):
    name, folder = make(tmp_path, "oxford_pets")

    def blank(split):
        split["val"][1][2] = " "
    path = edit_split(folder, blank)
    with pytest.raises(DatasetError, match=rf"^{path}: entry 1 of 'val' \(images/\S+, label 1\) has an "
                                           r"empty class name\. Correct the entry"):
        build_dataset(cfg_for(tmp_path, name))
    name, folder = make(tmp_path, "imagenet_r")
    with open(os.path.join(folder, "classnames.txt"), "a") as f:
        f.write("n09999999\n")
    with pytest.raises(DatasetError, match=rf"^{folder}/classnames.txt, line 7: n09999999 has no class name\."):
        build_dataset(cfg_for(tmp_path, name))


def test_a_label_named_two_ways_is_refused(tmp_path):
    name, folder = make(tmp_path, "oxford_pets")
    path = edit_split(folder, lambda s: s["test"][5].__setitem__(2, "persian"))
    with pytest.raises(DatasetError, match=rf"^{path}: entry 5 of 'test' .* is named 'persian', other "
                                           r"entries of label 1 'american_bulldog'"):
        build_dataset(cfg_for(tmp_path, name))


def test_the_few_shot_sample_of_cached_lists_must_exist(tmp_path):
    """ImageNet's preprocessed.pkl lists every image; a sample drawn from it after an image was deleted
    is refused before it is cached or trained on."""
    name, folder = make(tmp_path, "imagenet")
    build_dataset(cfg_for(tmp_path, name))  # writes preprocessed.pkl
    gone = load_pickle(os.path.join(folder, "preprocessed.pkl"))["train"][3].impath  # not the first,
    # by which the cached lists themselves are checked
    os.remove(gone)
    with pytest.raises(DatasetError) as err:
        build_dataset(cfg_for(tmp_path, name, shots=6))  # 6 shots = every training image
    assert str(err.value).startswith(f"1 of 24 images listed in the 6-shot sample of {folder} are missing:\n  {gone}")
    assert not os.path.exists(fewshot_cache_path(folder, 6, 1))


def test_a_class_with_fewer_images_than_shots_keeps_them_all_with_a_note(tmp_path, capsys):
    name, _ = make(tmp_path, "oxford_pets")
    note = ("Note: 4 of 4 classes have fewer than 100 training images, so all of theirs are used (as CoOp "
            "does): abyssinian 4, american_bulldog 4, bengal 4, yorkshire_terrier 4.")
    for _ in ("sampled", "read from the cache"):
        dataset = build_dataset(cfg_for(tmp_path, name, shots=100))
        assert len(dataset.train_x) == 16  # CoOp's behaviour: every image of such a class
        out = capsys.readouterr().out
        assert note in out and "fewer than 4 validation images, so all of theirs are used" in out


def test_a_class_list_naming_a_class_twice_is_refused(tmp_path):
    """A second line for a class would rename it (classnames.txt) or shift every later label
    (variants.txt), silently."""
    name, folder = make(tmp_path, "imagenet_sketch")
    with open(os.path.join(folder, "classnames.txt"), "a") as f:
        f.write("n01440764 tinca tinca\n")
    with pytest.raises(DatasetError, match=rf"^{folder}/classnames.txt, line 7: n01440764 is listed twice\."):
        build_dataset(cfg_for(tmp_path, name))
    name, folder = make(tmp_path, "fgvc_aircraft")
    with open(os.path.join(folder, "variants.txt"), "a") as f:
        f.write("A300B4\n")
    with pytest.raises(DatasetError, match=rf"^{folder}/variants.txt: variant 'A300B4' is listed twice\."):
        build_dataset(cfg_for(tmp_path, name))
