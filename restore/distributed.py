"""One run over N processes (torchrun): the process group, and the few collectives the engine and the
methods need. Every function is the identity (or a no-op) in a single process, so that the
one-process numbers never depend on this module.

    torchrun --nproc_per_node N train.py ...     # sets RANK, LOCAL_RANK, WORLD_SIZE

- `world_info_from_env` / `init_distributed` / `device_for`: NCCL on GPUs (one per local rank), gloo on
  CPU, started before the output lock (which broadcasts rank 0's outcome).
- `all_reduce_sum` and `all_gather_rows` keep the autograd graph: each rank's backward receives the
  gradient summed over the ranks' losses, so that with DDP's gradient averaging a term that every rank
  computes from the reduced (or gathered) values gets exactly its one-process gradient.
"""
import os
import time
from typing import List, Tuple

import torch
import torch.distributed as dist

from .errors import UserError


def world_info_from_env() -> Tuple[int, int, int]:
    """(local_rank, rank, world_size) from torchrun's environment; (0, 0, 1) in a single process."""
    env = os.environ
    return tuple(int(env.get(name, "").strip() or default)
                 for name, default in (("LOCAL_RANK", 0), ("RANK", 0), ("WORLD_SIZE", 1)))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_primary() -> bool:
    """Rank 0 (or a single process): the one that writes logs, checkpoints and TensorBoard."""
    return rank() == 0


def use_cuda(cfg) -> bool:
    return torch.cuda.is_available() and cfg.USE_CUDA


def init_distributed(cfg) -> int:
    """Join the process group when started with WORLD_SIZE > 1; returns the world size. NCCL with one
    GPU per local rank when CUDA is used, else gloo."""
    local_rank, _, world = world_info_from_env()
    if world <= 1 or is_initialized():
        return world_size()
    if use_cuda(cfg):
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
                            "start at most that many processes per node (--nproc_per_node).")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda(cfg) else "gloo")
    return world_size()


def device_for(cfg) -> torch.device:
    """This process's device: cuda:<LOCAL_RANK> under torchrun, else cuda or cpu as before."""
    if not use_cuda(cfg):
        return torch.device("cpu")
    return torch.device("cuda", world_info_from_env()[0]) if is_initialized() else torch.device("cuda")


def close_distributed() -> None:
    if is_initialized():
        dist.destroy_process_group()


def hand_over_error(error_path: str, timeout: float = 10.0) -> None:
    """A rank other than 0 that stops on an error, after leaving its line at `error_path`
    (restore.logs.leave_error): leave the process group at once, so that the other ranks' next collective
    fails now instead of at the group's timeout, and wait up to `timeout` seconds for rank 0 to copy the
    line into log.txt (it removes the file) before this process exits: torchrun stops every rank when one
    exits. Nothing for rank 0, alone, or when no file was left."""
    if not (is_initialized() and rank() != 0 and os.path.isfile(error_path)):
        return
    dist.destroy_process_group()
    deadline = time.monotonic() + timeout
    while os.path.isfile(error_path) and time.monotonic() < deadline:
        time.sleep(0.05)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


# ------------------------------------------------------------------------------- collectives
class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over the ranks, differentiable (every rank must call it, in the same order)."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


class _AllGatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sizes):
        ctx.rank, ctx.sizes = rank(), sizes
        padded = x.new_zeros((max(sizes),) + x.shape[1:])
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss reaches every row
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]], None


def all_gather_rows(x: torch.Tensor, sizes: List[int]) -> torch.Tensor:
    """Concatenate each rank's rows [sizes[r], ...] in rank order, differentiable: the gradient of a
    rank's rows is the sum over the ranks of the gradients they received."""
    return _AllGatherRows.apply(x, list(sizes)) if world_size() > 1 else x


def shard_bounds(n: int, world: int, r: int) -> Tuple[int, int]:
    """Rank r's contiguous share [lo, hi) of n items; the first n % world ranks take one more."""
    base, extra = divmod(n, world)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def all_reduce_mean(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """The mean over the ranks of each tensor (not differentiable), as DistributedDataParallel averages
    gradients: divided by the world size, then summed, in one flat all-reduce; `tensors` themselves alone."""
    if world_size() <= 1:
        return list(tensors)
    flat = torch.cat([t.reshape(-1) for t in tensors]).div_(world_size())
    dist.all_reduce(flat)
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def broadcast_from_primary(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor on every rank (same shape and dtype everywhere); `x` itself alone."""
    if world_size() > 1:
        x = x.clone()
        dist.broadcast(x, src=0)
    return x


def broadcast_int(value: int) -> int:
    """Rank 0's integer on every rank; `value` itself alone."""
    if world_size() <= 1:
        return value
    box = [int(value)]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    """[rank 0's obj, rank 1's obj, ...] on every rank (picklable objects); [obj] alone."""
    if world_size() <= 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
