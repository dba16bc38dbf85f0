"""The Dassl trainers of RESTORE_m, RESTORE_p and the release's MaPLe_FSA
(generated from the method specs: trainers.base.register_methods)."""
from . import TRAINERS

RESTORE_m = TRAINERS["RESTORE_m"]
RESTORE_p = TRAINERS["RESTORE_p"]
MaPLe_FSA = TRAINERS["MaPLe_FSA"]
