"""The paper's feature-shift analysis (METHOD.md section 7, Fig. 3/4) for any method.

Feature shift is a measurement, not only a loss: every method's `feature_shift(images)` returns
the per-layer N^v_l, N^t_l (zeros where a branch has no prompts), so baselines are measured with
exactly the code that RESTORE trains with.
"""
from typing import Dict, Iterable, Optional

import torch

from ..feature_shift import FeatureShift, discrepancy


@torch.no_grad()
def average_feature_shift(model, batches: Iterable, max_batches: Optional[int] = None,
                          device=None) -> FeatureShift:
    """Image-weighted mean of `model.feature_shift` over batches of images (dicts with "img" or
    tensors). The text shift is that of all classes: encoded once, or per image for methods whose
    text prompts depend on the image (CoCoOp)."""
    model.eval()
    vision, text, n = 0, 0, 0
    with model.cached_text_features():
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            images = batch["img"] if isinstance(batch, dict) else batch
            if device is not None:
                images = images.to(device)
            shift = model.feature_shift(images)
            vision = vision + shift.vision.float().cpu() * images.shape[0]
            text = text + shift.text.float().cpu() * images.shape[0]
            n += images.shape[0]
    if n == 0:
        raise ValueError("average_feature_shift: no images in the batches")
    return FeatureShift(vision / n, text / n)


def summarize(shift: FeatureShift) -> Dict[str, float]:
    """Average shift per modality and the inter-modal discrepancy sum_l |N^v_l - N^t_l|. A
    branch without token blocks (a ResNet image encoder) has no layers and averages to 0."""
    def mean(x):
        return x.mean().item() if x.numel() else 0.0
    return {"shift_vision": mean(shift.vision), "shift_text": mean(shift.text),
            "discrepancy": discrepancy(shift).item()}


def plot_per_layer(shifts: Dict[str, FeatureShift], path: str, title: str = "") -> None:
    """One line per method: N_l over layers, vision and text panels (Fig. 3)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, branch in zip(axes, ("vision", "text")):
        for method, shift in shifts.items():
            values = getattr(shift, branch).numpy()
            ax.plot(range(1, len(values) + 1), values, marker="o", label=method)
        ax.set_title(f"{branch} encoder")
        ax.set_xlabel("layer")
        ax.set_xticks(range(1, max(len(getattr(s, branch)) for s in shifts.values()) + 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("feature shift N_l")
    axes[1].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_shift_vs_accuracy(rows, path: str, accuracy_key: str = "novel") -> None:
    """Scatter of the inter-modal discrepancy against accuracy, one point per method (Fig. 4).
    rows: dicts with "method", "discrepancy" and `accuracy_key`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for row in rows:
        ax.scatter(row["discrepancy"], row[accuracy_key])
        ax.annotate(row["method"], (row["discrepancy"], row[accuracy_key]), fontsize=8,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("inter-modal discrepancy  sum_l |N^v_l - N^t_l|")
    ax.set_ylabel(f"{accuracy_key} accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
