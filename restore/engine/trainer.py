"""The native engine: Dassl's TrainerX semantics (docs/REPRODUCING.md section 5) for every method of restore.methods,
without Dassl.

    trainer = Trainer(cfg)          # data (seeded few-shot sampling first), CLIP, method, optimizer
    trainer.train()                 # resume if OUTPUT_DIR holds a checkpoint; epochs; test at the end
    trainer.load_model(model_dir, epoch); trainer.test()     # --eval-only

One epoch: for each batch, loss -> backward -> optimizer step; after the last batch's step the LR schedule
steps once, then `model.on_epoch_end` runs, then the checkpoint is saved (every TRAIN.CHECKPOINT_FREQ
epochs and at the last one). Log lines, checkpoint files and the evaluation output are Dassl's.
"""
import datetime
import math
import os
import time

import torch
from tqdm import tqdm

from ..adapters import input_resolution
from ..backbone import build_backbone
from ..checks import check_config
from ..distributed import barrier, device_for, gather_objects, is_primary, rank
from ..methods import build_model, registry
from . import checkpoint as ckpt
from . import run_record
from .evaluator import Classification
from .logger import stdout_is_terminal
from .meters import AverageMeter, MetricMeter
from .optim import build_optimizer
from .parallel import distribute, gather_evaluation
from .precision import Precision, precision_key
from .progress import EpochProgress
from .schedule import build_lr_scheduler


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Trainer:
    def __init__(self, cfg, data_manager=None):
        registry.get(cfg.TRAINER.NAME)  # UserError naming the registered methods
        check_config(cfg)
        self.cfg = cfg
        self.device = device_for(cfg)  # cuda:<LOCAL_RANK> under torchrun
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.writer = None
        self.best_result = -math.inf
        self.time_start = None
        # Data first, then CLIP and the method: the originals' order of random draws (same seed,
        # same run; see restore.backbone.replay_openai_init).
        self.build_data_loader(data_manager)
        self.build_model()
        self.step = distribute(self)  # model.loss as a module (DDP-wrapped over several processes)
        self.evaluator = Classification(cfg, lab2cname=self.lab2cname)

    # ---------------------------------------------------------------------------------- building
    def build_data_loader(self, dm=None):
        if dm is None:
            from ..data import DataManager
            dm = DataManager(self.cfg)
        self.dm = dm
        self.train_loader_x = dm.train_loader_x
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.lab2cname = dm.lab2cname
        self.classnames = list(dm.dataset.classnames)

    def build_model(self):
        cfg = self.cfg
        name = cfg.TRAINER.NAME
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME})")
        clip_model = build_backbone(cfg)
        resolution = input_resolution(clip_model)
        if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
            raise ValueError(f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP backbone takes "
                             f"{resolution}x{resolution} images: set INPUT.SIZE ({resolution}, {resolution}).")
        self.precision = Precision.from_cfg(cfg, self.device)
        print(f"Building {name}")
        self.model = build_model(cfg, self.classnames, clip_model)
        if cfg.MODEL.INIT_WEIGHTS:
            ckpt.load_pretrained_weights(self.model, cfg.MODEL.INIT_WEIGHTS, name,
                                       trust=cfg.TRUST_FILES)
        self.precision.prepare(self.model)
        self.model_name = registry.registered_name(name)
        enabled = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = self.model.trainable_parameters()
        if params:
            print(f"Parameters to be updated: {sorted(enabled)}")
            print(f"# params to be updated: {sum(p.numel() for p in params):,}")
            self.optim = build_optimizer(self.model, params, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        else:
            self.optim = self.sched = None

    @property
    def trainable(self) -> bool:
        return self.optim is not None

    def get_current_lr(self) -> float:
        return self.optim.param_groups[0]["lr"]

    # ---------------------------------------------------------------------------------- training
    def train(self):
        """Train (resuming when OUTPUT_DIR, or RESUME, holds a checkpoint), then test. A method without
        trainable parameters (ZeroshotCLIP) is only tested."""
        if not self.trainable:
            print(f"{self.cfg.TRAINER.NAME} has no trainable parameters: evaluating it directly")
            return self.test()
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.run_epoch()
            self.after_epoch()
            self.progress.epoch_done(self.epoch)
        return self.after_train()

    def before_train(self):
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(os.path.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()
        self.progress = EpochProgress(self.max_epoch, on_cpu=self.device.type == "cpu")

    def run_epoch(self):
        cfg = self.cfg
        self.set_model_mode("train")
        self.model.on_epoch_start(self.epoch, self.max_epoch)
        losses, batch_time, data_time = MetricMeter(), AverageMeter(), AverageMeter()
        loader = self.train_loader_x
        self.num_batches = len(loader)
        show_bar = stdout_is_terminal()
        bar = tqdm(total=self.num_batches, desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                   leave=False, disable=not show_bar)
        end = time.time()
        for self.batch_idx, batch in enumerate(loader):
            data_time.update(time.time() - end)
            summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(summary)
            bar.update(1)

            meet_freq = (self.batch_idx + 1) % cfg.TRAIN.PRINT_FREQ == 0
            if meet_freq or self.num_batches < cfg.TRAIN.PRINT_FREQ:
                remaining = (self.num_batches - self.batch_idx - 1
                             + (self.max_epoch - self.epoch - 1) * self.num_batches)
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * remaining)))
                line = " ".join([
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ])
                (bar.write(line) if show_bar else print(line))
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        bar.close()

    def forward_backward(self, batch) -> dict:
        images = batch["img"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        loss, summary = self.step(images, labels)
        if not torch.isfinite(loss).all():
            fix = f"Lower OPTIM.LR (now {self.cfg.OPTIM.LR})"
            if self.precision.mode == "fp16":  # the key that chose it, named as the config has it
                fix += f", or set {precision_key(self.cfg)[0]} amp or fp32 (fp16 overflows sooner)"
            raise NonFiniteLossError(
                f"The training loss is {loss.item()} at epoch {self.epoch + 1}/{self.max_epoch}, "
                f"batch {self.batch_idx + 1}/{self.num_batches} (lr {self.get_current_lr():.4e}). {fix}.")
        self.precision.backward_and_step(loss, self.optim)
        if self.batch_idx + 1 == self.num_batches:
            self.sched.step()  # once per epoch, after the last batch (Dassl's CLIP trainers)
        return summary

    def after_epoch(self):
        # The method's epoch-end hook comes after the last step and LR update and before the
        # checkpoint (PromptSRC's prompt aggregation swaps in the averaged prompts at the last epoch).
        self.model.on_epoch_end(self.epoch, self.max_epoch)
        cfg = self.cfg
        last_epoch = self.epoch + 1 == self.max_epoch
        freq = cfg.TRAIN.CHECKPOINT_FREQ
        if not cfg.TEST.NO_TEST and cfg.TEST.FINAL_MODEL == "best_val":
            result = self.test(split="val")
            if result > self.best_result:
                self.best_result = result
                self.save_model(self.epoch, self.output_dir, val_result=result,
                                model_name=ckpt.BEST)
        if (freq > 0 and (self.epoch + 1) % freq == 0) or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    def after_train(self):
        print("Finish training")
        result = None
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            result = self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()
        return result

    def set_model_mode(self, mode="train"):
        self.model.train(mode == "train")
        self.model.clip.eval()  # the frozen backbone never trains (no BN statistics updates)

    # -------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def test(self, split=None):
        """Evaluate on TEST.SPLIT (or `split`); prints Dassl's result lines, returns the accuracy."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            loader = self.val_loader
        else:
            split, loader = "test", self.test_loader
        print(f"Evaluate on the *{split}* set")
        with self.precision.autocast(), self.model.cached_text_features():
            for batch in tqdm(loader, disable=not stdout_is_terminal()):
                images = batch["img"].to(self.device, non_blocking=True)
                labels = batch["label"].to(self.device, non_blocking=True)
                self.evaluator.process(self.model(images), labels)
        if self.sharded_eval:
            gather_evaluation(self.evaluator)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    # ------------------------------------------------------------------------------- checkpoints
    def save_model(self, epoch, directory, val_result=None, model_name=""):
        state = {
            "state_dict": self.model.state_to_save(),
            "epoch": epoch + 1,
            "optimizer": self.optim.state_dict(),
            "scheduler": self.sched.state_dict(),
            "val_result": val_result,
            "trainer": self.cfg.TRAINER.NAME,
            "rng": ckpt.rng_state(),
            "scaler": self.precision.state_dict(),
            **run_record.checkpoint_record(self.cfg, self.classnames),
        }
        ranks = gather_objects(state["rng"])  # every rank's, so that its augmentations resume exactly
        if len(ranks) > 1:
            state["rng_ranks"] = ranks
        if is_primary():
            ckpt.save_checkpoint(state, os.path.join(directory, self.model_name), model_name=model_name)
        barrier()  # the other ranks may read it next (best_val)

    def resume_model_if_exist(self, directory) -> int:
        """Load the latest checkpoint under `directory/<name>/`: model, optimizer, schedule and RNG
        state. Returns the epoch to start from (0 when there is none)."""
        path, state = (ckpt.newest_readable_checkpoint(os.path.join(directory, self.model_name),
                                                        trust=self.cfg.TRUST_FILES)
                       if directory else (None, None))
        if path is None:
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        self.check_checkpoint(state, path, resume=True)
        ckpt.load_model_state(self.model, state["state_dict"], self.cfg.TRAINER.NAME, path)
        if "trainer" in state:  # written by this project (either engine)
            if state.get("optimizer"):
                self.optim.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.precision.load_state_dict(state.get("scaler"))
            rng = state.get("rng_ranks", [state.get("rng")])
            if rank() < len(rng) and rng[rank()]:
                ckpt.set_rng_state(rng[rank()])
        else:  # an original Dassl checkpoint: other optimizer layout, pickled scheduler
            print("Note: an original (non-RESTORE) checkpoint: the optimizer state starts afresh")
            self.sched.load_state_dict({"last_epoch": state["epoch"]})
        start = int(state["epoch"])
        print(f"Loaded model weights from {path}; resuming at epoch {start + 1} "
              f"(lr {self.get_current_lr():.4e})")
        return start

    def check_checkpoint(self, state, path, resume=False):
        """Refuse a checkpoint of another trainer, settings or (CSC, resume) classes."""
        run_record.check_checkpoint(state, self.cfg, self.classnames, self.model.class_specific,
                                    path, resume=resume)

    def load_model(self, directory, epoch=None):
        """--eval-only: load `directory/<name>/model.pth.tar-<epoch>` (default: model-best.pth.tar,
        else the latest checkpoint)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given "
                  "(ignore this if it's done on purpose)")
            return
        if not self.trainable:
            print(f"{self.cfg.TRAINER.NAME} has no trainable parameters: nothing to load from {directory}")
            return
        path = ckpt.model_file(directory, self.model_name, epoch)
        state = ckpt.load_checkpoint(path, trust=self.cfg.TRUST_FILES)
        self.check_checkpoint(state, path)
        saved_epoch = state.get("epoch")
        print(f'Loading weights to {self.model_name} from "{path}" (epoch = {saved_epoch})')
        ckpt.load_model_state(self.model, state["state_dict"], self.cfg.TRAINER.NAME, path)
        if saved_epoch is not None:
            self.epoch = int(saved_epoch)

    # ------------------------------------------------------------------------------- tensorboard
    def init_writer(self, log_dir):
        if not is_primary():
            return
        # TensorBoard logs are part of the output, as Dassl's (tensorboard is in requirements.txt).
        from torch.utils.tensorboard import SummaryWriter
        os.makedirs(log_dir, exist_ok=True)
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self.writer = SummaryWriter(log_dir=log_dir)

    def write_scalar(self, tag, value, step=None):
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close_writer(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
