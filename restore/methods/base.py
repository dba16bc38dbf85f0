"""The interface every method shares, and the prompt pieces several methods reuse.

A method is an `nn.Module` built from (cfg, classnames, clip_model) around a frozen CLIP. It says
where the prompts come from (`text_prompts`, `vision_prompts`); this class runs the two prompted
encoders, turns features into logits, and gives the engines their small interface:

    model(images) -> logits [B, C]
    model.loss(batch) -> (loss, {name: 0-dim tensor})    # batch: restore.methods.batch.Batch
    model.backward_and_update                              # None, or a method's own update (ProGrad)
    model.on_epoch_start(epoch, max_epoch) / model.on_epoch_end(epoch, max_epoch)
    model.feature_shift(images) -> FeatureShift(vision=[L_v], text=[L_t])
    model.state_to_save() / model.load_state(state)
    with model.cached_text_features(): ...   # evaluation: class texts encoded once

docs/ADDING_A_METHOD.md section 4 lists the hooks a method overrides.
"""
from contextlib import contextmanager
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..feature_shift import FeatureShift, estimate
from ..adapters import UnsupportedBackbone, adapter_for
from ..prompting import Branches, PromptedImageEncoder, PromptedTextEncoder
from . import shards
from .batch import Batch

# Class-dependent buffers of the original CoOp-lineage checkpoints; dropped when loading them.
LEGACY_CLASS_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")


class CheckpointError(RuntimeError):
    """A saved state does not fit the model; the message names the keys and the likely cause."""


class Encoded(NamedTuple):
    image: Tensor  # [B, D], before normalisation
    text: Tensor  # [C, D] (or [B, C, D] for image-conditioned prompts)
    shift: Optional[FeatureShift]


