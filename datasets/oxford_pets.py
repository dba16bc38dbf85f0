"""CoOp's module for OxfordPets: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

OxfordPets = ADAPTERS.get("OxfordPets")  # None without Dassl
