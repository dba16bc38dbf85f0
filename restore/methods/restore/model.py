"""RESTORE (Yang et al., arXiv 2403.06136): feature-shift consistency and feature-shift-guided
surgery on top of a base method. RESTORE_m = MaPLe + both, RESTORE_p = PromptSRC + both.

Keys live in TRAINER.RESTORE (declared in restore/methods/restore/__init__.py; docs/METHOD.md sections
2-5); the base method's stay in its own node.
- FS.DEFINITION paper: L_fs = sum_l (N^v_l - N^t_l)^2 from the traced per-block shifts.
  FS.DEFINITION release: L_fs = sum_l (r^t_l - r^v_l)^2, r = Gram-norm ratio of the deep prompts.
  Opt-in speed-ups of the paper's trace in training: FS.TEXT_CLASSES / FS.VISION_IMAGES (a random
  subset of classes / images, variance-corrected), FS.PROMPT_FREE no_grad (no gradient through the
  prompt-free pass); FS.PROMPT_FREE recompute is exact and keeps less memory. Evaluation traces
  every sample.
- SURGERY.MODE fs_guided: z + alpha * Surgery(z), alpha_v = GAMMA * sum_l N^v_l and
  alpha_t = BETA * sum_l N^t_l (detached) from the batch in training; an EMA of alpha is kept in
  the state and used at test (ALPHA_AT_TEST ema), or recomputed per test batch (live).
  fixed: alpha = (GAMMA, BETA). off: no surgery. release: the release's calibrator with ratios
  updated once after epoch RELEASE_UPDATE_EPOCH (-1 = MAX_EPOCH // 3).
"""
import logging
import torch

from ...distributed import broadcast_from_primary
from ...feature_shift import consistency_loss, gram_norm, release_loss, release_ratios
from ...surgery import ReleaseCalibrator, Surgery
from ..base import Encoded
from ..maple.model import MaPLe
from ..promptsrc.model import PromptSRC
from . import ALPHA_AT_TEST, DEFINITIONS, MODES, PROMPT_FREE
from .maple_fsa import release_variant

log = logging.getLogger(__name__)


def _choice(key, value, valid):
    if value not in valid:
        raise ValueError(f"TRAINER.RESTORE.{key} must be one of {valid}, got {value!r}")
    return value


