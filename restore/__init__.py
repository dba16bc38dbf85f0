"""RESTORE and its baselines: multi-modal prompt learning over an unmodified CLIP (OpenAI
or open_clip).

    import restore
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = "RESTORE_m"
    clip_model = restore.load_clip("ViT-B/16")        # or restore.tiny_clip(), "testbed"
    model = restore.build_model(cfg, classnames, clip_model)
    logits = model(images)                              # [B, C]
    loss, terms = model.loss({"img": images, "label": labels})   # terms: ce, fs, alpha_v, ... (tensors)
    shift = model.feature_shift(images)                 # FeatureShift(vision=[L_v], text=[L_t])
"""
import warnings

# OpenAI's clip imports pkg_resources (hence setuptools<81), which warns on every import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import importlib
import importlib.util

from . import logs  # noqa: F401,E402  (the console handler of the project's loggers; no torch)

# Public names -> the module that defines them, imported on first use: `import restore` (and reading
# the method registry, restore.methods.registry) needs no torch.
_EXPORTS = {
    "BackboneError": "backbone", "build_backbone": "backbone", "load_clip": "backbone", "tiny_clip": "backbone",
    "extend_cfg": "config", "get_cfg_default": "config",
    "FeatureShift": "feature_shift",
    "build_model": "methods", "CheckpointError": "methods", "PromptedCLIP": "methods",
    "fit_cfg_to_backbone": "smoke",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # a submodule: restore.engine, ...
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
