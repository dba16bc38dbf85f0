"""DePT (Zhang et al., CVPR 2024): decoupled prompt tuning, a plug-in over a base method.

Beside the base method's image-text matching (ITM) logits s = exp(t) cos(f_img, f_text) [B, C], DePT trains a
channel-adjusted transfer (CAT) head on the base classes: a channel-wise transform per modality
(`film_lp_img`, `film_lp_text`: x * scale + bias, scale 1 and bias 0 at the start) and a linear classifier
(`linear_probe_proj`: Linear(D, C_train)) fed with BOTH the text features of the batch's labels and the image
features, unnormalised (their authors' trainers `ExtrasLinearProbe{CoOp,CoCoOp,KgCoOp,MaPLe}`, Koorye/DePT
trainers/elp_*.py):

    training   h = linear_probe_proj(cat[FiLM_t(text)[labels], FiLM_v(image)])          [2B, C_train]
               loss = (1 - W) CE(s, y) + W CE(h, cat[y, y])   (+ the base's other terms, e.g. KgCoOp's, unscaled)
    evaluation (1 - W) s + W linear_probe_proj(FiLM_v(image))   where the head is used (TEST_TIME_FUSION;
               False: the head alone), s elsewhere

W = TRAINER.DEPT.WEIGHT (0.7). HEAD "similarity" replaces the linear classifier by cosine logits of the
transformed features (the authors' alternative, unused in their runs).

Where the head is used: when every class being evaluated is one of the head's classes, matched by name (its
rows are picked by name, a repeated name by order of occurrence). The head's class names are part of the
model's state (`_extra_state`), so a checkpoint says by itself which classes its head knows. The authors
decide by DATASET.NAME and SUBSAMPLE_CLASSES ("base", or "all" with "ImageNet" in the name): that rule is
kept only for their own checkpoints, which hold no names (docs/METHOD.md, "DePT").

Random draws, in the authors' order (same seed, same run): the base method's build, then the head's Linear
(weight, bias); the transforms draw nothing.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...checks import lookup
from ...errors import UserError
from ..base import CheckpointError
from ..cocoop.model import CoCoOp
from ..coop.model import CoOp
from ..kgcoop.model import KgCoOp
from ..maple.model import MaPLe
from . import DEPT_NODE

# The state key of the head's class names (a plain list of strings: loads with weights_only).
NAMES_KEY = "_extra_state"


class FiLM(nn.Module):
    """DePT's channel-wise transform (cwT): x * scale + bias over the last dimension D (elp_maple.py's FiLM
    without its unused sigmoid); fp32 parameters cast to the input's dtype."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale.type(x.dtype) * x + self.bias.type(x.dtype)


