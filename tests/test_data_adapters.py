"""datasets/: the Dassl adapters. Without Dassl the package imports and registers nothing; with a Dassl
(a stand-in with Dassl's Registry semantics here; the real one was checked separately, see DATASETS.md) it
registers CoOp's 15 names, twice without error, and the classes build from restore.data."""
import importlib
import sys
import types

import pytest

from restore.data import BENCHMARK_DATASETS
from test_data_fakes import FAKES
from test_data_readers import make_cfg, rows


def fresh_import(monkeypatch):
    """Import datasets/ anew; at teardown sys.modules gets back exactly its earlier datasets* entries."""
    names = {"datasets", "datasets._dassl"} | {f"datasets.{key}" for key in BENCHMARK_DATASETS}
    names |= {m for m in sys.modules if m == "datasets" or m.startswith("datasets.")}
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # records the earlier entry (or its absence)
        del sys.modules[name]
    return importlib.import_module("datasets")


class Registry:
    """Dassl's registry semantics: duplicate name without force -> KeyError."""

    def __init__(self):
        self._obj_map = {}

    def register(self, obj=None, force=False):
        if obj.__name__ in self._obj_map and not force:
            raise KeyError(obj.__name__)
        self._obj_map[obj.__name__] = obj

    def registered_names(self):
        return list(self._obj_map)


class DasslDatasetBase:
    dataset_dir = ""

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x, self._train_u, self._val, self._test = train_x, train_u, val, test
        container = {(d.label, d.classname) for d in train_x}
        mapping = dict(container)
        self._classnames = [mapping[y] for y in sorted(mapping)]

    train_x = property(lambda self: self._train_x)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    classnames = property(lambda self: self._classnames)


@pytest.fixture
def stand_in_dassl(monkeypatch):
    for name in [m for m in sys.modules if m == "dassl" or m.startswith("dassl.")]:
        monkeypatch.delitem(sys.modules, name)
    mods = {n: types.ModuleType(n) for n in ("dassl", "dassl.data", "dassl.data.datasets")}
    mods["dassl.data.datasets"].DATASET_REGISTRY = Registry()
    mods["dassl.data.datasets"].DatasetBase = DasslDatasetBase
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    return mods["dassl.data.datasets"].DATASET_REGISTRY


def test_import_without_dassl_registers_nothing(monkeypatch):
    for name in [m for m in sys.modules if m == "dassl" or m.startswith("dassl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dassl", None)  # `import dassl` raises ImportError
    pkg = fresh_import(monkeypatch)
    assert pkg.ADAPTERS == {} and pkg.register_all() == {}
    assert importlib.import_module("datasets.oxford_pets").OxfordPets is None  # CoOp's module names exist


def test_broken_dassl_is_reported_not_raised(monkeypatch):
    for name in [m for m in sys.modules if m == "dassl" or m.startswith("dassl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dassl", types.ModuleType("dassl"))  # no dassl.data
    pkg = fresh_import(monkeypatch)
    assert pkg.ADAPTERS == {} and isinstance(pkg.dassl_import_error(), ImportError)


def test_registers_coop_names_twice_and_builds(tmp_path, monkeypatch, stand_in_dassl):
    pkg = fresh_import(monkeypatch)
    names = set(stand_in_dassl.registered_names())
    assert set(BENCHMARK_DATASETS.values()) <= names
    assert pkg.register_all() and pkg.register_all()  # no KeyError on re-registration
    pets = importlib.import_module("datasets.oxford_pets").OxfordPets
    assert pets is pkg.ADAPTERS["OxfordPets"] and issubclass(pets, DasslDatasetBase)
    assert pets.__name__ == "OxfordPets" and pets.dataset_dir == "oxford_pets"
    name, make, _ = FAKES["oxford_pets"]
    exp = make(tmp_path)
    ds = stand_in_dassl._obj_map["OxfordPets"](make_cfg(tmp_path, name, subsample="new"))
    assert ds.classnames == exp.classnames[2:]
    assert rows(ds.train_x) == [(p, y - 2, c) for p, y, c in exp.train if y >= 2]
    assert rows(ds.test) == rows(ds.reader.test)
