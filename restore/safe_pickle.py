"""Reading pickled files without running code from them.

Unpickling can call any importable function, so a crafted checkpoint or cache runs code when it is
read. Every pickle the project reads goes through here: checkpoints (`torch_load`, used by
`restore.engine.load_checkpoint`), few-shot caches and ImageNet's preprocessed.pkl (`load_pickle`,
used by `restore.data.load_pickle`). `RestrictedUnpickler` resolves only the globals of an allow-list
and stops at anything else with an `UntrustedFileError` that names the file, the global and the
opt-in: `--trust-files` on train.py, `TRUST_FILES True` in a config, `trust=True` in Python, which
unpickles without restriction ("I trust every file this run reads").

Allow-lists ("module.name" as pickle records it -> "module.name" of the object to build):
- `CHECKPOINT_GLOBALS`: what torch.save writes for tensors and parameters, plus the globals of the
  original Dassl trainers' checkpoints (CoOp, CoCoOp, IVLP, VPT, MaPLe, PromptSRC, MaPLe_FSA, TCP): Dassl
  saves `scheduler.state_dict()`, which holds the successor cosine scheduler object and, through it,
  the SGD optimizer object (TCP's: Adam) (tests/fixtures/original_checkpoint_globals.json lists them).
- `restore.data.datum.CACHE_GLOBALS`: the Datum of CoOp-lineage caches, recorded under Dassl's class
  path and built as ours, so that Dassl need not be installed.
"""
import importlib
import io
import pickle
import types
import zipfile

import torch

from .errors import UserError

TRUST_OPT_IN = ("If you trust it, pass --trust-files (config: TRUST_FILES True; Python: trust=True): "
                "the run then reads every file without restriction.")

# What torch.save records for tensors, parameters and state dicts (all in torch's weights_only list;
# storage types, e.g. torch.FloatStorage, are resolved by torch.load itself).
TENSOR_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
})
# The globals beyond plain tensors in original Dassl-trainer checkpoints (what
# torch.serialization.get_unsafe_globals_in_checkpoint lists for them): the pickled successor
# scheduler, its optimizer, and the optimizer's `state` (a defaultdict(dict)).
ORIGINAL_CHECKPOINT_GLOBALS = frozenset({
    "builtins.dict",
    "collections.defaultdict",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.sgd.SGD",
    "torch.optim.adam.Adam",  # TCP's optimizer
})
CHECKPOINT_GLOBALS = {name: name for name in TENSOR_GLOBALS | ORIGINAL_CHECKPOINT_GLOBALS}


class UntrustedFileError(UserError):
    """A file refers to code outside its allow-list; it was not loaded (message: file, global, opt-in)."""


class ForbiddenGlobal(pickle.UnpicklingError):
    """Raised inside unpickling for a global outside the allow-list; `name` is "module.name"."""

    def __init__(self, name):
        super().__init__(f"global {name} is not allowed")
        self.name = name


def _python3_name(module, name):
    """Protocol-2 pickles record Python 2 names (torch.save writes `__builtin__.dict`)."""
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


def _resolve(dotted):
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that builds only the globals of `allowed` ("module.name" -> "module.name"
    of the object to use); any other global raises ForbiddenGlobal before anything is called, unless
    `trust` (then it resolves as plain pickle does)."""

    allowed = {}
    trust = False

    def find_class(self, module, name):
        dotted = ".".join(_python3_name(module, name))
        if dotted in self.allowed:
            return _resolve(self.allowed[dotted])
        if self.trust:
            return super().find_class(module, name)
        raise ForbiddenGlobal(dotted)


def unpickler(allowed: dict, trust: bool = False) -> type:
    """A RestrictedUnpickler class with this allow-list (torch.load subclasses the class it gets)."""
    return type("RestrictedUnpickler", (RestrictedUnpickler,), {"allowed": dict(allowed), "trust": trust})


def pickle_module(allowed: dict, trust: bool = False) -> types.ModuleType:
    """A stand-in for the `pickle` module whose Unpickler and load are restricted to `allowed`,
    for `torch.load(pickle_module=...)` (the one hook that exists on every torch >= 2.0)."""
    cls = unpickler(allowed, trust)
    mod = types.ModuleType("restricted_pickle")
    mod.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
    mod.Unpickler = cls
    mod.load = lambda file, **kwargs: cls(file, **kwargs).load()
    mod.loads = lambda data, **kwargs: cls(io.BytesIO(data), **kwargs).load()
    return mod


def _refused(path, err: ForbiddenGlobal, what, fix=""):
    return UntrustedFileError(
        f"{path} was not loaded: it refers to {err.name}, which {what} never holds, and unpickling it "
        f"could run code. {fix + ' ' if fix else ''}{TRUST_OPT_IN}")


def is_torchscript(path) -> bool:
    """Whether `path` is a TorchScript archive (a zip with constants.pkl beside data.pkl), which
    torch.load would hand to torch.jit.load, i.e. run as a program."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1] == "constants.pkl" for n in z.namelist())


def torch_load(path, map_location="cpu", trust: bool = False):
    """`torch.load` of a checkpoint that runs no code from the file.

    torch's `weights_only=True` first; a file it refuses (original Dassl checkpoints pickle their
    scheduler and optimizer objects) is read by a RestrictedUnpickler with `CHECKPOINT_GLOBALS`.
    `trust=True` unpickles without restriction. Raises UntrustedFileError for any other global;
    other errors of an unreadable file (UnpicklingError, EOFError, RuntimeError ...) propagate.
    """
    if not trust:
        if is_torchscript(path):  # torch.load(weights_only=False) would run it as a program
            raise UntrustedFileError(f"{path} is a TorchScript archive (a program), not a checkpoint: "
                                     f"not loaded. {TRUST_OPT_IN}")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            pass  # refused (a global outside torch's list) or not a pickle: read restricted below
    try:
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=pickle_module(CHECKPOINT_GLOBALS, trust))
    except ForbiddenGlobal as err:
        raise _refused(path, err, "a checkpoint of this project or of the original trainers") from None


def load_pickle(path, allowed: dict, what: str, fix: str = "", trust: bool = False):
    """Unpickle the file at `path` building only the globals of `allowed`. Raises UntrustedFileError
    for any other global (its message: `what` never holds it, and the `fix`); other errors propagate."""
    with open(path, "rb") as f:
        try:
            return unpickler(allowed, trust)(f).load()
        except ForbiddenGlobal as err:
            raise _refused(path, err, what, fix) from None
