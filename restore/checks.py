"""Config values checked before any work: each bad value stops the run with one line naming the key.

yacs already refuses unknown keys and values of the wrong type; this adds the ranges. A count of zero
or less (epochs, batch sizes, context tokens) would not fail at once: MAX_EPOCH 0 "trains" nothing and
reports the untrained model's accuracy as the result, a batch size of 0 fails deep in the DataLoader.
"""
from .errors import UserError
from .suggest import did_you_mean

# DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE under torchrun: BATCH_SIZE is one step's batch over all processes,
# or each process's (restore/engine/parallel.py).
BATCH_SCOPES = ("global", "per_process")

# key: (smallest allowed value, what the key is). Strictly positive reals are written as a tiny minimum.
COMMON_MINIMA = {
    "OPTIM.MAX_EPOCH": (1, "the number of training epochs"),
    "OPTIM.LR": (None, "the learning rate, > 0"),
    "OPTIM.WEIGHT_DECAY": (0, "the weight decay"),
    "DATALOADER.TRAIN_X.BATCH_SIZE": (1, "the training batch size"),
    "DATALOADER.TRAIN_U.BATCH_SIZE": (1, "the unlabelled batch size"),
    "DATALOADER.TEST.BATCH_SIZE": (1, "the evaluation batch size"),
    "DATALOADER.NUM_WORKERS": (0, "the number of DataLoader worker processes (0: load in the main process)"),
    "DATALOADER.K_TRANSFORMS": (1, "the number of augmented views per image"),
    "TRAIN.PRINT_FREQ": (1, "print every this many batches"),
}
# Subset sizes of the feature-shift estimate: 0 (all) or at least 2, since the estimate's variance,
# which the consistency loss subtracts, needs two samples (restore.feature_shift).
SUBSET_KEYS = {"TRAINER.RESTORE.FS.TEXT_CLASSES": "classes", "TRAINER.RESTORE.FS.VISION_IMAGES": "images"}


def choice_keys() -> dict:
    """key -> its valid values, each from the module that uses the key."""
    from .data.base import SUBSAMPLE_CHOICES
    from .data.transforms import INTERPOLATION_MODES
    from .feature_shift import NORMS
    from .methods.coop import CLASS_TOKEN_POSITIONS
    from .methods.restore import ALPHA_AT_TEST, DEFINITIONS, MODES
    from .prompting import PROMPT_FREE
    return {"TRAINER.RESTORE.FS.DEFINITION": DEFINITIONS, "TRAINER.RESTORE.FS.NORM": NORMS,
            "TRAINER.RESTORE.FS.PROMPT_FREE": PROMPT_FREE, "TRAINER.RESTORE.SURGERY.MODE": MODES,
            "TRAINER.RESTORE.SURGERY.ALPHA_AT_TEST": ALPHA_AT_TEST,
            "TRAINER.COOP.CLASS_TOKEN_POSITION": CLASS_TOKEN_POSITIONS,
            "DATASET.SUBSAMPLE_CLASSES": SUBSAMPLE_CHOICES, "INPUT.INTERPOLATION": tuple(INTERPOLATION_MODES)}

# Per method node: its context-length keys, each with the prompt depth that makes it used (None: always).
CONTEXT_KEYS = {
    "COOP": {"N_CTX": None},
    "COCOOP": {"N_CTX": None},
    "MAPLE": {"N_CTX": None},
    "LPT": {"N_CTX_TEXT": "PROMPT_DEPTH_TEXT"},
    "VPT": {"N_CTX_VISION": "PROMPT_DEPTH_VISION"},
    "IVLP": {"N_CTX_TEXT": "PROMPT_DEPTH_TEXT", "N_CTX_VISION": "PROMPT_DEPTH_VISION"},
    "PROMPTSRC": {"N_CTX_TEXT": "PROMPT_DEPTH_TEXT", "N_CTX_VISION": "PROMPT_DEPTH_VISION"},
}
DEPTH_KEYS = ("PROMPT_DEPTH", "PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION")


def lookup(cfg, key):
    """The value at a dotted key, or None when the config has no such key (a plain Dassl config)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def require_at_least(key, value, minimum, what):
    """UserError naming `key` unless value >= minimum (minimum None: value > 0)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (value > 0) if minimum is None else (value >= minimum):
        return
    bound = "greater than 0" if minimum is None else f"at least {minimum}"
    raise UserError(f"{key} is {value}; it must be {bound} ({what}). Set {key} to a valid value.")


def method_node(cfg):
    """TRAINER.<node> of cfg.TRAINER.NAME's own keys, or None for an unknown trainer."""
    from .methods import CONFIG_NODES
    return CONFIG_NODES.get(lookup(cfg, "TRAINER.NAME"))


def check_config(cfg):
    """Refuse out-of-range values of the keys above, and of the running method's context lengths and
    prompt depths, with a UserError naming the key. Depth upper bounds (the encoder's layers) and
    context lengths against the text context are checked when the model is built."""
    for key, (minimum, what) in COMMON_MINIMA.items():
        require_at_least(key, lookup(cfg, key), minimum, what)
    for key, samples in SUBSET_KEYS.items():
        value = lookup(cfg, key)
        if isinstance(value, int) and not isinstance(value, bool) and (value < 0 or value == 1):
            raise UserError(f"{key} is {value}; it must be 0 (all {samples}) or at least 2 (a random "
                            f"subset of that many {samples} per step, whose variance the consistency "
                            f"loss corrects for). Set {key} to 0 or a number >= 2.")
    for key, valid in choice_keys().items():
        value = lookup(cfg, key)
        if value is not None and value not in valid:
            raise UserError(f"{key} is {value!r}; it must be one of {', '.join(map(str, valid))}."
                            f"{did_you_mean(value, valid)} Set {key} to one of them.")
    scope = lookup(cfg, "DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE")
    if scope is not None and scope not in BATCH_SCOPES:
        raise UserError(f"DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE is {scope!r}; valid: {', '.join(BATCH_SCOPES)} "
                        "(how a run over several processes shares TRAIN_X.BATCH_SIZE).")
    node = method_node(cfg)
    if node is None:
        return
    prefix = f"TRAINER.{node}"
    for depth in DEPTH_KEYS:
        require_at_least(f"{prefix}.{depth}", lookup(cfg, f"{prefix}.{depth}"), 0, "a number of layers")
    for key, depth in CONTEXT_KEYS.get(node, {}).items():
        used = depth is None or (lookup(cfg, f"{prefix}.{depth}") or 0) > 0
        require_at_least(f"{prefix}.{key}", lookup(cfg, f"{prefix}.{key}"), 1 if used else 0,
                         "the number of learnable context tokens")
