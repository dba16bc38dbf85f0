"""A method's forward over N processes (torchrun), equal to the one-process forward on the global batch.

- Class texts: rank r encodes its contiguous share of the C class prompts, and the features are
  gathered with gradient, so N processes divide the text cost (C is 1000 on ImageNet).
- Feature shifts N_l are means over samples (images, or traced class prompts), and L_fs squares them:
  a mean of per-rank means would be neither the global value nor its gradient. Each rank contributes
  the SUM over its samples, reduced with gradient and divided by the global count, so that every rank
  holds the global-batch N_l (and hence the same alpha and alpha EMA).
"""
import torch

from ..distributed import all_gather_rows, all_reduce_sum, rank, shard_bounds, world_size


def can_shard_text(model) -> bool:
    return world_size() > 1 and model.token_embeds.shape[0] >= world_size()


def _local_trace(trace, lo: int, hi: int, n: int):
    """(trace rows within [lo, hi) as local indices, how many count, how many count globally).
    A rank without counted rows still traces one row, weighted 0, so that every rank takes part in the
    reduction's backward."""
    if trace is False or trace is None:
        return False, 0, 0
    if trace is True:
        return True, hi - lo, n
    trace = trace.to(torch.long)
    local = trace[(trace >= lo) & (trace < hi)] - lo
    if local.numel() == 0:
        return torch.zeros(1, dtype=torch.long, device=trace.device), 0, trace.numel()
    return local, local.numel(), trace.numel()


def encode_text_sharded(model, trace=False):
    """PromptedCLIP.encode_text over the ranks: (features [C, D], shift [L_t] or None), as one process."""
    world, r = world_size(), rank()
    n = model.token_embeds.shape[0]
    bounds = [shard_bounds(n, world, i) for i in range(world)]
    lo, hi = bounds[r]
    # Class-specific prompts (CoOp's CSC) are [C, n, W]: each rank takes its classes' rows.
    prompts = [p[lo:hi] if p is not None and p.dim() == 3 else p for p in model.text_prompts()]
    rows, count, total = _local_trace(trace, lo, hi, n)
    features, shift = model.text_encoder(model.token_embeds[lo:hi], model.eot[lo:hi], prompts,
                                         model.n_slots, rows, model.fs_norm)
    features = all_gather_rows(features, [b - a for a, b in bounds])
    if shift is not None:
        shift = all_reduce_sum(shift * count) / total
    return features, shift


def global_mean(shift: torch.Tensor, count: int) -> torch.Tensor:
    """Per-layer means over this rank's `count` samples -> means over all ranks' samples, with
    gradient (every rank must call it)."""
    total = all_reduce_sum(shift.new_tensor(float(count)))
    return all_reduce_sum(shift * count) / total
