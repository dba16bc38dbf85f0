"""`Datum` (one labelled image) and pickle I/O that interoperates with Dassl's pickles.

CoOp-lineage code caches few-shot splits (`split_fewshot/shot_K-seed_S.pkl`) and ImageNet's parsed lists
(`imagenet/preprocessed.pkl`) as pickled `dassl.data.datasets.base_dataset.Datum` objects. Our `Datum` keeps
Dassl's attribute names (`_impath`, `_label`, `_domain`, `_classname`) so that the pickled state is the same:

- `load_pickle` reads such files with or without Dassl installed: the Dassl class path is always mapped to
  our `Datum` (restore/ never imports dassl), so loaded items are ours whatever is installed; no other
  class is built (restore.safe_pickle), so a crafted cache runs no code.
- `save_pickle` writes our `Datum`s under the Dassl class path, so that CoOp-lineage code running with Dassl
  loads our caches unchanged (and we load them back through `load_pickle`).
"""
import pickle

from .. import safe_pickle
from ..files import atomic_write
from .errors import DatasetError

# Where Dassl defines its Datum; the class path recorded in every CoOp-lineage cache.
DASSL_DATUM_MODULE = "dassl.data.datasets.base_dataset"
DASSL_DATUM_NAME = "Datum"
# The only class a cache may build (restore.safe_pickle): Dassl's Datum (and ours) -> ours.
CACHE_GLOBALS = {f"{DASSL_DATUM_MODULE}.{DASSL_DATUM_NAME}": f"{__name__}.Datum",
                 f"{__name__}.Datum": f"{__name__}.Datum"}


class Datum:
    """One image: path, class label, domain label and class name (read-only), as Dassl's `Datum`.

    Unlike Dassl's, the constructor does not check that the file exists: readers check existence once
    per dataset and report every missing file in one DatasetError instead.
    """

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}: {impath!r}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def __repr__(self):
        return (f"Datum(impath={self._impath!r}, label={self._label!r}, "
                f"domain={self._domain!r}, classname={self._classname!r})")


class _DasslPathPickler(pickle._Pickler):
    """Pickles our Datum class by Dassl's class path (the instances' state is already Dassl's).

    The C pickler insists that a class be importable under the path it records; the pure-Python one
    lets us write that reference ourselves.
    """

    def save_global(self, obj, name=None):
        if obj is not Datum:
            return super().save_global(obj, name)
        if self.proto >= 4:
            self.save(DASSL_DATUM_MODULE)
            self.save(DASSL_DATUM_NAME)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{DASSL_DATUM_MODULE}\n{DASSL_DATUM_NAME}\n".encode("utf-8"))
        self.memoize(obj)


def load_pickle(path, trust=False):
    """Load a pickle written by CoOp-lineage code (Dassl Datums) or by `save_pickle`, without Dassl.

    Builds only Datums (CACHE_GLOBALS; containers, strings and numbers need no class): any other
    class raises UntrustedFileError unless `trust` (TRUST_FILES, --trust-files).
    """
    try:
        return safe_pickle.load_pickle(
            path, CACHE_GLOBALS, "a few-shot cache or preprocessed.pkl",
            fix="Delete it; it is regenerated on the next run (same seed -> same sample).", trust=trust)
    except FileNotFoundError:
        raise DatasetError(f"Cache file not found: {path}") from None
    except safe_pickle.UntrustedFileError:
        raise
    except Exception as e:  # truncated or foreign file
        raise DatasetError(
            f"Cannot read the cache file {path} ({type(e).__name__}: {e}). Delete it; it is regenerated "
            f"on the next run (same seed -> same sample)."
        ) from e


def save_pickle(obj, path, protocol=pickle.HIGHEST_PROTOCOL):
    """Pickle `obj` to `path` with our Datums recorded as Dassl's, atomically (temp file + rename)."""
    atomic_write(path, lambda f: _DasslPathPickler(f, protocol=protocol).dump(obj))
