"""The native engine: CoOp/Dassl training and evaluation semantics without Dassl.

    from restore.engine import Trainer
    trainer = Trainer(cfg)      # cfg: restore.get_cfg_default() merged with the yaml files
    trainer.train()             # or: trainer.load_model(model_dir, epoch); trainer.test()

Pieces usable on their own (the Dassl trainers use them too): `epoch_lr` / `EpochLR` (the per-epoch LR
of Dassl's schedulers), `build_optimizer`, `Precision`, checkpoint files (`save_checkpoint`,
`load_checkpoint`), `registered_name` (a trainer's checkpoint folder, from the method registry),
`Classification` (Dassl's evaluator output), `setup_logger`, `set_random_seed`.
"""
from ..methods.registry import registered_name
from .checkpoint import (CheckpointFileError, latest_checkpoint, load_checkpoint, model_file,
                         save_checkpoint)
from .evaluator import Classification
from .logger import close_logger, setup_logger
from .optim import OPTIMIZERS, OptimizerError, build_optimizer
from .precision import PRECISIONS, Precision, PrecisionError
from .schedule import EpochLR, ScheduleError, build_lr_scheduler, epoch_lr
from .seed import set_random_seed
from .trainer import NonFiniteLossError, Trainer

__all__ = ["Trainer", "NonFiniteLossError", "epoch_lr", "EpochLR", "build_lr_scheduler",
           "ScheduleError", "build_optimizer", "OPTIMIZERS", "OptimizerError", "Precision",
           "PRECISIONS", "PrecisionError", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "model_file", "CheckpointFileError", "registered_name",
           "Classification", "setup_logger", "close_logger", "set_random_seed"]
