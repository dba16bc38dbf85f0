"""Feature shift (docs/METHOD.md section 2), the consistency loss (section 3), and the release's proxy (section 5).

The per-block shift itself is traced by the prompted encoders (restore.prompting), which call
`shift_magnitude` on each block's outputs; this module holds the arithmetic.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from .methods.restore import NORMS  # the choices of TRAINER.RESTORE.FS.NORM, declared with the key


@dataclass
class FeatureShift:
    """Per-layer mean shift magnitudes N_l of each encoder (zeros where a branch has no prompts).

    Where N_l is estimated on a random subset of the samples (FS.VISION_IMAGES, FS.TEXT_CLASSES),
    `vision_var` / `text_var` hold an unbiased estimate of that estimate's variance (None: the
    mean over every sample, no sampling variance); `consistency_loss` subtracts it."""
    vision: torch.Tensor  # [L_v]
    text: torch.Tensor  # [L_t]
    vision_var: Optional[torch.Tensor] = None  # [L_v]
    text_var: Optional[torch.Tensor] = None  # [L_t]

    def detach(self) -> "FeatureShift":
        detach = lambda t: None if t is None else t.detach()  # noqa: E731
        return FeatureShift(self.vision.detach(), self.text.detach(), detach(self.vision_var),
                            detach(self.text_var))


def subset_estimate(sums: torch.Tensor, k: int, n: int):
    """N_l and the variance of that estimate, from a uniform random subset (without replacement) of
    k of the n samples (docs/METHOD.md section 3).

    sums: [2, L], the sum over the subset of the per-sample shifts and of their squares. Returns
    (mean [L], var [L]) with var = (1 - k / n) * s^2 / k, s^2 the subset's sample variance (k - 1 in
    the denominator), an unbiased estimate of the variance of the subset mean (Cochran, Sampling
    Techniques, Thm. 2.1-2.4). Needs k >= 2."""
    if k < 2:
        raise ValueError(f"a subset estimate of the feature shift needs at least 2 samples, got {k}")
    mean = sums[0] / k
    s2 = ((sums[1] - k * mean * mean) / (k - 1)).clamp_min(0)
    return mean, (1 - k / n) * s2 / k


def estimate(samples: torch.Tensor, rows, n: int):
    """Per-sample shifts [L, k] of the traced samples -> (N_l [L], variance of N_l [L] or None).

    rows: True (all n samples were traced: the mean, no variance) or the indices of the k traced
    samples, a uniform random subset of the n (`subset_estimate`)."""
    if rows is True or samples.shape[0] == 0:
        return samples.mean(1), None
    return subset_estimate(sample_sums(samples), samples.shape[1], n)


def sample_sums(samples: torch.Tensor) -> torch.Tensor:
    """Per-sample shifts [L, k] -> [2, L]: their sums and the sums of their squares over k."""
    return torch.stack([samples.sum(1), samples.pow(2).sum(1)])


def shift_per_sample(prompted: torch.Tensor, plain: torch.Tensor, norm: str = "relative",
                     valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """||Omega|| of each sample, Omega = prompted - plain (paper Eq. 6; docs/METHOD.md section 2).

    prompted, plain: [T, N, W] block outputs at the non-prompt positions (LND layout), with and
    without the prompt tokens in the block's input. valid: optional [T, N] bool, the tokens that
    count (text: up to and including EOT). Returns [N] (float32).
    """
    if norm not in NORMS:
        raise ValueError(f"TRAINER.RESTORE.FS.NORM must be one of {NORMS}, got {norm!r}")
    omega = prompted.float() - plain.float()
    if valid is not None:
        keep = valid.unsqueeze(-1).to(omega.dtype)
        omega = omega * keep
    # vector_norm has a zero subgradient at 0, so an exactly-zero shift gives finite gradients.
    per_sample = torch.linalg.vector_norm(omega, dim=(0, 2))  # [N]
    if norm == "relative":
        base = plain.float() if valid is None else plain.float() * keep
        per_sample = per_sample / torch.linalg.vector_norm(base, dim=(0, 2)).clamp_min(1e-12)
    elif norm == "rms":
        tokens = (torch.full_like(per_sample, prompted.shape[0]) if valid is None
                  else valid.sum(0).to(per_sample.dtype))
        per_sample = per_sample / torch.sqrt(tokens * prompted.shape[-1])
    return per_sample


def shift_magnitude(prompted: torch.Tensor, plain: torch.Tensor, norm: str = "relative",
                    valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The mean over samples of `shift_per_sample` (a scalar, float32)."""
    return shift_per_sample(prompted, plain, norm, valid).mean()


def consistency_loss(shift: FeatureShift) -> torch.Tensor:
    """L_fs = sum_l (N^v_l - N^t_l)^2 over layers paired by index, up to the smaller depth.

    Where N^v or N^t is a subset estimate, its squared difference is biased upward by the
    estimates' variances (E[(a - b)^2] = (E a - E b)^2 + Var a + Var b for independent subsets);
    their unbiased estimates are subtracted, so that the loss and its gradient are unbiased
    estimates of the full-batch ones (the value of one step can then be slightly negative)."""
    n = min(shift.vision.numel(), shift.text.numel())
    loss = (shift.vision[:n] - shift.text[:n]).pow(2).sum()
    for var in (shift.vision_var, shift.text_var):
        if var is not None:
            loss = loss - var[:n].sum()
    return loss


def discrepancy(shift: FeatureShift) -> torch.Tensor:
    """The paper's inter-modal discrepancy sum_l |N^v_l - N^t_l| (Fig. 3/4)."""
    n = min(shift.vision.numel(), shift.text.numel())
    return (shift.vision[:n] - shift.text[:n]).abs().sum()


# ---------------------------------------------------------------- the official release's proxy
def gram_norm(prompt: torch.Tensor) -> torch.Tensor:
    """||P^T P||_F of a prompt matrix P [n, d] (the release's "feature shift" of a layer)."""
    p = prompt.float()
    return torch.linalg.matrix_norm(p.t() @ p)


def release_ratios(prompts, initial: torch.Tensor) -> torch.Tensor:
    """Gram norms of `prompts` (a list of [n, d]) divided by their values at the first forward."""
    return torch.stack([gram_norm(p) for p in prompts]) / initial


def release_loss(text_ratios: torch.Tensor, vision_ratios: torch.Tensor) -> torch.Tensor:
    """The release's L_fs: sum_l (r^t_l - r^v_l)^2."""
    return (text_ratios - vision_ratios).pow(2).sum()
