"""Backbone adapters: one small class per CLIP family, found by `adapter_for(model)`."""
from .base import (ADAPTERS, TEXT_ONLY_METHODS, BackboneAdapter, UnsupportedBackbone,
                   adapter_for, input_resolution, register_adapter)
from . import openai, openclip  # noqa: F401  (register their adapters)

__all__ = ["ADAPTERS", "TEXT_ONLY_METHODS", "BackboneAdapter", "UnsupportedBackbone",
           "adapter_for", "input_resolution", "register_adapter"]
