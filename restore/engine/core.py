"""The engine core: what both engines do the same way, in one place. The native engine
(restore/engine/trainer.py) keeps its loop, TensorBoard and DDP; the Dassl adapter (trainers/base.py) keeps
Dassl's loop and hooks; both hold an `EngineCore` and call it for

- the build (`EngineCore.build`): the backbone, the input-size check, the precision, the method, its initial
  weights (MODEL.INIT_WEIGHTS), the optimiser (per-parameter-group LRs: OPTIM.STAGED_LR) and the schedule;
- the training step (`train_step`): the batch onto the device, the method's loss under the precision's
  autocast, the non-finite check, backward and optimiser step (or the method's `backward_and_update` hook,
  given a `GradientUpdate`), the LR schedule after an epoch's last step;
- the checkpoint's content (`checkpoint_state`, `save`), the resume decision (`resume`: ONE test for an
  original checkpoint, `run_record.has_record`), loading (`load`, `load_state`);
- evaluation (`evaluation_loader`, `evaluate`).

    core = EngineCore.build(cfg, classnames, device)
    terms = core.train_step(batch, epoch, batch_idx, num_batches)    # {name: 0-dim tensor}, detached
    core.save(directory, epoch); start = core.resume(directory); core.load(model_dir, epoch)
    split, loader = core.evaluation_loader(split, val_loader, test_loader)
    results = core.evaluate(loader, evaluator)

Host syncs of a step: the non-finite check reads the loss on the host (one per step); the loss terms stay
on the device (the native engine reads them at the print frequency; Dassl's loop reads them every step).
"""
import logging
import os
from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..distributed import all_reduce_mean, barrier, gather_objects, is_primary, rank
from ..methods.batch import Batch
from . import checkpoint as ckpt
from . import run_record
from .step import TrainStep

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


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
        self.module = TrainStep(model, precision)
        self.sharded_eval = False

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
        on the device, in its order ("loss", the terms, "acc", extras). NonFiniteLossError (one line naming
        where, the LR and every term) when the loss is NaN or infinite, before anything is updated."""
        batch = Batch(batch).to(self.device)
        hook = self.model.backward_and_update
        if hook is None:
            loss, terms = self.module(batch)
        else:
            with self._no_sync():  # the hook's GradientUpdate reduces each gradient itself
                loss, terms = self.module(batch)
        if not torch.isfinite(loss).all():  # a host sync per step
            raise NonFiniteLossError(self._non_finite_message(loss, terms, epoch, batch_idx, num_batches))
        if hook is None:
            self.precision.backward_and_step(loss, self.optim)
        else:
            hook(loss, terms, GradientUpdate(self.model.trainable_parameters(), self.optim, self.precision))
        if batch_idx + 1 == num_batches:
            self.sched.step()
        return {k: v.detach() for k, v in terms.items()}

    def _no_sync(self):
        import contextlib
        no_sync = getattr(self.module, "no_sync", None)  # DistributedDataParallel's
        return no_sync() if no_sync is not None else contextlib.nullcontext()

    def _non_finite_message(self, loss, terms, epoch, batch_idx, num_batches) -> str:
        from .precision import precision_key
        values = ", ".join(f"{k} {float(v):.4g}" for k, v in terms.items() if k != "loss")
        fix = f"Lower OPTIM.LR (now {self.cfg.OPTIM.LR})"
        if self.precision.mode == "fp16":  # the key that chose it, named as the config has it
            fix += f", or set {precision_key(self.cfg)[0]} amp or fp32 (fp16 overflows sooner)"
        return (f"The training loss is {float(loss)} at epoch {epoch + 1}/{self.cfg.OPTIM.MAX_EPOCH}, batch "
                f"{batch_idx + 1}/{num_batches} (lr {self.lr():.4e}; {values}). {fix}.")

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
        state = self.checkpoint_state(epoch, val_result)
        if is_primary():
            ckpt.save_checkpoint(state, os.path.join(directory, self.name), model_name=model_name)
        barrier()  # the other ranks may read it next (best_val)

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
        Returns the epoch to start from (0 when there is none)."""
        path, state = (ckpt.newest_readable_checkpoint(os.path.join(directory, self.name),
                                                        trust=self.cfg.TRUST_FILES)
                       if directory else (None, None))
        if path is None:
            log.info("No checkpoint found, train from scratch")
            return 0
        log.info(f"Found checkpoint at {directory} (will resume training)")
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
        log.info(f"Loaded model weights from {path}; resuming at epoch {start + 1} (lr {self.lr():.4e})")
        return start

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
