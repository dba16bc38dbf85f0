"""Feature shift (docs/METHOD.md section 2), the consistency loss (section 3), and the release's proxy (section 5).

The per-block shift itself is traced by the prompted encoders (restore.prompting), which call
`shift_magnitude` on each block's outputs; this module holds the arithmetic.
"""
from dataclasses import dataclass
from typing import Optional

import torch

NORMS = ("relative", "rms", "fro")


@dataclass
class FeatureShift:
    """Per-layer mean shift magnitudes N_l of each encoder (zeros where a branch has no prompts)."""
    vision: torch.Tensor  # [L_v]
    text: torch.Tensor  # [L_t]

    def detach(self) -> "FeatureShift":
        return FeatureShift(self.vision.detach(), self.text.detach())


def shift_magnitude(prompted: torch.Tensor, plain: torch.Tensor, norm: str = "relative",
                    valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over samples of ||Omega||, Omega = prompted - plain.

    prompted, plain: [T, N, W] block outputs at the non-prompt positions (LND layout), with and
    without the prompt tokens in the block's input. valid: optional [T, N] bool, the tokens that
    count (text: up to and including EOT). Returns a scalar (float32).
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
    return per_sample.mean()


def consistency_loss(shift: FeatureShift) -> torch.Tensor:
    """L_fs = sum_l (N^v_l - N^t_l)^2 over layers paired by index, up to the smaller depth."""
    n = min(shift.vision.numel(), shift.text.numel())
    return (shift.vision[:n] - shift.text[:n]).pow(2).sum()


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
