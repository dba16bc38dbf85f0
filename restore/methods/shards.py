"""A method's forward over N processes (torchrun), equal to the one-process forward on the global batch.

- Class texts: rank r encodes its contiguous share of the C class prompts, and the features are
  gathered with gradient, so N processes divide the text cost (C is 1000 on ImageNet).
- Feature shifts N_l are means over samples (images, or traced class prompts), and L_fs squares them:
  a mean of per-rank means would be neither the global value nor its gradient. Each rank contributes
  the SUM over its samples (and of their squares, for a subset estimate's variance), reduced with
  gradient and divided by the global count, so that every rank holds the global-batch N_l (and hence
  the same alpha and alpha EMA). Random subsets (FS.TEXT_CLASSES, FS.VISION_IMAGES) are drawn on rank
  0 over the global classes / batch and broadcast.
"""
import torch

from ..distributed import (all_gather_rows, all_reduce_sum, broadcast_from_primary, rank,
                           shard_bounds, world_size)
from ..feature_shift import sample_sums, subset_estimate


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


def _global_estimate(samples, count: int, k: int, n: int, subset: bool):
    """Per-sample shifts [L, k_local] of this rank -> (N_l [L], variance or None) over every rank's
    traced samples: k of n, all of them unless `subset` (restore.feature_shift.subset_estimate)."""
    local = sample_sums(samples)
    sums = all_reduce_sum(local if count else local * 0)  # a rank with no counted rows adds zeros
    if not subset:
        return sums[0] / k, None
    return subset_estimate(sums, k, n)


def encode_text_sharded(model, trace=False):
    """PromptedCLIP.encode_text over the ranks: (features [C, D], shift or None), as one process."""
    world, r = world_size(), rank()
    n = model.token_embeds.shape[0]
    bounds = [shard_bounds(n, world, i) for i in range(world)]
    lo, hi = bounds[r]
    # Class-specific prompts (CoOp's CSC) are [C, n, W]: each rank takes its classes' rows.
    prompts = [p[lo:hi] if p is not None and p.dim() == 3 else p for p in model.text_prompts()]
    rows, count, total = _local_trace(trace, lo, hi, n)
    features, samples = model.text_encoder(model.token_embeds[lo:hi], model.eot[lo:hi], prompts,
                                           model.n_slots, rows, model.fs_norm, model.prompt_free,
                                           model.text_length(lo, hi), branches=model.text_branches())
    features = all_gather_rows(features, [b - a for a, b in bounds])
    if samples is None:
        return features, None
    return features, _global_estimate(samples, count, total, n, trace is not True)


def encode_image_traced(model, images, subset: int = 0):
    """PromptedCLIP.encode_image with a trace in training over the ranks: the shift over the global
    batch, or over a uniform random subset of `subset` of its images drawn on rank 0."""
    sizes = torch.zeros(world_size(), dtype=torch.long, device=images.device)
    sizes[rank()] = images.shape[0]
    sizes = all_reduce_sum(sizes)
    n, lo = int(sizes.sum()), int(sizes[:rank()].sum())
    trace = True
    if 0 < subset < n:
        trace = broadcast_from_primary(torch.randperm(n, device=images.device)[:subset])
    rows, count, total = _local_trace(trace, lo, lo + images.shape[0], n)
    features, samples = model.image_encoder(images, model.vision_prompts(), rows, model.fs_norm,
                                            model.prompt_free, model.vision_branches())
    return features, _global_estimate(samples, count, total, n, trace is not True)
