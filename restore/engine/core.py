"""The engine core: what both engines do the same way, in one place. The native engine
(restore/engine/trainer.py) keeps its loop, TensorBoard and DDP; the Dassl adapter (trainers/base.py) keeps
Dassl's loop and hooks; both hold an `EngineCore` and call it for

- the build (`EngineCore.build`): the backbone, the input-size check, the precision, the method, its initial
  weights (MODEL.INIT_WEIGHTS), the optimiser (per-parameter-group LRs: OPTIM.STAGED_LR) and the schedule;
- the training step (`train_step`): the batch onto the device, the method's loss under the precision's
  autocast, backward and optimiser step (or the method's `backward_and_update` hook, given a
  `GradientUpdate`), the finiteness of the loss and learned state into the run's flags, the LR schedule
  after an epoch's last step; `check` reads the flags at a check point;
- the checkpoint's content (`checkpoint_state`, `save`), the resume decision (`resume`: ONE test for an
  original checkpoint, `run_record.has_record`), loading (`load`, `load_state`);
- evaluation (`evaluation_loader`, `evaluate`).

    core = EngineCore.build(cfg, classnames, device)
    terms = core.train_step(batch, epoch, batch_idx, num_batches)    # {name: 0-dim tensor}, detached
    seen = core.check()                                               # NonFiniteLossError; seen.stop
    core.save(directory, epoch); start = core.resume(directory); core.load(model_dir, epoch)
    split, loader = core.evaluation_loader(split, val_loader, test_loader)
    results = core.evaluate(loader, evaluator)

Host syncs: a step reads nothing on the host (but a gradient scaler's own check). Whether the loss and the
learned state stayed finite goes into the run's flags (restore.engine.flags), read by `check` at the check
points: the native engine's print frequency and epoch ends, every save and every evaluation, and after every
step in the Dassl engine (whose loop reads the loss terms every step anyway).
"""
import logging
import math
import os
from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..distributed import all_reduce_mean, barrier, gather_objects, is_primary, rank, world_size
from ..errors import UserError
from ..methods.batch import Batch
from . import checkpoint as ckpt
from . import run_record
from .flags import NONE, RunFlags, Seen
from .step import TrainStep

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss, or the learned state, became NaN or infinite; the message names the first such
    step, its logged values and the likely key."""


class EngineCore:
    """A run's method, precision, optimiser and schedule, and what both engines do with them.

    cfg: the run's (frozen) config; classnames: the training classes; model: the method (a PromptedCLIP on
    its device, in its precision); optim / sched: None for a method with nothing to train (ZeroshotCLIP).
    `module` is the training step as an nn.Module (restore.engine.step.TrainStep), which the native engine
    wraps in DistributedDataParallel over several processes; `sharded_eval` is set with it."""

    def __init__(self, cfg, classnames, model, precision, optim=None, sched=None):
        from ..methods.registry import registered_name
        self.cfg, self.classnames = cfg, list(classnames)
        self.model, self.precision, self.optim, self.sched = model, precision, optim, sched
        self.name = registered_name(cfg.TRAINER.NAME)  # the checkpoint folder
        self.device = precision.device
        self.params = model.trainable_parameters()
        self.module = TrainStep(model, precision)
        self.sharded_eval = False
        self.resumed_position = None  # where a mid-epoch checkpoint stopped (resume)
        self.flags = RunFlags(self.device)  # the run's one small device tensor, read at check points
        self._bad = None  # (names, values, loss) of the first non-finite step, on the device
        self._steps = {}  # step -> (epoch, batch, batches, lr) of the steps since the last check, host-side

    # ---------------------------------------------------------------------------------------- build
    @classmethod
    def build(cls, cfg, classnames, device) -> "EngineCore":
        """CLIP (MODEL.BACKBONE), checked against INPUT.SIZE; the precision (the method's PREC key); the
        method; MODEL.INIT_WEIGHTS; then, when it has trainable parameters, the optimiser and schedule.
        The same log lines in both engines; random draws in the originals' order (CLIP, then the method)."""
        from ..adapters import input_resolution
        from ..backbone import build_backbone
        from ..methods import build_model
        from .optim import build_optimizer
        from .precision import Precision
        from .schedule import build_lr_scheduler

        name = cfg.TRAINER.NAME
        backbone = cfg.MODEL.BACKBONE.get("PATH", "") or cfg.MODEL.BACKBONE.NAME
        log.info(f"Loading CLIP (backbone: {backbone})")
        clip_model = build_backbone(cfg)
        resolution = input_resolution(clip_model)
        if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
            raise ValueError(f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP backbone {backbone!r} takes "
                             f"{resolution}x{resolution} images: set INPUT.SIZE ({resolution}, {resolution}).")
        precision = Precision.from_cfg(cfg, device)
        log.info(f"Building {name}")
        model = build_model(cfg, classnames, clip_model)
        if cfg.MODEL.INIT_WEIGHTS:
            ckpt.load_pretrained_weights(model, cfg.MODEL.INIT_WEIGHTS, name, trust=cfg.TRUST_FILES)
        precision.prepare(model)
        params = model.trainable_parameters()
        optim = sched = None
        if params:
            enabled = [n for n, p in model.named_parameters() if p.requires_grad]
            log.info(f"Parameters to be updated: {sorted(enabled)}")
            log.info(f"# params to be updated: {sum(p.numel() for p in params):,}")
            optim = build_optimizer(model, params, cfg.OPTIM)
            sched = build_lr_scheduler(optim, cfg.OPTIM)
        else:  # zero-shot CLIP: nothing to train or save, always evaluated
            model.eval()
        return cls(cfg, classnames, model, precision, optim, sched)

    @property
    def trainable(self) -> bool:
        return self.optim is not None

    def lr(self) -> float:
        """The current LR of the first parameter group (what the log line shows)."""
        return self.optim.param_groups[0]["lr"]

    # ------------------------------------------------------------------------------------- the step
    def train_step(self, batch, epoch: int, batch_idx: int, num_batches: int) -> Dict[str, Tensor]:
        """One optimiser step on the loader's `batch` (a dict of Dassl's keys), at 0-based `batch_idx` of
        `num_batches` in 0-based `epoch`; the LR schedule steps after the epoch's last batch (the
        CoOp-lineage trainers' `update_lr`). Returns the method's logged values as detached 0-dim tensors
        on the device, in its order ("loss", the terms, "acc", extras). Nothing is read on the host (but a
        gradient scaler's own check): whether the loss and the learned state stayed finite goes into the
        run's flags (restore.engine.flags), which `check` reads."""
        batch = Batch(batch).to(self.device)
        hook = self.model.backward_and_update
        if hook is None:
            loss, terms = self.module(batch)
        else:
            with self._no_sync():  # the hook's GradientUpdate reduces each gradient itself
                loss, terms = self.module(batch)
        step = epoch * num_batches + batch_idx
        self._steps[step] = (epoch, batch_idx, num_batches, self.lr())
        if hook is None:
            self.precision.backward_and_step(loss, self.optim)
        else:
            hook(loss, terms, GradientUpdate(self.params, self.optim, self.precision))
        terms = {k: v.detach() for k, v in terms.items()}
        self._watch(step, loss.detach(), terms)
        if batch_idx + 1 == num_batches:
            self.sched.step()
        return terms

    def _no_sync(self):
        import contextlib
        no_sync = getattr(self.module, "no_sync", None)  # DistributedDataParallel's
        return no_sync() if no_sync is not None else contextlib.nullcontext()

    def _watch(self, step: int, loss: Tensor, terms: Dict[str, Tensor]) -> None:
        """Fold this step into the run's flags: the loss, the learned parameters after the update and,
        without a gradient scaler (which skips steps with infinite gradients on purpose), the gradients.
        The first bad step's logged values are kept (on the device) for the message."""
        state = [p.detach().reshape(-1) for p in self.params]
        if self.precision.scaler is None:
            state += [p.grad.detach().reshape(-1) for p in self.params if p.grad is not None]
        finite = torch.isfinite(loss).all() & torch.isfinite(torch.cat(state)).all()
        values = torch.stack([v.reshape(()).to(torch.float64) for v in terms.values()])
        if self._bad is None or self._bad[1].shape != values.shape:
            self._bad = (list(terms), values, loss.to(torch.float64))
        first = ~finite & (self.flags.tensor[2] == NONE)
        self._bad = (list(terms), torch.where(first, values, self._bad[1]),
                     torch.where(first, loss.to(torch.float64), self._bad[2]))
        self.flags.record(step, finite)

    def check(self) -> Seen:
        """A check point (restore.engine.flags): read the run's flags on the host, over every rank. A
        non-finite loss or learned state since the start raises NonFiniteLossError naming the first bad step,
        its values and the likely key; otherwise returns what was seen (`stop`: a stop was requested)."""
        seen = self.flags.read()
        if seen.non_finite:
            raise NonFiniteLossError(self._non_finite_message(seen.first_bad_step))
        for step in [s for s in self._steps if s < max(self._steps, default=0)]:
            del self._steps[step]  # positions are kept only until they are checked
        return seen

    def _non_finite_message(self, step: Optional[int]) -> str:
        names, values, loss = self._bad
        values, loss = values.tolist(), float(loss)
        epoch, batch_idx, num_batches, lr = self._steps.get(step, (None, None, None, self.lr()))
        where = (f"at epoch {epoch + 1}/{self.cfg.OPTIM.MAX_EPOCH}, batch {batch_idx + 1}/{num_batches} "
                 f"(step {step + 1})" if epoch is not None else f"at step {step + 1}")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in zip(names, values) if k != "loss")
        if math.isfinite(loss):
            what = (f"the loss was {loss:.4g} ({shown}) but the learned parameters or their gradients became "
                    f"non-finite in the update")
        else:
            what = f"the training loss is {loss} ({shown})"
        return f"Training stopped {where}, lr {lr:.4e}: {what}. {self._likely_fix(names, values)}."

    def _likely_fix(self, names: List[str], values: List[float]) -> str:
        """The key most likely behind a non-finite step: a non-finite term's weight (its method spec's
        `loss_keys`) when only weighted terms went non-finite, else OPTIM.LR (and fp16 precision)."""
        from ..checks import lookup
        from ..methods import registry
        from .precision import precision_key
        keys = registry.get(self.cfg.TRAINER.NAME).loss_keys
        bad = [k for k, v in zip(names, values) if not math.isfinite(v) and k != "loss"]
        weighted = [k for k in bad if k in keys]
        fixes = [f"lower {keys[k]} (now {lookup(self.cfg, keys[k])}), which weights {k}" for k in weighted]
        if not bad or len(weighted) < len(bad):
            fixes.append(f"lower OPTIM.LR (now {self.cfg.OPTIM.LR})")
        if self.precision.mode == "fp16":  # the key that chose it, named as the config has it
            fixes.append(f"set {precision_key(self.cfg)[0]} amp or fp32 (fp16 overflows sooner)")
        text = "; or ".join(fixes)
        return text[0].upper() + text[1:]

    # ---------------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self, epoch: int, val_result=None) -> dict:
        """What a checkpoint holds after 0-based `epoch`: the method's state (no frozen CLIP), optimiser,
        schedule and scaler state as plain data, this process's RNG states (and, over several processes,
        every rank's: `rng_ranks`, so that each rank's augmentations resume exactly), and the run record
        (restore.engine.run_record.checkpoint_record). Every rank must call it (it gathers)."""
        state = {
            "state_dict": self.model.state_to_save(),
            "epoch": epoch + 1,
            "optimizer": self.optim.state_dict(),
            "scheduler": self.sched.state_dict(),
            "val_result": val_result,
            "rng": ckpt.rng_state(),
            "scaler": self.precision.state_dict(),
            **run_record.checkpoint_record(self.cfg, self.classnames),
        }
        ranks = gather_objects(state["rng"])
        if len(ranks) > 1:
            state["rng_ranks"] = ranks
        return state

    def save(self, directory: str, epoch: int, val_result=None, model_name: str = "") -> None:
        """`checkpoint_state` into `directory/<registered name>/` (model.pth.tar-<epoch + 1>, or
        `model_name`), written by rank 0; every rank returns once it is there."""
        self.check()  # a non-finite state is never saved
        state = self.checkpoint_state(epoch, val_result)
        if is_primary():
            ckpt.save_checkpoint(state, os.path.join(directory, self.name), model_name=model_name)
        barrier()  # the other ranks may read it next (best_val)

    def save_interrupted(self, directory: str, epoch: int, position: dict) -> str:
        """A mid-epoch checkpoint (a run stopped by a signal, restore/engine/stop.py): `checkpoint_state` as
        after the epochs before 0-based `epoch`, plus `interrupted`: `position` ({"epoch", "batch": batches
        done, "num_batches", "meters": the log's running sums}) with the process count and every rank's
        batches of the epoch (`batches`: this rank's, lists of indices). Written to
        `directory/<registered name>/interrupted.pth.tar`, outside the `checkpoint` record. Every rank calls
        it; returns the path."""
        self.check()  # a non-finite state is never saved
        batches = position.pop("batches")
        ranks = gather_objects({"indices": torch.tensor([i for b in batches for i in b], dtype=torch.int64),
                                "sizes": [len(b) for b in batches]})
        state = self.checkpoint_state(epoch - 1)
        state["interrupted"] = {**position, "world_size": world_size(), "batches": ranks}
        path = os.path.join(directory, self.name, ckpt.INTERRUPTED)
        if is_primary():
            ckpt.save_checkpoint(state, os.path.dirname(path), model_name=ckpt.INTERRUPTED)
        barrier()
        return path

    def discard_interrupted(self, directory: str) -> None:
        """Remove the mid-epoch checkpoint of `directory` (its epoch has ended: the epoch's own checkpoint
        holds the state from here on)."""
        path = os.path.join(directory, self.name, ckpt.INTERRUPTED)
        if is_primary() and os.path.exists(path):
            os.remove(path)
            log.info(f"Removed the mid-epoch checkpoint {path} (its epoch has ended)")

    def load_state(self, path: str, checkpoint, resume: bool = False) -> None:
        """Check `checkpoint` (read from `path`) against this run (run_record.check_checkpoint) and load
        its model state: ours, or an original CoOp-lineage one converted (restore.legacy), onto the
        model's device (nested extra state too: PromptSRC's running GPA sum)."""
        from ..legacy import convert_state_dict, describe_mismatch, unwrap
        from ..methods import CheckpointError
        run_record.check_checkpoint(checkpoint, self.cfg, self.classnames, self.model.class_specific, path,
                                    resume=resume)
        trainer = self.cfg.TRAINER.NAME
        state = unwrap(checkpoint)
        try:
            self.model.load_state(_to_device(convert_state_dict(trainer, state), self.device), source=path)
        except CheckpointError as err:
            raise CheckpointError(f"{err}{describe_mismatch(trainer, state)}") from None

    def resume(self, directory: str) -> int:
        """Continue from the newest readable checkpoint under `directory/<registered name>/`: the model,
        and for a checkpoint of this project (it carries the run record) the optimiser, schedule, scaler
        and RNG states; an original checkpoint restarts the optimiser and sets the schedule from its epoch.
        Returns the epoch to start from (0 when there is none).

        A mid-epoch checkpoint (`interrupted.pth.tar`, written when a signal stopped the run) comes first: it
        is newer than any epoch's. Its position is kept in `self.resumed_position` ({"epoch", "batch",
        "num_batches", "meters", "batches": this rank's, "rng": this rank's} or None) for the loop; it is
        refused (UserError) for another number of processes than it was saved by, since each process holds
        its share of the epoch's batches. An epoch's checkpoint saved by another number of processes is
        resumed with a note."""
        self.resumed_position = None
        path, state = self._newest_state(directory) if directory else (None, None)
        if path is None:
            log.info("No checkpoint found, train from scratch")
            return 0
        log.info(f"Found checkpoint at {directory} (will resume training)")
        self._check_process_count(path, state)
        self.load_state(path, state, resume=True)
        if run_record.has_record(state):
            if state.get("optimizer"):
                self.optim.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.precision.load_state_dict(state.get("scaler"))
            rng = state.get("rng_ranks", [state.get("rng")])
            if rank() < len(rng) and rng[rank()]:
                ckpt.set_rng_state(rng[rank()])
        else:  # an original Dassl checkpoint: another optimizer layout, a pickled scheduler
            log.warning("Note: an original (non-RESTORE) checkpoint: the optimizer state starts afresh")
            self.sched.load_state_dict({"last_epoch": state["epoch"]})
        start = int(state["epoch"])
        at = ""
        if "interrupted" in state:
            position = dict(state["interrupted"])
            mine = position.pop("batches")[rank()]
            flat, offset = mine["indices"].tolist(), 0  # a CPU tensor of the file: no device read
            position["batches"] = []
            for size in mine["sizes"]:
                position["batches"].append(flat[offset:offset + size])
                offset += size
            position["rng"] = state.get("rng_ranks", [state.get("rng")])[rank()]
            self.resumed_position = position
            at = f", batch {position['batch'] + 1}/{position['num_batches']}"
        log.info(f"Loaded model weights from {path}; resuming at epoch {start + 1}{at} (lr {self.lr():.4e})")
        return start

    def _newest_state(self, directory: str):
        """(path, state) of the checkpoint a resume takes: the mid-epoch one when there is one that reads,
        else the newest readable epoch's (restore.engine.checkpoint.newest_readable_checkpoint)."""
        save_dir = os.path.join(directory, self.name)
        interrupted = os.path.join(save_dir, ckpt.INTERRUPTED)
        if os.path.isfile(interrupted):
            try:
                return interrupted, ckpt.load_checkpoint(interrupted, trust=self.cfg.TRUST_FILES)
            except ckpt.CheckpointFileError as err:  # written atomically: only a damaged disk or copy
                log.warning(f"Warning: {err} Resuming from the last finished epoch instead.")
        return ckpt.newest_readable_checkpoint(save_dir, trust=self.cfg.TRUST_FILES)

    @staticmethod
    def _check_process_count(path: str, state) -> None:
        """A mid-epoch state continues only over as many processes as saved it (UserError); an epoch's
        state over another number continues with a note (it changes the result slightly)."""
        if not run_record.has_record(state):
            return
        now = world_size()
        if "interrupted" in state:
            saved = int(state["interrupted"]["world_size"])
            if saved != now:
                raise UserError(
                    f"{path} is a mid-epoch state saved by a run over {saved} process(es); this run has {now}. "
                    f"Each process holds its share of the epoch's batches: resume over {saved} "
                    f"(torchrun --nproc_per_node {saved}), or delete {path} to continue from the last "
                    f"finished epoch.")
            return
        saved = len(state.get("rng_ranks") or [None])
        if saved != now:
            log.warning(f"Note: {path} was saved by a run over {saved} process(es); this run continues over "
                        f"{now}. The global batches stay the same, but each process's random state for the "
                        f"augmentations and the order in which gradients are summed change, so the result "
                        f"differs slightly (about 1e-7) from a run over {saved}.")

    def load(self, directory: str, epoch: Optional[int] = None) -> None:
        """--eval-only: load `directory/<registered name>/model.pth.tar-<epoch>` (default: model-best.pth.tar,
        else the latest checkpoint), checked against this run."""
        if not directory:
            log.warning("Note that load_model() is skipped as no pretrained model is given "
                        "(ignore this if it's done on purpose)")
            return
        if not self.trainable:
            log.info(f"{self.cfg.TRAINER.NAME} has no trainable parameters: nothing to load from {directory}")
            return
        path = ckpt.model_file(directory, self.name, epoch)
        checkpoint = ckpt.load_checkpoint(path, trust=self.cfg.TRUST_FILES)
        self.load_state(path, checkpoint)
        saved = checkpoint.get("epoch") if isinstance(checkpoint, dict) else None
        log.info(f'Loading weights to {self.name} from "{path}" (epoch = {saved})')

    # ----------------------------------------------------------------------------------- evaluation
    @staticmethod
    def evaluation_loader(split: str, val_loader, test_loader):
        """(split, loader): the validation loader for "val" when there is one, else the test loader (Dassl)."""
        if split == "val" and val_loader is not None:
            return split, val_loader
        return "test", test_loader

    @torch.no_grad()
    def evaluate(self, loader, evaluator, split: str, progress: bool = False) -> dict:
        """Dassl's evaluation: "Evaluate on the *<split>* set", every batch's logits into `evaluator` (the
        class texts encoded once, under the precision's autocast), gathered over the processes when the
        evaluation is sharded, then evaluator.evaluate() (it prints the result lines). Returns its results."""
        from tqdm import tqdm
        self.check()  # no accuracy is reported for a non-finite state
        self.model.eval()
        evaluator.reset()
        log.info(f"Evaluate on the *{split}* set")
        with self.precision.autocast(), self.model.cached_text_features():
            for batch in tqdm(loader, disable=not progress):
                images = batch["img"].to(self.device, non_blocking=True)
                labels = batch["label"].to(self.device, non_blocking=True)
                evaluator.process(self.model(images).float(), labels)
        if self.sharded_eval:
            from .parallel import gather_evaluation
            gather_evaluation(evaluator)
        return evaluator.evaluate()


