"""Configuration: Dassl's keys (the subset CoOp-lineage configs use) plus every trainer's node.

`get_cfg_default()` gives a standalone yacs tree for the native engine; `extend_cfg(cfg)` adds the
project's nodes to any CfgNode, Dassl's included, so both engines read the same keys and defaults.
Defaults are the anchors' (docs/REPRODUCING.md section 2).
"""
from yacs.config import CfgNode as CN

from . import maple_fsa
from .checks import lookup
from .errors import UserError


def _dassl_defaults() -> CN:
    """The Dassl v0.6.3 defaults that the CLIP trainers and our engine read."""
    c = CN()
    c.VERSION = 1
    c.OUTPUT_DIR = "./output"
    c.RESUME = ""
    c.SEED = -1
    c.USE_CUDA = True
    c.VERBOSE = True

    c.INPUT = CN()
    c.INPUT.SIZE = (224, 224)
    c.INPUT.INTERPOLATION = "bilinear"
    c.INPUT.TRANSFORMS = ()
    c.INPUT.NO_TRANSFORM = False
    c.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    c.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    c.INPUT.CROP_PADDING = 4
    c.INPUT.RRCROP_SCALE = (0.08, 1.0)
    c.INPUT.CUTOUT_N = 1
    c.INPUT.CUTOUT_LEN = 16
    c.INPUT.GN_MEAN = 0.0
    c.INPUT.GN_STD = 0.15
    c.INPUT.RANDAUGMENT_N = 2
    c.INPUT.RANDAUGMENT_M = 10
    c.INPUT.COLORJITTER_B = 0.4
    c.INPUT.COLORJITTER_C = 0.4
    c.INPUT.COLORJITTER_S = 0.4
    c.INPUT.COLORJITTER_H = 0.1
    c.INPUT.RGS_P = 0.2
    c.INPUT.GB_P = 0.5
    c.INPUT.GB_K = 21

    c.DATASET = CN()
    c.DATASET.ROOT = ""
    c.DATASET.NAME = ""
    c.DATASET.SOURCE_DOMAINS = ()
    c.DATASET.TARGET_DOMAINS = ()
    c.DATASET.NUM_LABELED = -1
    c.DATASET.NUM_SHOTS = -1
    c.DATASET.VAL_PERCENT = 0.1
    c.DATASET.STL10_FOLD = -1
    c.DATASET.CIFAR_C_TYPE = ""
    c.DATASET.CIFAR_C_LEVEL = 1
    c.DATASET.ALL_AS_UNLABELED = False

    c.DATALOADER = CN()
    c.DATALOADER.NUM_WORKERS = 4
    c.DATALOADER.K_TRANSFORMS = 1
    c.DATALOADER.RETURN_IMG0 = False
    c.DATALOADER.TRAIN_X = CN()
    c.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    c.DATALOADER.TRAIN_X.N_DOMAIN = 0
    c.DATALOADER.TRAIN_X.N_INS = 16
    c.DATALOADER.TRAIN_U = CN()
    c.DATALOADER.TRAIN_U.SAME_AS_X = True
    c.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_U.BATCH_SIZE = 32
    c.DATALOADER.TRAIN_U.N_DOMAIN = 0
    c.DATALOADER.TRAIN_U.N_INS = 16
    c.DATALOADER.TEST = CN()
    c.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    c.DATALOADER.TEST.BATCH_SIZE = 32

    c.MODEL = CN()
    c.MODEL.INIT_WEIGHTS = ""
    c.MODEL.BACKBONE = CN()
    c.MODEL.BACKBONE.NAME = ""
    c.MODEL.BACKBONE.PRETRAINED = True
    c.MODEL.HEAD = CN()
    c.MODEL.HEAD.NAME = ""
    c.MODEL.HEAD.HIDDEN_LAYERS = ()
    c.MODEL.HEAD.ACTIVATION = "relu"
    c.MODEL.HEAD.BN = True
    c.MODEL.HEAD.DROPOUT = 0.0

    c.OPTIM = CN()
    c.OPTIM.NAME = "adam"
    c.OPTIM.LR = 0.0003
    c.OPTIM.WEIGHT_DECAY = 5e-4
    c.OPTIM.MOMENTUM = 0.9
    c.OPTIM.SGD_DAMPNING = 0
    c.OPTIM.SGD_NESTEROV = False
    c.OPTIM.RMSPROP_ALPHA = 0.99
    c.OPTIM.ADAM_BETA1 = 0.9
    c.OPTIM.ADAM_BETA2 = 0.999
    c.OPTIM.STAGED_LR = False
    c.OPTIM.NEW_LAYERS = ()
    c.OPTIM.BASE_LR_MULT = 0.1
    c.OPTIM.LR_SCHEDULER = "single_step"
    c.OPTIM.STEPSIZE = (-1,)
    c.OPTIM.GAMMA = 0.1
    c.OPTIM.MAX_EPOCH = 10
    c.OPTIM.WARMUP_EPOCH = -1
    c.OPTIM.WARMUP_TYPE = "linear"
    c.OPTIM.WARMUP_CONS_LR = 1e-5
    c.OPTIM.WARMUP_MIN_LR = 1e-5
    c.OPTIM.WARMUP_RECOUNT = True

    c.TRAIN = CN()
    c.TRAIN.CHECKPOINT_FREQ = 0
    c.TRAIN.PRINT_FREQ = 10
    c.TRAIN.COUNT_ITER = "train_x"

    c.TEST = CN()
    c.TEST.EVALUATOR = "Classification"
    c.TEST.PER_CLASS_RESULT = False
    c.TEST.COMPUTE_CMAT = False
    c.TEST.NO_TEST = False
    c.TEST.SPLIT = "test"
    c.TEST.FINAL_MODEL = "last_step"

    c.TRAINER = CN()
    c.TRAINER.NAME = ""
    return c


