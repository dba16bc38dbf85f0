"""The registered methods, and every table the project reads about them (all computed from the specs).

    register(spec)            one call in the method's own module (restore.methods.spec.MethodSpec)
    names(), specs(), get(name), model_class(name), nodes()

Built-in methods register when `restore.methods` is first imported (its families, in a fixed order). Methods
of other packages register when their module is imported: `train.py --method-module my_lab.my_method`, the
yaml key METHOD_MODULES, or an installed package's entry point in the group "restore.methods"
(`load_entry_points`). A name taken by another module is refused, naming both modules.

No torch here: `train.py --help` and the sweep's plan read the registry without building a model.
"""
import functools
import importlib
import json
import os
import re
import sys
from typing import Dict, List, Optional

from ..errors import UserError
from .spec import (BACKBONE_FAMILIES, CONFIG_PROTOCOLS, ORIGINAL_LAYOUTS, TOWERS, VALUE_TYPES, Alias, ConfigNode,
                   Key, MethodSpec, OriginalLayout)

ENTRY_POINT_GROUP = "restore.methods"
# The order the built-in families (the packages restore/methods/<family>/) are listed in: --help, the
# benchmark's tables. A family package not named here is found all the same, and listed after them.
LISTED_FAMILIES = ("zsclip", "coop", "cocoop", "ivlp", "maple", "promptsrc", "restore", "kgcoop", "prograd", "dept")
BUILTIN_PREFIX = "restore.methods."
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_SPECS: Dict[str, MethodSpec] = {}
_MODULES: Dict[str, str] = {}  # method name -> the module that registered it
_ORDER: Dict[str, tuple] = {}  # method name -> its sort key (built-in family order, then registration)
_entry_points_loaded = False

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")
_MODEL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MethodSpecError(UserError):
    """A method declaration that cannot be registered; the message names its module and the fix."""


# ------------------------------------------------------------------------------------ registering
def register(spec: MethodSpec, module: Optional[str] = None) -> MethodSpec:
    """Register `spec` (called once, in the module that declares it; `module` defaults to the caller's).
    Refuses, with one line naming the module: a taken name, a node at a path another module declares
    or that Dassl's and the project's general keys hold, unknown keys, layouts or families."""
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", "?")
    if not isinstance(spec, MethodSpec):
        raise MethodSpecError(f"{module}: register() takes a restore.methods.spec.MethodSpec, "
                              f"not {type(spec).__name__}.")
    owner = _MODULES.get(spec.name)
    if owner is not None and owner != module:
        kind = "the built-in method of" if owner.startswith(BUILTIN_PREFIX) else "a method of"
        raise MethodSpecError(f"{module}: the method name {spec.name!r} is taken by {kind} {owner}; "
                              "choose another name.")
    _validate(spec, module)
    _SPECS[spec.name] = spec  # re-registering from the same module (a reload) replaces the spec
    _MODULES[spec.name] = module
    _ORDER.setdefault(spec.name, (_family_rank(module), len(_ORDER)))
    return spec


