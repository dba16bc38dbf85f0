"""PromptSRC's Dassl trainer under the PromptSRC repository's import path
(generated from the method specs: trainers.base.register_methods)."""
from . import TRAINERS

PromptSRC = TRAINERS["PromptSRC"]
