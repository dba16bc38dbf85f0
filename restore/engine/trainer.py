"""The native engine: Dassl's TrainerX semantics (docs/REPRODUCING.md section 5) for every method of restore.methods,
without Dassl.

    trainer = Trainer(cfg)          # data (seeded few-shot sampling first), CLIP, method, optimizer
    trainer.train()                 # resume if OUTPUT_DIR holds a checkpoint; epochs; test at the end
    trainer.load_model(model_dir, epoch); trainer.test()     # --eval-only

One epoch: for each batch, loss -> backward -> optimizer step; after the last batch's step the LR schedule
steps once, then `model.on_epoch_end` runs, then the checkpoint is saved (every TRAIN.CHECKPOINT_FREQ
epochs and at the last one). Log lines, checkpoint files and the evaluation output are Dassl's.

What both engines share (build, the training step, checkpoints, resume, loading, evaluation) is the engine
core (restore/engine/core.py); this class is the loop around it, TensorBoard and the processes of a torchrun
run (restore/engine/parallel.py). The steps' logged values and the run's flags (non-finite, stop) stay on
the device and are read at the print frequency (TRAIN.PRINT_FREQ) and at the end of each epoch (and before
every save and evaluation): the only host reads of a training loop, besides a gradient scaler's own.
"""
import datetime
import logging
import math
import os
import time

from tqdm import tqdm

from ..checks import check_config
from ..distributed import device_for, is_primary
from ..methods import registry
from . import checkpoint as ckpt
from .board import Board
from .core import EngineCore, NonFiniteLossError  # noqa: F401  (NonFiniteLossError: its old home)
from .evaluator import Classification
from .logger import stdout_is_terminal
from .meters import AverageMeter, MetricMeter, PendingSteps
from .parallel import distribute
from .position import resumable
from .progress import EpochProgress
from .stop import StopSignals