def _validate(spec: MethodSpec, module: str) -> None:
    def fail(what):
        raise MethodSpecError(f"{module}: method {spec.name!r}: {what}")

    if not _NAME.match(spec.name or ""):
        fail("its name must be a Python identifier (it names the Dassl trainer class).")
    if not _MODEL.match(spec.model or ""):
        fail(f"model {spec.model!r} must be 'package.module:Class'.")
    if not _NAME.match(spec.registered_name or ""):
        fail(f"registered_name {spec.registered_name!r} must be an identifier (a checkpoint sub-folder).")
    if spec.base is not None and spec.base not in _SPECS:
        fail(f"base {spec.base!r} is not a registered method (register it first): "
             f"{', '.join(_SPECS) or 'none'}.")
    bad = [f for f in spec.backbones if f not in BACKBONE_FAMILIES]
    if bad or not spec.backbones:
        fail(f"backbones {tuple(spec.backbones)!r}: choose from {BACKBONE_FAMILIES}.")
    if spec.vision_prompts and "resnet" in spec.backbones:
        fail("a method with vision prompts cannot run on 'resnet' towers (no token blocks).")
    _validate_layouts(spec, module, fail)
    if not (isinstance(spec.cost, (int, float)) and spec.cost > 0):
        fail(f"cost {spec.cost!r} must be a positive number (relative to CoOp's 1.0).")
    for node in spec.nodes:
        _validate_node(node, module, fail)
    spelled = {}
    for node in spec.nodes:
        for alias in node.aliases:
            other = next((n for n in spec.nodes if n is not node and any(alias == n.full(k) for k in n.keys)), None)
            if other is not None:
                fail(f"alias {alias} (of {node.path}) is a key of {other.path}, which it reads too.")
            if alias in spelled:
                fail(f"alias {alias} is declared by both {spelled[alias]} and {node.path}, which it reads.")
            spelled[alias] = node.path
    own = {node.full(k): k for node in spec.nodes for k in node.keys}
    if spec.nodes and spec.precision_key is None:
        fail(f"its first node {spec.nodes[0].path} has no PREC key (the run's precision): add "
             "restore.methods.spec.PREC to it.")
    for key in spec.context_keys:
        if key not in own:
            fail(f"context key {key!r} is not a key of its nodes.")
    for term, key in spec.loss_keys.items():
        if key not in own:
            fail(f"loss_keys[{term!r}] names {key!r}, which is not a key of its nodes.")
    for flag, key in spec.flags.items():
        if not _NAME.match(flag) or key not in own:
            fail(f"flag --{flag} must set a key of its nodes (got {key!r}).")
        for other in _SPECS.values():
            if other.name != spec.name and flag in other.flags:
                fail(f"flag --{flag} is already {other.name}'s.")
    general = _general_keys()
    known = lambda k: k in own or k in general  # noqa: E731
    for dataset, overrides in spec.dataset_overrides.items():
        for key, value in overrides.items():
            if not known(key):
                fail(f"dataset_overrides[{dataset!r}] sets {key!r}, which is no key of its nodes or of the "
                     "general config.")
            default = own[key].default if key in own else general[key]
            if not _same_type(default, value):
                fail(f"dataset_overrides[{dataset!r}][{key!r}] = {value!r} must be a {type(default).__name__}.")
            problem = own[key].problem(value) if key in own else None
            if problem:
                fail(f"dataset_overrides[{dataset!r}][{key!r}] = {value!r} {problem}.")
    if spec.derive_cfg is not None and not callable(spec.derive_cfg):
        fail("derive_cfg must be a function of the config.")
    if spec.check_plan is not None and not callable(spec.check_plan):
        fail("check_plan must be a function of the config (returning None or the reason a run cannot start).")
    for protocol, name in spec.configs.items():
        if protocol not in CONFIG_PROTOCOLS or not (isinstance(name, str) and name):
            fail(f"configs must map protocols {CONFIG_PROTOCOLS} to config names, not {protocol!r}: {name!r}.")
    if spec.configs and "base2new" not in spec.configs:
        fail("configs must name a 'base2new' config (the other protocols default to it).")
    tiny = list(spec.tiny)
    if len(tiny) % 2 or not all(isinstance(k, str) and known(k) for k in tiny[0::2]):
        fail(f"tiny {spec.tiny!r} must be KEY VALUE pairs of keys of its nodes or the general config.")


def _validate_layouts(spec: MethodSpec, module: str, fail) -> None:
    known = {layout.name: owner for owner, layout in _declared_layouts()}
    own = [x for x in spec.original_layouts if isinstance(x, OriginalLayout)]
    for layout in own:
        if layout.name in ORIGINAL_LAYOUTS or known.get(layout.name, spec.name) != spec.name:
            fail(f"original layout {layout.name!r} is already declared ({known.get(layout.name, 'built in')}); "
                 "name it in original_layouts instead of declaring it again.")
        if layout.base not in ORIGINAL_LAYOUTS:
            fail(f"original layout {layout.name!r}: its base {layout.base!r} must be one of {ORIGINAL_LAYOUTS}.")
        if not layout.marks or not all(isinstance(k, str) and k for k in layout.marks):
            fail(f"original layout {layout.name!r} needs marks: keys that only its checkpoints hold.")
        for owner, other in _declared_layouts():
            if owner != spec.name and set(other.marks) & set(layout.marks):
                fail(f"original layout {layout.name!r} shares marks with {other.name!r} ({owner}): its "
                     "checkpoints could not be told apart.")
    names = set(ORIGINAL_LAYOUTS) | set(known) | {x.name for x in own}
    bad = [x for x in (*spec.layout_names, spec.export_layout) if x is not None and x not in names]
    if bad:
        fail(f"unknown original checkpoint layout {bad[0]!r}; restore/legacy.py reads {tuple(sorted(names))}.")


