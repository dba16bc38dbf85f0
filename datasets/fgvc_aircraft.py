"""CoOp's module for FGVCAircraft: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

FGVCAircraft = ADAPTERS.get("FGVCAircraft")  # None without Dassl
