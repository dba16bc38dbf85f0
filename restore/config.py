"""Configuration: Dassl's keys (the subset CoOp-lineage configs use), the project's general keys, and
the config node of every registered method (declared with the method: restore.methods.spec).

`get_cfg_default()` gives a standalone yacs tree for the native engine; `extend_cfg(cfg)` adds the
project's keys and the method nodes to any CfgNode, Dassl's included, so both engines read the same keys
and defaults. Defaults are the anchors' (docs/REPRODUCING.md section 2). Files and KEY VALUE pairs are
merged through `merge_from_file` / `merge_from_list`, which translate a method's key aliases first.
"""
from yacs.config import CfgNode as CN

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


def add_general_keys(cfg: CN) -> CN:
    """The project's keys outside the method nodes, added to `cfg` (ours or Dassl's) in place."""
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
    # Keep the DataLoader's worker processes across epochs (native engine; NUM_WORKERS > 0). Off by default,
    # as Dassl: torch then seeds the workers once instead of every epoch, so the augmentations differ.
    cfg.DATALOADER.PERSISTENT_WORKERS = False
    # Signals on which training saves a resumable state at its next check point and stops (a preemption,
    # a time limit; restore/engine/stop.py). [] binds none.
    cfg.TRAIN.STOP_SIGNALS = ["SIGTERM", "SIGUSR1", "SIGUSR2"]
    # Modules of other packages that register methods (train.py --method-module, or set here in a yaml
    # file): imported before the config is built, recorded so that resume, --eval-only, sweep workers and
    # python -m restore.legacy import them again.
    cfg.METHOD_MODULES = []
    # Written by train.py: the running method's per-dataset overrides it applied ("KEY VALUE" each).
    cfg.DATASET_OVERRIDES = []
    # Adam's (and AdamW's, AMSGrad's) eps. Not a Dassl key: Dassl's optimizer uses torch's 1e-8, which TCP's
    # authors edit to 1e-3 in their copy of Dassl (configs/trainers/TCP/ set it here).
    cfg.OPTIM.ADAM_EPS = 1e-8
    return cfg


def general_cfg() -> CN:
    """Dassl's defaults and the project's general keys, without any method node."""
    return add_general_keys(_dassl_defaults())


def add_method_nodes(cfg: CN) -> CN:
    """Add the config node of every registered method (restore.methods.registry) to `cfg` in place, with
    the declared defaults, in the order the methods list them."""
    from .methods import registry
    for node in registry.nodes():
        parent = cfg
        for part in node.path.split("."):
            if part not in parent:
                parent[part] = CN()
            parent = parent[part]
        for key in node.keys:
            *subs, leaf = key.name.split(".")
            target = parent
            for part in subs:
                if part not in target:
                    target[part] = CN()
                target = target[part]
            target[leaf] = list(key.default) if isinstance(key.default, list) else key.default
    return cfg


def extend_cfg(cfg: CN) -> CN:
    """Add the project's keys and every registered method's node to `cfg` (ours or Dassl's) in place."""
    return add_method_nodes(add_general_keys(cfg))


def get_cfg_default() -> CN:
    """A fresh config with Dassl's defaults, the project's keys and every registered method's node."""
    return extend_cfg(_dassl_defaults())


# --------------------------------------------------------------------------------- config as data
def plain(node):
    """A config (yacs CfgNode, nested) as JSON-able dicts and lists (tuples become lists)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def flatten(tree, prefix="") -> dict:
    """{"OPTIM.MAX_EPOCH": 5, ...} from a nested dict."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------------ merging
