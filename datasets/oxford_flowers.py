"""CoOp's module for OxfordFlowers: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

OxfordFlowers = ADAPTERS.get("OxfordFlowers")  # None without Dassl
