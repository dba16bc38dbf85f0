"""CoOp's module for Food101: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

Food101 = ADAPTERS.get("Food101")  # None without Dassl
