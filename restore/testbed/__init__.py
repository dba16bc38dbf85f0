"""The testbed: synthetic compositional datasets and a tiny pretrained CLIP (docs/TESTBED.md).

- ``load_testbed_clip(path=None) -> clip.model.CLIP``: the bundled pretrained backbone (fp32, eval, CPU).
- ``generate(root, name, seed=0)`` / ``ensure(root, name)``: write a dataset in CoOp's on-disk format.
- ``DATASETS``: the dataset definitions (class names, label order, hand prompt ``template``);
  ``HAND_PROMPTS``: registry name -> the dataset's own hand prompt (on a domain-shifted DG target it names
  the shift; ZeroshotCLIP is evaluated there with the source's prompt, ``DATASETS[key].zeroshot_template``).
"""
import importlib

_LAZY = {
    "DATASETS": ("datasets", "DATASETS"), "get_dataset": ("datasets", "get"),
    "generate": ("generate", "generate"), "ensure": ("generate", "ensure"),
    "load_testbed_clip": ("model", "load_testbed_clip"), "build_clip": ("model", "build_clip"),
    "CLIP_MEAN": ("model", "CLIP_MEAN"), "CLIP_STD": ("model", "CLIP_STD"),
    "zeroshot_accuracy": ("zeroshot", "zeroshot_accuracy"),
}

__all__ = sorted(list(_LAZY) + ["HAND_PROMPTS"])


def __getattr__(name):  # lazy, so that `python -m restore.testbed.generate` imports cleanly
    if name == "HAND_PROMPTS":
        from .datasets import DATASETS
        return {d.registry_name: d.template for d in DATASETS.values()}
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