class LinearHead(nn.Linear):
    """DePT's linear head (`linear_probe_proj`): an nn.Linear whose fp32 parameters are cast to the input's
    dtype, so that under PREC fp16 it runs in fp16 as the authors' head (built in the CLIP's dtype) does."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.type(x.dtype), self.bias.type(x.dtype))


class DePTMixin:
    """DePT's head and loss over a PromptedCLIP base method; put it first in the bases."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)  # the base method's draws first
        d = lookup(cfg, DEPT_NODE)
        self.lp_weight, self.fusion, self.head_type = d.WEIGHT, d.TEST_TIME_FUSION, d.HEAD
        self.lr_exp = d.LR_EXP
        dim = self.image_encoder.output_dim
        self.cwt = bool(d.CWT)
        if self.cwt:
            self.film_lp_img = FiLM(dim)
            self.film_lp_text = FiLM(dim)
        self.head_classnames = list(self.classnames)
        self.linear_probe_proj = self.new_head(len(self.head_classnames))
        # Whether the head is used, and the indices [C] of the evaluated classes among its classes (None:
        # all of them, in order).
        self.head_active, self.head_rows = True, None

    def new_head(self, n_classes: int) -> nn.Module:
        dim = self.image_encoder.output_dim
        return LinearHead(dim, n_classes) if self.head_type == "linear" else nn.Identity()

    # ------------------------------------------------------------------------------ the head
    def film_image(self, image: Tensor) -> Tensor:
        return self.film_lp_img(image) if self.cwt else image

    def film_text(self, text: Tensor) -> Tensor:
        return self.film_lp_text(text) if self.cwt else text

    def head_logits(self, image: Tensor, text: Tensor) -> Tensor:
        """The CAT head's logits of images [B, D] over the evaluated classes [B, C] (`text` [C, D] or
        [B, C, D]: the class features, used by the "similarity" head only)."""
        image = self.film_image(image)
        if self.head_type == "similarity":
            return self.logits(image, self.film_text(text))
        logits = self.linear_probe_proj(image).float()
        return logits if self.head_rows is None else logits[:, self.head_rows.to(logits.device)]

    def forward(self, images: Tensor) -> Tensor:
        enc = self.encode(images)
        logits = self.logits(enc.image, enc.text)
        if not self.head_active:
            return logits
        head = self.head_logits(enc.image, enc.text)
        if not self.fusion:
            return head
        return (1 - self.lp_weight) * logits + self.lp_weight * head

    def loss_terms(self, batch, enc, logits):
        """The base's terms with its cross-entropy split: ce = (1 - W) CE(s, y), head = W CE(h, y) (the
        authors' sum: (1 - W) ce + W head, then the base's other terms)."""
        if not self.head_active or self.head_rows is not None:
            raise UserError(f"{type(self).__name__} trains its head on the training classes, but its head "
                            "was loaded for other classes: train from a fresh model.")
        terms, logs = super().loss_terms(batch, enc, logits)
        labels = batch.labels
        text = enc.text
        if self.head_type == "similarity":
            head = self.logits(self.film_image(enc.image), self.film_text(text))
            head_loss = F.cross_entropy(head, labels)
        else:
            # CoCoOp's text is per image [B, C, D]: each image's own label row.
            own = text[torch.arange(labels.shape[0], device=labels.device), labels] if text.dim() == 3 \
                else text[labels]
            feats = torch.cat([self.film_text(own), self.film_image(enc.image)])
            head_loss = F.cross_entropy(self.linear_probe_proj(feats).float(), torch.cat([labels, labels]))
        out = {"ce": (1 - self.lp_weight) * terms.pop("ce"), "head": self.lp_weight * head_loss}
        out.update(terms)
        return out, logs

    # ------------------------------------------------------------------- staged learning rates
    def lr_groups(self, params, optim_cfg) -> list:
        """OPTIM.STAGED_LR's two parameter groups as the authors' trainers/optim.py computes them: DePT's new
        layers (the transforms and the head) at lr = LR * LR_EXP, the base method's parameters at
        lr * (BASE_LR_MULT / LR_EXP) (the same floats: 0.0020000000000000005 for LR 0.002)."""
        lr = optim_cfg.LR * self.lr_exp
        base_mult = optim_cfg.BASE_LR_MULT / self.lr_exp
        new_modules = [self.film_lp_img, self.film_lp_text] if self.cwt else []
        new_ids = {id(p) for m in (*new_modules, self.linear_probe_proj) for p in m.parameters()}
        params = list(params)
        return [{"params": [p for p in params if id(p) not in new_ids], "lr": lr * base_mult},
                {"params": [p for p in params if id(p) in new_ids], "lr": lr}]

    # --------------------------------------------------------------------------- checkpoints
    def get_extra_state(self):
        return {"head_classnames": list(self.head_classnames)}

    def set_extra_state(self, state):
        self.use_head(state["head_classnames"])

    def use_head(self, head_classnames: Optional[List[str]]) -> None:
        """Select the head's rows for the evaluated classes by name (`head_classnames`: the classes the
        head was trained on), or turn the head off when one of them is not among its classes. None (an
        original checkpoint): the authors' rule (DATASET.SUBSAMPLE_CLASSES "base", or "all" with "ImageNet"
        in DATASET.NAME), rows in order."""
        if head_classnames is None:
            data = self.cfg.DATASET
            self.head_active = data.SUBSAMPLE_CLASSES == "base" or (
                data.SUBSAMPLE_CLASSES == "all" and "ImageNet" in data.NAME)
            self.head_rows = None
            return
        self.head_classnames = list(head_classnames)
        rows = match_rows(self.head_classnames, self.classnames)
        self.head_active = rows is not None
        in_order = rows is not None and rows.tolist() == list(range(len(self.head_classnames)))
        self.head_rows = None if in_order else rows

    def load_state(self, state: dict, source: str = "checkpoint") -> None:
        """The base's load, after resizing the head to the checkpoint's classes; then the head is used or
        not by `use_head`. An original checkpoint (no class names) follows the authors' rule and needs a
        head of as many classes as are evaluated."""
        extra = state.get(NAMES_KEY)
        names = extra.get("head_classnames") if isinstance(extra, dict) else None
        weight = state.get("linear_probe_proj.weight")
        if weight is not None and self.head_type == "linear" and \
                weight.shape != self.linear_probe_proj.weight.shape:  # another class count: a new head
            self.linear_probe_proj = self.new_head(weight.shape[0]).to(self.linear_probe_proj.weight.device)
        super().load_state(state, source)
        if names is None:
            self.use_head(None)
            if self.head_active and weight is not None and weight.shape[0] != len(self.classnames):
                raise CheckpointError(
                    f"{source}: its DePT head has {weight.shape[0]} classes and holds no class names; "
                    f"the {len(self.classnames)} classes evaluated here cannot be matched to its rows.")
        elif weight is not None and len(names) != weight.shape[0]:
            raise CheckpointError(f"{source}: its DePT head has {weight.shape[0]} rows but names "
                                  f"{len(names)} classes.")


def match_rows(head_classnames: List[str], classnames: List[str]) -> Optional[Tensor]:
    """The indices [C] of `classnames` among `head_classnames` (a name repeated in both: its occurrences
    matched in order), or None when one of them is not among the head's."""
    slots = {}
    for i, name in enumerate(head_classnames):
        slots.setdefault(name, []).append(i)
    taken = {}
    rows = []
    for name in classnames:
        k = taken.get(name, 0)
        found = slots.get(name, [])
        if k >= len(found):
            return None
        rows.append(found[k])
        taken[name] = k + 1
    return torch.tensor(rows, dtype=torch.long)


class CoOp_DePT(DePTMixin, CoOp):
    """DePT on CoOp (the authors' ExtrasLinearProbeCoOp)."""


class CoCoOp_DePT(DePTMixin, CoCoOp):
    """DePT on CoCoOp (the authors' ExtrasLinearProbeCoCoOp): the head reads each image's own text features."""


class KgCoOp_DePT(DePTMixin, KgCoOp):
    """DePT on KgCoOp (the authors' ExtrasLinearProbeKgCoOp): KgCoOp's term W_kg (1 - mean cos) added unscaled."""


class MaPLe_DePT(DePTMixin, MaPLe):
    """DePT on MaPLe (the authors' ExtrasLinearProbeMaPLe)."""


__all__ = ["FiLM", "DePTMixin", "match_rows", "CoOp_DePT", "CoCoOp_DePT", "KgCoOp_DePT", "MaPLe_DePT"]