def _ints_to_floats(defaults: CN, other: CN) -> None:
    for key, value in other.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict):
            _ints_to_floats(default, value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            other[key] = float(value)


def _aliases(trainer=None) -> dict:
    from .methods import registry
    return registry.aliases(trainer)


def _pop(tree: dict, key: str):
    """Remove the dotted `key` from a nested dict (and the nodes it leaves empty); returns its value."""
    head, _, rest = key.partition(".")
    if not rest:
        return tree.pop(head)
    value = _pop(tree[head], rest)
    if not tree[head]:
        del tree[head]
    return value


def translate_aliases(tree: CN, source: str, trainer=None) -> CN:
    """Rewrite the method key aliases in a loaded yaml tree (restore.methods.spec.ConfigNode.aliases) to
    their canonical keys and values, in place, as in a run of `trainer` (restore.methods.registry.aliases);
    UserError when a file sets both spellings."""
    for alias, target in _aliases(trainer).items():
        parent, _, leaf = alias.rpartition(".")
        node = lookup(tree, parent) if parent else tree
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = target.translate(_pop(tree, alias))
        canonical = target.key
        cparent, _, cleaf = canonical.rpartition(".")
        target = tree
        for part in cparent.split("."):
            if part not in target:
                target[part] = CN()
            target = target[part]
        if cleaf in target:
            raise UserError(f"{source} sets both {alias} and {canonical}, two spellings of one key: keep one.")
        target[cleaf] = value
    return tree


def canonical_opts(opts: list, trainer=None) -> list:
    """KEY VALUE pairs with each alias key replaced by its canonical key, and its value translated (a
    command-line string decoded as yacs decodes it first), as in a run of `trainer`."""
    aliases = _aliases(trainer)
    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        target = aliases.get(opts[i])
        if target is not None:
            opts[i] = target.key
            if target.values is not None:
                value = opts[i + 1]
                opts[i + 1] = target.translate(CN._decode_cfg_value(value) if isinstance(value, str) else value)
    return opts


YAML_SUFFIXES = (".yaml", ".yml")


def read_yaml(path: str, what: str):
    """The YAML file at `path` as plain data (yaml.safe_load: no tag builds an object). One UserError line
    naming `what` and the file for a file that cannot be read or parsed; a Python tag
    (`!!python/object/apply:...`) is named as such (yaml's own message is a traceback-long
    ConstructorError that names no file)."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as err:
        raise UserError(f"{what} {path} cannot be read: {err.strerror or err}.") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        if "python/" in str(err):
            raise UserError(f"{what} {path}{where} holds a Python object tag (!!python/...), which a config never "
                            "needs and which an unsafe loader would run as code: it is not read. Write plain "
                            "values.") from None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}.") from None


def merge_from_file(cfg: CN, path: str, trainer=None) -> None:
    """`cfg.merge_from_file` for yaml files only (yacs would execute a `.py` config: UserError), with the
    method key aliases of a run of `trainer` translated, and integers accepted for float keys: the anchors'
    yaml files write e.g. `GPA_MEAN: 6` where the default is a float, which plain yacs rejects."""
    if not path.lower().endswith(YAML_SUFFIXES):
        raise UserError(f"Config file {path}: only yaml files (.yaml, .yml) are read, since a Python "
                        "config would run as code; write its keys in yaml.")
    tree = read_yaml(path, "Config file") or {}
    if not isinstance(tree, dict):
        raise UserError(f"Config file {path} holds a {type(tree).__name__}, not KEY: VALUE lines.")
    other = type(cfg)(tree)
    translate_aliases(other, path, trainer)
    _ints_to_floats(cfg, other)
    cfg.merge_from_other_cfg(other)


def merge_from_list(cfg: CN, opts: list, trainer=None) -> None:
    """`cfg.merge_from_list` with the method key aliases of a run of `trainer` translated and the same
    int -> float tolerance as `merge_from_file`."""
    opts = canonical_opts(opts, trainer)
    for i in range(0, len(opts) - 1, 2):
        value = CN._decode_cfg_value(opts[i + 1])
        if isinstance(lookup(cfg, opts[i]), float) and type(value) is int:
            opts[i + 1] = float(value)
    cfg.merge_from_list(opts)
