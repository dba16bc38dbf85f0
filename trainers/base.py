"""One Dassl trainer for every method: a thin adapter between Dassl's `TrainerX` and `restore`.

The method (prompts, losses, epoch hooks, what to save) lives in `restore.methods`; this class only
moves batches, steps the optimiser, saves and loads. It reuses the native engine's pieces, so both
engines train, save and load the same way:

- model: `restore.build_backbone(cfg)` -> `restore.build_model(cfg, classnames, clip)`, precision
  from TRAINER.<node>.PREC (`restore.engine.precision`), optimiser over the method's trainable
  parameters (`restore.engine.optim`), registered under the original trainers' names
  (`restore.engine.names`: MultiModalPromptLearner, VLPromptLearner, prompt_learner).
- LR: `restore.engine.schedule.EpochLR` gives Dassl's per-epoch LRs (warm-up included) on any torch;
  Dassl's own warm-up scheduler passes the `verbose` argument that torch 2.7 removed, so it is never
  built. Stepped by `update_lr()` after the optimiser step of each epoch's last batch, as the
  CoOp-lineage trainers do; the method's `on_epoch_end` follows in `after_epoch`, before Dassl's
  own `after_epoch` tests and saves (PromptSRC's GPA swap at the last epoch happens there), as in
  the native engine.
- checkpoints: `<dir>/<registered name>/model.pth.tar-<epoch>` holding only `state_to_save()`
  (no frozen CLIP) with plain-data optimiser and scheduler state, written atomically
  (`restore.engine.checkpoint`), so they load with torch's `weights_only=True`. Loading accepts
  ours and the original CoOp / CoCoOp / IVLP / VPT / MaPLe / PromptSRC / MaPLe_FSA checkpoints
  (`restore.legacy`), never through Dassl's `torch.load` (restore.safe_pickle: no code runs from
  a checkpoint unless TRUST_FILES), and never prints a None val_result.
- evaluation: Dassl's `test()` with the class texts encoded once per evaluation.

Without Dassl (or with a broken install) the classes still exist, on `object`, and register nothing;
building one raises an ImportError that says why.
"""
import importlib.util
import os.path as osp
import sys

import torch

_DASSL_ERROR = None


def _import_dassl():
    """(TRAINER_REGISTRY, TrainerX), or (None, None) when Dassl is missing or fails to import."""
    global _DASSL_ERROR
    if "dassl" not in sys.modules and importlib.util.find_spec("dassl") is None:
        _DASSL_ERROR = ModuleNotFoundError("No module named 'dassl'")
        return None, None
    try:
        from dassl.engine import TRAINER_REGISTRY, TrainerX
    except Exception as err:  # installed but broken (e.g. `wilds` or `tensorboard` missing)
        _DASSL_ERROR = err
        return None, None
    _DASSL_ERROR = None
    return TRAINER_REGISTRY, TrainerX


TRAINER_REGISTRY, _TrainerX = _import_dassl()
DASSL_AVAILABLE = TRAINER_REGISTRY is not None
TRAINERS = {}  # name -> class, for every trainer defined here (registered in Dassl when available)


def dassl_import_error():
    """Why Dassl cannot be used (an exception), or None when it can."""
    return _DASSL_ERROR


def register(cls):
    """Class decorator: record `cls` and, with Dassl, register it in TRAINER_REGISTRY under its
    class name, replacing an earlier registration (re-importing never raises)."""
    TRAINERS[cls.__name__] = cls
    if DASSL_AVAILABLE:
        try:
            TRAINER_REGISTRY.register(cls, force=True)
        except TypeError:  # a Dassl whose Registry has no `force`
            TRAINER_REGISTRY._obj_map[cls.__name__] = cls
    return cls


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


