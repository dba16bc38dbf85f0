"""What a saved state was made with, and whether the run about to use it matches.

Every checkpoint written by either engine carries `checkpoint_record(cfg, classnames)`: the trainer,
its method settings, the class names it was trained on and the resolved config (plain data, so the
file still loads with `weights_only=True`). Before a checkpoint is used:

    check_checkpoint(state, cfg, classnames, class_specific, path, resume=False)   # --eval-only
    check_checkpoint(state, cfg, classnames, class_specific, path, resume=True)    # resuming

refuses, with one line, another trainer, other method settings, class-specific prompts on other
classes, and (resume) a config that differs in a key that changes what is trained.

Config keys compared on resume: every key except

    OPERATIONAL_KEYS  where and how a run executes, not what it computes (output paths, dataset
                      root, print / checkpoint frequency, device, trust opt-in), so that a requeued
                      job on another node or with another layout resumes;
    EVALUATION_KEYS   what only the final test reads (test split, evaluator, test batch size).

Files named by path (`PATH_KEYS`: the backbone file, MODEL.INIT_WEIGHTS) are compared by file name,
so that a moved file still matches. A key the saved record lacks (written by an older version, before
the key existed) is compared as its default, the value that run used; a key only the saved record holds
(Dassl-only keys, a key since removed) is not compared. Original CoOp-lineage checkpoints record nothing
of this; they load unchecked (said once).
"""
import logging
import os

from ..config import flatten, plain  # noqa: F401  (config as data; imported from here by callers)
from ..errors import UserError

# (METHOD_MODULES: which modules registered methods, and DATASET_OVERRIDES: which values came from the
# method's per-dataset overrides, say where things came from; the trainer and every value are compared.)
OPERATIONAL_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "TRAIN.PRINT_FREQ", "TRAIN.CHECKPOINT_FREQ",
                    "TRAIN.STOP_SIGNALS", "VERBOSE", "USE_CUDA", "TRUST_FILES", "METHOD_MODULES",
                    "DATASET_OVERRIDES")
EVALUATION_KEYS = ("TEST.SPLIT", "TEST.EVALUATOR", "TEST.PER_CLASS_RESULT", "TEST.COMPUTE_CMAT",
                   "DATALOADER.TEST")
PATH_KEYS = ("MODEL.BACKBONE.PATH", "MODEL.INIT_WEIGHTS")

log = logging.getLogger(__name__)


class RunMismatchError(UserError):
    """A checkpoint, cache or output folder was made for another run than the one about to use it."""


# ------------------------------------------------------------------------------------ comparing
def _comparable(cfg) -> dict:
    flat = flatten(plain(cfg))
    for key in PATH_KEYS:
        if isinstance(flat.get(key), str):
            flat[key] = os.path.basename(flat[key])
    return flat


def _matches(key, patterns):
    return any(key == p or key.startswith(p + ".") for p in patterns)


class Default:
    """The default of a key the saved record lacks (it predates the key): the value that run used."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return self.value == (other.value if isinstance(other, Default) else other)

    def __repr__(self):
        return repr(self.value)


def _defaults() -> dict:
    from ..config import get_cfg_default
    return _comparable(get_cfg_default())


def other_methods_nodes(trainer) -> list:
    """The config nodes of every registered method except `trainer`'s: a run never reads them."""
    from ..methods import registry
    own = set(registry.method_nodes(trainer))
    return [n.path for n in registry.nodes() if n.path not in own]


def differences(saved, current, ignore=(), trainer=None) -> list:
    """[(key, saved value, current value)] for the keys of `current` outside `ignore` (dotted keys or
    node prefixes) whose values differ. A key `saved` lacks is compared as its default (a `Default`), a
    key without a default (Dassl-only) is then skipped, and so is a key of another method's node (a
    method registered after the record was written: the small-CLIP fitting may have set it, and the run
    never reads it; `trainer` defaults to current's TRAINER.NAME, no skip when neither names one). Configs:
    CfgNodes or plain dicts."""
    a, b = _comparable(saved), _comparable(current)
    defaults = others = None
    diffs = []
    for k in sorted(b):
        if _matches(k, ignore):
            continue
        if k in a:
            old = a[k]
        else:
            defaults = _defaults() if defaults is None else defaults
            if others is None:
                name = trainer or b.get("TRAINER.NAME")
                others = other_methods_nodes(name) if name else []
            if k not in defaults or _matches(k, others):
                continue
            old = Default(defaults[k])
        if old != b[k]:
            diffs.append((k, old, b[k]))
    return diffs


def describe(diffs, limit=5) -> str:
    """"OPTIM.MAX_EPOCH 3 (saved) vs 5 (now), ..." for the first `limit` differences."""
    def saved(old):
        return f"{old!r} (the default: the saved record predates the key)" if isinstance(old, Default) \
            else f"{old!r} (saved)"
    shown = "; ".join(f"{k} {saved(old)} vs {new!r} (now)" for k, old, new in diffs[:limit])
    return shown + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


