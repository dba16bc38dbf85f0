"""DePT (Zhang et al., CVPR 2024): decoupled prompt tuning, a plug-in over CoOp, CoCoOp, KgCoOp and MaPLe
(the models: model.py). One implementation, one method per base, named as the authors' rows: CoOp_DePT,
CoCoOp_DePT, KgCoOp_DePT, MaPLe_DePT (their trainers ExtrasLinearProbe{CoOp,CoCoOp,KgCoOp,MaPLe}).

DePT's keys live in TRAINER.DEPT; the base method's stay in its node. The authors' spellings are aliases:
TRAINER.LINEAR_PROBE.WEIGHT, TRAINER.LINEAR_PROBE.TEST_TIME_FUSION, TRAINER.LINEAR_PROBE.TYPE,
TRAINER.FILM.LINEAR_PROBE and OPTIM.LR_EXP. Their
train.py changes Dassl's defaults for every run (OPTIM.STAGED_LR True, LR 0.0035, BASE_LR_MULT 1.0, MAX_EPOCH
10, TRAIN.CHECKPOINT_FREQ -1); our configs/trainers/<Base>_DePT/ yaml files write them out.
docs/REPRODUCING.md, "DePT", lists what differs from the authors' code.
"""
from ..cocoop import COCOOP
from ..coop import COOP
from ..kgcoop import KGCOOP
from ..maple import MAPLE
from ..registry import register
from ..spec import ConfigNode, Key, MethodSpec, OriginalLayout, lazy_model

DEPT_NODE = "TRAINER.DEPT"
HEADS = ("linear", "similarity")

DEPT = ConfigNode(DEPT_NODE, (
    Key("WEIGHT", 0.7, "the weight of the CAT head: (1 - WEIGHT) ITM + WEIGHT head, in the loss and at test",
        min=0, max=1),
    Key("TEST_TIME_FUSION", True, "at test on the head's classes: fuse the head's and the ITM logits (False: "
                                  "the head alone)", evaluation=True),
    Key("HEAD", "linear", "the CAT head's classifier: a linear layer over the training classes, or cosine "
                          "logits of the transformed features", choices=HEADS),
    Key("CWT", True, "the channel-wise transforms (scale and bias per feature) before the head"),
    Key("LR_EXP", 6.5, "the head's LR multiplier under OPTIM.STAGED_LR: head LR * LR_EXP, the base method's "
                       "LR * BASE_LR_MULT", above=0),
), aliases={
    "TRAINER.LINEAR_PROBE.WEIGHT": f"{DEPT_NODE}.WEIGHT",
    "TRAINER.LINEAR_PROBE.TEST_TIME_FUSION": f"{DEPT_NODE}.TEST_TIME_FUSION",
    "TRAINER.LINEAR_PROBE.TYPE": f"{DEPT_NODE}.HEAD",
    "TRAINER.FILM.LINEAR_PROBE": f"{DEPT_NODE}.CWT",
    "OPTIM.LR_EXP": f"{DEPT_NODE}.LR_EXP",
})

# The authors' checkpoints hold the whole CustomCLIP (frozen CLIP included) under MaPLe's names; ours share
# every learned name, so only a checkpoint with the frozen CLIP is theirs. KgCoOp's adds what its prompt
# learner and CustomCLIP build and never use.
DEPT_LAYOUT = OriginalLayout("DePT", base="MaPLe", marks=("film_lp_img.scale", "linear_probe_proj.weight"),
                             writers="DePT (ExtrasLinearProbe*)", whole_model=True)
KGCOOP_DEPT_LAYOUT = OriginalLayout(
    "KgCoOp_DePT", base="MaPLe", marks=("prompt_learner.bias_vectors", "adapter.fc.0.weight", "adapter.fc.2.weight"),
    unused=("prompt_learner.bias_vectors", "prompt_learner.meta_net.", "meta_net.", "adapter."),
    writers="DePT (ExtrasLinearProbeKgCoOp)", whole_model=True)


def _dept(base, node, registered_name, layouts, export, cost, tiny, **kw):
    """Register DePT on `base` (whose config node is `node`), as the authors' trainer ExtrasLinearProbe<base>
    registers its model (`registered_name`)."""
    return register(MethodSpec(
        f"{base}_DePT", model=f"restore.methods.dept.model:{base}_DePT", nodes=(node, DEPT),
        registered_name=registered_name, base=base,
        context_keys=(f"{node.path}.N_CTX", f"{node.path}.CTX_INIT"), original_layouts=layouts,
        export_layout=export, cost=cost, benchmark=True, tiny=tiny, **kw), module=__name__)


# configs: the authors' one config per base, for every protocol (as scripts/dept)
_dept("CoOp", COOP, "PromptLearner", (DEPT_LAYOUT,), "DePT", 1.05, ("TRAINER.COOP.N_CTX", 3),
      configs={"base2new": "vit_b16_ep10_bs4_lr35"})
_dept("CoCoOp", COCOOP, "PromptLearner", ("DePT",), "DePT", 10.5, ("TRAINER.COCOOP.N_CTX", 3),
      configs={"base2new": "vit_b16_c4_ep10_batch1_ctxv1"})
_dept("KgCoOp", KGCOOP, "PromptLearner", (KGCOOP_DEPT_LAYOUT,), "KgCoOp_DePT", 1.1, ("TRAINER.KGCOOP.N_CTX", 3),
      configs={"base2new": "vit_b16_ep10_ctxv1_bs4_lr35"})
_dept("MaPLe", MAPLE, "MultiModalPromptLearner", ("DePT",), "DePT", 1.5,
      ("TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.N_CTX", 2), vision_prompts=True,
      configs={"base2new": "vit_b16_c2_ep10_batch4_2ctx"})

__getattr__ = lazy_model(__name__, ("CoOp_DePT", "CoCoOp_DePT", "KgCoOp_DePT", "MaPLe_DePT", "DePTMixin"))