class PromptedCLIP(nn.Module):
    """Base class: a frozen CLIP plus the prompts a subclass defines."""

    # True when the learned state holds one entry per training class (CoOp's CSC contexts), so
    # that it cannot be evaluated on other class names (base -> new).
    class_specific = False
    # Set by the engine in a run over several processes: class texts sharded, shifts reduced (shards.py).
    distributed = False

    def __init__(self, cfg, classnames: List[str], clip_model):
        super().__init__()
        self.cfg = cfg
        self.classnames = [c.replace("_", " ") for c in classnames]
        self.clip = clip_model
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.backbone = adapter_for(clip_model)
        self.image_encoder = PromptedImageEncoder(self.backbone)
        self.text_encoder = PromptedTextEncoder(self.backbone)
        self.fs_norm = cfg.TRAINER.RESTORE.FS.NORM
        self.prompt_free = "grad"  # how the trace's prompt-free pass is differentiated
        self.n_slots = 0
        self._text_cache = None

    def require_vision_prompts(self, uses: str = "puts prompts into") -> None:
        """Refuse, at build time, a method with vision prompts (or, as `uses` says, anything else in the
        image blocks: "adapts the blocks of") on an image tower that cannot take them (a ResNet has no
        token blocks); the message names the methods that can use it."""
        if not self.backbone.supports_vision_prompts:
            name = self.cfg.MODEL.BACKBONE.get("PATH", "") or self.cfg.MODEL.BACKBONE.NAME
            raise UnsupportedBackbone(
                f"{type(self).__name__} {uses} the image encoder, which backbone "
                f"{name!r} ({self.backbone.family}) cannot take: {self.backbone.vision_prompt_error}")

    def train(self, mode: bool = True):
        """Train the prompts; the frozen CLIP stays in eval mode (matters for BatchNorm in
        ResNet backbones)."""
        super().train(mode)
        self.clip.eval()
        return self

    # ------------------------------------------------------------ where the prompts come from
    def set_text_template(self, prefix: Optional[str], n_slots: int, template: str = "{}.") -> None:
        """Class prompts "<prefix> <class>." whose tokens 1..n_slots are context slots; their
        frozen token embeddings and EOT positions are class-dependent, non-persistent buffers."""
        texts = [template.format(c) for c in self.classnames]
        if prefix:
            texts = [f"{prefix} {t}" for t in texts]
        self.check_text_length(prefix, template, texts)
        tokens = self.text_encoder.tokenize(texts)
        self.register_buffer("token_embeds", self.text_encoder.embed(tokens), persistent=False)
        self.register_buffer("eot", self.text_encoder.eot_index(tokens), persistent=False)
        # The EOT positions on the host too (read here, on the CPU at build): the text encoder cuts the
        # tokens after the last one without reading the device (text_length).
        self.eot_positions = self.eot.tolist()
        self.n_slots = n_slots

    def check_text_length(self, prefix: Optional[str], template: str, texts: List[str]) -> None:
        """UserError naming the context keys, or the class, when a prompt exceeds the text context
        (instead of clip.tokenize's RuntimeError, which names neither)."""
        limit = self.text_encoder.context_length
        count = self.text_encoder.token_count
        keys = context_keys(self.cfg)
        bare = f"{prefix} {template}" if prefix else template
        fixed = count(bare.format(""))
        if fixed >= limit:  # not even a one-token class name fits
            raise UserError(
                f"The prompt {shorten(bare)!r} alone takes {fixed} of the text encoder's {limit} "
                f"context tokens, leaving none for the class name: lower {keys}.")
        for name, text in zip(self.classnames, texts):
            if count(text) > limit:
                raise UserError(
                    f"Class name {name!r} is too long: its prompt {shorten(text)!r} takes "
                    f"{count(text)} tokens, more than the text encoder's {limit}. Use a shorter class "
                    f"name (the split file's third column) or fewer context tokens ({keys}).")

    def text_length(self, lo: int = 0, hi: Optional[int] = None) -> int:
        """Tokens of the class prompts lo..hi-1 that reach a feature: their last EOT position + 1."""
        return max(self.eot_positions[lo:hi]) + 1

    def text_prompts(self) -> list:
        """Per-layer text prompts (index 0 = token-embedding level); [] for none."""
        return []

    def vision_prompts(self) -> list:
        """Per-layer vision prompts (index 0 = before ln_pre); [] for none."""
        return []

    def text_branches(self) -> Optional[Branches]:
        """What the method adds inside the text blocks besides prompts (restore.prompting.Branches: MMA's
        adapters), or None: nothing, no operation."""
        return None

    def vision_branches(self) -> Optional[Branches]:
        """As `text_branches`, for the image tower."""
        return None

    @torch.no_grad()
    def hand_prompt_features(self, template: str) -> Tensor:
        """The frozen CLIP's L2-normalised text features of a hand prompt (`template`, e.g. "a photo of a
        {}.") for each class: [C, D], fp32 (= clip.encode_text, normalised). Called at build, before the
        engine sets the precision (KgCoOp's targets, ProGrad's zero-shot classifier)."""
        enc = self.text_encoder
        tokens = enc.tokenize([template.format(c) for c in self.classnames])
        features = enc(enc.embed(tokens), enc.eot_index(tokens))[0].float()
        return features / features.norm(dim=-1, keepdim=True)

    # ------------------------------------------------------------------------------ forward
    def encode_text(self, trace=False):
        """Class texts -> (features [C, D], text shift or None). trace: False, True (every class)
        or the indices of a uniform random subset of classes; the shift is (N^t [L], the variance
        of a subset estimate [L] or None), `restore.feature_shift.estimate`."""
        if self.distributed and shards.can_shard_text(self):
            return shards.encode_text_sharded(self, trace)
        features, samples = self.text_encoder(self.token_embeds, self.eot, self.text_prompts(),
                                              self.n_slots, trace, self.fs_norm, self.prompt_free,
                                              self.text_length(), branches=self.text_branches())
        if trace is False:
            return features, None
        return features, estimate(samples, trace, self.token_embeds.shape[0])

    def encode_image(self, images: Tensor, trace=False, subset: int = 0):
        """images [B, 3, H, W] -> (features [B, D], vision shift or None), the shift as in
        `encode_text`, over the batch or (0 < subset < B) a fresh uniform random subset of
        `subset` images. In training over several processes, over the global batch."""
        prompts = self.vision_prompts()
        if trace is False:
            return self.image_encoder(images, prompts, False, self.fs_norm,
                                      branches=self.vision_branches())
        if self.distributed and self.training:
            return shards.encode_image_traced(self, images, subset)
        n = images.shape[0]
        rows = torch.randperm(n, device=images.device)[:subset] if 0 < subset < n else True
        features, samples = self.image_encoder(images, prompts, rows, self.fs_norm,
                                               self.prompt_free, self.vision_branches())
        return features, estimate(samples, rows, n)

    def encode(self, images: Tensor, trace=False) -> Encoded:
        image, vision_shift = self.encode_image(images, trace is not False)
        if self._text_cache is None:
            text, text_shift = self.encode_text(trace)
        else:
            if trace is not False and self._text_cache[1] is None:  # traced once, when first asked
                with torch.no_grad():
                    self._text_cache = self.encode_text(trace=True)
            text, text_shift = self._text_cache
        return Encoded(image, text, self.feature_shift_of(vision_shift, text_shift))

    @staticmethod
    def feature_shift_of(vision, text) -> Optional[FeatureShift]:
        """The (N_l, variance) pairs of `encode_image` and `encode_text` -> a FeatureShift."""
        if vision is None or text is None:
            return None
        return FeatureShift(vision[0], text[0], vision[1], text[1])

    def logits(self, image: Tensor, text: Tensor) -> Tensor:
        image = F.normalize(image.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        scale = self.clip.logit_scale.exp().float()
        if text.dim() == 3:  # one classifier per image
            return scale * torch.einsum("bd,bcd->bc", image, text)
        return scale * image @ text.t()

    def logits_per_image(self) -> bool:
        """Whether evaluation logits of an image depend on that image alone (not on the rest of its
        batch); evaluation over several processes is sharded only then."""
        return True

    def forward(self, images: Tensor) -> Tensor:
        enc = self.encode(images)
        return self.logits(enc.image, enc.text)

    @contextmanager
    def cached_text_features(self):
        """Encode the class texts once for a whole evaluation; their feature shift is traced
        once too, when an encode first asks for it (not at all for plain logits)."""
        with torch.no_grad():
            self._text_cache = self.encode_text()
        try:
            yield
        finally:
            self._text_cache = None

    # ------------------------------------------------------------------------------ training
    def training_trace(self):
        """What `loss` asks the encoders to trace: False, or True / sample indices."""
        return False

    def loss_terms(self, batch: Batch, enc: Encoded, logits: Tensor):
        """The method's loss terms (0-dim tensors, summed into the loss) and extra values to log (0-dim
        tensors, detached), for `batch` (its images encoded as `enc`, their logits [B, C])."""
        return {"ce": F.cross_entropy(logits, batch.labels)}, {}

    def loss(self, batch) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The step contract (docs/ADDING_A_METHOD.md section 4): the whole training batch (a Batch, or the
        loader's dict) -> (loss, terms): the scalar loss and {name: 0-dim tensor} to log, in order "loss",
        each loss term (with its graph: a `backward_and_update` hook differentiates them one by one),
        "acc" (the batch accuracy in %, float64) and the method's extra values. Nothing is turned into a
        Python number here: the engine does that when it writes a log line."""
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        labels = batch.labels
        enc = self.encode(batch.images, trace=self.training_trace())
        logits = self.logits(enc.image, enc.text)
        terms, logs = self.loss_terms(batch, enc, logits)
        total = sum(terms.values())
        # float64 * 100 on the device: the value `.item() * 100` gave on the host.
        acc = (logits.argmax(-1) == labels).float().mean().double() * 100
        return total, {"loss": total, **terms, "acc": acc, **logs}

    # A method may replace the engine's backward pass and optimiser step (ProGrad projects one loss's
    # gradient against another's): set this to a function (self, loss, terms, update) -> None, where
    # `loss, terms` are what `loss` returned and `update` a restore.engine.core.GradientUpdate (its
    # `grad(term)` gives the gradients of a term as the default update would see them: averaged over
    # the processes, unscaled; its `step(grads)` applies them). docs/ADDING_A_METHOD.md section 4.
    backward_and_update = None

    def on_epoch_start(self, epoch: int, max_epoch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, max_epoch: int) -> None:
        pass

    @torch.no_grad()
    def feature_shift(self, images: Tensor) -> FeatureShift:
        """The per-layer mean shift magnitudes N_l (docs/METHOD.md section 2) on a batch. Call it
        under grad (as `encode(images, trace=True).shift`) to use it in a loss."""
        return self.encode(images, trace=True).shift

    # --------------------------------------------------------------------------- checkpoints
    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def state_to_save(self) -> dict:
        """Everything but the frozen CLIP: prompts, couplings, adapters, method buffers."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.")}

    def load_state(self, state: dict, source: str = "checkpoint") -> None:
        """Load `state_to_save()` output (or a full state dict). Class-dependent buffers are not
        part of it, so a model built for other classes (base -> new) loads it."""
        state = {k: v for k, v in state.items()
                 if not k.startswith("clip.") and k not in LEGACY_CLASS_KEYS}
        own = self.state_to_save()
        # Extra state (e.g. PromptSRC's running GPA sum) is optional bookkeeping.
        missing = sorted(k for k in set(own) - set(state) if not k.endswith("_extra_state"))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{source} does not match {type(self).__name__}: missing keys {missing[:8]}, "
                f"unexpected keys {unexpected[:8]}. Was it saved by another trainer or config?")
        for k, v in state.items():
            if hasattr(v, "shape") and own[k].shape != v.shape:
                raise CheckpointError(
                    f"{source}: {k} has shape {tuple(v.shape)} but the model expects "
                    f"{tuple(own[k].shape)} (a class-count or prompt-length mismatch: check "
                    "DATASET.SUBSAMPLE_CLASSES and the trainer config used for training).")
        self.load_state_dict(state, strict=False)


