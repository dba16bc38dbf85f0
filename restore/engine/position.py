"""The training loader's position inside an epoch, so that a run stopped mid-epoch continues with the batches
it had not trained yet (restore/engine/stop.py).

    loader = resumable(loader)                   # once, after the loaders are built (and sharded)
    batches = loader.batch_sampler.batches       # during an epoch: its batches of indices, as drawn
    loader.batch_sampler.resume(batches, 7)      # the next epoch's iteration yields batches[7:], drawing nothing

`EpochBatches` wraps the loader's batch sampler. An epoch's batches are drawn exactly as the sampler draws
them (a RandomSampler takes its seed from the global torch RNG at the epoch's first batch), all at once at
that moment: the draw and its timing are the sampler's, so a run's random streams do not change.
"""
from typing import List, Optional

from torch.utils.data import DataLoader, Sampler


class EpochBatches(Sampler[List[int]]):
    """A batch sampler that keeps the batches of the epoch in progress (`batches`) and can start an epoch
    from given batches at a given position (`resume`). len() is the full epoch's."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: Optional[List[List[int]]] = None
        self._resume = None  # (batches, start) for the next iteration

    def resume(self, batches: List[List[int]], start: int) -> None:
        self._resume = ([list(b) for b in batches], start)

    def __iter__(self):
        if self._resume is not None:
            self.batches, start = self._resume
            self._resume = None
        else:
            start = 0
            self.batches = [list(b) for b in self.inner]  # the sampler's own draw, at the first batch
        yield from self.batches[start:]

    def __len__(self):
        return len(self.inner)


def resumable(loader: DataLoader) -> DataLoader:
    """`loader` iterating through an EpochBatches around its batch sampler (same dataset, workers, memory
    pinning and collation; the same batches)."""
    return DataLoader(loader.dataset, batch_sampler=EpochBatches(loader.batch_sampler),
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                      persistent_workers=loader.persistent_workers, collate_fn=loader.collate_fn,
                      worker_init_fn=loader.worker_init_fn, generator=loader.generator)
