"""The native engine over N processes (torchrun): what changes for one Trainer, in one place.

- DATALOADER.TRAIN_X.BATCH_SIZE is the GLOBAL batch (BATCH_SIZE_SCOPE "global", the default): each of
  the N ranks takes BATCH_SIZE / N items of every step's batch, so the paper's settings and results hold;
  "per_process" makes every rank take BATCH_SIZE (a global batch N times larger).
- The sample order is one process's (engine/sharding.py); DDP averages the gradients over the ranks
  (= the global batch mean for per-sample losses; methods/shards.py handles what is not per sample).
- Augmentations are drawn per rank: ranks > 0 reseed their python, numpy and torch RNGs from (seed,
  rank) once the model is built; rank 0 keeps the one-process stream. With no random augmentation (the
  testbed) the run equals one process with the same global batch and seed; with it, each rank's crops
  and flips are its own. Each rank's RNG state is saved in the checkpoint (`rng_ranks`).
- Evaluation is sharded (each rank reads its contiguous share of the split) and the predictions are
  gathered, every image once, unless an image's logits depend on its batch (RESTORE's live alpha): then
  every rank evaluates everything.
"""
import logging
import random

import numpy as np
import torch

from ..distributed import gather_objects, rank, world_size
from ..errors import UserError
from .sharding import shard_eval_loader, shard_train_loader
from .step import wrap_distributed

log = logging.getLogger(__name__)


def global_batch_size(cfg, world: int) -> int:
    """Items per optimizer step over all `world` processes; UserError when they cannot share it (the
    scope's value itself is checked with the config, restore/checks.py)."""
    batch, scope = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE
    if scope == "per_process":
        return batch * world
    if batch % world:
        raise UserError(
            f"DATALOADER.TRAIN_X.BATCH_SIZE {batch} is the global batch and does not divide over {world} "
            f"processes: use a multiple of {world}, or DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE per_process "
            f"({batch} per process).")
    return batch


def reseed_rank(cfg, r: int) -> None:
    """Rank r > 0 draws its own augmentations: its RNGs start from (seed, r)."""
    base = cfg.SEED if cfg.SEED >= 0 else torch.initial_seed()
    seed = int(np.random.SeedSequence([int(base) % 2 ** 63, r]).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distribute(trainer) -> None:
    """Make `trainer` (data and engine core built) one rank of the run: its loaders sharded, its core's
    training step in DDP (when there is something to train), its evaluation sharded where the method
    allows. Alone: nothing changes."""
    world, r = world_size(), rank()
    if world == 1:
        return
    cfg, core = trainer.cfg, trainer.core
    batch = global_batch_size(cfg, world)
    trainer.train_loader_x = shard_train_loader(trainer.train_loader_x, batch, world, r)
    if core.model.logits_per_image():
        core.sharded_eval = True
        trainer.test_loader = shard_eval_loader(trainer.test_loader, world, r)
        if trainer.val_loader is not None:
            trainer.val_loader = shard_eval_loader(trainer.val_loader, world, r)
    core.model.distributed = True
    log.info(f"Distributed: {world} processes, global batch {batch} ({batch // world} per process), "
             f"evaluation {'sharded' if core.sharded_eval else 'on every process'}")
    if r > 0:
        reseed_rank(cfg, r)
    if core.trainable:
        core.module = wrap_distributed(core.module, trainer.device)


def gather_evaluation(evaluator) -> None:
    """Replace each rank's evaluator counts by those of all ranks, in rank (= split) order."""
    parts = gather_objects((evaluator.correct, evaluator.total, evaluator.y_true, evaluator.y_pred,
                            dict(evaluator.per_class_hits)))
    evaluator.reset()
    for correct, total, y_true, y_pred, hits in parts:
        evaluator.correct += correct
        evaluator.total += total
        evaluator.y_true.extend(y_true)
        evaluator.y_pred.extend(y_pred)
        for label, h in hits.items():
            evaluator.per_class_hits[label].extend(h)
