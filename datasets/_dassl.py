"""Registration of restore.data's datasets in Dassl's DATASET_REGISTRY (only when Dassl is importable)."""
import importlib.util
import sys

from restore.data import DATASETS
from restore.data.base import import_readers
from restore.logs import kept_enabled

ADAPTERS = {}  # name -> the registered Dassl class
_IMPORT_ERROR = None


def dassl_import_error():
    """The exception raised while importing an installed but broken Dassl (e.g. `wilds` missing), or None."""
    return _IMPORT_ERROR


def _dassl_dataset_api():
    """(DATASET_REGISTRY, DatasetBase) from Dassl, or None when Dassl is not installed or fails to import."""
    global _IMPORT_ERROR
    if "dassl" not in sys.modules and importlib.util.find_spec("dassl") is None:
        return None
    try:
        with kept_enabled():  # Dassl's import disables logging below ERROR
            from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
    except Exception as e:  # installed but broken: leave the registry alone, keep the reason
        _IMPORT_ERROR = e
        return None
    _IMPORT_ERROR = None
    return DATASET_REGISTRY, DatasetBase


def make_adapter(name, reader, dassl_base):
    """A Dassl `DatasetBase` subclass named `name` whose splits are those of restore.data's `reader(cfg)`.

    Our Datums are kept (they have Dassl's attributes and pickle under Dassl's class path); the reader
    object stays available as `.reader`.
    """
    def __init__(self, cfg):
        self.reader = reader(cfg)
        dassl_base.__init__(self, train_x=self.reader.train_x, train_u=self.reader.train_u,
                            val=self.reader.val, test=self.reader.test)

    return type(name, (dassl_base,), {
        "__init__": __init__,
        "__module__": __name__,
        "__doc__": f"{name} for Dassl, read by {reader.__module__}.{reader.__qualname__}.",
        "dataset_dir": reader.dataset_dir,
    })


def register_all():
    """Register every restore.data dataset (the 15 benchmarks, plus the testbed's when present) in Dassl's
    registry, replacing earlier registrations of the same names (so calling it twice never raises).
    Returns {name: adapter class}; empty without Dassl."""
    api = _dassl_dataset_api()
    if api is None:
        return {}
    registry, dassl_base = api
    import_readers(include_testbed=True)
    for name, reader in DATASETS.items():
        adapter = make_adapter(name, reader, dassl_base)
        registry.register(adapter, force=True)
        ADAPTERS[name] = adapter
    return dict(ADAPTERS)
