"""RESTORE (Yang et al., arXiv 2403.06136): feature-shift consistency and feature-shift-guided surgery on
top of a base method (the models: model.py). RESTORE_m = MaPLe + both, RESTORE_p = PromptSRC + both, and
MaPLe_FSA, the official release's name and node for RESTORE_m's release variant (maple_fsa.py).

TRAINER.RESTORE holds RESTORE's own keys (docs/METHOD.md sections 2-5); the base method's stay in its node.
FS.NORM is read by every method: it scales the feature shift any model reports (restore.feature_shift).
"""
from ..maple import MAPLE
from ..promptsrc import PROMPTSRC
from ..registry import register
from ..spec import PREC, ConfigNode, Key, MethodSpec, lazy_model
from .maple_fsa import FLAGS, map_node

DEFINITIONS = ("paper", "release")
NORMS = ("relative", "rms", "fro")
PROMPT_FREE = ("grad", "recompute", "no_grad")
MODES = ("fs_guided", "fixed", "off", "release")
ALPHA_AT_TEST = ("ema", "live")

RESTORE = ConfigNode("TRAINER.RESTORE", (
    Key("FS.DEFINITION", "paper", "the feature shift of L_fs: the paper's traced N_l, or the release's "
                                  "Gram-norm proxy", choices=DEFINITIONS),
    Key("FS.NORM", "relative", "how a shift is scaled: by the prompt-free output's norm, per element, or "
                               "not at all", choices=NORMS),
    Key("FS.WEIGHT", 1.0, "the weight of the consistency loss L_fs", min=0),
    Key("FS.TEXT_CLASSES", 0, "a fresh random subset of that many classes per step, whose variance the "
                              "consistency loss corrects for", min=2, special={0: "all classes"}),
    Key("FS.VISION_IMAGES", 0, "a random subset of that many images per step, whose variance the "
                               "consistency loss corrects for", min=2, special={0: "all images"}),
    # Opt-in speed-ups of the trace in training (docs/METHOD.md section 3); the defaults are exact.
    Key("FS.PROMPT_FREE", "grad", "how the trace's prompt-free pass is differentiated: grad, recompute "
                                  "(exact, less memory), no_grad (approximate)", choices=PROMPT_FREE),
    Key("SURGERY.MODE", "fs_guided", "the surgery: scaled by the feature shift, fixed, off, or the release's "
                                     "calibrator", choices=MODES),
    Key("SURGERY.GAMMA", 0.05, "the vision surgery's scale per unit of vision shift (fixed: its alpha)", min=0),
    Key("SURGERY.BETA", 0.05, "the text surgery's scale per unit of text shift (fixed: its alpha)", min=0),
    Key("SURGERY.RATIO", 4, "the surgery adapters' bottleneck: feature width / RATIO hidden units", min=1),
    Key("SURGERY.EMA", 0.9, "the momentum of the alpha average used at test", min=0, max=1),
    Key("SURGERY.ALPHA_AT_TEST", "ema", "the alpha at test: the training average, or each test batch's own",
        choices=ALPHA_AT_TEST, evaluation=True),
    # The official release's calibrator (docs/METHOD.md section 5); its command-line defaults.
    Key("SURGERY.RELEASE_VIS_R", 0.1, "the release calibrator's initial vision ratio", min=0),
    Key("SURGERY.RELEASE_TEXT_R", 0.1, "the release calibrator's initial text ratio", min=0),
    Key("SURGERY.RELEASE_VIS_GAIN", 0.005, "the release's gain of the vision ratio update", min=0),
    Key("SURGERY.RELEASE_TEXT_GAIN", 0.02, "the release's gain of the text ratio update", min=0),
    Key("SURGERY.RELEASE_UPDATE_EPOCH", -1, "the 0-based epoch after which the release updates its ratios",
        min=0, special={-1: "after epoch MAX_EPOCH // 3"}),
))

