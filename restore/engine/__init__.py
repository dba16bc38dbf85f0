"""The native engine: CoOp/Dassl training and evaluation semantics without Dassl.

    from restore.engine import Trainer
    trainer = Trainer(cfg)      # cfg: restore.get_cfg_default() merged with the yaml files
    trainer.train()             # or: trainer.load_model(model_dir, epoch); trainer.test()

What both engines share (the Dassl trainers of trainers/ too) is `EngineCore` (restore/engine/core.py): the
build, the training step (and `GradientUpdate`, what a method's backward hook gets), checkpoints, resume,
loading and evaluation. Pieces usable on their own: `epoch_lr` / `EpochLR` (the per-epoch LR of Dassl's
schedulers), `build_optimizer`, `Precision`, checkpoint files (`save_checkpoint`, `load_checkpoint`),
`registered_name` (a trainer's checkpoint folder, from the method registry), `Classification` (Dassl's
evaluator output), `setup_logger`, `set_random_seed`.
"""
from ..methods.registry import registered_name
from .checkpoint import (CheckpointFileError, latest_checkpoint, load_checkpoint, model_file,
                         save_checkpoint)
from .core import EngineCore, GradientUpdate, NonFiniteLossError
from .evaluator import Classification
from .logger import close_logger, setup_logger
from .optim import OPTIMIZERS, OptimizerError, build_optimizer
from .precision import PRECISIONS, Precision, PrecisionError
from .schedule import EpochLR, ScheduleError, build_lr_scheduler, epoch_lr
from .seed import set_random_seed
from .trainer import Trainer

__all__ = ["Trainer", "EngineCore", "GradientUpdate", "NonFiniteLossError", "epoch_lr", "EpochLR",
           "build_lr_scheduler", "ScheduleError", "build_optimizer", "OPTIMIZERS", "OptimizerError", "Precision",
           "PRECISIONS", "PrecisionError", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "model_file", "CheckpointFileError", "registered_name",
           "Classification", "setup_logger", "close_logger", "set_random_seed"]
