"""RESTORE and its baselines: multi-modal prompt learning over an unmodified CLIP (OpenAI
or open_clip).

    import restore
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = "RESTORE_m"
    clip_model = restore.load_clip("ViT-B/16")        # or restore.tiny_clip(), "testbed"
    model = restore.build_model(cfg, classnames, clip_model)
    logits = model(images)                              # [B, C]
    loss, terms = model.loss(images, labels)            # terms: ce, fs, alpha_v, ...
    shift = model.feature_shift(images)                 # FeatureShift(vision=[L_v], text=[L_t])
"""
import warnings

# OpenAI's clip imports pkg_resources (hence setuptools<81), which warns on every import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

from .backbone import BackboneError, build_backbone, load_clip, tiny_clip
from .config import extend_cfg, get_cfg_default
from .feature_shift import FeatureShift
from .methods import METHODS, CheckpointError, PromptedCLIP, build_model
from .smoke import fit_cfg_to_backbone

__all__ = ["get_cfg_default", "extend_cfg", "load_clip", "tiny_clip", "build_backbone",
           "build_model", "METHODS", "PromptedCLIP", "FeatureShift", "BackboneError",
           "CheckpointError", "fit_cfg_to_backbone"]
