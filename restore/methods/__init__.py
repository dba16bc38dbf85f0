"""The methods: one package per method family, and the registry every table derives from.

    restore/methods/<family>/__init__.py   the declaration (restore.methods.spec: its config node(s) and
                                           MethodSpec(s), registered with one call); no torch
    restore/methods/<family>/model.py      the nn.Module(s), imported when first used
    restore/methods/base.py                PromptedCLIP, the interface every method shares

Families: zsclip (ZeroshotCLIP), coop (CoOp), cocoop (CoCoOp), ivlp (IVLP, LPT, VPT), maple (MaPLe),
promptsrc (PromptSRC), restore (RESTORE_m, RESTORE_p, MaPLe_FSA). Importing this package imports every
family package found here, which registers its methods; `restore.methods.registry` lists them.
`build_model(cfg, classnames, clip_model)` builds the method named by cfg.TRAINER.NAME;
`from restore.methods import MaPLe` (or `from restore.methods.maple import MaPLe`) gives a model class.
docs/ADDING_A_METHOD.md adds one.
"""
import importlib

from . import registry

for _family in registry.builtin_families():  # each family package registers its methods on import
    importlib.import_module(f"{__name__}.{_family}")

_BASE = ("PromptedCLIP", "Encoded", "CheckpointError")


def build_model(cfg, classnames, clip_model):
    """The method named by cfg.TRAINER.NAME (a PromptedCLIP), around `clip_model` (which it freezes).
    UserError (a ValueError) naming the registered methods for an unknown name."""
    return registry.model_class(registry.get(cfg.TRAINER.NAME).name)(cfg, classnames, clip_model)


def __getattr__(name):
    # Model classes and the shared interface, imported (with torch) on first use.
    if name in _BASE:
        from . import base
        return getattr(base, name)
    if name == "gpa_weights":
        from .promptsrc.model import gpa_weights
        return gpa_weights
    if name in registry._SPECS:
        return registry.model_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["registry", "build_model", *_BASE, "gpa_weights"]
