"""PromptSRC (Khattak et al., ICCV 2023): IVLP prompts regularised towards the frozen CLIP.

Losses: CE + KL(zero-shot logits || logits) / (B*C) + TEXT_LOSS_WEIGHT * L1(text features,
template-ensembled frozen text features) + IMAGE_LOSS_WEIGHT * L1(image features, frozen image
features), all features L2-normalised. Gaussian prompt aggregation (GPA): at the end of epoch e
the prompts are added to a running sum with weight N(e+1; GPA_MEAN, GPA_STD) (normalised over the
epochs), and the sum replaces the prompts after the last epoch.

Differences from the public code, same results: the frozen image encoder is the same frozen CLIP
run without prompts (no second copy), and GPA averages the trainable tensors only (the frozen
weights it would average are identical).
"""
import logging
import math

import torch
import torch.nn.functional as F

from ...templates import PROMPTSRC_TEMPLATES
from ..ivlp.model import IVLP

log = logging.getLogger(__name__)


def gpa_weights(max_epoch: int, mean: float, std: float) -> list:
    """Normalised Gaussian weights of epochs 0..max_epoch-1 (density at e+1)."""
    dens = [math.exp(-0.5 * ((e + 1 - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
            for e in range(max_epoch)]
    total = sum(dens)
    if total == 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_MEAN={mean}, GPA_STD={std} put no weight on "
                         f"epochs 1..{max_epoch}")
    return [d / total for d in dens]


class PromptSRC(IVLP):
    def prompt_config(self, cfg):
        c = cfg.TRAINER.PROMPTSRC
        return dict(node="TRAINER.PROMPTSRC", n_text=c.N_CTX_TEXT,
                    depth_text=c.PROMPT_DEPTH_TEXT, n_vision=c.N_CTX_VISION,
                    depth_vision=c.PROMPT_DEPTH_VISION, ctx_init=c.CTX_INIT)

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        c = cfg.TRAINER.PROMPTSRC
        self.text_weight, self.image_weight = c.TEXT_LOSS_WEIGHT, c.IMAGE_LOSS_WEIGHT
        self.gpa_mean, self.gpa_std = c.GPA_MEAN, c.GPA_STD
        self.register_buffer("fixed_embeddings", self._template_ensemble(), persistent=False)
        self._gpa_sum = None  # running Gaussian-weighted sum of the trainable tensors

    @torch.no_grad()
    def _template_ensemble(self, chunk: int = 2048):
        """Mean over the 60 templates of the frozen CLIP's (unnormalised) text features."""
        texts = [t.format(c) for t in PROMPTSRC_TEMPLATES for c in self.classnames]
        tokens = self.text_encoder.tokenize(texts)
        enc = self.text_encoder
        features = torch.cat([enc(enc.embed(part), enc.eot_index(part))[0].float()
                              for part in tokens.split(chunk)])
        return features.view(len(PROMPTSRC_TEMPLATES), len(self.classnames), -1).mean(0)

    def loss_terms(self, batch, enc, logits):
        with torch.no_grad():
            zs_image = F.normalize(self.image_encoder(batch.images)[0].float(), dim=-1)
            fixed = F.normalize(self.fixed_embeddings.to(zs_image.device), dim=-1)
            zs_logits = self.clip.logit_scale.exp().float() * zs_image @ fixed.t()
        text = F.normalize(enc.text.float(), dim=-1)
        image = F.normalize(enc.image.float(), dim=-1)
        terms = {
            "ce": F.cross_entropy(logits, batch.labels),
            "scl_logits": F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zs_logits, dim=1),
                                   reduction="sum", log_target=True) / logits.numel(),
            "scl_text": F.l1_loss(text, fixed) * self.text_weight,
            "scl_image": F.l1_loss(image, zs_image) * self.image_weight,
        }
        return terms, {}

    # ------------------------------------------------------------------ Gaussian aggregation
    def on_epoch_end(self, epoch, max_epoch):
        weight = gpa_weights(max_epoch, self.gpa_mean, self.gpa_std)[epoch]
        params = {k: p for k, p in self.named_parameters() if p.requires_grad}
        if self._gpa_sum is None:
            self._gpa_sum = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
        for k, p in params.items():
            # A sum restored from a checkpoint is on the CPU; the prompts may be on a GPU.
            self._gpa_sum[k] = self._gpa_sum[k].to(p.device) + weight * p.detach().float()
        if epoch == max_epoch - 1:
            log.info("Using GPA model for final inference...")
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(self._gpa_sum[k].to(p.dtype))
            self._gpa_sum = None

    def get_extra_state(self):
        # Saved with the prompts, so that a resumed run continues the same aggregation.
        return {"gpa_sum": self._gpa_sum}

    def set_extra_state(self, state):
        # Copied, as load_state_dict copies parameters: on_epoch_end adds in place, which must
        # not write into the loaded state (or into the model it came from).
        gpa_sum = state.get("gpa_sum")
        self._gpa_sum = None if gpa_sum is None else {k: v.clone() for k, v in gpa_sum.items()}
