"""CoOp's module for ImageNetSketch: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

ImageNetSketch = ADAPTERS.get("ImageNetSketch")  # None without Dassl
