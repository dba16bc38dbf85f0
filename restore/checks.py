"""Config values checked before any work: each bad value stops the run with one line naming the key.

yacs already refuses unknown keys and values of the wrong type; this adds what the values mean. A count of
zero or less (epochs, batch sizes) would not fail at once: MAX_EPOCH 0 "trains" nothing and reports the
untrained model's accuracy as the result, a batch size of 0 fails deep in the DataLoader; an infinite
learning rate trains to infinite prompts and still reports an accuracy; a zero in INPUT.PIXEL_STD divides
by zero inside torchvision, after the output folder was made.

- Every float value of the config, whichever node holds it (a list's items too), must be finite.
- The general keys: `general_keys()` below (types, choices, bounds, special values), plus the list-valued
  ones (`check_lists`). The method nodes' keys: their declarations (restore.methods.spec.Key).
"""
import math

from .errors import UserError
from .suggest import did_you_mean

# DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE under torchrun: BATCH_SIZE is one step's batch over all processes,
# or each process's (restore/engine/parallel.py).
BATCH_SCOPES = ("global", "per_process")
ALL_IMAGES = "every training image (no few-shot sampling)"


def general_keys() -> dict:
    """{full key: restore.methods.spec.Key} of the general keys that hold a number or a choice (the method
    keys are declared with their methods). The choices come from the modules that use the keys."""
    from .data.base import SUBSAMPLE_CHOICES
    from .data.transforms import INTERPOLATION_MODES
    from .methods.spec import Key

    def key(name, default, help, **allowed):
        return name, Key(name, default, help, **allowed)

    share = dict(min=0, max=1)
    return dict([
        key("SEED", -1, "the random seed", min=0, special={-1: "unseeded"}),
        key("INPUT.INTERPOLATION", "bilinear", "the resize interpolation", choices=tuple(INTERPOLATION_MODES)),
        key("INPUT.CROP_PADDING", 4, "the padding of random_crop, in pixels", min=0),
        key("INPUT.CUTOUT_N", 1, "cutout's number of holes", min=0),
        key("INPUT.CUTOUT_LEN", 16, "cutout's hole size, in pixels", min=1),
        key("INPUT.GN_MEAN", 0.0, "the mean of gaussian_noise"),
        key("INPUT.GN_STD", 0.15, "the standard deviation of gaussian_noise", min=0),
        key("INPUT.RANDAUGMENT_N", 2, "RandAugment's number of operations", min=0),
        key("INPUT.RANDAUGMENT_M", 10, "RandAugment's magnitude", min=0, max=30),
        key("INPUT.COLORJITTER_B", 0.4, "colorjitter's brightness", min=0),
        key("INPUT.COLORJITTER_C", 0.4, "colorjitter's contrast", min=0),
        key("INPUT.COLORJITTER_S", 0.4, "colorjitter's saturation", min=0),
        key("INPUT.COLORJITTER_H", 0.1, "colorjitter's hue", min=0, max=0.5),
        key("INPUT.RGS_P", 0.2, "the probability of randomgrayscale", **share),
        key("INPUT.GB_P", 0.5, "the probability of gaussian_blur", **share),
        key("INPUT.GB_K", 21, "gaussian_blur's kernel size, in pixels (odd)", min=1),
        key("DATASET.NUM_SHOTS", -1, "the training images per class", min=1,
            special={-1: ALL_IMAGES, 0: ALL_IMAGES}),
        key("DATASET.NUM_LABELED", -1, "the labelled images of a semi-supervised dataset", min=1,
            special={-1: "all"}),
        key("DATASET.VAL_PERCENT", 0.1, "the share of the training images held out for validation", **share),
        key("DATASET.STL10_FOLD", -1, "the STL-10 fold", min=0, max=9, special={-1: "all"}),
        key("DATASET.CIFAR_C_LEVEL", 1, "the CIFAR-C corruption level", min=1, max=5),
        key("DATASET.SUBSAMPLE_CLASSES", "all", "the classes of the split", choices=SUBSAMPLE_CHOICES),
        key("DATALOADER.NUM_WORKERS", 4, "the DataLoader worker processes (0: load in the main process)", min=0),
        key("DATALOADER.K_TRANSFORMS", 1, "the augmented views per image", min=1),
        *[key(f"DATALOADER.{part}.BATCH_SIZE", 32, f"the {what} batch size", min=1)
          for part, what in (("TRAIN_X", "training"), ("TRAIN_U", "unlabelled"), ("TEST", "evaluation"))],
        *[key(f"DATALOADER.{part}.N_DOMAIN", 0, "the domains per batch of a domain sampler", min=0)
          for part in ("TRAIN_X", "TRAIN_U")],
        *[key(f"DATALOADER.{part}.N_INS", 16, "the images per class of a class sampler", min=1)
          for part in ("TRAIN_X", "TRAIN_U")],
        key("DATALOADER.TRAIN_X.BATCH_SIZE_SCOPE", "global", "how a run over several processes shares "
            "TRAIN_X.BATCH_SIZE", choices=BATCH_SCOPES),
        key("OPTIM.LR", 0.0003, "the learning rate", above=0),
        key("OPTIM.WEIGHT_DECAY", 5e-4, "the weight decay", min=0),
        key("OPTIM.MOMENTUM", 0.9, "the momentum", **share),
        key("OPTIM.SGD_DAMPNING", 0.0, "SGD's dampening", **share),
        key("OPTIM.RMSPROP_ALPHA", 0.99, "RMSprop's smoothing constant", **share),
        key("OPTIM.ADAM_BETA1", 0.9, "Adam's first beta", min=0, below=1),
        key("OPTIM.ADAM_BETA2", 0.999, "Adam's second beta", min=0, below=1),
        key("OPTIM.ADAM_EPS", 1e-8, "Adam's eps (TCP's configs: 1e-3)", above=0),
        key("OPTIM.BASE_LR_MULT", 0.1, "the LR factor of the layers outside NEW_LAYERS", min=0),
        key("OPTIM.GAMMA", 0.1, "the LR decay factor of single_step / multi_step", above=0),
        key("OPTIM.MAX_EPOCH", 10, "the number of training epochs", min=1),
        key("OPTIM.WARMUP_EPOCH", -1, "the warm-up epochs", min=0, special={-1: "no warm-up"}),
        key("OPTIM.WARMUP_CONS_LR", 1e-5, "the constant warm-up LR", above=0),
        key("OPTIM.WARMUP_MIN_LR", 1e-5, "the first LR of a linear warm-up", min=0),
        key("TRAIN.CHECKPOINT_FREQ", 0, "save every this many epochs (0: the last only)", min=0),
        key("TRAIN.PRINT_FREQ", 10, "print every this many batches", min=1),
        key("TRAIN.COUNT_ITER", "train_x", "the loader that sets an epoch's batches",
            choices=("train_x", "train_u", "smaller_one")),
        key("TEST.SPLIT", "test", "the split of the final evaluation", choices=("val", "test")),
        key("TEST.FINAL_MODEL", "last_step", "the model the final evaluation uses",
            choices=("last_step", "best_val")),
    ])


