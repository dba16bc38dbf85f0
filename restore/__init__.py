"""RESTORE and its baselines: multi-modal prompt learning over an unmodified OpenAI CLIP."""
from .config import extend_cfg, get_cfg_default

__all__ = ["get_cfg_default", "extend_cfg"]