class PromptTrainer(_TrainerX or object):
    """Dassl trainer around the `restore` method named by cfg.TRAINER.NAME."""

    # ------------------------------------------------------------------------------ building
    def __init__(self, cfg):
        if not DASSL_AVAILABLE:
            raise ImportError(f"The {type(self).__name__} Dassl trainer needs Dassl, which "
                              f"cannot be imported ({_DASSL_ERROR}). Install it from "
                              "https://github.com/KaiyangZhou/Dassl.pytorch, or run train.py with "
                              "--engine native.")
        super().__init__(cfg)

    def check_cfg(self, cfg):
        from restore.checks import check_config
        from restore.methods import METHODS
        check_config(cfg)
        if cfg.TRAINER.NAME not in METHODS:
            raise ValueError(f"TRAINER.NAME is {cfg.TRAINER.NAME!r}; the {type(self).__name__} "
                             f"trainer builds one of: {', '.join(METHODS)}")

    def build_model(self):
        import restore
        from restore.adapters import input_resolution
        from restore.engine.checkpoint import load_pretrained_weights
        from restore.engine.names import registered_name
        from restore.engine.optim import build_optimizer
        from restore.engine.precision import Precision
        from restore.engine.schedule import build_lr_scheduler

        cfg = self.cfg
        name = cfg.TRAINER.NAME
        classnames = self.dm.dataset.classnames
        backbone = cfg.MODEL.BACKBONE.get("PATH", "") or cfg.MODEL.BACKBONE.NAME
        print(f"Loading CLIP (backbone: {backbone})")
        clip_model = restore.build_backbone(cfg)
        resolution = input_resolution(clip_model)
        if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
            raise ValueError(f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP backbone "
                             f"{backbone!r} takes {resolution}x{resolution} images: set INPUT.SIZE "
                             f"({resolution}, {resolution}).")
        print(f"Building {name}")
        model = restore.build_model(cfg, classnames, clip_model)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(model, cfg.MODEL.INIT_WEIGHTS, name, trust=cfg.TRUST_FILES)
        self.precision = Precision.from_cfg(cfg, self.device)
        self.model = self.precision.prepare(model)

        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        self.optim = self.sched = None
        if trainable:
            print(f"Parameters to be updated: {sorted(trainable)}")
            print(f"# params to be updated: "
                  f"{sum(p.numel() for p in model.trainable_parameters()):,}")
            self.optim = build_optimizer(model, model.trainable_parameters(), cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model(registered_name(name), model, self.optim, self.sched)
        else:  # zero-shot CLIP: nothing to train or save, always in eval mode
            model.eval()
        if torch.cuda.device_count() > 1:
            print("Note: several GPUs are visible; training uses one (no DataParallel).")

    # ------------------------------------------------------------------------------ training
    def train(self):
        if self.optim is None:
            print(f"{self.cfg.TRAINER.NAME} has no trainable parameters: evaluating it directly")
            return self.test()
        return super().train()

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        self.model.clip.eval()  # the frozen backbone never trains

    def before_epoch(self):
        super().before_epoch()
        self.set_model_mode("train")  # as run_epoch does next; the hook sees the training mode
        self.model.on_epoch_start(self.epoch, self.max_epoch)

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with self.precision.autocast():
            loss, summary = self.model.loss(images, labels)
        if not torch.isfinite(loss).all():
            from restore.engine import NonFiniteLossError
            terms = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "loss")
            raise NonFiniteLossError(
                f"The training loss is {loss.item()} at epoch {self.epoch + 1}/{self.max_epoch}, "
                f"batch {self.batch_idx + 1}/{self.num_batches} (lr {self.get_current_lr():.4e}; "
                f"{terms}). Lower OPTIM.LR (now {self.cfg.OPTIM.LR}), or use fp32/amp precision "
                "instead of fp16.")
        self.precision.backward_and_step(loss, self.optim)
        if self.batch_idx + 1 == self.num_batches:
            self.update_lr()  # once per epoch, after the last batch (the CoOp-lineage trainers)
        return summary

    def after_epoch(self):
        # After the last step and LR update, before Dassl's after_epoch tests (best_val) and saves:
        # PromptSRC's prompt aggregation swaps in the averaged prompts at the last epoch here.
        self.model.on_epoch_end(self.epoch, self.max_epoch)
        super().after_epoch()

    # ---------------------------------------------------------------------------- evaluation
    def model_inference(self, input):
        with self.precision.autocast():
            return self.model(input).float()

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        self.model.eval()
        with self.precision.autocast(), self.model.cached_text_features():
            return super().test(split=split)

    # --------------------------------------------------------------------------- checkpoints
    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        from restore.engine.checkpoint import BEST, rng_state, save_checkpoint
        from restore.engine.run_record import checkpoint_record

        record = checkpoint_record(self.cfg, self.dm.dataset.classnames)
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_to_save(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "scaler": self.precision.state_dict(),
                "rng": rng_state(),
                **record,
            }
            save_dir = osp.join(directory, name)
            save_checkpoint(state, save_dir, model_name=model_name)
            if is_best and model_name != BEST:
                save_checkpoint(state, save_dir, model_name=BEST)

    def _load_weights(self, name, path, resume=False):
        """Read a checkpoint (ours or an original one) into the model registered as `name`, after
        checking its record against this run (`restore.engine.run_record`); returns the dict."""
        from restore.engine.checkpoint import load_checkpoint
        from restore.engine.run_record import check_checkpoint
        from restore.legacy import convert_state_dict, describe_mismatch, unwrap
        from restore.methods import CheckpointError

        trainer = self.cfg.TRAINER.NAME
        checkpoint = load_checkpoint(path, trust=self.cfg.TRUST_FILES)  # on the CPU (RNG state)
        check_checkpoint(checkpoint, self.cfg, self.dm.dataset.classnames,
                         self._models[name].class_specific, path, resume=resume)
        state = unwrap(checkpoint)
        try:
            # Onto the model's device, nested extra state too (PromptSRC's running GPA sum).
            converted = _to_device(convert_state_dict(trainer, state), self.device)
            self._models[name].load_state(converted, source=path)
        except CheckpointError as err:
            raise CheckpointError(f"{err}{describe_mismatch(trainer, state)}") from None
        return checkpoint if isinstance(checkpoint, dict) else {}

    def load_model(self, directory, epoch=None):
        from restore.engine.checkpoint import model_file

        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given "
                  "(ignore this if it's done on purpose)")
            return
        names = self.get_model_names()
        if not names:
            print(f"{self.cfg.TRAINER.NAME} has no trainable parameters: nothing to load from "
                  f"{directory}")
            return
        for name in names:
            # As the CoOp-lineage trainers: no val_result (None unless TEST.FINAL_MODEL best_val).
            path = model_file(directory, name, epoch)
            checkpoint = self._load_weights(name, path)
            print(f'Loading weights to {name} from "{path}" (epoch = {checkpoint.get("epoch")})')

    def resume_model_if_exist(self, directory):
        from restore.engine.checkpoint import newest_readable_checkpoint, set_rng_state
        from restore.legacy import original_layout, unwrap

        names = self.get_model_names()
        # The newest checkpoint that loads: a damaged newer one is skipped (and said so).
        paths = {n: newest_readable_checkpoint(osp.join(directory, n), trust=self.cfg.TRUST_FILES)[0]
                 for n in names}
        if not names or any(p is None for p in paths.values()):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name, path in paths.items():
            print(f'Loading checkpoint from "{path}"')
            checkpoint = self._load_weights(name, path, resume=True)
            if original_layout(unwrap(checkpoint)) is not None:
                # An original checkpoint: its optimizer covers other parameters and its scheduler
                # is a pickled object; the LR follows from the epoch.
                print("Note: an original (non-RESTORE) checkpoint: the optimizer state starts "
                      "afresh")
                if self._scheds[name] is not None:
                    self._scheds[name].load_state_dict({"last_epoch": checkpoint["epoch"]})
            else:
                if self._optims[name] is not None and checkpoint.get("optimizer"):
                    self._optims[name].load_state_dict(checkpoint["optimizer"])
                if self._scheds[name] is not None and checkpoint.get("scheduler"):
                    self._scheds[name].load_state_dict(checkpoint["scheduler"])
                self.precision.load_state_dict(checkpoint.get("scaler"))
                if checkpoint.get("rng"):
                    set_rng_state(checkpoint["rng"])
            start_epoch = checkpoint["epoch"]
            print(f"Previous epoch: {start_epoch}")
        return start_epoch