def extend_cfg(cfg: CN) -> CN:
    """Add the project's keys to `cfg` (ours or Dassl's) in place and return it."""
    # Not a Dassl key: every CoOp-lineage train.py adds it. "all" | "base" | "new".
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    # A local CLIP file; overrides the name -> ~/.cache/clip resolution of MODEL.BACKBONE.NAME.
    cfg.MODEL.BACKBONE.PATH = ""
    # "I trust every file this run reads" (train.py --trust-files): checkpoints and caches are unpickled
    # without restriction and TorchScript backbones load whatever their checksum (restore.safe_pickle).
    cfg.TRUST_FILES = False
    # Under torchrun with N processes: "global" = TRAIN_X.BATCH_SIZE is the batch of one step over all
    # processes (BATCH_SIZE / N each); "per_process" = each process takes BATCH_SIZE (N times larger steps).
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE = "global"

    t = cfg.TRAINER
    t.COOP = CN()
    t.COOP.N_CTX = 16
    t.COOP.CSC = False
    t.COOP.CTX_INIT = ""
    t.COOP.PREC = "fp16"
    t.COOP.CLASS_TOKEN_POSITION = "end"

    t.COCOOP = CN()
    t.COCOOP.N_CTX = 16
    t.COCOOP.CTX_INIT = ""
    t.COCOOP.PREC = "fp16"

    # Language prompt tuning: deep text prompts only (the anchors' IVLP "language_only" config).
    t.LPT = CN()
    t.LPT.N_CTX_TEXT = 4
    t.LPT.CTX_INIT = "a photo of a"
    t.LPT.PREC = "fp16"
    t.LPT.PROMPT_DEPTH_TEXT = 12

    t.VPT = CN()
    t.VPT.N_CTX_VISION = 2
    t.VPT.CTX_INIT = "a photo of a"
    t.VPT.PREC = "fp16"
    t.VPT.PROMPT_DEPTH_VISION = 1

    t.IVLP = CN()
    t.IVLP.N_CTX_VISION = 2
    t.IVLP.N_CTX_TEXT = 2
    t.IVLP.CTX_INIT = "a photo of a"
    t.IVLP.PREC = "fp16"
    t.IVLP.PROMPT_DEPTH_VISION = 9
    t.IVLP.PROMPT_DEPTH_TEXT = 9

    t.MAPLE = CN()
    t.MAPLE.N_CTX = 2
    t.MAPLE.CTX_INIT = "a photo of a"
    t.MAPLE.PREC = "fp16"
    t.MAPLE.PROMPT_DEPTH = 9

    t.PROMPTSRC = CN()
    t.PROMPTSRC.N_CTX_VISION = 4
    t.PROMPTSRC.N_CTX_TEXT = 4
    t.PROMPTSRC.CTX_INIT = "a photo of a"
    t.PROMPTSRC.PREC = "fp16"
    t.PROMPTSRC.PROMPT_DEPTH_VISION = 9
    t.PROMPTSRC.PROMPT_DEPTH_TEXT = 9
    t.PROMPTSRC.TEXT_LOSS_WEIGHT = 25.0
    t.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10.0
    t.PROMPTSRC.GPA_MEAN = 15.0
    t.PROMPTSRC.GPA_STD = 1.0

    # RESTORE's own keys (docs/METHOD.md sections 2-5); the base method's stay in its node.
    t.RESTORE = CN()
    t.RESTORE.FS = CN()
    t.RESTORE.FS.DEFINITION = "paper"  # paper | release
    t.RESTORE.FS.NORM = "relative"  # relative | rms | fro
    t.RESTORE.FS.WEIGHT = 1.0
    t.RESTORE.FS.TEXT_CLASSES = 0  # 0 = all classes; k >= 2 = a fresh random subset of k per step
    # Opt-in speed-ups of the trace in training (docs/METHOD.md section 3); the defaults are exact.
    t.RESTORE.FS.VISION_IMAGES = 0  # 0 = all images of the batch; k >= 2 = a random subset of k
    t.RESTORE.FS.PROMPT_FREE = "grad"  # grad | recompute (exact, less memory) | no_grad (approximate)
    t.RESTORE.SURGERY = CN()
    t.RESTORE.SURGERY.MODE = "fs_guided"  # fs_guided | fixed | off | release
    t.RESTORE.SURGERY.GAMMA = 0.05
    t.RESTORE.SURGERY.BETA = 0.05
    t.RESTORE.SURGERY.RATIO = 4
    t.RESTORE.SURGERY.EMA = 0.9
    t.RESTORE.SURGERY.ALPHA_AT_TEST = "ema"  # ema | live
    # The official release's calibrator (docs/METHOD.md section 5); its CLI defaults.
    t.RESTORE.SURGERY.RELEASE_VIS_R = 0.1
    t.RESTORE.SURGERY.RELEASE_TEXT_R = 0.1
    t.RESTORE.SURGERY.RELEASE_VIS_GAIN = 0.005
    t.RESTORE.SURGERY.RELEASE_TEXT_GAIN = 0.02
    t.RESTORE.SURGERY.RELEASE_UPDATE_EPOCH = -1  # -1 = after epoch MAX_EPOCH // 3 (0-based)
    # The release's own node (trainer MaPLe_FSA), mapped onto the keys above by restore.maple_fsa.
    maple_fsa.add_node(t)
    return cfg


