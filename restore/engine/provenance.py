"""What a run ran on, written to `<OUTPUT_DIR>/run_info.json` and the top of log.txt, and the check
that a rerun into the same folder is the same run.

run_info.json (plain JSON, rewritten by every run started in the folder):

    trainer, engine, eval ({"model_dir", "load_epoch"} for --eval-only, else null), command,
    code ({"version", "git_commit", "git_dirty"}), versions (python, torch, clip, dassl, ...),
    fewshot_cache ({"path", "sha256"} or null), backbone ({"name", "path", "sha256"}),
    config (the resolved config, nested)

`output_dir_conflict` compares it with the run about to start: a finished run (its log printed
"=> result") made with other settings (every key but run_record.OPERATIONAL_KEYS, and the
evaluated epoch), or a checkpoint that would be resumed under another training config, is
reported so that nothing is mixed or skipped by mistake.
"""
import glob
import json
import logging
import os
import platform
import re
import subprocess
import sys

from ..files import atomic_write
from ..torchscript import file_sha256  # one hash per file and process, shared with the TorchScript check
from .run_record import (OPERATIONAL_KEYS, RESUME_IGNORED, RunMismatchError, describe, differences,
                         plain)

log = logging.getLogger(__name__)

RUN_INFO = "run_info.json"
RESULT_SIGNAL = "=> result"
ACCURACY = re.compile(r"\* accuracy: ([\.\deE+-]+)%")


