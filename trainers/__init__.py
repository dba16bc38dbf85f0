"""Dassl trainers: `import trainers` registers ZeroshotCLIP, CoOp, CoCoOp, LPT, VPT, IVLP, MaPLe,
PromptSRC, RESTORE_m, RESTORE_p and MaPLe_FSA in Dassl's TRAINER_REGISTRY (replacing earlier registrations of
those names). Each is a few lines over `trainers.base.PromptTrainer`, itself a thin adapter over the
`restore` method library. Module names follow the CoOp-lineage repositories (`trainers.coop`,
`trainers.maple`, `trainers.independentVL`, ...), so their train.py imports work unchanged.

Without Dassl (or with an install that fails to import) nothing is registered and importing does not
fail; `dassl_import_error()` says why.
"""
from .base import DASSL_AVAILABLE, TRAINERS, PromptTrainer, dassl_import_error, register
from .cocoop import CoCoOp
from .coop import CoOp
from .independentVL import IVLP
from .lpt import LPT
from .maple import MaPLe
from .promptsrc import PromptSRC
from .restore_trainers import MaPLe_FSA, RESTORE_m, RESTORE_p
from .vpt import VPT
from .zsclip import ZeroshotCLIP

__all__ = ["DASSL_AVAILABLE", "TRAINERS", "PromptTrainer", "dassl_import_error", "register",
           "ZeroshotCLIP", "CoOp", "CoCoOp", "LPT", "VPT", "IVLP", "MaPLe", "PromptSRC",
           "RESTORE_m", "RESTORE_p", "MaPLe_FSA"]
