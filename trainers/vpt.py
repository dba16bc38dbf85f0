"""VPT's Dassl trainer under the MaPLe repository's import path
(generated from the method specs: trainers.base.register_methods)."""
from . import TRAINERS

VPT = TRAINERS["VPT"]
