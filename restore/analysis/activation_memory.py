"""Activation memory of a training step: the bytes of the tensors autograd saves for the backward pass.

    with SavedTensors(model) as saved:           # model: its parameters and buffers are not counted
        loss, _ = model.loss(images, labels)
    saved.nbytes                                  # bytes, each storage counted once

What a training step holds on top of the weights, at its peak (between the forward and the backward
pass), is what autograd saved during the forward pass, up to the short-lived temporaries of one
operation. `SavedTensors` counts it with `torch.autograd.graph.saved_tensors_hooks`: every tensor an
operation saves is looked up by its storage, so that a storage saved by several operations (a block's
input, read by its LayerNorm and its residual sum) or through several views is counted once, at its
full size (`untyped_storage().nbytes()`: a saved view keeps its whole storage alive). Storages of the
excluded tensors (by default the model's parameters and buffers: the frozen CLIP, the prompts) are not
counted; casts of them are (autocast's fp16 copy of a frozen weight is a new storage that the backward
pass needs).

keep=False counts without keeping: every saved tensor is dropped as soon as it is counted, so the
forward pass runs with the memory of an inference pass and a step whose saved tensors would not fit in
memory can still be counted (no backward pass is possible then). The count is the same, because it
depends only on which storages the forward pass saves: a storage is identified by its StorageImpl,
held by a weak reference for the whole count, so that a storage freed early can never share an
identity with a later one (tests/test_activation_memory.py checks keep=False against keep=True for
every registered method).
"""
from typing import Dict, Iterable, Optional

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef


def storage_key(tensor: torch.Tensor) -> int:
    """The identity of `tensor`'s storage (its StorageImpl), shared by all its views."""
    return tensor.untyped_storage()._cdata


class SavedTensors:
    """Context manager: counts the unique storages autograd saves while it is active.

    exclude: a module (its parameters and buffers) or tensors whose storages are not counted.
    keep: True keeps the saved tensors for the backward pass (a normal step); False drops them
    (count only: the forward pass then runs at inference memory and backward() cannot run).
    After the block: `nbytes` (int), `count` (unique storages), `by_dtype` ({dtype: bytes})."""

    def __init__(self, exclude=None, keep: bool = True):
        if isinstance(exclude, nn.Module):
            exclude = list(exclude.parameters()) + list(exclude.buffers())
        self._excluded = {storage_key(t) for t in (exclude or ())}
        self._keep = keep
        self._seen: Dict[int, StorageWeakRef] = {}  # weak refs pin each StorageImpl's identity
        self.nbytes = 0
        self.by_dtype: Dict[torch.dtype, int] = {}
        self._hooks: Optional[torch.autograd.graph.saved_tensors_hooks] = None

    @property
    def count(self) -> int:
        return len(self._seen)

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self._excluded and key not in self._seen:
            self._seen[key] = StorageWeakRef(storage)
            self.nbytes += storage.nbytes()
            self.by_dtype[tensor.dtype] = self.by_dtype.get(tensor.dtype, 0) + storage.nbytes()
        return tensor if self._keep else None

    @staticmethod
    def _unpack(packed):
        if packed is None:
            raise RuntimeError("SavedTensors(keep=False) dropped the tensors saved for backward: "
                               "count with keep=True to run the backward pass.")
        return packed

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._hooks = None
        return False


def saved_bytes(step, exclude: Iterable[torch.Tensor] = (), keep: bool = True) -> int:
    """Bytes of the unique storages autograd saves while `step()` runs (see `SavedTensors`)."""
    with SavedTensors(list(exclude), keep) as saved:
        result = step()
    del result
    return saved.nbytes
