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
so that a moved file still matches. Keys that one side lacks (a config from an older version,
Dassl-only keys) are not compared. Original CoOp-lineage checkpoints record nothing of this; they
load unchecked (said once).
"""
import os

from ..errors import UserError

OPERATIONAL_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "TRAIN.PRINT_FREQ",
                    "TRAIN.CHECKPOINT_FREQ", "VERBOSE", "USE_CUDA", "TRUST_FILES")
EVALUATION_KEYS = ("TEST.SPLIT", "TEST.EVALUATOR", "TEST.PER_CLASS_RESULT", "TEST.COMPUTE_CMAT",
                   "DATALOADER.TEST")
PATH_KEYS = ("MODEL.BACKBONE.PATH", "MODEL.INIT_WEIGHTS")
# Method keys that only change how a saved state is evaluated (relative to the method's node).
EVAL_TIME_METHOD_KEYS = ("PREC", "SURGERY.ALPHA_AT_TEST")


class RunMismatchError(UserError):
    """A checkpoint, cache or output folder was made for another run than the one about to use it."""


# ------------------------------------------------------------------------------------ config as data
def plain(node):
    """A config (yacs CfgNode, nested) as JSON-able dicts and lists (tuples become lists)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def flatten(tree, prefix="") -> dict:
    """{"OPTIM.MAX_EPOCH": 5, ...} from a nested dict."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _comparable(cfg) -> dict:
    flat = flatten(plain(cfg))
    for key in PATH_KEYS:
        if isinstance(flat.get(key), str):
            flat[key] = os.path.basename(flat[key])
    return flat


def _matches(key, patterns):
    return any(key == p or key.startswith(p + ".") for p in patterns)


def differences(saved, current, ignore=()) -> list:
    """[(key, saved value, current value)] for the keys both configs hold, outside `ignore`
    (dotted keys or node prefixes), whose values differ. Configs: CfgNodes or plain dicts."""
    a, b = _comparable(saved), _comparable(current)
    return [(k, a[k], b[k]) for k in sorted(set(a) & set(b))
            if not _matches(k, ignore) and a[k] != b[k]]


def describe(diffs, limit=5) -> str:
    """"OPTIM.MAX_EPOCH 3 (saved) vs 5 (now), ..." for the first `limit` differences."""
    shown = "; ".join(f"{k} {old!r} (saved) vs {new!r} (now)" for k, old, new in diffs[:limit])
    return shown + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


RESUME_IGNORED = OPERATIONAL_KEYS + EVALUATION_KEYS


# ------------------------------------------------------------------------------ checkpoint record
def method_nodes(trainer: str) -> list:
    """The config nodes holding `trainer`'s settings (RESTORE's own node after its base method's)."""
    from ..methods import CONFIG_NODES
    nodes = [CONFIG_NODES.get(trainer, "")] if trainer in CONFIG_NODES else []
    if trainer.startswith("RESTORE"):
        nodes.append("RESTORE")
    return nodes


def method_settings(cfg) -> dict:
    """{dotted key: value} of the trainer's config node(s) plus the backbone (PATH's file name
    when set, so that a moved backbone file still matches)."""
    settings = {}
    for node in method_nodes(cfg.TRAINER.NAME):
        if node in cfg.TRAINER:
            settings.update(flatten(plain(cfg.TRAINER[node]), f"TRAINER.{node}."))
    path = cfg.MODEL.BACKBONE.get("PATH", "")
    settings["MODEL.BACKBONE"] = os.path.basename(path) if path else cfg.MODEL.BACKBONE.NAME
    return settings


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
    if not isinstance(state, dict) or "trainer" not in state:
        from ..legacy import original_layout, unwrap
        layout = original_layout(unwrap(state)) if isinstance(state, dict) else None
        origin = f" (written by the original {layout} code)" if layout else ""
        print(f"Note: {path}{origin} has no record of the trainer, settings and classes it was "
              "trained with; they are not checked.")
        return
    saved = state["trainer"]
    if saved != trainer:
        raise RunMismatchError(
            f"{path} was trained with {saved}, not {trainer}: pass --trainer {saved} with the config "
            f"it was trained with, or point {'--resume/OUTPUT_DIR' if resume else '--model-dir'} at "
            f"a {trainer} run.")
    ignore = [] if resume else [f"TRAINER.{n}.{k}" for n in method_nodes(trainer)
                                for k in EVAL_TIME_METHOD_KEYS]
    diffs = differences(state.get("method") or {}, method_settings(cfg), ignore)
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
