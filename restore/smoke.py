"""Fitting a config to a small CLIP, so that any real config runs on it (smoke tests).

`MODEL.BACKBONE.NAME tiny-random` on a real config (224 px, prompt depth 9) would stop at the
first mismatch; `fit_cfg_to_backbone` sets INPUT.SIZE to the model's resolution and lowers every
PROMPT_DEPTH* key to the model's layers (a block index, TCP's INSERT_LAYER, to its last block), and says
what it changed.
"""
from typing import List

from .adapters import adapter_for

# Small random backbones whose runs only check that everything runs.
SMOKE_BACKBONES = ("tiny-random", "tiny-random-resnet")
SMOKE_NOTE = ("Note: MODEL.BACKBONE.NAME {name!r} is a small RANDOM CLIP for smoke tests: its "
              "accuracies mean nothing.")


def fit_cfg_to_backbone(cfg, clip_model) -> List[str]:
    """Set cfg.INPUT.SIZE to the model's input size and cap every prompt depth of the method nodes (a
    key declared with `layers`) at the layers of the encoder it prompts ("both", MaPLe's PROMPT_DEPTH:
    the smaller of the two), a block index (`Key.block`) at the last block. A no-op for a config that
    fits. cfg must not be frozen. Returns "KEY: old -> new" lines."""
    from .checks import lookup
    from .methods import registry
    bb = adapter_for(clip_model)
    text_layers = len(bb.text_blocks)
    vision_layers = len(bb.image_blocks) if bb.image_blocks is not None else text_layers
    changes = []
    size = (bb.image_resolution, bb.image_resolution)
    if tuple(cfg.INPUT.SIZE) != size:
        changes.append(f"INPUT.SIZE: {tuple(cfg.INPUT.SIZE)} -> {size}")
        cfg.INPUT.SIZE = size
    towers = {"text": text_layers, "vision": vision_layers, "both": min(text_layers, vision_layers)}
    for full, key in registry.keys().items():
        value = lookup(cfg, full)
        if key.layers is None or value is None:
            continue
        cap = towers[key.layers] - (1 if key.block else 0)  # a block index: at most the last block
        if value <= cap:
            continue
        changes.append(f"{full}: {value} -> {cap}")
        parent, _, leaf = full.rpartition(".")
        lookup(cfg, parent)[leaf] = cap
    return changes
