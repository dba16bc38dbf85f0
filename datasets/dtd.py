"""CoOp's module for DescribableTextures: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

DescribableTextures = ADAPTERS.get("DescribableTextures")  # None without Dassl
