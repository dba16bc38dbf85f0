"""CoPrompt (Roy and Etemad, ICLR 2024): MaPLe's prompts, feature adapters on both towers and a consistency
loss towards the frozen CLIP on class descriptions and a second augmented view (model.py; the descriptions
file: descriptions.py).

Its keys live in TRAINER.COPROMPT. The authors' code reads TRAINER.CoPrompt.{N_CTX, CTX_INIT, PREC,
PROMPT_DEPTH} and, directly under TRAINER, W and DISTILL: those spellings are aliases here, so that their yaml
and command lines work unchanged. Their per-dataset table (trainers/constants.py) is `DATASET_OVERRIDES`; the
authors apply it after the command line, we before it (the command line wins). docs/REPRODUCING.md
("CoPrompt") lists what differs from the authors' code.
"""
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, OriginalLayout, lazy_model

COPROMPT = ConfigNode("TRAINER.COPROMPT", (
    Key("N_CTX", 2, "the number of learnable context tokens per prompted layer", min=1),
    Key("CTX_INIT", "a photo of a", "the initial context words (used when N_CTX <= 4)"),
    PREC,
    Key("PROMPT_DEPTH", 9, "the number of layers with prompts, in both encoders", min=1, layers="both"),
    Key("W", 8.0, "the weight of the consistency loss (text to the descriptions, image to the second view)",
        min=0),
    Key("DISTILL", "cosine", "the consistency loss: 1 - mean cosine, or the mean squared error",
        choices=("cosine", "mse")),
    Key("DESCRIPTIONS", "", "the class descriptions: a JSON file {class name: [description, ...]}, a folder of "
        "the authors' <dataset>_prompt.json files, or 'captions' (the testbed's; the default there)",
        evaluation=True),
), aliases={**{f"TRAINER.CoPrompt.{k}": f"TRAINER.COPROMPT.{k}"
               for k in ("N_CTX", "CTX_INIT", "PREC", "PROMPT_DEPTH")},
            "TRAINER.W": "TRAINER.COPROMPT.W", "TRAINER.DISTILL": "TRAINER.COPROMPT.DISTILL"})


def _row(depth, n_ctx, weight, **more):
    return {"TRAINER.COPROMPT.PROMPT_DEPTH": depth, "TRAINER.COPROMPT.N_CTX": n_ctx,
            "TRAINER.COPROMPT.W": weight, **more}


# The authors' per-dataset values (trainers/constants.py), keyed by DATASET.NAME.
DATASET_OVERRIDES = {
    "ImageNet": _row(12, 4, 8.0),
    "Caltech101": _row(12, 4, 4.0),
    "OxfordPets": _row(12, 2, 0.1),
    "StanfordCars": _row(12, 4, 4.0),
    "OxfordFlowers": _row(9, 4, 8.0),
    "Food101": _row(9, 4, 0.5, **{"OPTIM.MAX_EPOCH": 5}),
    "FGVCAircraft": _row(9, 4, 2.0),
    "SUN397": _row(12, 4, 8.0),
    "DescribableTextures": _row(12, 2, 8.0),
    "EuroSAT": _row(12, 2, 0.1),
    "UCF101": _row(12, 4, 2.0),
}

# The authors' checkpoints: MaPLe's layout plus the two adapters (the same names here) and a second, frozen
# CLIP (`model_distill.*`, which tells their files from ours), dropped on import.
COPROMPT_LAYOUT = OriginalLayout("CoPrompt", base="MaPLe", marks=("model_distill.logit_scale",),
                                 unused=("model_distill.",), writers="CoPrompt")

def descriptions_ready(cfg):
    """The benchmark plan's check (MethodSpec.check_plan): None when the run's descriptions are usable (the
    testbed generates its own), else the one-line reason (descriptions.check_descriptions: no file, a
    class without descriptions, ...)."""
    from restore.data import build_dataset
    from restore.errors import UserError

    from .descriptions import check_descriptions, is_testbed
    if is_testbed(cfg.DATASET.NAME):
        return None
    try:
        check_descriptions(cfg.TRAINER.COPROMPT.DESCRIPTIONS, build_dataset(cfg).classnames, cfg.DATASET.NAME)
    except UserError as err:
        return str(err)
    return None


register(MethodSpec(
    "CoPrompt", model="restore.methods.coprompt.model:CoPrompt", nodes=(COPROMPT,),
    registered_name="MultiModalPromptLearner", vision_prompts=True,
    context_keys=("TRAINER.COPROMPT.N_CTX", "TRAINER.COPROMPT.CTX_INIT"),
    original_layouts=(COPROMPT_LAYOUT,), export_layout="CoPrompt", cost=3.5, benchmark=True,
    configs={"base2new": "coprompt"},  # its authors' published configs (scripts/coprompt)
    dataset_overrides=DATASET_OVERRIDES, check_plan=descriptions_ready,
    tiny=("TRAINER.COPROMPT.PROMPT_DEPTH", 2, "TRAINER.COPROMPT.N_CTX", 2,
          "TRAINER.COPROMPT.DESCRIPTIONS", "captions")))

__getattr__ = lazy_model(__name__, ("CoPrompt",))
