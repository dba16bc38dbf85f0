"""Backbone adapters: one small class per CLIP family, found by `adapter_for(model)`."""
from .base import (ADAPTERS, TEXT_ONLY_METHODS, BackboneAdapter, UnsupportedBackbone,
                   adapter_for, register_adapter)
from . import openai  # noqa: F401  (registers OpenAIAdapter)

__all__ = ["ADAPTERS", "TEXT_ONLY_METHODS", "BackboneAdapter", "UnsupportedBackbone",
           "adapter_for", "register_adapter"]
