"""CoOp's module for ImageNet: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

ImageNet = ADAPTERS.get("ImageNet")  # None without Dassl
