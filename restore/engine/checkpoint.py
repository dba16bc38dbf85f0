"""Checkpoints in Dassl's layout (docs/REPRODUCING.md section 6), safe to load with `weights_only=True`.

    <directory>/<registered name>/model.pth.tar-<epoch>     dict: state_dict, epoch, optimizer,
                                                            scheduler, val_result (+ rng, scaler,
                                                            trainer: ours only)
    <directory>/<registered name>/checkpoint                text: the latest file name
    <directory>/<registered name>/interrupted.pth.tar       a mid-epoch state (a run stopped by a signal)

Files are written to a temporary file in the same folder and renamed (restore.files), so an interrupted save
never leaves a half-written checkpoint, and a failed one names the file. Loading runs no code from the file
(restore.safe_pickle): `weights_only=True` first; original Dassl checkpoints pickle their LR scheduler and
optimizer objects, which a restricted unpickler builds (torch classes only, Dassl need not be installed);
anything else needs the opt-in `trust=True` (TRUST_FILES, --trust-files).
"""
import logging
import os
import pickle
import random

import numpy as np
import torch

from ..files import atomic_write, save_torch
from ..safe_pickle import UntrustedFileError, torch_load

log = logging.getLogger(__name__)

BEST = "model-best.pth.tar"
# A run stopped by a signal mid-epoch (restore/engine/stop.py): its own name, never in the `checkpoint`
# record nor a `model.pth.tar-<epoch>`, so that only a resume takes it; removed when its epoch ends.
INTERRUPTED = "interrupted.pth.tar"


class CheckpointFileError(FileNotFoundError):
    """A requested checkpoint file does not exist; the message lists what does."""


def epoch_file(epoch: int) -> str:
    return f"model.pth.tar-{epoch}"


def save_checkpoint(state: dict, save_dir: str, model_name: str = "") -> str:
    """Write `state` to `save_dir/model.pth.tar-<state["epoch"]>` (or `model_name`) atomically and
    record it in `save_dir/checkpoint`. Returns the path. A failed write (a full disk) raises OSError
    naming the file; the previous checkpoint and record stay as they were. The best and the interrupted
    checkpoint are not recorded as the latest."""
    name = model_name or epoch_file(state["epoch"])
    path = save_torch(state, os.path.join(save_dir, name))
    if name not in (BEST, INTERRUPTED):
        atomic_write(os.path.join(save_dir, "checkpoint"), lambda f: f.write(f"{name}\n".encode()))
    log.info(f"Checkpoint saved to {path}")
    return path


def latest_checkpoint(save_dir: str):
    """The path named by `save_dir/checkpoint`, or None when there is none (or it names no file)."""
    record = os.path.join(save_dir, "checkpoint")
    if not os.path.isfile(record):
        return None
    with open(record) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        return None
    path = os.path.join(save_dir, lines[0])
    return path if os.path.isfile(path) else None


def available_epochs(save_dir: str) -> list:
    if not os.path.isdir(save_dir):
        return []
    epochs = []
    for name in os.listdir(save_dir):
        if name.startswith("model.pth.tar-") and name[len("model.pth.tar-"):].isdigit():
            epochs.append(int(name[len("model.pth.tar-"):]))
    return sorted(epochs)


def model_file(model_dir: str, name: str, epoch=None) -> str:
    """`model_dir/name/model.pth.tar-<epoch>`; without an epoch, model-best.pth.tar if present, else the
    latest checkpoint. Missing -> CheckpointFileError naming the file and the epochs that exist."""
    save_dir = os.path.join(model_dir, name)
    if epoch is not None:
        path = os.path.join(save_dir, epoch_file(epoch))
    elif os.path.isfile(os.path.join(save_dir, BEST)):
        path = os.path.join(save_dir, BEST)
    else:
        path = latest_checkpoint(save_dir) or os.path.join(save_dir, BEST)
    if not os.path.isfile(path):
        epochs = available_epochs(save_dir)
        if epochs:
            hint = (f"Saved epochs there: {', '.join(map(str, epochs))}; pass --load-epoch "
                    f"{epochs[-1]} (by default only the last epoch, OPTIM.MAX_EPOCH, is saved).")
        elif os.path.isdir(model_dir):
            found = sorted(d for d in os.listdir(model_dir)
                           if os.path.isdir(os.path.join(model_dir, d)) and not d.startswith("."))
            hint = (f"{save_dir} holds no checkpoints. Sub-folders of {model_dir}: "
                    f"{', '.join(found) or 'none'} (the trainer that wrote them may differ from "
                    f"--trainer, or training did not finish).")
        else:
            hint = f"The folder {model_dir} does not exist: check --model-dir."
        raise CheckpointFileError(f"No model at {path}. {hint}")
    return path