# --------------------------------------------------------------------- shared prompt pieces
def context_vectors(text_encoder: PromptedTextEncoder, ctx_init: str, n_ctx: int,
                    shape_prefix=()) -> Tensor:
    """Initial context vectors: the token embeddings of the first n_ctx tokens of `ctx_init`
    (as CoOp and MaPLe), or N(0, 0.02) when there is no init string."""
    if ctx_init:
        n_tokens, limit = text_encoder.token_count(ctx_init), text_encoder.context_length
        if n_tokens > limit:
            raise UserError(f"CTX_INIT {shorten(ctx_init)!r} takes {n_tokens} tokens, more than the "
                            f"text encoder's {limit}: shorten CTX_INIT.")
        tokens = text_encoder.tokenize([ctx_init])
        vectors = text_encoder.embed(tokens)[0, 1:1 + n_ctx].float().clone()
        if vectors.shape[0] < n_ctx:
            raise UserError(f"CTX_INIT {ctx_init!r} has fewer than N_CTX={n_ctx} tokens")
        return vectors.expand(*shape_prefix, -1, -1).clone() if shape_prefix else vectors
    return torch.empty(*shape_prefix, n_ctx, text_encoder.width).normal_(std=0.02)


def shorten(text: str, width: int = 60) -> str:
    """`text`, its middle elided when longer than `width` characters (for one-line messages)."""
    return text if len(text) <= width else f"{text[:width // 2 - 2]} ... {text[-(width // 2 - 3):]}"


