"""One module per method; `build_model` picks one by cfg.TRAINER.NAME."""
from .base import CheckpointError, Encoded, PromptedCLIP
from .cocoop import CoCoOp
from .coop import CoOp
from .ivlp import IVLP, LPT, VPT
from .maple import MaPLe
from .promptsrc import PromptSRC, gpa_weights
from .restore import MaPLe_FSA, RESTORE_m, RESTORE_p
from .zsclip import ZeroshotCLIP

METHODS = {cls.__name__: cls for cls in (
    ZeroshotCLIP, CoOp, CoCoOp, LPT, VPT, IVLP, MaPLe, PromptSRC, RESTORE_m, RESTORE_p,
    MaPLe_FSA)}

# The config node holding each method's own keys (PREC among them).
CONFIG_NODES = {"ZeroshotCLIP": "COOP", "CoOp": "COOP", "CoCoOp": "COCOOP", "LPT": "LPT",
                "VPT": "VPT", "IVLP": "IVLP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC",
                "RESTORE_m": "MAPLE", "RESTORE_p": "PROMPTSRC",
                "MaPLe_FSA": "MAPLE"}  # the release reads TRAINER.MAPLE.PREC too


def build_model(cfg, classnames, clip_model) -> PromptedCLIP:
    """The method named by cfg.TRAINER.NAME, around `clip_model` (which it freezes)."""
    name = cfg.TRAINER.NAME
    if name not in METHODS:
        raise ValueError(f"Unknown TRAINER.NAME {name!r}. Valid: {', '.join(METHODS)}")
    return METHODS[name](cfg, classnames, clip_model)


__all__ = ["METHODS", "CONFIG_NODES", "build_model", "PromptedCLIP", "Encoded", "CheckpointError",
           "gpa_weights", *METHODS]
