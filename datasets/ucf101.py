"""CoOp's module for UCF101: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

UCF101 = ADAPTERS.get("UCF101")  # None without Dassl