log = logging.getLogger(__name__)


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
        distribute(self)  # over several processes: loaders sharded, the step in DDP
        self.train_loader_x = resumable(self.train_loader_x)  # its position in an epoch: a mid-epoch stop
        self.stop_at_epoch_end = False
        self.saved_epoch = None  # the last epoch whose checkpoint this run wrote
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
        self.core = EngineCore.build(self.cfg, self.classnames, self.device)
        self.model, self.precision = self.core.model, self.core.precision
        self.optim, self.sched = self.core.optim, self.core.sched
        self.model_name = self.core.name

    @property
    def trainable(self) -> bool:
        return self.core.trainable

    def get_current_lr(self) -> float:
        return self.core.lr()

    # ---------------------------------------------------------------------------------- training
    def train(self):
        """Train (resuming when OUTPUT_DIR, or RESUME, holds a checkpoint), then test. A method without
        trainable parameters (ZeroshotCLIP) is only tested."""
        if not self.trainable:
            log.info(f"{self.cfg.TRAINER.NAME} has no trainable parameters: evaluating it directly")
            return self.test()
        # TRAIN.STOP_SIGNALS (a preemption, a time limit): a resumable state at the next check point, then stop.
        with StopSignals(self.cfg.TRAIN.STOP_SIGNALS, self.core.flags) as self.signals:
            self.before_train()
            for self.epoch in range(self.start_epoch, self.max_epoch):
                self.run_epoch()
                self.after_epoch()
                self.end_interrupted_epoch()
                self.progress.epoch_done(self.epoch)
                if self.stop_at_epoch_end and self.epoch + 1 < self.max_epoch:
                    if self.saved_epoch != self.epoch:
                        self.save_model(self.epoch, self.output_dir)
                    self.stop(f"after epoch {self.epoch + 1}/{self.max_epoch}")
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
        pending = PendingSteps()  # the logged values since the last line, on the device
        loader = self.train_loader_x
        self.num_batches = len(loader)
        start = self.continue_interrupted_epoch(losses)
        show_bar = is_primary() and stdout_is_terminal()
        bar = tqdm(total=self.num_batches, initial=start, desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                   leave=False, disable=not show_bar)
        batches = iter(loader)
        if start:  # the random states where the stopped run was, now that the loader drew its workers' seed
            ckpt.set_rng_state(self.core.resumed_position["rng"])
        end = time.time()
        for self.batch_idx, batch in enumerate(batches, start):
            data_time.update(time.time() - end)
            terms = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            pending.add(self.epoch * self.num_batches + self.batch_idx, self.get_current_lr(), terms)
            bar.update(1)

            meet_freq = (self.batch_idx + 1) % cfg.TRAIN.PRINT_FREQ == 0
            if meet_freq or self.num_batches < cfg.TRAIN.PRINT_FREQ:
                seen = self.core.check()  # the run's flags: a non-finite step stops here, a signal below
                pending.write(losses, self.write_scalar)
                remaining = (self.num_batches - self.batch_idx - 1
                             + (self.max_epoch - self.epoch - 1) * self.num_batches)
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * remaining)))
                log.info(" ".join([
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]))
                if seen.stop and self.batch_idx + 1 < self.num_batches:
                    bar.close()
                    self.stop_mid_epoch(losses)
            end = time.time()
        self.stop_at_epoch_end = self.core.check().stop
        pending.write(losses, self.write_scalar)  # the steps after the epoch's last line
        bar.close()

    # ------------------------------------------------------------------------ stopping on a signal
    def stop_mid_epoch(self, losses):
        """Save the state after the current batch (restore/engine/stop.py) and stop."""
        position = {"epoch": self.epoch, "batch": self.batch_idx + 1, "num_batches": self.num_batches,
                    "meters": losses.state(), "batches": self.train_loader_x.batch_sampler.batches}
        self.core.save_interrupted(self.output_dir, self.epoch, position)
        self.stop(f"at epoch {self.epoch + 1}/{self.max_epoch}, batch {self.batch_idx + 1}/{self.num_batches}")

    def stop(self, where: str):
        self.close_writer()
        raise self.signals.stopped(where)

    def continue_interrupted_epoch(self, losses) -> int:
        """The first batch of this epoch: where a resumed mid-epoch state stopped (its batches and the log's
        running means restored), else 0."""
        position = self.core.resumed_position
        if position is None or position["epoch"] != self.epoch:
            return 0
        if position["num_batches"] != self.num_batches:
            raise ValueError(f"The mid-epoch checkpoint was saved with {position['num_batches']} batches per epoch; "
                             f"this run has {self.num_batches}.")
        self.train_loader_x.batch_sampler.resume(position["batches"], position["batch"])
        losses.load(position["meters"])
        return position["batch"]

    def end_interrupted_epoch(self):
        """After the epoch a resumed mid-epoch state belonged to: its epoch's checkpoint holds the state from
        here on (saved now when TRAIN.CHECKPOINT_FREQ did not), and the mid-epoch one is removed."""
        position = self.core.resumed_position
        if position is None or position["epoch"] != self.epoch:
            return
        if self.saved_epoch != self.epoch:
            self.save_model(self.epoch, self.output_dir)
        self.core.discard_interrupted(self.output_dir)
        self.core.resumed_position = None

    def forward_backward(self, batch) -> dict:
        """One training step (restore.engine.core.EngineCore.train_step); its logged values, on the device."""
        return self.core.train_step(batch, self.epoch, self.batch_idx, self.num_batches)

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
        log.info("Finish training")
        result = None
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                log.info("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                log.info("Deploy the last-epoch model")
            result = self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        log.info(f"Elapsed: {elapsed}")
        self.close_writer()
        return result

    def set_model_mode(self, mode="train"):
        self.model.train(mode == "train")  # the frozen backbone stays in eval mode (PromptedCLIP.train)

    # -------------------------------------------------------------------------------- evaluation
    def test(self, split=None):
        """Evaluate on TEST.SPLIT (or `split`); prints Dassl's result lines, returns the accuracy."""
        split, loader = self.core.evaluation_loader(split or self.cfg.TEST.SPLIT, self.val_loader,
                                                    self.test_loader)
        results = self.core.evaluate(loader, self.evaluator, split,
                                     progress=is_primary() and stdout_is_terminal())
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    # ------------------------------------------------------------------------------- checkpoints
    def save_model(self, epoch, directory, val_result=None, model_name=""):
        self.core.save(directory, epoch, val_result=val_result, model_name=model_name)
        if not model_name:
            self.saved_epoch = epoch

    def resume_model_if_exist(self, directory) -> int:
        """Load the latest checkpoint under `directory/<name>/`: model, optimizer, schedule and RNG
        state. Returns the epoch to start from (0 when there is none)."""
        return self.core.resume(directory)

    def load_model(self, directory, epoch=None):
        """--eval-only: load `directory/<name>/model.pth.tar-<epoch>` (default: model-best.pth.tar,
        else the latest checkpoint)."""
        self.core.load(directory, epoch)

    # ------------------------------------------------------------------------------- tensorboard
    def init_writer(self, log_dir):
        if not is_primary():
            return
        # TensorBoard logs are part of the output, as Dassl's (tensorboard is in requirements.txt).
        log.info(f"Initialize tensorboard (log_dir={log_dir})")
        self.writer = Board(log_dir)

    def write_scalar(self, tag, value, step=None):
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close_writer(self):
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