# The release's own node (trainer MaPLe_FSA), mapped onto TRAINER.MAPLE and TRAINER.RESTORE by
# maple_fsa.map_node; the calibration defaults are the values its commands use.
MAPLE_FSA = ConfigNode("TRAINER.MAPLE_FSA", (
    Key("N_CTX", 2, "the number of learnable context tokens per prompted layer (to TRAINER.MAPLE.N_CTX)", min=1),
    Key("CTX_INIT", "a photo of a", "the initial context words (to TRAINER.MAPLE.CTX_INIT)"),
    Key("PREC", "fp16", "accepted and, as in the release, unused: TRAINER.MAPLE.PREC is the precision",
        choices=PREC.choices, evaluation=True),
    Key("PROMPT_DEPTH", 9, "the number of layers with prompts (to TRAINER.MAPLE.PROMPT_DEPTH)", min=1,
        layers="both"),
    Key("VIS_CALIB_R", 0.1, "the release's calibration ratio of the vision branch (release default 0.1; "
                            "other trainers: TRAINER.RESTORE.SURGERY.RELEASE_VIS_R)", min=0),
    Key("TEXT_CALIB_R", 0.1, "the release's calibration ratio of the text branch (release default 0.1; "
                             "other trainers: TRAINER.RESTORE.SURGERY.RELEASE_TEXT_R)", min=0),
    Key("FS_LOSS_R", 1.0, "the release's feature-shift loss ratio (release default 1; other trainers: "
                          "TRAINER.RESTORE.FS.WEIGHT)", min=0),
))

register(MethodSpec(
    "RESTORE_m", model="restore.methods.restore.model:RESTORE_m", nodes=(MAPLE, RESTORE),
    registered_name="MultiModalPromptLearner", base="MaPLe", vision_prompts=True,
    context_keys=("TRAINER.MAPLE.N_CTX", "TRAINER.MAPLE.CTX_INIT"),
    original_layouts=("MaPLe", "MaPLe_FSA"), export_layout="MaPLe_FSA",  # exported as its release variant
    cost=2.3, benchmark=True, loss_keys={"fs": "TRAINER.RESTORE.FS.WEIGHT"},
    configs={"base2new": "vit_b16_c2_ep10_batch4_2ctx", "xd": "vit_b16_c2_ep4_batch4_2ctx_cross_datasets"},
    tiny=("TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.N_CTX", 2)))
register(MethodSpec(
    "RESTORE_p", model="restore.methods.restore.model:RESTORE_p", nodes=(PROMPTSRC, RESTORE),
    registered_name="VLPromptLearner", base="PromptSRC", vision_prompts=True,
    context_keys=("TRAINER.PROMPTSRC.N_CTX_TEXT", "TRAINER.PROMPTSRC.CTX_INIT"),
    original_layouts=("IVLP",), cost=2.9, benchmark=True,  # no original trainer holds its checkpoints
    loss_keys={"fs": "TRAINER.RESTORE.FS.WEIGHT", "scl_text": "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT",
               "scl_image": "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT"},
    configs={"base2new": "vit_b16_c2_ep20_batch4_4+4ctx", "xd": "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"},
    tiny=("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
          "TRAINER.PROMPTSRC.N_CTX_VISION", 3)))
register(MethodSpec(
    "MaPLe_FSA", model="restore.methods.restore.model:MaPLe_FSA", nodes=(MAPLE, RESTORE, MAPLE_FSA),
    registered_name="MultiModalPromptLearner", base="RESTORE_m", vision_prompts=True,
    context_keys=("TRAINER.MAPLE_FSA.N_CTX", "TRAINER.MAPLE_FSA.CTX_INIT"),
    original_layouts=("MaPLe", "MaPLe_FSA"), export_layout="MaPLe_FSA", cost=2.3,
    flags={flag: f"TRAINER.MAPLE_FSA.{key}" for flag, key in FLAGS.items()}, derive_cfg=map_node,
    loss_keys={"fs": "TRAINER.MAPLE_FSA.FS_LOSS_R"},
    configs={"base2new": "vit_b16_c2_ep5_batch4_2ctx", "xd": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"},
    tiny=("TRAINER.MAPLE_FSA.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PROMPT_DEPTH", 2)))

__getattr__ = lazy_model(__name__, ("RESTORE_m", "RESTORE_p", "MaPLe_FSA", "RestoreMixin"))
