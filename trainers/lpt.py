"""LPT's Dassl trainer (the language-only IVLP)
(generated from the method specs: trainers.base.register_methods)."""
from . import TRAINERS

LPT = TRAINERS["LPT"]
