"""Data loaders of one rank in a run over N processes (restore.distributed).

Training: every rank derives the SAME order as one process would (a RandomSampler seeded from the
global torch RNG as usual, rank 0's seed broadcast to all), cuts it into the same global batches, and
takes its own contiguous slice of each: rank r gets items [r*b, (r+1)*b) of every global batch of
size N*b. Evaluation: rank r reads its contiguous share of the split, in order, with no padding, so
that the gathered predictions are the split's, each image once.
"""
from typing import Iterator, List

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler

from ..data.errors import DatasetError
from ..distributed import broadcast_int, shard_bounds


class GlobalBatchSlices(Sampler[List[int]]):
    """Batches of indices for rank `rank` of `world`: its slice of each global batch of `base`'s order.

    base: the one-process sampler (RandomSampler without a generator, or SequentialSampler).
    global_batch: items per optimizer step over all ranks (a multiple of `world`).
    drop_last: as the one-process loader (a last, smaller global batch is split as evenly as possible).
    """

    def __init__(self, base: Sampler, global_batch: int, drop_last: bool, world: int, rank: int):
        self.base, self.global_batch, self.drop_last = base, global_batch, drop_last
        self.world, self.rank = world, rank

    def _order(self) -> Iterator[int]:
        if isinstance(self.base, RandomSampler) and self.base.generator is None:
            # RandomSampler's own draw from the global RNG (so rank 0 consumes it as one process does),
            # then rank 0's value everywhere: augmentations may have moved the ranks' RNGs apart.
            seed = broadcast_int(int(torch.empty((), dtype=torch.int64).random_().item()))
            generator = torch.Generator()
            generator.manual_seed(seed)
            return iter(RandomSampler(self.base.data_source, generator=generator))
        return iter(self.base)

    def __iter__(self):
        batch = []
        for index in self._order():
            batch.append(index)
            if len(batch) == self.global_batch:
                yield self._slice(batch)
                batch = []
        if batch and not self.drop_last:
            yield self._slice(batch)

    def _slice(self, batch):
        lo, hi = shard_bounds(len(batch), self.world, self.rank)
        return batch[lo:hi]

    def __len__(self):
        n = len(self.base)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)


def _rebuild(loader: DataLoader, batch_sampler) -> DataLoader:
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory)


def shard_train_loader(loader: DataLoader, global_batch: int, world: int, rank: int) -> DataLoader:
    """`loader` (a one-process training loader) for rank `rank`: global batches of `global_batch`,
    drop_last when the split holds at least one global batch (Dassl's rule)."""
    n = len(loader.dataset)
    if n < world:
        raise DatasetError(f"The training split has {n} images, fewer than the {world} processes: "
                           "start fewer processes (--nproc_per_node).")
    drop_last = n >= global_batch
    return _rebuild(loader, GlobalBatchSlices(loader.sampler, global_batch, drop_last, world, rank))


class _Range(Sampler[List[int]]):
    def __init__(self, lo: int, hi: int, batch_size: int):
        self.lo, self.hi, self.batch_size = lo, hi, batch_size

    def __iter__(self):
        for start in range(self.lo, self.hi, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.hi)))

    def __len__(self):
        return -(-(self.hi - self.lo) // self.batch_size)


def shard_eval_loader(loader: DataLoader, world: int, rank: int) -> DataLoader:
    """`loader` (sequential, as every evaluation loader) reading only rank `rank`'s contiguous share."""
    if not isinstance(loader.sampler, SequentialSampler):
        raise DatasetError("Sharded evaluation needs DATALOADER.TEST.SAMPLER SequentialSampler.")
    lo, hi = shard_bounds(len(loader.dataset), world, rank)
    return _rebuild(loader, _Range(lo, hi, loader.batch_size))
