"""RESTORE on MaPLe (RESTORE_m) and on PromptSRC (RESTORE_p): the base trainers unchanged, the
method's feature-shift loss and surgery coming from restore.methods.restore."""
from .base import register
from .maple import MaPLe
from .promptsrc import PromptSRC


@register
class RESTORE_m(MaPLe):
    pass


@register
class RESTORE_p(PromptSRC):
    pass