def context_keys(cfg) -> str:
    """The keys that set a method's text prompt, for messages: "TRAINER.MAPLE.N_CTX / CTX_INIT" (its
    spec's `context_keys`), or its hand prompt when it has none (ZeroshotCLIP)."""
    from . import registry
    name = cfg.TRAINER.NAME
    keys = registry.get(name).context_keys if name in registry.names() else ()
    if not keys:
        return f"the hand prompt of {cfg.DATASET.NAME or 'the dataset'} (restore.templates)"
    node = keys[0].rpartition(".")[0] + "."
    return " / ".join([keys[0]] + [k[len(node):] if k.startswith(node) else k for k in keys[1:]])


def deep_prompts(n_layers: int, n_tokens: int, width: int) -> nn.ParameterList:
    """Independent prompts for layers 1..n_layers, N(0, 0.02) (as the anchors' VPT_shallow)."""
    return nn.ParameterList(
        [nn.Parameter(torch.empty(n_tokens, width).normal_(std=0.02)) for _ in range(n_layers)])


def check_depth(key: str, depth: int, num_layers: int, minimum: int = 0) -> None:
    if not minimum <= depth <= num_layers:
        raise UserError(f"{key}={depth} must be between {minimum} and the encoder's "
                         f"{num_layers} layers")
