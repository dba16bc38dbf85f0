"""CoOp's module for SUN397: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

SUN397 = ADAPTERS.get("SUN397")  # None without Dassl