RESUME_IGNORED = OPERATIONAL_KEYS + EVALUATION_KEYS


# ------------------------------------------------------------------------------ checkpoint record
def method_settings(cfg) -> dict:
    """{dotted key: value} of the trainer's config nodes (its spec's `nodes`) plus the backbone
    (PATH's file name when set, so that a moved backbone file still matches)."""
    from ..checks import lookup
    from ..methods import registry
    settings = {}
    for path in registry.method_nodes(cfg.TRAINER.NAME):
        node = lookup(cfg, path)
        if isinstance(node, dict):
            settings.update(flatten(plain(node), f"{path}."))
    path = cfg.MODEL.BACKBONE.get("PATH", "")
    settings["MODEL.BACKBONE"] = os.path.basename(path) if path else cfg.MODEL.BACKBONE.NAME
    return settings


def evaluation_keys(trainer: str) -> list:
    """The full keys of `trainer`'s nodes that only change how a saved state is evaluated (declared
    with `evaluation=True`: PREC, SURGERY.ALPHA_AT_TEST): --eval-only may change them."""
    from ..methods import registry
    spec = registry.get(trainer) if trainer in registry.names() else None
    return [n.full(k) for n in (spec.nodes if spec else ()) for k in n.keys if k.evaluation]


def has_record(state) -> bool:
    """Whether a loaded checkpoint was written by this project (either engine), which records its run
    (`checkpoint_record`); an original CoOp-lineage checkpoint does not. The one test both engines use for
    "an original checkpoint" (resume: its optimizer and scheduler state are not ours to load)."""
    return isinstance(state, dict) and "trainer" in state


def checkpoint_record(cfg, classnames) -> dict:
    """The entries every checkpoint of this project carries beside the weights."""
    return {"trainer": cfg.TRAINER.NAME, "method": method_settings(cfg),
            "classnames": [str(c) for c in classnames], "config": plain(cfg)}


def _names(classnames, limit=4):
    shown = ", ".join(classnames[:limit])
    return f"{len(classnames)} classes: {shown}{', ...' if len(classnames) > limit else ''}"


def check_checkpoint(state, cfg, classnames, class_specific: bool, path: str,
                     resume: bool = False) -> None:
    """Refuse (RunMismatchError) a checkpoint made by another trainer or method settings, with
    class-specific prompts for other classes, or (`resume`) with other classes or another
    training config. Original checkpoints (no record) pass with a note."""
    trainer = cfg.TRAINER.NAME
    if not has_record(state):
        from ..legacy import original_layout, unwrap
        layout = original_layout(unwrap(state)) if isinstance(state, dict) else None
        origin = f" (written by the original {layout} code)" if layout else ""
        log.warning(f"Note: {path}{origin} has no record of the trainer, settings and classes it was "
                    "trained with; they are not checked.")
        return
    saved = state["trainer"]
    if saved != trainer:
        raise RunMismatchError(
            f"{path} was trained with {saved}, not {trainer}: pass --trainer {saved} with the config "
            f"it was trained with, or point {'--resume/OUTPUT_DIR' if resume else '--model-dir'} at "
            f"a {trainer} run.")
    ignore = [] if resume else evaluation_keys(trainer)
    saved_method = dict(state.get("method") or {})
    saved_config = flatten(state.get("config") or {})
    for key in method_settings(cfg):  # a node the record's method settings did not hold yet
        if key not in saved_method and key in saved_config:
            saved_method[key] = saved_config[key]
    diffs = differences(saved_method, method_settings(cfg), ignore, trainer)
    if diffs:
        raise RunMismatchError(
            f"{path} was trained with other {trainer} settings: {describe(diffs)}. Use the settings "
            f"it was trained with (the same config file and KEY VALUE overrides)"
            f"{', or choose a new OUTPUT_DIR' if resume else ''}.")
    saved_cfg = state.get("config")
    diffs = differences(saved_cfg, cfg, RESUME_IGNORED) if resume and saved_cfg else []
    if diffs:
        raise RunMismatchError(
            f"{path} was trained with other settings than this run: {describe(diffs)}. "
            f"Resuming would mix them: rerun with the saved values, choose a new OUTPUT_DIR "
            f"(--output-dir), or delete the run's folder to start over.")
    names = state.get("classnames")
    if names is None or list(names) == [str(c) for c in classnames]:
        return
    if resume:
        raise RunMismatchError(
            f"{path} was trained on other classes ({_names(list(names))}) than this run's "
            f"({_names(list(classnames))}): resume with the same dataset and "
            f"DATASET.SUBSAMPLE_CLASSES, or choose a new OUTPUT_DIR.")
    if class_specific:
        raise RunMismatchError(
            f"{path} holds class-specific contexts (TRAINER.COOP.CSC) learned for "
            f"{_names(list(names))}, not for this run's {_names(list(classnames))}: evaluate it on "
            f"the classes it was trained on, or train with TRAINER.COOP.CSC False for base-to-new.")
