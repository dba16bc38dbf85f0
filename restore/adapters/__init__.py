"""Backbone adapters: one small class per CLIP family, found by `adapter_for(model)`."""
from .base import (ADAPTERS, BackboneAdapter, UnsupportedBackbone, adapter_for, input_resolution,
                   methods_without_vision_prompts, register_adapter)
from . import openai, openclip  # noqa: F401  (register their adapters)

__all__ = ["ADAPTERS", "BackboneAdapter", "UnsupportedBackbone", "adapter_for", "input_resolution",
           "methods_without_vision_prompts", "register_adapter"]
