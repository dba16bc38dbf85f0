"""IVLP's Dassl trainer under the MaPLe and PromptSRC repositories' import path
(generated from the method specs: trainers.base.register_methods)."""
from . import TRAINERS

IVLP = TRAINERS["IVLP"]