def _version(dist: str):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def code_version() -> dict:
    """The project's package version and, in a git checkout, its commit and whether files differ."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    info = {"version": _version("restore-clip"), "git_commit": None, "git_dirty": None}
    if os.path.exists(os.path.join(root, ".git")):
        try:
            git = ["git", "-C", root]
            info["git_commit"] = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                                                text=True, timeout=10).stdout.strip() or None
            status = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout
            info["git_dirty"] = bool(status.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def versions() -> dict:
    import torch
    return {"python": platform.python_version(), "torch": torch.__version__,
            "clip": _version("openai-clip") or _version("clip"),
            "dassl": _version("dassl"), "numpy": _version("numpy"), "yacs": _version("yacs")}


def backbone_file(cfg):
    """The file the backbone is read from (None for an in-memory one such as tiny-random)."""
    path = cfg.MODEL.BACKBONE.get("PATH", "")
    if path:
        return path
    name = cfg.MODEL.BACKBONE.NAME
    if name == "testbed":
        from ..testbed.model import DEFAULT_CHECKPOINT
        return str(DEFAULT_CHECKPOINT)
    import clip
    if name in clip.clip._MODELS:
        from ..backbone import openai_cache_path
        return openai_cache_path(name)
    return None


def _hashed(path):
    if path and os.path.isfile(path):
        return {"path": os.path.abspath(path), "sha256": file_sha256(path)}
    return None


def collect(cfg, dataset=None, engine="native", eval_args=None) -> dict:
    """The run record of `cfg` (call after the trainer is built: the few-shot cache exists then).
    `dataset`: the reader (its `fewshot_cache` path); `eval_args`: {"model_dir", "load_epoch"}."""
    reader = getattr(dataset, "reader", dataset)
    backbone = _hashed(backbone_file(cfg)) or {}
    backbone["name"] = cfg.MODEL.BACKBONE.get("PATH", "") or cfg.MODEL.BACKBONE.NAME
    return {"trainer": cfg.TRAINER.NAME, "engine": engine, "eval": eval_args,
            "command": list(sys.argv), "code": code_version(), "versions": versions(),
            "fewshot_cache": _hashed(getattr(reader, "fewshot_cache", None)),
            "backbone": backbone, "config": plain(cfg)}


def summary(info: dict) -> str:
    """The lines printed at the top of log.txt."""
    code, fewshot, backbone = info["code"], info["fewshot_cache"], info["backbone"]
    commit = code["git_commit"] or "not a git checkout"
    if code["git_dirty"]:
        commit += " (with uncommitted changes)"
    lines = ["** Run record (also in run_info.json) **",
             f"restore-clip {code['version']}, commit {commit}",
             ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v),
             f"backbone: {backbone['name']}" + (f" sha256 {backbone['sha256']}"
                                                 if "sha256" in backbone else ""),
             f"few-shot cache: {fewshot['path']} sha256 {fewshot['sha256']}" if fewshot
             else "few-shot cache: none"]
    return "\n".join(lines)


def record_run(cfg, dataset=None, engine="native", eval_args=None) -> dict:
    """Print the run record (log.txt) and write it to OUTPUT_DIR/run_info.json; returns it."""
    from ..distributed import is_primary
    info = collect(cfg, dataset, engine, eval_args)
    log.info(summary(info))
    if cfg.OUTPUT_DIR and is_primary():  # one writer in a run over several processes
        write_run_info(info, cfg.OUTPUT_DIR)
    return info


def write_run_info(info: dict, output_dir: str) -> str:
    """Write `info` to `<output_dir>/run_info.json` atomically; returns the path."""
    return atomic_write(os.path.join(output_dir, RUN_INFO), lambda f: json.dump(info, f, indent=2, sort_keys=True),
                        text=True)


def read_run_info(folder: str):
    """The run_info.json of `folder`, or None when it has none. RunMismatchError naming the file when it
    cannot be read or is no run record (damaged, cut short, edited): its settings cannot be compared."""
    path = os.path.join(folder, RUN_INFO)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        problem = None if isinstance(info, dict) and isinstance(info.get("config"), dict) else "it holds no config"
    except (OSError, ValueError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
    if problem:
        raise RunMismatchError(f"{path} is not a readable run record ({problem}): the run's settings cannot be "
                               f"compared. Delete it to accept the folder as it is (the next run writes it again), "
                               f"or choose another folder.")
    return info


def finished(folder: str) -> bool:
    """Whether a run in `folder` printed its evaluation result: a log.txt* holds "=> result" and an
    accuracy after it (the rule of sweep.plan.finished, which reads the value)."""
    for path in glob.glob(os.path.join(folder, "log.txt*")):
        with open(path, errors="replace") as f:
            text = f.read()
        if RESULT_SIGNAL in text and ACCURACY.search(text.split(RESULT_SIGNAL)[-1]):
            return True
    return False


def run_differences(info: dict, cfg, eval_args, ignore=OPERATIONAL_KEYS) -> list:
    """[(what, saved, now)] between a recorded run and the one about to start (or another recorded
    run): every config key but `ignore`, whether it evaluates only, and the evaluated epoch."""
    diffs = differences(info["config"], cfg, ignore)
    saved_eval = info.get("eval")
    if bool(saved_eval) != bool(eval_args):
        diffs.append(("--eval-only", bool(saved_eval), bool(eval_args)))
    elif eval_args and saved_eval.get("load_epoch") != eval_args.get("load_epoch"):
        diffs.append(("--load-epoch (LOADEP)", saved_eval.get("load_epoch"),
                      eval_args.get("load_epoch")))
    return diffs


def output_dir_conflict(cfg, eval_args=None):
    """(finished, message): whether OUTPUT_DIR holds a finished run, and why the run about to start
    must not go there (None when it may: nothing there, the same run, or a resumable checkpoint
    of the same training config)."""
    folder = cfg.OUTPUT_DIR
    done = finished(folder)
    info = read_run_info(folder)
    if info is None:
        return done, None
    if done:
        diffs = run_differences(info, cfg, eval_args)
        if diffs:
            return done, (f"{folder} holds a finished run made with other settings: "
                          f"{describe(diffs)}. Choose a new output folder (--output-dir, or OUTPUT "
                          f"for the scripts), or delete {folder} to run it again.")
        return done, None
    if eval_args is None and _has_checkpoint(folder, cfg.TRAINER.NAME):
        diffs = differences(info["config"], cfg, RESUME_IGNORED)
        if diffs:
            return done, (f"{folder} holds checkpoints of a run made with other settings: "
                          f"{describe(diffs)}. Resuming would mix them: rerun with the saved values, "
                          f"choose a new output folder (--output-dir), or delete {folder} to start "
                          f"over.")
    return done, None


def check_output_dir(cfg, eval_args=None) -> bool:
    """Raise RunMismatchError (see `output_dir_conflict`) or return whether OUTPUT_DIR holds a
    finished run of these settings."""
    if not cfg.OUTPUT_DIR:
        return False
    done, conflict = output_dir_conflict(cfg, eval_args)
    if conflict:
        raise RunMismatchError(conflict)
    return done


def skip_message(folder: str) -> str:
    unknown = "" if read_run_info(folder) else (
        " It has no run_info.json (made by an older version), so its settings were not compared.")
    return f"Results are available in {folder}. Skip this job (delete the folder to run it again).{unknown}"


def _has_checkpoint(folder, trainer):
    """Whether a training run into `folder` would resume (any model.pth.tar-<epoch> there)."""
    from ..methods import registry
    from .checkpoint import available_epochs
    if trainer not in registry.names():
        return False
    return bool(available_epochs(os.path.join(folder, registry.registered_name(trainer))))