class GradientUpdate:
    """What a method's `backward_and_update(loss, terms, update)` hook gets: the trainable parameters, the
    gradients of any loss term as the engine's own update would use them, and the optimiser step.

    - `grad(term, retain_graph=False)` -> [gradient per parameter] (zeros where the term does not reach a
      parameter): over several processes the mean over the ranks (what DistributedDataParallel gives; the
      step's forward ran under `no_sync`, so nothing was reduced before), and with a gradient scaler (amp)
      unscaled. Differentiate several terms of one graph with `retain_graph=True` on all but the last.
    - `step(grads)` sets each parameter's gradient and steps the optimiser (with a scaler: its own
      non-finite check, which skips the step, and its update).

    With a scaler the scale is a power of two, so unscaling here and scaling back in `step` change no bit:
    a hook that steps with `grad(loss)` updates exactly as the engine's default does."""

    def __init__(self, params: List[torch.nn.Parameter], optim, precision):
        self.params, self.optim, self.precision = list(params), optim, precision
        self.scaler = precision.scaler

    def _scale(self):
        return self.scaler.scale(torch.ones((), device=self.params[0].device))

    def grad(self, term: Tensor, retain_graph: bool = False) -> List[Tensor]:
        if self.scaler is not None:
            term = self.scaler.scale(term)
        grads = torch.autograd.grad(term, self.params, retain_graph=retain_graph, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        grads = all_reduce_mean(grads)
        if self.scaler is not None:
            inverse = self._scale().double().reciprocal().float()  # as GradScaler.unscale_
            grads = [g * inverse for g in grads]
        return grads

    def step(self, grads: List[Tensor]) -> None:
        self.optim.zero_grad()
        if self.scaler is None:
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optim.step()
            return
        scale = self._scale()
        for p, g in zip(self.params, grads):
            p.grad = g * scale  # scaler.step unscales it again (exactly) and skips it when not finite
        self.scaler.step(self.optim)
        self.scaler.update()


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj
