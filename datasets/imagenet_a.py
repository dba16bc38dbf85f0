"""CoOp's module for ImageNetA: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

ImageNetA = ADAPTERS.get("ImageNetA")  # None without Dassl
