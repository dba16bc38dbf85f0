"""CoPrompt (Roy and Etemad, ICLR 2024): MaPLe's prompts, a feature adapter on each tower, and a consistency
loss towards the frozen CLIP on class descriptions (text) and on a second augmented view (image).

    f_v = 0.9 f_v + 0.1 A_v(f_v)        f_t = 0.8 f_t + 0.2 A_t(f_t)        A(f) = ReLU(W2 ReLU(W1 f))
    logits = exp(logit_scale) * norm(f_v) @ norm(f_t)^T
    loss = CE(logits, y) + W * [(1 - mean_c cos(f_t[c], d_k[c])) + (1 - mean_b cos(f_v[b], z[b]))]

f_v, f_t: the prompted image [B, D] and class text [C, D] features (MaPLe's); A: Linear(D, D/4) and
Linear(D/4, D) without bias, each followed by a ReLU, PyTorch's default init (the model differs from
MaPLe at step 0). d_k [C, D]: the frozen text encoder's normalised features of description k of every class,
k = random.randint(0, n_desc - 1) drawn with Python's `random` once per step, the same k for all classes.
z [B, D]: the frozen image encoder (no prompts) on the batch's second augmented view (DATALOADER.K_TRANSFORMS
2; the first view feeds the prompted model). DISTILL "mse": mean squared errors of the normalised features
instead of the two cosine terms. Evaluation: the adapted logits, the loss plays no part.

This is the authors' code (ShuvenduRoy/CoPrompt, trainers/coprompt.py CustomCLIP). Random draws, in their
order (the same run for the same seed): the prompted CLIP's build, the second (frozen) CLIP's build (replayed,
restore.backbone.replay_second_build; the frozen CLIP here serves both), MaPLe's prompts, then the adapters
(image fc.0, image fc.2, text fc.0, text fc.2). Their 512 / 768 widths are ViT-B/16's; ours follow the
backbone. docs/REPRODUCING.md ("CoPrompt") lists what differs from the authors' code.
"""
import logging
import os
import random

import torch
import torch.nn.functional as F
from torch import nn

from ...backbone import replay_second_build
from ...checks import lookup
from ...distributed import broadcast_int
from ...errors import UserError
from ..maple.model import MaPLe
from . import descriptions as D

log = logging.getLogger(__name__)

IMAGE_MIX, TEXT_MIX = 0.1, 0.2  # the authors' hard-coded adapter ratios
REDUCTION = 4


class Adapter(nn.Module):
    """fc = Linear(d, d/4, no bias) -> ReLU -> Linear(d/4, d, no bias) -> ReLU (the authors' `Adapter`: the
    output is non-negative)."""

    def __init__(self, dim: int, reduction: int = REDUCTION):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, x):
        return self.fc(x)


def mix(adapter: Adapter, features: torch.Tensor, ratio: float) -> torch.Tensor:
    """ratio * A(f) + (1 - ratio) * f, in the authors' operation order (features in the adapter's dtype)."""
    features = features.to(adapter.fc[0].weight.dtype)
    return ratio * adapter(features) + (1 - ratio) * features


class CoPrompt(MaPLe):
    node = "TRAINER.COPROMPT"

    def __init__(self, cfg, classnames, clip_model):
        replay_second_build(clip_model)  # the authors build their frozen copy before the prompts
        super().__init__(cfg, classnames, clip_model)  # MaPLe's prompts, in MaPLe's order
        c = lookup(cfg, self.node)
        self.weight, self.distill = c.W, c.DISTILL
        dim = self.image_encoder.output_dim
        self.adapter_image = Adapter(dim)
        self.adapter_text = Adapter(dim)
        self.register_buffer("description_features", self._description_features(cfg, c.DESCRIPTIONS),
                             persistent=False)

    # ------------------------------------------------------------------ descriptions
    def _description_features(self, cfg, path):
        """[n_desc, C, D] or an empty tensor (no descriptions: the model evaluates, `loss` refuses)."""
        dataset = cfg.DATASET.NAME
        if path == D.CAPTIONS or not path and D.is_testbed(dataset):
            if not D.is_testbed(dataset):
                log.warning(f"Note: {D.KEY} is {D.CAPTIONS!r}: CoPrompt's text targets are the testbed caption "
                            f"templates with the class names, not descriptions of {dataset or 'the dataset'}.")
            return D.encode_descriptions(self.text_encoder, D.testbed_descriptions(self.classnames))
        if not path:
            return torch.empty(0)
        file = D.descriptions_file(path, dataset)
        texts = D.read_descriptions(file, self.classnames, self.text_encoder.token_count,
                                    self.text_encoder.context_length)
        text_tower = sum(float(p.double().sum()) for name, p in self.clip.named_parameters()
                         if not name.startswith("visual"))
        backbone = f"{cfg.MODEL.BACKBONE.NAME}|{cfg.MODEL.BACKBONE.get('PATH', '')}|{text_tower:.17g}"
        # A run's folder (train.py makes it before the model): a model built outside a run writes nothing.
        out = cfg.OUTPUT_DIR
        cache = os.path.join(out, "coprompt_descriptions.pt") if out and os.path.isdir(out) else None
        return D.cached_features(cache, D.cache_key(file, self.classnames, backbone),
                                 lambda: D.encode_descriptions(self.text_encoder, texts))

    def description_index(self) -> int:
        """The step's description index: Python's `random.randint`, as the authors draw it (one per step, in
        the main process); over several processes rank 0's (every rank needs the same target)."""
        return broadcast_int(random.randint(0, self.description_features.shape[0] - 1))

    # ------------------------------------------------------------------ forward
    def encode_image(self, images, trace=False, subset: int = 0):
        features, shift = super().encode_image(images, trace, subset)
        return mix(self.adapter_image, features, IMAGE_MIX), shift

    def encode_text(self, trace=False):
        features, shift = super().encode_text(trace)
        return mix(self.adapter_text, features, TEXT_MIX), shift

    def loss_terms(self, batch, enc, logits):
        if self.description_features.numel() == 0:
            raise UserError(f"CoPrompt trains against class descriptions: set {D.KEY} to the descriptions "
                            "file of the dataset (the authors' gpt_file/<dataset>_prompt.json format).")
        views = batch.views()
        target = self.description_features[self.description_index()].to(logits.device)
        with torch.no_grad():  # the frozen CLIP without prompts on the second view
            frozen = self.image_encoder(views[1] if len(views) > 1 else views[0])[0].float()
        text = F.normalize(enc.text.float(), dim=-1)
        image = F.normalize(enc.image.float(), dim=-1)
        target = target / target.norm(dim=-1, keepdim=True)
        frozen = frozen / frozen.norm(dim=-1, keepdim=True)
        if self.distill == "cosine":
            text_term = 1.0 - torch.mean(F.cosine_similarity(text, target, dim=1, eps=1e-7))
            image_term = 1.0 - torch.mean(F.cosine_similarity(image, frozen, dim=1, eps=1e-7))
        else:
            text_term, image_term = F.mse_loss(text, target), F.mse_loss(image, frozen)
        terms = {"ce": F.cross_entropy(logits, batch.labels),
                 "consistency": self.weight * (text_term + image_term)}
        return terms, {"cons_text": text_term.detach(), "cons_image": image_term.detach()}
