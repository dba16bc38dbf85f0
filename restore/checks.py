"""Config values checked before any work: each bad value stops the run with one line naming the key.

yacs already refuses unknown keys and values of the wrong type; this adds the ranges. A count of zero
or less (epochs, batch sizes, context tokens) would not fail at once: MAX_EPOCH 0 "trains" nothing and
reports the untrained model's accuracy as the result, a batch size of 0 fails deep in the DataLoader.
The keys of the method nodes are checked against their declarations (restore.methods.spec.Key: type,
choices, bounds); the general keys against the tables below.
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
    "OPTIM.ADAM_EPS": (None, "Adam's eps, > 0"),
    "DATALOADER.TRAIN_X.BATCH_SIZE": (1, "the training batch size"),
    "DATALOADER.TRAIN_U.BATCH_SIZE": (1, "the unlabelled batch size"),
    "DATALOADER.TEST.BATCH_SIZE": (1, "the evaluation batch size"),
    "DATALOADER.NUM_WORKERS": (0, "the number of DataLoader worker processes (0: load in the main process)"),
    "DATALOADER.K_TRANSFORMS": (1, "the number of augmented views per image"),
    "TRAIN.PRINT_FREQ": (1, "print every this many batches"),
}


def choice_keys() -> dict:
    """General key -> its valid values, each from the module that uses the key (the method keys'
    choices are declared with them)."""
    from .data.base import SUBSAMPLE_CHOICES
    from .data.transforms import INTERPOLATION_MODES
    return {"DATASET.SUBSAMPLE_CLASSES": SUBSAMPLE_CHOICES, "INPUT.INTERPOLATION": tuple(INTERPOLATION_MODES)}


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


def check_method_keys(cfg) -> None:
    """UserError naming the key for a value of a registered method node that its declaration refuses
    (restore.methods.spec.Key.problem): every node, whichever method runs, as yacs checks every key."""
    from .methods import registry
    for node in registry.nodes():
        for key in node.keys:
            full = node.full(key)
            value = lookup(cfg, full)
            sibling = lookup(cfg, f"{node.path}.{key.used_if}") if key.used_if else None
            problem = key.problem(value, sibling)
            if problem is None:
                continue
            shown = value if isinstance(value, (int, float)) else repr(value)
            if key.choices is not None and problem.startswith("must be one of"):
                raise UserError(f"{full} is {shown}; it {problem}.{did_you_mean(value, key.choices)} "
                                f"Set {full} to one of them.")
            raise UserError(f"{full} is {shown}; it {problem}. Set {full} to a valid value.")


def check_config(cfg):
    """Refuse out-of-range values of the keys above and of every method node's declared keys, with a
    UserError naming the key. Depth upper bounds (the encoder's layers) and context lengths against
    the text context are checked when the model is built."""
    for key, (minimum, what) in COMMON_MINIMA.items():
        require_at_least(key, lookup(cfg, key), minimum, what)
    for key, valid in choice_keys().items():
        value = lookup(cfg, key)
        if value is not None and value not in valid:
            raise UserError(f"{key} is {value!r}; it must be one of {', '.join(map(str, valid))}."
                            f"{did_you_mean(value, valid)} Set {key} to one of them.")
    scope = lookup(cfg, "DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE")
    if scope is not None and scope not in BATCH_SCOPES:
        raise UserError(f"DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE is {scope!r}; valid: {', '.join(BATCH_SCOPES)} "
                        "(how a run over several processes shares TRAIN_X.BATCH_SIZE).")
    check_method_keys(cfg)
