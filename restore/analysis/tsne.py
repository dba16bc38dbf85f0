"""t-SNE of image features and class text features, base and novel classes (the paper's Fig. 5)."""
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def collect_features(model, batches: Iterable, max_batches: Optional[int] = None, device=None):
    """Final (post-surgery, L2-normalised) image features with labels, and the class text
    features, as numpy arrays: (image [N, D], labels [N], text [C, D])."""
    model.eval()
    images_out, labels_out = [], []
    with model.cached_text_features():
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            images = batch["img"].to(device) if device is not None else batch["img"]
            enc = model.encode(images)
            images_out.append(F.normalize(enc.image.float(), dim=-1).cpu())
            labels_out.append(batch["label"].cpu())
        text = enc.text
    if text.dim() == 3:  # image-conditioned prompts (CoCoOp): average the per-image classifiers
        text = text.mean(0)
    return (torch.cat(images_out).numpy(), torch.cat(labels_out).numpy(),
            F.normalize(text.float(), dim=-1).cpu().numpy())


def plot_tsne(groups, path: str, title: str = "", seed: int = 0) -> None:
    """groups: {"base": (image, labels, text), "novel": (...)} from `collect_features`.
    One embedding for all points; images as dots, class texts as stars, base blue / novel red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    blocks = [(name, kind, arr) for name, (img, _, txt) in groups.items()
              for kind, arr in (("image", img), ("text", txt))]
    data = np.concatenate([arr for _, _, arr in blocks])
    perplexity = min(30.0, max(2.0, (len(data) - 1) / 3))
    emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity,
               metric="cosine").fit_transform(data)
    colours = {"base": "tab:blue", "novel": "tab:red", "new": "tab:red"}
    fig, ax = plt.subplots(figsize=(5.5, 5))
    start = 0
    for name, kind, arr in blocks:
        part = emb[start:start + len(arr)]
        start += len(arr)
        if kind == "image":
            ax.scatter(part[:, 0], part[:, 1], s=4, alpha=0.4, c=colours.get(name, "gray"),
                       label=f"{name} images")
        else:
            ax.scatter(part[:, 0], part[:, 1], s=90, marker="*", edgecolors="black",
                       c=colours.get(name, "gray"), label=f"{name} class texts")
    ax.legend(fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
