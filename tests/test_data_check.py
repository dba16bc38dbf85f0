"""`python -m restore.data.check`: a dataset folder against DATASETS.md, with fake datasets."""
import json
import os

import pytest

from restore.data import BENCHMARK_DATASETS
from restore.data import check as C
from restore.data.testbed import TESTBED_DATASETS
from tests.test_data_fakes import make_oxford_pets


@pytest.fixture
def pets(tmp_path):
    """A fake OxfordPets (4 breeds x 8 images, official split file), marked a deliberate subset."""
    make_oxford_pets(str(tmp_path))
    return tmp_path


def run(root, name="oxford_pets", **kw):
    lines = []
    problems = C.check(name, str(root), out=lines.append, **kw)
    return problems, "\n".join(lines)


def test_a_good_dataset_passes(pets):
    problems, text = run(pets)
    assert problems == []
    assert "split file: " + str(pets / "oxford_pets" / "split_zhou_OxfordPets.json") in text
    assert "4 classes; 16 train, 4 val, 12 test images" in text
    assert text.endswith("OK: OxfordPets is ready (32 images opened).")
    assert C.main(["OxfordPets", "--root", str(pets)]) == 0


def test_wrong_class_count(pets):
    """What every run refuses first, the checker reports as the run would."""
    (pets / "oxford_pets" / "SUBSET").unlink()
    problems, text = run(pets)
    split = pets / "oxford_pets" / "split_zhou_OxfordPets.json"
    assert problems == [f"OxfordPets: 4 classes in {split}, but the published dataset has 37: it is incomplete "
                        f"(e.g. not all class folders extracted) or not the official split. Complete it as "
                        f"DATASETS.md describes; a deliberate subset says so with an empty file "
                        f"{pets / 'oxford_pets' / 'SUBSET'}."]
    assert C.main(["oxford_pets", "--root", str(pets)]) == 1


def test_unreadable_image_is_named(pets):
    bad = pets / "oxford_pets" / "images" / "Bengal_3.jpg"
    bad.write_bytes(b"not a jpeg")
    problems, _ = run(pets)
    assert len(problems) == 1 and problems[0].startswith("1 of 32 images checked cannot be read")
    assert f"Cannot read image {bad}" in problems[0]
    problems, _ = run(pets, max_images=4)  # a sample of 4 may miss it; the count says what was opened
    assert all("of 4 images checked" in p for p in problems)


def test_two_names_for_one_label(pets):
    path = pets / "oxford_pets" / "split_zhou_OxfordPets.json"
    split = json.loads(path.read_text())
    split["test"][0][2] = "persian"  # label 0 is "abyssinian" everywhere else
    path.write_text(json.dumps(split))
    problems, _ = run(pets)
    assert problems == [f"{path}: entry 0 of 'test' (images/{split['test'][0][0]}, label 0) is named "
                        f"'persian', other entries of label 0 'abyssinian': every entry of a class must "
                        f"carry its one name. Correct the entry, or replace the file with the original "
                        f"(DATASETS.md)."]


def test_missing_test_images_of_a_class(pets):
    path = pets / "oxford_pets" / "split_zhou_OxfordPets.json"
    split = json.loads(path.read_text())
    split["test"] = [e for e in split["test"] if e[1] != 2]
    path.write_text(json.dumps(split))
    problems, _ = run(pets)
    assert problems == ["1 class(es) have no test image (labels [2]): add test entries for them."]


def test_generated_split_is_reported(tmp_path, capsys):
    make_oxford_pets(str(tmp_path), split=False)
    split = tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json"
    problems, text = run(tmp_path)
    assert problems == [] and split.is_file()
    assert "NOTE: split_zhou_OxfordPets.json was missing and has been GENERATED" in text
    assert "not the official split" in text
    # A run's own log says so too (the dataset reader prints it when it generates the split).
    assert f"Note: {split} not found: GENERATING the split" in capsys.readouterr().out
    _, text = run(tmp_path)  # now read from the file
    assert "GENERATED" not in text


def test_missing_folder_and_unknown_name(tmp_path):
    problems, text = run(tmp_path)
    assert len(problems) == 1 and "dataset folder not found" in problems[0]
    problems, text = run(tmp_path, name="oxford_pet")
    configs = {**BENCHMARK_DATASETS, **TESTBED_DATASETS}
    valid = ", ".join(f"{config} ({configs[config]})" for config in sorted(configs))
    assert problems == [f"Unknown dataset 'oxford_pet'. Did you mean oxford_pets? Valid datasets: {valid}."]


def test_datasets_without_a_split_file(tmp_path):
    from tests.test_data_fakes import make_fgvc_aircraft
    make_fgvc_aircraft(str(tmp_path))
    problems, text = run(tmp_path, name="fgvc_aircraft")
    assert problems == [] and "GENERATED" not in text and "split file:" not in text


NO_FOLDER = ("No data folder given: pass --root /path/to/datasets or set DATA to it (the folder that holds one "
             "folder per dataset, DATASETS.md; a testbed dataset is generated there).")


@pytest.mark.parametrize("name", ["oxford_pets", "shapes"])
def test_no_data_folder_is_one_message(name, monkeypatch, capsys):
    """DATA unset and no --root: one line saying how to give the folder, before anything is read (not
    "Checking ... under <the current folder>" followed by "DATASET.ROOT is empty")."""
    monkeypatch.delenv("DATA", raising=False)
    assert C.main([name]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"Error: {NO_FOLDER}\n"
    assert run("", name) == ([NO_FOLDER], f"PROBLEM: {NO_FOLDER}")


def test_data_is_named_when_it_gave_the_folder(monkeypatch, capsys):
    """The folder from DATA (the default of --root) is refused under that name, --root's under --root."""
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
    monkeypatch.setenv("DATA", package)
    assert C.main(["oxford_pets"]) == 1
    assert capsys.readouterr().err.startswith(f"Error: DATA={package} is the repository's datasets/ package")
    assert C.main(["oxford_pets", "--root", package]) == 1
    assert capsys.readouterr().err.startswith(f"Error: --root {package} is the repository's datasets/ package")
