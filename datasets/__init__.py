"""Dassl adapters over restore.data: `import datasets` registers CoOp's dataset names (OxfordPets,
DescribableTextures, ImageNet, ...) in Dassl's DATASET_REGISTRY when Dassl is importable, so CoOp-lineage
train.py files and our Dassl engine read datasets through the one implementation in restore.data.

Without Dassl, importing this package registers nothing and does not fail. CoOp's module names
(`import datasets.oxford_pets`, ...) exist too, so a CoOp-style train.py works unchanged.
"""
from ._dassl import ADAPTERS, dassl_import_error, make_adapter, register_all

register_all()

__all__ = ["ADAPTERS", "dassl_import_error", "make_adapter", "register_all"]