class RestoreMixin:
    """Adds L_fs and surgery to a PromptedCLIP subclass; put it first in the bases."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        r = cfg.TRAINER.RESTORE
        self.definition = _choice("FS.DEFINITION", r.FS.DEFINITION, DEFINITIONS)
        self.mode = _choice("SURGERY.MODE", r.SURGERY.MODE, MODES)
        self.alpha_at_test = _choice("SURGERY.ALPHA_AT_TEST", r.SURGERY.ALPHA_AT_TEST,
                                     ALPHA_AT_TEST)
        self.fs_weight, self.text_classes = r.FS.WEIGHT, r.FS.TEXT_CLASSES
        self.vision_images = r.FS.VISION_IMAGES
        self.prompt_free = _choice("FS.PROMPT_FREE", r.FS.PROMPT_FREE, PROMPT_FREE)
        self.gamma, self.beta, self.ema = r.SURGERY.GAMMA, r.SURGERY.BETA, r.SURGERY.EMA
        s = r.SURGERY
        self.release_gains = (s.RELEASE_VIS_GAIN, s.RELEASE_TEXT_GAIN)
        self.release_update_epoch = s.RELEASE_UPDATE_EPOCH

        dim = self.image_encoder.output_dim
        if self.mode in ("fs_guided", "fixed"):
            self.visual_adapter = Surgery(dim, r.SURGERY.RATIO)
            self.text_adapter = Surgery(dim, r.SURGERY.RATIO)
        elif self.mode == "release":
            # Text first, then vision: the release's order of random draws (same seed, same run).
            self.text_adapter = ReleaseCalibrator(dim)
            self.visual_adapter = ReleaseCalibrator(dim)
            self.register_buffer("calib_ratio", torch.tensor(
                [s.RELEASE_VIS_R, s.RELEASE_TEXT_R], dtype=torch.float32))
            self.register_buffer("calib_updated", torch.tensor(False))
        # (alpha_v, alpha_t) averaged over training steps; what evaluation uses by default.
        self.register_buffer("alpha_ema", torch.zeros(2))
        self.register_buffer("alpha_ema_ready", torch.tensor(False))
        if self.definition == "release":
            pairs = self.deep_prompt_pairs()
            if not pairs:
                raise ValueError("FS.DEFINITION release needs deep prompts in both branches "
                                 "(prompt depth >= 2)")
            # Gram norms at the first forward (the release's normaliser), captured lazily.
            self.register_buffer("release_init", torch.zeros(2, len(pairs)))
            self.register_buffer("release_init_ready", torch.tensor(False))

    # ---------------------------------------------------------------------------- shifts
    def _shift_needed(self):
        if self.training:
            return self.mode == "fs_guided" or (self.definition == "paper" and self.fs_weight > 0)
        return self.mode == "fs_guided" and self.alpha_at_test == "live"

    def training_trace(self):
        if not self._shift_needed():
            return False
        n = self.token_embeds.shape[0]
        if 0 < self.text_classes < n:  # the text shift of a fresh random subset of classes
            subset = torch.randperm(n, device=self.token_embeds.device)[: self.text_classes]
            return broadcast_from_primary(subset) if self.distributed else subset
        return True

    def encode_image(self, images, trace=False, subset=0):
        if trace is not False and self.training:  # the shift of a random subset of the images
            subset = self.vision_images
        return super().encode_image(images, trace, subset)

    def logits_per_image(self):
        # A live alpha comes from the shift of the whole evaluation batch.
        return not (self.mode == "fs_guided" and self.alpha_at_test == "live")

    def _live_alpha(self, shift):
        return torch.stack([self.gamma * shift.vision.detach().sum(),
                            self.beta * shift.text.detach().sum()])

    def _alpha(self, shift):
        if self.mode == "fixed":
            return torch.tensor([self.gamma, self.beta], device=self.alpha_ema.device)
        if self.mode == "release":
            return self.calib_ratio
        if self.training or self.alpha_at_test == "live":
            return self._live_alpha(shift)
        return self.alpha_ema

    # ---------------------------------------------------------------------------- forward
    def encode(self, images, trace=False):
        if trace is False and self._shift_needed():
            trace = True
        enc = super().encode(images, trace)
        if self.mode == "off":
            return enc
        alpha = self._alpha(enc.shift)
        image = enc.image.float() + alpha[0] * self.visual_adapter(enc.image.float())
        text = enc.text.float() + alpha[1] * self.text_adapter(enc.text.float())
        return Encoded(image, text, enc.shift)

    def loss_terms(self, batch, enc, logits):
        terms, logs = super().loss_terms(batch, enc, logits)
        l_fs = None
        if self.definition == "paper" and enc.shift is not None:
            l_fs = consistency_loss(enc.shift)
        elif self.definition == "release":
            l_fs = self._release_loss()
        if l_fs is not None:
            if self.fs_weight > 0:
                terms["fs"] = self.fs_weight * l_fs
            logs["l_fs"] = l_fs.detach()
        if enc.shift is not None:
            logs["shift_v"] = enc.shift.vision.mean().detach()
            logs["shift_t"] = enc.shift.text.mean().detach()
        if self.mode != "off":
            alpha = self._alpha(enc.shift)
            if self.mode == "fs_guided":
                self._update_alpha_ema(alpha)
            logs["alpha_v"], logs["alpha_t"] = alpha[0].detach(), alpha[1].detach()
        return terms, logs

    @torch.no_grad()
    def _update_alpha_ema(self, alpha):
        # The first value itself, then ema * old + (1 - ema) * new; chosen on the device (no host read).
        updated = self.alpha_ema * self.ema + (1 - self.ema) * alpha
        self.alpha_ema.copy_(torch.where(self.alpha_ema_ready, updated, alpha))
        self.alpha_ema_ready.fill_(True)

    # -------------------------------------------------------------------- release variant
    def _release_loss(self):
        pairs = self.deep_prompt_pairs()
        with torch.no_grad():  # the Gram norms of the first forward, kept (chosen on the device)
            first = torch.stack([torch.stack([gram_norm(t) for t, _ in pairs]),
                                 torch.stack([gram_norm(v) for _, v in pairs])])
            self.release_init.copy_(torch.where(self.release_init_ready, self.release_init, first))
            self.release_init_ready.fill_(True)
        text = release_ratios([t for t, _ in pairs], self.release_init[0])
        vision = release_ratios([v for _, v in pairs], self.release_init[1])
        return release_loss(text, vision)

    def on_epoch_end(self, epoch, max_epoch):
        if self.mode == "release" and not self.calib_updated:
            at = self.release_update_epoch if self.release_update_epoch >= 0 else max_epoch // 3
            if epoch == at:
                with torch.no_grad():
                    pairs = self.deep_prompt_pairs()
                    vis = torch.stack([gram_norm(v) for _, v in pairs]).mean()
                    txt = torch.stack([gram_norm(t) for t, _ in pairs]).mean()
                    self.calib_ratio[0] += self.release_gains[0] * vis
                    self.calib_ratio[1] += self.release_gains[1] * txt
                    self.calib_updated.fill_(True)
                log.info(f"text_cali {self.calib_ratio[1].item():.4f} "
                         f"vis_cali {self.calib_ratio[0].item():.4f}")
        super().on_epoch_end(epoch, max_epoch)


class RESTORE_m(RestoreMixin, MaPLe):
    """RESTORE on MaPLe (keys in TRAINER.MAPLE and TRAINER.RESTORE)."""


class RESTORE_p(RestoreMixin, PromptSRC):
    """RESTORE on PromptSRC (keys in TRAINER.PROMPTSRC and TRAINER.RESTORE); PromptSRC's
    losses (on the post-surgery features) and its Gaussian prompt aggregation are kept."""


class MaPLe_FSA(RESTORE_m):
    """The official release's trainer name: RESTORE_m's release variant. FS.DEFINITION and
    SURGERY.MODE are always "release"; the values of the release's TRAINER.MAPLE_FSA node reach
    TRAINER.MAPLE and TRAINER.RESTORE through `maple_fsa.map_node` (its spec's derive_cfg, which
    train.py applies)."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(release_variant(cfg), classnames, clip_model)
