"""ProGrad (Zhu et al., ICCV 2023): CoOp's context, updated with the cross-entropy gradient projected away from
where it conflicts with the gradient of the KL divergence to the zero-shot CLIP (the model: model.py).

Its keys live in TRAINER.PROGRAD. The authors' code reads CoOp's node (TRAINER.COOP.N_CTX, CSC, CTX_INIT, PREC,
CLASS_TOKEN_POSITION) and a top-level LOSS node (NAME, T, LAMBDA, GM, ALPHA): those spellings are aliases
here (CoOp's applied to ProGrad runs only), so that the authors' and the RESTORE release's yaml files and
command lines work unchanged. Their CTX_INIT is read as true or false: true initialises the context from the
dataset's hand template. docs/REPRODUCING.md section 12 lists what differs from the authors' code.
"""
from ..coop import CLASS_TOKEN_POSITION, coop_aliases
from ..kgcoop import TEMPLATE_TABLES
from ..registry import register
from ..spec import PREC, Alias, ConfigNode, Key, MethodSpec, lazy_model

LOSS_KEYS = ("NAME", "T", "LAMBDA", "GM", "ALPHA")

PROGRAD = ConfigNode("TRAINER.PROGRAD", (
    Key("N_CTX", 16, "the number of learnable context tokens", min=1),
    Key("CSC", False, "class-specific contexts: one set of context vectors per class (without CTX_INIT)"),
    Key("CTX_INIT", False, "initialise the last context tokens from the dataset's hand template (its words "
                           "before the class name; the others zeros); False: random vectors"),
    PREC,
    CLASS_TOKEN_POSITION,
    Key("TEMPLATES", "authors", "the hand prompts: ProGrad's per-dataset templates, or the RESTORE release's",
        choices=TEMPLATE_TABLES),
    Key("LOSS.NAME", "prograd", "the loss (the authors' LOSS.NAME; they have no other)", choices=("prograd",)),
    Key("LOSS.T", 1.0, "the temperature of the KL divergence to the zero-shot CLIP's predictions", above=0),
    Key("LOSS.LAMBDA", 1.0, "how much of the cross-entropy gradient's component against the KL gradient is "
                            "removed where the two conflict (1: all of it)", min=0),
    Key("LOSS.GM", False, "accepted and, as in the authors' code, unused"),
    Key("LOSS.ALPHA", 0.0, "accepted and, as in the authors' code, unused"),
), aliases={**coop_aliases("TRAINER.PROGRAD", Alias("TRAINER.PROGRAD.CTX_INIT", bool)),
            **{f"LOSS.{k}": f"TRAINER.PROGRAD.LOSS.{k}" for k in LOSS_KEYS}})

register(MethodSpec(
    "ProGrad", model="restore.methods.prograd.model:ProGrad", nodes=(PROGRAD,), registered_name="prompt_learner",
    base="CoOp", context_keys=("TRAINER.PROGRAD.N_CTX", "TRAINER.PROGRAD.CTX_INIT"),
    original_layouts=("CoOp",), export_layout="CoOp", cost=1.6, benchmark=True,
    configs={"base2new": "rn50_ep100", "xd": "rn50_ep50"},  # its authors' published configs (scripts/prograd)
    tiny=("TRAINER.PROGRAD.N_CTX", 3)))

__getattr__ = lazy_model(__name__, ("ProGrad", "project"))
