"""RESTORE on MaPLe (RESTORE_m) and on PromptSRC (RESTORE_p): the base trainers unchanged, the
method's feature-shift loss and surgery coming from restore.methods.restore. MaPLe_FSA is the official
release's name for RESTORE_m's release variant (config node TRAINER.MAPLE_FSA, see restore.maple_fsa)."""
from .base import register
from .maple import MaPLe
from .promptsrc import PromptSRC


@register
class RESTORE_m(MaPLe):
    pass


@register
class RESTORE_p(PromptSRC):
    pass


@register
class MaPLe_FSA(RESTORE_m):
    pass
