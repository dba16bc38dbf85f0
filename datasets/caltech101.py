"""CoOp's module for Caltech101: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

Caltech101 = ADAPTERS.get("Caltech101")  # None without Dassl