def _declared_layouts():
    """[(method, OriginalLayout)] of the layouts the registered methods declare, in registration order."""
    return [(name, x) for name in sorted(_SPECS, key=lambda n: _ORDER[n])
            for x in _SPECS[name].original_layouts if isinstance(x, OriginalLayout)]


def _validate_node(node: ConfigNode, module: str, fail) -> None:
    if not isinstance(node, ConfigNode):
        fail(f"nodes must be restore.methods.spec.ConfigNode objects, not {type(node).__name__}.")
    if not _PATH.match(node.path or ""):
        fail(f"node path {node.path!r} must be dotted upper-case names (e.g. TRAINER.MYMETHOD).")
    general = _general_keys()
    if node.path in general or any(node.path.startswith(k + ".") for k in general):
        fail(f"node path {node.path} is a value of the general config, not a node.")
    for other in _nodes():
        if other is not node and other.path == node.path and _node_owner(other) != module:
            fail(f"node {node.path} is already declared by {_node_owner(other)}: import that node and "
                 "list it in nodes instead of declaring it again.")
    names = [k.name for k in node.keys]
    if len(set(names)) != len(names):
        fail(f"node {node.path} declares a key twice.")
    for key in node.keys:
        if not isinstance(key, Key) or not re.match(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$", key.name):
            fail(f"node {node.path}: keys must be restore.methods.spec.Key objects with upper-case names.")
        full = node.full(key)
        if full in general:
            fail(f"key {full} is a general config key; a method node may not redefine it.")
        if not isinstance(key.default, VALUE_TYPES):
            fail(f"key {full}: default {key.default!r} is not a yacs value (bool, int, float, str, list).")
        if key.choices is not None and key.default not in key.choices:
            fail(f"key {full}: default {key.default!r} is not one of its choices {key.choices}.")
        if key.layers is not None and key.layers not in TOWERS:
            fail(f"key {full}: layers {key.layers!r} must be one of {TOWERS}.")
        if key.used_if is not None and node.key(key.used_if) is None:
            fail(f"key {full}: used_if {key.used_if!r} is not a key of {node.path}.")
        sibling = node.key(key.used_if).default if key.used_if else None
        problem = key.problem(key.default, sibling)
        if problem:
            fail(f"key {full}: its default {key.default!r} {problem}.")
        for other in _nodes():
            if other is not node and _node_owner(other) != module and \
                    any(other.full(k) == full for k in other.keys):
                fail(f"key {full} is already declared by {_node_owner(other)}.")
    for alias, target in node.aliases.items():
        if not isinstance(target, (str, Alias)):
            fail(f"alias {alias} must map to a full key or a restore.methods.spec.Alias, not {target!r}.")
        canonical = node.alias_target(alias)
        if not any(node.full(k) == canonical.key for k in node.keys):
            fail(f"alias {alias} must name a key of {node.path}, not {canonical.key!r}.")
        values = canonical.values
        if not (values is None or callable(values) or isinstance(values, dict)):
            fail(f"alias {alias}: its values must be a dict or a function of the value, not {values!r}.")
        if alias in general or any(alias == node.full(k) for k in node.keys):
            fail(f"alias {alias} is a key of the config; an alias must be a spelling the config lacks (or a key "
                 "of another method's node, for the runs of methods that read this node).")


def builtin_families() -> List[str]:
    """The family packages of restore/methods/, in listing order (LISTED_FAMILIES, then the others
    alphabetically)."""
    import pkgutil
    folder = os.path.dirname(os.path.abspath(__file__))
    found = [m.name for m in pkgutil.iter_modules([folder]) if m.ispkg]
    return sorted(found, key=lambda f: (LISTED_FAMILIES.index(f) if f in LISTED_FAMILIES
                                        else len(LISTED_FAMILIES), f))


def _family_rank(module: str) -> tuple:
    """Where methods registered by `module` are listed: built-in families in their order, then the
    methods of other packages in registration order."""
    if not module.startswith(BUILTIN_PREFIX):
        return (1, 0, "")
    family = module[len(BUILTIN_PREFIX):].split(".")[0]
    listed = LISTED_FAMILIES.index(family) if family in LISTED_FAMILIES else len(LISTED_FAMILIES)
    return (0, listed, family)


def _node_owner(node: ConfigNode) -> str:
    for name, spec in _SPECS.items():
        if any(n is node for n in spec.nodes):
            return _MODULES[name]
    return "another module"


def _same_type(default, value) -> bool:
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if type(default) is float:
        return type(value) in (int, float)
    return type(value) is type(default)


@functools.lru_cache(maxsize=None)
def _general_keys_cached() -> tuple:
    from ..config import flatten, general_cfg, plain
    return tuple(flatten(plain(general_cfg())).items())


def _general_keys() -> dict:
    """{full key: default} of Dassl's and the project's general keys (no method node)."""
    return dict(_general_keys_cached())


# ---------------------------------------------------------------------------------------- reading
def _ensure_loaded() -> None:
    """Built-ins register on import of restore.methods; installed plugins on first use."""
    import restore.methods  # noqa: F401  (imports the built-in families, in order)
    load_entry_points()


def specs() -> List[MethodSpec]:
    """Every registered spec: the built-ins in their family order, then the others as registered."""
    _ensure_loaded()
    return [_SPECS[n] for n in sorted(_SPECS, key=_ORDER.__getitem__)]


def names() -> List[str]:
    return [s.name for s in specs()]


def get(name: str) -> MethodSpec:
    """The spec of `name`; UserError (with a did-you-mean and the registered names) for an unknown name."""
    _ensure_loaded()
    if name not in _SPECS:
        from ..cli import check_trainer
        check_trainer(name, source="")  # raises: the one message for an unknown trainer
    return _SPECS[name]


def module_of(name: str) -> str:
    """The module that registered `name`."""
    get(name)
    return _MODULES[name]


def is_builtin(name: str) -> bool:
    return module_of(name).startswith(BUILTIN_PREFIX)


def model_class(name: str):
    """The nn.Module class of `name`, imported on first use (with torch)."""
    path, cls = get(name).model.split(":")
    try:
        return getattr(importlib.import_module(path), cls)
    except (ImportError, AttributeError) as err:
        raise MethodSpecError(f"{module_of(name)}: method {name!r}: its model {get(name).model!r} cannot "
                              f"be imported ({err}).") from None


def nodes() -> List[ConfigNode]:
    """Every registered config node, once, in the order the methods first list them."""
    _ensure_loaded()
    return _nodes()


def _nodes() -> List[ConfigNode]:
    out = []
    for spec in sorted(_SPECS.values(), key=lambda s: _ORDER[s.name]):
        out.extend(n for n in spec.nodes if not any(n is m for m in out))
    return out


def keys() -> Dict[str, Key]:
    """{full key: Key} of every registered node."""
    return {node.full(k): k for node in nodes() for k in node.keys}


def aliases(trainer: Optional[str] = None) -> Dict[str, Alias]:
    """{alias: Alias (canonical full key, value translation)} in a run of `trainer`: the aliases of the
    nodes it reads, and every other alias that spells no key of the config and no other node declares.
    An alias spelling a key of another method's node (KgCoOp's TRAINER.COOP.N_CTX) applies only to runs
    of the methods that read its node; without a trainer (None, or an unknown name) it is not applied."""
    _ensure_loaded()
    real = set(keys())
    declared: Dict[str, list] = {}
    for node in _nodes():
        for alias in node.aliases:
            declared.setdefault(alias, []).append(node)
    out = {alias: found[0].alias_target(alias) for alias, found in declared.items()
           if alias not in real and len(found) == 1}
    if trainer in _SPECS:
        for node in _SPECS[trainer].nodes:
            out.update({alias: node.alias_target(alias) for alias in node.aliases})
    return out


# ------------------------------------------------------------------------------ derived tables
def method_nodes(name: str) -> List[str]:
    """The paths of the config nodes `name` reads (the run record's method settings); [] if unknown."""
    _ensure_loaded()
    return [n.path for n in _SPECS[name].nodes] if name in _SPECS else []


def precision_key(name: str) -> Optional[str]:
    """The full key of `name`'s precision, or None (fp32)."""
    _ensure_loaded()
    return _SPECS[name].precision_key if name in _SPECS else None


def registered_name(name: str) -> str:
    """The checkpoint sub-folder of `name`: `<OUTPUT_DIR>/<registered name>/model.pth.tar-<epoch>`."""
    return get(name).registered_name


def supporting(family: str) -> List[str]:
    """The methods that run on image towers of `family` (BACKBONE_FAMILIES)."""
    return [s.name for s in specs() if family in s.backbones]


def declared_layouts() -> Dict[str, OriginalLayout]:
    """{name: OriginalLayout} of the original checkpoint layouts the registered methods declare beside
    ORIGINAL_LAYOUTS (restore/legacy.py reads both)."""
    _ensure_loaded()
    return {x.name: x for _, x in _declared_layouts()}


def loading(layout: str) -> List[str]:
    """The methods whose `original_layouts` name `layout` (whose original checkpoints load into them)."""
    return [s.name for s in specs() if layout in s.layout_names]


def exportable() -> Dict[str, str]:
    """{method: the original layout `python -m restore.legacy` writes its checkpoints in}."""
    return {s.name: s.export_layout for s in specs() if s.export_layout}


def benchmark_methods() -> List[str]:
    """The methods the testbed benchmark runs by default."""
    return [s.name for s in specs() if s.benchmark]


def dassl_order() -> List[str]:
    """Every method, each after its `base` (the order the Dassl trainers are generated in)."""
    out = []

    def visit(spec):
        if spec.name not in out:
            if spec.base:
                visit(get(spec.base))
            out.append(spec.name)
    for spec in specs():
        visit(spec)
    return out


def config_file(name: str, config: str) -> str:
    """The path of `name`'s yaml config `config` ("testbed", ...): <config_dir>/<config>.yaml."""
    spec = get(name)
    folder = spec.config_dir or os.path.join(REPOSITORY, "configs", "trainers", name)
    return os.path.join(folder, f"{config}.yaml")


# ------------------------------------------------------------------------------ other packages
def import_modules(modules, source: str = "--method-module") -> List[str]:
    """Import each module of `modules` (dotted names), so that it registers its methods; returns the
    names. UserError naming the module and `source` when one cannot be imported or registers nothing."""
    imported = []
    for module in modules:
        if not isinstance(module, str) or not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*$", module):
            raise UserError(f"{source}: {module!r} is not a Python module name (e.g. my_lab.my_method).")
        before = dict(_MODULES)
        fresh = module not in sys.modules
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):
                raise UserError(f"{source}: no module named {module!r} (on sys.path: the current folder "
                                "with python -m, the script's folder, installed packages, PYTHONPATH).") \
                    from None
            raise
        if fresh and _MODULES == before:
            raise UserError(f"{source}: module {module} registers no method (call "
                            "restore.methods.registry.register(MethodSpec(...)) in it).")
        imported.append(module)
    return imported


def load_entry_points() -> None:
    """Import the modules installed packages declare in the entry-point group "restore.methods" (value:
    the module, e.g. `my_method = my_lab.my_method`), once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib import metadata
    try:
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python < 3.10
        found = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    for ep in found:
        try:
            loaded = ep.load()
        except Exception as err:
            raise UserError(f"The entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) of an "
                            f"installed package cannot be imported: {err}. Fix or uninstall that "
                            "package.") from None
        if isinstance(loaded, MethodSpec):
            register(loaded, module=ep.value.split(":")[0])


def recorded_modules(folder: str) -> List[str]:
    """The METHOD_MODULES of the run recorded in `folder`/run_info.json ([] when there is none): the
    modules to import again to resume or evaluate that run."""
    try:
        with open(os.path.join(folder, "run_info.json")) as f:
            modules = json.load(f)["config"].get("METHOD_MODULES", [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return [m for m in modules if isinstance(m, str)] if isinstance(modules, list) else []
