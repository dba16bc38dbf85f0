"""CoOp's module for ImageNetV2: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

ImageNetV2 = ADAPTERS.get("ImageNetV2")  # None without Dassl
