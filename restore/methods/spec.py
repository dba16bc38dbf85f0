"""What a method declares about itself: its config keys, nodes and the facts every table reads.

A method is declared once, in its own module, as a `MethodSpec` given to `restore.methods.registry.register`.
Everything else (the config tree, the value checks, the run record's method settings, the precision, the
checkpoint folder, the original checkpoint layouts, the Dassl trainer, the backbone matrix, the sweep)
derives from the registered specs. This module imports nothing heavy (no torch): `train.py --help` and the
sweep's plan read the specs without building a model.

    COOP = ConfigNode("TRAINER.COOP", (
        Key("N_CTX", 16, "the number of learnable context tokens", min=1),
        Key("CTX_INIT", "", "initial context words (N_CTX becomes their number); empty: random"),
        PREC,
    ))
    register(MethodSpec("CoOp", model="restore.methods.coop.model:CoOp", nodes=(COOP,),
                        context_keys=("TRAINER.COOP.N_CTX", "TRAINER.COOP.CTX_INIT")))

docs/ADDING_A_METHOD.md walks through a complete declaration.
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Tuple

# TRAINER.<node>.PREC: the numerical precision of a run on CUDA (restore/engine/precision.py); a CPU runs fp32.
PRECISIONS = ("fp16", "fp32", "amp", "bf16")
# The layouts of the original CoOp-lineage checkpoints that restore/legacy.py reads and writes; a method
# declares another one as an `OriginalLayout` extending one of these.
ORIGINAL_LAYOUTS = ("CoOp", "IVLP", "MaPLe", "MaPLe_FSA")
# Image towers a method can run on: "vit" has token blocks that take vision prompts; "resnet" stands for
# every tower without them (ResNet, timm towers, attention-pooled towers), where only text prompts work.
BACKBONE_FAMILIES = ("vit", "resnet")
# Values a key may hold (yacs's types; a tuple or list default takes a list or tuple).
VALUE_TYPES = (bool, int, float, str, tuple, list)
TOWERS = ("text", "vision", "both")
# The protocols a method's published configs are named for (MethodSpec.configs).
CONFIG_PROTOCOLS = ("base2new", "xd", "fewshot")


@dataclass(frozen=True)
class Key:
    """One config key of a node: its name under the node (dotted for sub-nodes, "FS.WEIGHT"), its default
    (which fixes its type: yacs refuses a value of another type; an int is accepted for a float), a
    one-line help (a noun phrase: the value checks quote it), and its allowed values:

    choices     the only values allowed.
    min, max    inclusive bounds; `above` / `below` exclusive ones (e.g. above=0 for a positive real).
    special     values allowed outside the bounds, with their meaning: {0: "all classes"}.
    used_if     a sibling key (a prompt depth) that uses this count: while it is 0 this key may be 0 too.
    layers      for a prompt depth: the encoder(s) whose layers bound it ("text", "vision", "both"); a
                model checks the bound when built, and smoke runs (restore.smoke) lower it to fit.
    block       with `layers`: the value is a 0-based block index (TCP's insertion block), so it fits below
                the encoder's layers (smoke runs lower it to the last block), not up to them as a depth.
    evaluation  True when the key only changes how a saved state is evaluated (precision, test-time
                options): an --eval-only run may use another value than its training run.
    """
    name: str
    default: Any
    help: str
    choices: Optional[Tuple[Any, ...]] = None
    min: Optional[float] = None
    max: Optional[float] = None
    above: Optional[float] = None
    below: Optional[float] = None
    special: Mapping[Any, str] = field(default_factory=dict)
    used_if: Optional[str] = None
    layers: Optional[str] = None
    block: bool = False
    evaluation: bool = False

    @property
    def type(self) -> type:
        return list if isinstance(self.default, tuple) else type(self.default)

    def problem(self, value, sibling=None) -> Optional[str]:
        """Why `value` is not allowed ("must be at least 1 (...)"), or None. `sibling`: the value of the
        `used_if` key."""
        if value is None:
            return None
        want = self.type
        if want is float and type(value) is int or want is list and isinstance(value, (list, tuple)):
            pass
        elif type(value) is not want:
            return f"must be of type {want.__name__} ({self.help}), not {type(value).__name__}"
        if self.choices is not None:
            if value not in self.choices:
                return f"must be one of {', '.join(map(str, self.choices))}"
            return None
        if want not in (int, float) or value in self.special:
            return None
        low = self.min
        if self.used_if is not None and not sibling:
            low = 0 if low is None else min(low, 0)
        bounds = [(low, value >= low if low is not None else True, f"at least {low}"),
                  (self.above, value > self.above if self.above is not None else True,
                   f"greater than {self.above}"),
                  (self.max, value <= self.max if self.max is not None else True, f"at most {self.max}"),
                  (self.below, value < self.below if self.below is not None else True,
                   f"less than {self.below}")]
        failed = [text for bound, ok, text in bounds if bound is not None and not ok]
        if not failed:
            return None
        allowed = " and ".join(text for bound, _, text in bounds if bound is not None)
        specials = " or ".join(f"{v} ({meaning})" for v, meaning in self.special.items())
        return f"must be {specials + ' or ' if specials else ''}{allowed} ({self.help})"


@dataclass(frozen=True)
class Alias:
    """The target of a key alias whose values are spelled differently too: `key`, the canonical full key,
    and `values`, a mapping {the authors' value: ours} or a function of the authors' value (applied after
    yacs decodes a command-line value; a value the mapping lacks passes unchanged). KgCoOp's authors
    write `TRAINER.COOP.CTX_INIT: True` for the context "a photo of a":
    `Alias("TRAINER.KGCOOP.CTX_INIT", {True: "a photo of a", False: ""})`."""
    key: str
    values: Any = None

    def translate(self, value):
        if callable(self.values):
            return self.values(value)
        if isinstance(self.values, Mapping):
            try:
                return self.values.get(value, value)
            except TypeError:  # an unhashable value (a list): no entry
                return value
        return value


@dataclass(frozen=True)
class ConfigNode:
    """A group of keys at a dotted `path` of the config: most methods own "TRAINER.<NAME>", but a node may
    sit anywhere (a top-level "LOSS"). Declared once by the method family that owns it and referenced by
    the others that read it (MaPLe's node is read by MaPLe, RESTORE_m and MaPLe_FSA).

    aliases: {alias: canonical key, or an `Alias` (canonical key and value translation)}, both full
    dotted keys: the spelling of a key in its authors' yaml files and command lines (e.g.
    "TRAINER.COOP.W") that sets the canonical key of this node. Aliases are translated in yaml files and
    KEY VALUE pairs before merging, so the printed config and the run record hold canonical keys only.
    An alias may spell a key of another method's node (KgCoOp's authors write TRAINER.COOP.N_CTX, CoOp's
    key): it then applies only to runs of the methods that read this node
    (restore.methods.registry.aliases)."""
    path: str
    keys: Tuple[Key, ...]
    aliases: Mapping[str, Any] = field(default_factory=dict)

    def key(self, name: str) -> Optional[Key]:
        return next((k for k in self.keys if k.name == name), None)

    def alias_target(self, alias: str) -> Alias:
        """The `Alias` of `alias` (a plain canonical key becomes one without value translation)."""
        target = self.aliases[alias]
        return target if isinstance(target, Alias) else Alias(target)

    def full(self, key: Key) -> str:
        return f"{self.path}.{key.name}"


@dataclass(frozen=True)
class OriginalLayout:
    """A checkpoint layout of an original trainer that extends one of ORIGINAL_LAYOUTS (`base`): the same
    key names, recognised by `marks` (keys only this layout holds), plus keys the original saves and never
    uses (`unused`: keys, or prefixes ending in "."), dropped when its checkpoints are read. Declared by a
    method in its `original_layouts` (KgCoOp: the CoOp layout plus its unused `bias_vectors` and
    `meta_net.linear1`); restore/legacy.py reads and writes it through its base's renaming.

    name      its name (`export_layout` may name it); writers: who writes it, for messages.
    whole_model   the original saves its whole model, frozen CLIP included (DePT): a state is in this layout
              only with the frozen CLIP's keys too, since ours share its learned keys' names. Where several
              declared layouts match, the one matching the most marks wins."""
    name: str
    base: str
    marks: Tuple[str, ...]
    unused: Tuple[str, ...] = ()
    writers: str = ""
    whole_model: bool = False

    def holds(self, key: str) -> bool:
        """Whether `key` (of a state dict in this layout) is one of its unused keys."""
        return any(key == u or (u.endswith(".") and key.startswith(u)) for u in self.unused)


@dataclass(frozen=True)
class MethodSpec:
    """A method, as every part of the project sees it.

    name              TRAINER.NAME and the Dassl trainer's class name (--trainer).
    model             "package.module:Class" of its nn.Module (a restore.methods.base.PromptedCLIP),
                      imported when a model is first built.
    nodes             the config nodes it reads, in order; its precision is the first node's PREC (a method
                      without nodes runs in fp32). The run record stores these nodes' keys.
    registered_name   the checkpoint sub-folder, as the CoOp-lineage trainers register their models:
                      prompt_learner (CoOp), VLPromptLearner (IVLP, PromptSRC), MultiModalPromptLearner (MaPLe).
    base              the registered method whose Dassl trainer this one's subclasses (RESTORE_m: "MaPLe").
    vision_prompts    whether it puts prompts into the image tower.
    backbones         the image-tower families it runs on (BACKBONE_FAMILIES); default: both without vision
                      prompts, "vit" with them.
    context_keys      the full keys that set the length of its text prompts, named when a class prompt does
                      not fit the text encoder ("TRAINER.COOP.N_CTX", "TRAINER.COOP.CTX_INIT"); none: a
                      hand prompt (ZeroshotCLIP).
    original_layouts  the original checkpoint layouts that load into it (restore/legacy.py): names of
                      ORIGINAL_LAYOUTS or of a layout another method declares, or `OriginalLayout`s it
                      declares itself.
    export_layout     the name of the original layout its checkpoints are written in by
                      `python -m restore.legacy`, or None.
    cost              one epoch's cost per training class relative to CoOp (the sweep starts the heaviest
                      jobs first).
    benchmark         whether the testbed benchmark runs it by default.
    config_dir        the folder of its yaml configs (<config_dir>/<name>.yaml: "testbed" for the testbed
                      benchmark); default configs/trainers/<name>/ of this repository.
    dataset_overrides {DATASET.NAME: {full key: value}} its authors apply per dataset; train.py applies them
                      after the yaml files and before the command line, and prints each one.
    flags             {flag: full key}: train.py command-line flags of this method (`--<flag> VALUE` sets the key;
                      refused for another trainer), as its authors' train.py spells them.
    derive_cfg        cfg -> None, run on the merged config of a run of this method before it is checked:
                      writes the keys the model reads from the keys its users set (MaPLe_FSA's release node).
    loss_keys         {logged loss term: the key its users set to weight it} ({"fs": "TRAINER.RESTORE.FS.WEIGHT"}):
                      a training step whose loss turns non-finite in such a term names that key.
    tiny              KEY VALUE pairs that make it small on the tests' tiny random CLIP (3 + 3 layers): prompt
                      depths below its layers, few context tokens (tests and smoke runs).
    configs           {protocol: config name} of its authors' published runs on real data (<config_dir>/
                      <name>.yaml): "base2new", "xd" (cross-dataset and domain generalisation; default: the
                      base2new one), "fewshot" (CoOp's protocol; default: the base2new one). The benchmark's
                      `--configs authors` runs these, `--configs paper` them at the RESTORE paper's 10 epochs.
    check_plan        cfg -> None, or one line saying why a run of this resolved config cannot start (an input
                      the method needs that is missing, e.g. a file of class descriptions). The benchmark
                      asks it of every planned run before anything runs or is submitted.
    """
    name: str
    model: str
    nodes: Tuple[ConfigNode, ...] = ()
    registered_name: str = "prompt_learner"
    base: Optional[str] = None
    vision_prompts: bool = False
    backbones: Optional[Tuple[str, ...]] = None
    context_keys: Tuple[str, ...] = ()
    original_layouts: Tuple[Any, ...] = ()
    export_layout: Optional[str] = None
    cost: float = 1.0
    benchmark: bool = False
    config_dir: Optional[str] = None
    dataset_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)
    derive_cfg: Optional[Callable] = None
    loss_keys: Mapping[str, str] = field(default_factory=dict)
    tiny: Tuple[Any, ...] = ()
    configs: Mapping[str, str] = field(default_factory=dict)
    check_plan: Optional[Callable] = None

    def __post_init__(self):
        if self.backbones is None:
            object.__setattr__(self, "backbones", ("vit",) if self.vision_prompts else BACKBONE_FAMILIES)

    @property
    def layout_names(self) -> Tuple[str, ...]:
        """The names of its `original_layouts`."""
        return tuple(x.name if isinstance(x, OriginalLayout) else x for x in self.original_layouts)

    @property
    def precision_key(self) -> Optional[str]:
        """The full key of its precision (the first node's PREC), or None (fp32)."""
        if self.nodes and self.nodes[0].key("PREC") is not None:
            return f"{self.nodes[0].path}.PREC"
        return None

    def config(self, protocol: str) -> Optional[str]:
        """The name of its authors' config for `protocol` (base2new, xd, dg or fewshot; dg runs the xd
        config, as the papers train one ImageNet model for both), or None when it declares none."""
        protocol = "xd" if protocol == "dg" else protocol
        return self.configs.get(protocol) or self.configs.get("base2new")


PREC = Key("PREC", "fp16", "the precision on CUDA: fp16 weights, fp32, amp or bf16 autocast (fp32 on a CPU)",
           choices=PRECISIONS, evaluation=True)


def lazy_model(package: str, names: Tuple[str, ...]) -> Callable:
    """A module `__getattr__` for a method family `package`: the attributes `names` (its model classes)
    come from `<package>.model`, imported (with torch) only when one is first used."""
    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(f"{package}.model"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
