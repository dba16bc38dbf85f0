"""Zero-shot evaluation of a (testbed) CLIP on testbed images with a dataset's hand prompt.

Base-to-novel convention (CoOp): "base" = the first ceil(n/2) labels, evaluated as a choice among base
classes only; "new" = the rest, among new classes only; "all" = among all classes.
"""
from __future__ import annotations

import numpy as np
import torch

from . import datasets as D
from .model import CLIP_MEAN, CLIP_STD


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W, CLIP-normalised."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_images(model, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    feats = []
    for i in range(0, len(images), batch):
        f = model.encode_image(to_tensor(images[i:i + batch]).to(model.logit_scale.device))
        feats.append(f.float() / f.float().norm(dim=-1, keepdim=True))
    return torch.cat(feats)


@torch.no_grad()
def encode_texts(model, texts) -> torch.Tensor:
    import clip
    tok = clip.tokenize(list(texts), context_length=model.context_length).to(model.logit_scale.device)
    f = model.encode_text(tok).float()
    return f / f.norm(dim=-1, keepdim=True)


def subset_accuracies(img_feats: torch.Tensor, labels, txt_feats: torch.Tensor, n_base: int) -> dict:
    labels = torch.as_tensor(labels)
    sims = img_feats @ txt_feats.t()
    out = {"all": (sims.argmax(1).cpu() == labels).float().mean().item()}
    n = txt_feats.shape[0]
    for name, lo, hi in (("base", 0, n_base), ("new", n_base, n)):
        m = (labels >= lo) & (labels < hi)
        if m.any():
            pred = sims[m][:, lo:hi].argmax(1).cpu() + lo
            out[name] = (pred == labels[m]).float().mean().item()
    return out


def zeroshot_accuracy(model, name: str, seed: int = 0, split: str = "test", per_class=None,
                      template=None, images=None) -> dict:
    """{"all", "base", "new"} accuracies of ``model`` on dataset ``name`` with its hand prompt."""
    ds = D.get(name)
    if images is None:
        images = D.render_split(ds, split, seed=seed, per_class=per_class)
    x, y = images
    tpl = template or ds.template
    txt = encode_texts(model, [tpl.format(c) for c in ds.classnames])
    return subset_accuracies(encode_images(model, x), y, txt, ds.num_base)
