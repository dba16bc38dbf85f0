"""CoOp's module for ImageNetR: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

ImageNetR = ADAPTERS.get("ImageNetR")  # None without Dassl