# ------------------------------------------------------------------------------------------- loading
def load_checkpoint(path: str, map_location="cpu", trust: bool = False) -> dict:
    """Load a checkpoint without running code from it (restore.safe_pickle.torch_load): ours load
    with `weights_only=True`, original Dassl ones through the restricted unpickler; anything else
    raises UntrustedFileError unless `trust` (TRUST_FILES, --trust-files). An unreadable file
    (damaged, truncated, not a checkpoint) raises CheckpointFileError naming it."""
    try:
        return torch_load(path, map_location=map_location, trust=trust)
    except UntrustedFileError:
        raise
    except Exception as err:  # torch raises many kinds for a file that is no checkpoint
        reason = str(err).strip().split("\n")[0].split(". ")[0]
        raise CheckpointFileError(f"Cannot read checkpoint {path} ({type(err).__name__}: {reason}): the file "
                                  "is damaged, incomplete or no PyTorch checkpoint.") from None


def newest_readable_checkpoint(save_dir: str, trust: bool = False):
    """(path, state) of the newest checkpoint under `save_dir` that loads, or (None, None) when there
    is none. Newest = the highest model.pth.tar-<epoch> (the `checkpoint` record's file first when it
    names another). A damaged newer file (a disk that filled up, a copy cut short) is reported and
    skipped, so that a resume continues from the intact epochs instead of training them again; when
    every file is damaged, CheckpointFileError lists them. A file refused as untrusted is no damage:
    its UntrustedFileError stops the resume (`trust`: TRUST_FILES)."""
    record = latest_checkpoint(save_dir)
    paths = [os.path.join(save_dir, epoch_file(e)) for e in reversed(available_epochs(save_dir))]
    if record is not None and record not in paths:
        paths.insert(0, record)
    damaged = []
    for path in paths:
        try:
            state = load_checkpoint(path, trust=trust)
        except UntrustedFileError:
            raise
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            damaged.append(path)
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            log.warning(f"Warning: cannot read {path} ({reason})")
            continue
        if damaged:
            log.warning(f"Note: resuming from {path}, the newest readable checkpoint; skipped the damaged "
                        f"{', '.join(damaged)} (it is written again when its epoch is trained).")
        return path, state
    if damaged:
        raise CheckpointFileError(
            f"Every checkpoint in {save_dir} is damaged ({', '.join(damaged)}): delete them to train from "
            f"scratch, or restore them from a copy.")
    return None, None


def remove_partial_writes(folder: str) -> list:
    """Delete the temporary files that a killed save left in `folder` and its sub-folders (one level:
    `<OUTPUT_DIR>/<registered name>/`): hidden `.<name>.<random>.tmp` files of `restore.files.atomic_write`
    and the like. Call it only while holding the folder (restore.lock), at the start of a run. Returns them."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    dirs = [folder] + [os.path.join(folder, d) for d in sorted(os.listdir(folder))
                       if os.path.isdir(os.path.join(folder, d)) and not d.startswith(".")]
    for d in dirs:
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if name.startswith(".") and name.endswith(".tmp") and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    if removed:
        log.info(f"Removed {len(removed)} temporary file(s) left by an interrupted run: {', '.join(removed)}")
    return removed


def strip_module_prefix(state_dict: dict) -> dict:
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def convert_legacy(trainer: str, state_dict: dict) -> dict:
    """Original CoOp-lineage keys -> ours, via restore.legacy when it exists (else unchanged)."""
    try:
        from ..legacy import convert_state_dict
    except ImportError:
        return state_dict
    return convert_state_dict(trainer, state_dict)


def load_pretrained_weights(model, path: str, trainer: str, trust: bool = False) -> None:
    """MODEL.INIT_WEIGHTS: keep the keys whose names and shapes match the model (Dassl's semantics)."""
    if not os.path.isfile(path):
        raise CheckpointFileError(f"MODEL.INIT_WEIGHTS file not found: {path}")
    ckpt = load_checkpoint(path, trust=trust)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = convert_legacy(trainer, strip_module_prefix(state))
    own = model.state_to_save()
    matched = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    discarded = sorted(set(state) - set(matched))
    if not matched:
        raise CheckpointFileError(f"No weights in {path} match the {trainer} model (MODEL.INIT_WEIGHTS).")
    model.load_state_dict(matched, strict=False)
    log.info(f"Successfully loaded pretrained weights from {path}")
    if discarded:
        log.info(f"** The following layers are discarded due to unmatched keys or layer size: {discarded}")


# ------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    """The python, numpy and torch RNG states as tensors and plain values (weights_only-safe)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                       int(np_has_gauss), float(np_gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
