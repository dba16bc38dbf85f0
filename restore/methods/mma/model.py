"""MMA (Yang et al., CVPR 2024) as its authors' code computes it (ZjjConan/Multi-Modal-Adapter,
trainers/mmadapter.py, clip/model.py, clip/gsl.py).

The class prompts are the hand prompt "<TEXT_CTX_INIT> <class>." (no learned tokens). For each adapted
index k in ADAPTER_START..ADAPTER_END (1-based: k adapts block k - 1 of BOTH towers):

    text_adapter[k]   = down: Linear(d_text, DIM) + ReLU,  up: Linear(DIM, d_text)
    visual_adapter[k] = down: Linear(d_vision, DIM) + ReLU,  up: Linear(DIM, d_vision)
    shared_adapter[k] = Linear(DIM, DIM) + ReLU, the same module in both towers' branch k

and block k - 1 computes, from its input x (both towers; a branch parallel to attention and MLP):

    block(x) + g_{1/s}(s * up(shared(down(ln_1(g_s(x))))))

ln_1 is the block's own frozen first LayerNorm; g_c is the identity whose backward multiplies the gradient
by c (the authors' GradientScaleLayer): the gradient reaching x is the true one, the adapters' parameters
get 1/s times theirs (1000x at the shipped s = 0.001). Index 0 (only with ADAPTER_START 0) adapts the
embeddings without LayerNorm or gradient scaling: the vision tokens after `ln_pre` and the text token
embeddings before the positional embedding, each + s * up(shared(down(.))).

Initialisation, in the authors' draw order (same seed, same run): the text adapters' Linear layers (per k
ascending, down then up, PyTorch's default init), then kaiming_normal_(fan_out, relu) on their weights and
zero biases; the same for the vision adapters, then the shared layers. The up projections are not zero:
the adapters act from the first step. The loss is cross-entropy. Evaluation encodes the class texts with
the current adapters for every evaluation (the authors' code keeps the text features of the process's
first evaluation, stale after any later training or loading).
"""
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ...errors import UserError
from ...prompting import Branches
from ..base import PromptedCLIP

KEY = "TRAINER.MMADAPTER"


class ScaleGradient(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by `scale` (the authors' GradientScaleLayer)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def adapter_layers(width: int, indices, dim: int) -> nn.ModuleDict:
    """{str(k): module} for k in `indices`: Linear(width, dim) + ReLU when dim == width (the shared
    projection), else down (Linear(width, dim) + ReLU) and up (Linear(dim, width)); then kaiming_normal_
    (fan_out, relu) weights and zero biases, in module order (the authors' `_build_adapter`)."""
    layers = nn.ModuleDict()
    for k in indices:
        if dim == width:
            layers[str(k)] = nn.Sequential(nn.Linear(width, dim), nn.ReLU())
        else:
            layers[str(k)] = nn.Sequential(OrderedDict(
                down=nn.Sequential(nn.Linear(width, dim), nn.ReLU()), up=nn.Linear(dim, width)))
    for m in layers.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return layers


def adapt(x, seq, shared, scale):
    """s * up(shared(down(x))), computed in the adapters' dtype (fp32 also when the CLIP runs in fp16)."""
    return seq.up(shared(seq.down(x.to(seq.up.weight.dtype)))) * scale


def block_branch(x, norm, seq, shared, scale):
    """MMA's branch of a block on its input x [T, N, W] -> [T, N, W] (clip/model.py's adapted block)."""
    y = norm(ScaleGradient.apply(x, scale))
    return ScaleGradient.apply(adapt(y, seq, shared, scale), 1.0 / scale).to(x.dtype)


def stem_branch(x, seq, shared, scale):
    """Index 0: s * up(shared(down(x))) on the embedded tokens (no LayerNorm, no gradient scaling)."""
    return adapt(x, seq, shared, scale).to(x.dtype)


class MultiModalAdapter(PromptedCLIP):
    """The frozen CLIP with MMA's adapters (module docstring); learned: text_adapter, visual_adapter and
    shared_adapter, keyed by the authors' 1-based index k (their checkpoint names)."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        c = cfg.TRAINER.MMADAPTER
        start, end, dim = c.ADAPTER_START, c.ADAPTER_END, c.ADAPTER_DIM
        text, vision = self.text_encoder, self.image_encoder
        self.require_vision_prompts("adapts the blocks of")
        depth = min(text.num_layers, vision.num_layers)
        if not start <= end <= depth:
            raise UserError(f"{KEY}.ADAPTER_START={start} and ADAPTER_END={end} must satisfy START <= END <= "
                            f"{depth}, the blocks of the backbone's shallower tower (text {text.num_layers}, "
                            f"vision {vision.num_layers}).")
        for tower, width in (("text", text.width), ("vision", vision.width)):
            if dim == width:  # the authors' code builds a layer without down/up and fails in its first forward
                raise UserError(f"{KEY}.ADAPTER_DIM={dim} equals the {tower} encoder's width: the adapters "
                                "need a bottleneck narrower or wider than the tower.")
        self.set_text_template(c.TEXT_CTX_INIT, 0)
        indices = range(start, end + 1)
        self.text_adapter = adapter_layers(text.width, indices, dim)
        self.visual_adapter = adapter_layers(vision.width, indices, dim)
        self.shared_adapter = adapter_layers(dim, indices, dim)
        self.scale = float(c.ADAPTER_SCALE)

    def _branches(self, adapters, norm) -> Branches:
        """One tower's adapters as branches of the encoders: index 0 -> the stem, index k >= 1 -> block k - 1,
        fed through that block's ln_1 (`norm(k - 1)`)."""
        stem, blocks = None, [None] * (max(int(k) for k in adapters) if len(adapters) else 0)
        for k, seq in adapters.items():
            shared = self.shared_adapter[k]
            k = int(k)
            if k == 0:
                stem = partial(stem_branch, seq=seq, shared=shared, scale=self.scale)
            else:
                blocks[k - 1] = partial(block_branch, norm=norm(k - 1), seq=seq, shared=shared, scale=self.scale)
        return Branches(stem, blocks)

    def text_branches(self):
        return self._branches(self.text_adapter, self.backbone.text_block_norm)

    def vision_branches(self):
        return self._branches(self.visual_adapter, self.backbone.image_block_norm)
