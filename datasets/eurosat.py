"""CoOp's module for EuroSAT: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

EuroSAT = ADAPTERS.get("EuroSAT")  # None without Dassl