def lookup(cfg, key):
    """The value at a dotted key, or None when the config has no such key (a plain Dassl config)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def non_finite(cfg, prefix=""):
    """(dotted key, value) of the first float of `cfg` (nested nodes, lists and tuples too) that is NaN or
    infinite, or None."""
    for name, value in cfg.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            found = non_finite(value, key + ".")
            if found:
                return found
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            return key, value
    return None


def refuse(key, value, problem, choices=None):
    """UserError: "<key> is <value>; it <problem>. Set <key> to ..." (with a did-you-mean among `choices`)."""
    shown = value if isinstance(value, (int, float)) else repr(value)
    if choices is not None and problem.startswith("must be one of"):
        raise UserError(f"{key} is {shown}; it {problem}.{did_you_mean(value, choices)} Set {key} to one of them.")
    raise UserError(f"{key} is {shown}; it {problem}. Set {key} to a valid value.")


def check_lists(cfg) -> None:
    """The list-valued general keys: sizes, the normalisation, the crop scale, the LR steps, the stop signals."""
    size = lookup(cfg, "INPUT.SIZE")
    if size is not None and (len(size) != 2 or any(type(v) is not int or v < 1 for v in size)):
        refuse("INPUT.SIZE", tuple(size), "must be two positive whole numbers (height, width in pixels)")
    for name, count, positive in (("PIXEL_MEAN", 3, False), ("PIXEL_STD", 3, True)):
        value = lookup(cfg, f"INPUT.{name}")
        if value is None:
            continue
        if len(value) != count or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            refuse(f"INPUT.{name}", list(value), f"must be {count} numbers (one per RGB channel)")
        if positive and any(v <= 0 for v in value):
            refuse(f"INPUT.{name}", list(value), "must be greater than 0 in every channel (the images are divided "
                                                 "by it)")
    scale = lookup(cfg, "INPUT.RRCROP_SCALE")
    if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1):
        refuse("INPUT.RRCROP_SCALE", tuple(scale), "must be (min, max) with 0 < min <= max <= 1 (the crop's "
                                                   "share of the image area)")
    steps = lookup(cfg, "OPTIM.STEPSIZE")
    steps = steps if isinstance(steps, (list, tuple)) else [steps] if steps is not None else []
    if any(type(v) is not int or (v < 1 and v != -1) for v in steps):
        refuse("OPTIM.STEPSIZE", steps, "must hold whole epochs of at least 1 (-1: OPTIM.MAX_EPOCH)")
    signals = lookup(cfg, "TRAIN.STOP_SIGNALS")
    if signals is not None:
        from .engine.stop import DEFAULT_SIGNALS, signal_numbers
        try:
            signal_numbers(signals)
        except ValueError:
            refuse("TRAIN.STOP_SIGNALS", list(signals), f"must hold signal names such as {', '.join(DEFAULT_SIGNALS)} "
                                                        "([]: none)")
    kernel = lookup(cfg, "INPUT.GB_K")
    if isinstance(kernel, int) and kernel % 2 == 0:
        refuse("INPUT.GB_K", kernel, "must be odd (gaussian_blur's kernel size)")


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
            if problem is not None:
                refuse(full, value, problem, key.choices)


def check_config(cfg):
    """Refuse, with a UserError naming the key: a non-finite float anywhere in the config, a general key's
    value outside its meaning, a method node's value its declaration refuses. Depth upper bounds (the
    encoder's layers) and context lengths against the text context are checked when the model is built."""
    found = non_finite(cfg)
    if found:
        refuse(*found, "must be a finite number (NaN and infinity, e.g. 1e999 or .inf in yaml, are refused)")
    for full, key in general_keys().items():
        value = lookup(cfg, full)
        problem = key.problem(value)
        if problem is not None:
            refuse(full, value, problem, key.choices)
    check_lists(cfg)
    check_method_keys(cfg)
