"""CoOp's module for StanfordCars: the package registers it in Dassl (see datasets/__init__.py)."""
from . import ADAPTERS

StanfordCars = ADAPTERS.get("StanfordCars")  # None without Dassl