def get_cfg_default() -> CN:
    """A fresh config with Dassl's defaults and every trainer's node."""
    return extend_cfg(_dassl_defaults())


def _ints_to_floats(defaults: CN, other: CN) -> None:
    for key, value in other.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict):
            _ints_to_floats(default, value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            other[key] = float(value)


YAML_SUFFIXES = (".yaml", ".yml")


def merge_from_file(cfg: CN, path: str) -> None:
    """`cfg.merge_from_file` for yaml files only (yacs would execute a `.py` config: UserError), and
    integers are accepted for float keys: the anchors' yaml files write e.g. `GPA_MEAN: 6` where the
    default is a float, which plain yacs rejects."""
    if not path.lower().endswith(YAML_SUFFIXES):
        raise UserError(f"Config file {path}: only yaml files (.yaml, .yml) are read, since a Python "
                        "config would run as code; write its keys in yaml.")
    with open(path) as f:
        other = cfg.load_cfg(f.read())  # a string: parsed as yaml whatever the file name says
    _ints_to_floats(cfg, other)
    cfg.merge_from_other_cfg(other)


def merge_from_list(cfg: CN, opts: list) -> None:
    """`cfg.merge_from_list` with the same int -> float tolerance as `merge_from_file`."""
    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        value = CN._decode_cfg_value(opts[i + 1])
        if isinstance(lookup(cfg, opts[i]), float) and type(value) is int:
            opts[i + 1] = float(value)
    cfg.merge_from_list(opts)
