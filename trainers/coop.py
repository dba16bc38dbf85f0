"""CoOp's Dassl trainer under the CoOp repository's import path
(generated from the method specs: trainers.base.register_methods)."""
from . import TRAINERS

CoOp = TRAINERS["CoOp"]
