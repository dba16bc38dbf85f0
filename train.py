#!/usr/bin/env python
"""Train or evaluate a prompt-learning method: CoOp's command line, with two engines.

    python train.py --root $DATA --seed 1 --trainer RESTORE_m \
        --dataset-config-file configs/datasets/imagenet.yaml \
        --config-file configs/trainers/RESTORE_m/vit_b16_c2_ep10_batch4_2ctx.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

--engine auto (default) runs Dassl when it is installed, else the native engine (restore.engine); both
read the same configs and write the same logs and checkpoints. Config precedence (as CoOp): defaults ->
the project's keys -> dataset yaml -> method yaml -> the method's per-dataset overrides -> command-line
flags -> trailing KEY VALUE pairs. A method of another package is imported first (--method-module, or
METHOD_MODULES in a yaml file), since its config keys exist only once it has registered.
"""
import argparse
import importlib
import importlib.util
import logging
import os
import pkgutil
import re
import shutil
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

from restore.cli import (BACKBONES, ArgumentParser, check_data_root, check_dataset,  # noqa: E402
                         check_overrides, check_trainer, dataset_configs, node_of, unknown_key)
from restore.config import canonical_opts, merge_from_file, merge_from_list  # noqa: E402
import restore.logs  # noqa: E402
from restore.errors import UserError  # noqa: E402
from restore.methods import registry  # noqa: E402  (the method specs; no torch)
from restore.suggest import did_you_mean  # noqa: E402

log = logging.getLogger("train")  # also when run as a script (__main__): restore.logs prints it

ENGINES = ("auto", "dassl", "native")


class ConfigError(UserError):
    """A config file, key or value the user gave cannot be used; the message says which and why."""


# ------------------------------------------------------------------------------------------- CLI
def build_parser():
    p = ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="",
                   help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=-1,
                   help="only positive value enables a fixed seed (as CoOp: --seed 0 is ignored)")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="",
                   help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="",
                   help="CLIP backbone, sets MODEL.BACKBONE.NAME (names below; the method config sets one)")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="",
                   help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="dassl: Dassl.pytorch's trainers (trainers/); native: restore.engine; "
                        "auto: dassl when importable, else native")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (defaults, yaml files, flags, KEY VALUE pairs) and stop; "
                        "names and keys are checked as for a run (a trainer and dataset may be left out)")
    p.add_argument("--trust-files", action="store_true",
                   help="trust every file this run reads (= TRUST_FILES True): checkpoints, few-shot "
                        "caches and preprocessed.pkl are unpickled without restriction (which can run "
                        "code stored in them) and a TorchScript MODEL.BACKBONE.PATH loads whatever its "
                        "checksum. Without it only tensors, the objects original Dassl checkpoints "
                        "hold, Datums, and OpenAI's published TorchScript files are read")
    p.add_argument("--check-finished", action="store_true",
                   help="only say whether --output-dir holds a finished run of this command: exit 0 "
                        "(finished, same settings), 3 (not finished) or 1 (made with other settings)")
    p.add_argument("--method-module", action="append", default=[], metavar="MODULE",
                   help="import MODULE (e.g. my_lab.my_method) first: a method of another package that "
                        "registers itself (docs/ADDING_A_METHOD.md); repeatable; recorded as METHOD_MODULES")
    add_method_flags(p)  # e.g. the official release's --vis_calib_r, --text_calib_r, --fs_loss_r
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="KEY VALUE pairs that override the config, applied last (e.g. OPTIM.MAX_EPOCH 5)")
    p.epilog = help_epilog()
    return p


def add_method_flags(parser):
    """The command-line flags the registered methods declare (MethodSpec.flags); default None = keep the
    config's value. ConfigError when a flag's name is taken."""
    for spec in registry.specs():
        for flag, key in spec.flags.items():
            option = f"--{flag}"
            if option in parser._option_string_actions:
                raise ConfigError(f"{registry.module_of(spec.name)}: method {spec.name}'s flag {option} is "
                                  "already a train.py option; choose another flag name.")
            declared = registry.keys()[key]
            parser.add_argument(option, type=declared.type, default=None,
                                help=f"{spec.name}: sets {key}, {declared.help}")


def trainers_help():
    """The "trainers" lines of --help, from the method specs (no torch)."""
    return ["trainers (--trainer; other packages' methods with --method-module):",
            *textwrap_names(registry.names())]


def help_epilog():
    """The names a user can pass, read from the method registry and the dataset configs without torch
    (restore.cli; so the help cannot go stale and answers at once), and an example."""
    datasets = [f"{config} ({name})" for config, name in dataset_configs().items()]
    return "\n".join([
        *trainers_help(),
        "datasets (--dataset-config-file configs/datasets/<name>.yaml; DATASET.NAME in brackets):",
        *textwrap_names(datasets),
        "backbones (MODEL.BACKBONE.NAME, set by the method config or --backbone):",
        *textwrap_names(BACKBONES),
        "  and open_clip:MODEL/TAG, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k (pip install open-clip-torch;",
        "  docs/BACKBONES.md lists which methods run on which backbone)",
        "  OpenAI weights are read from ~/.cache/clip/<file> (downloaded there when online); a local",
        "  file instead: MODEL.BACKBONE.PATH /path/to/ViT-B-16.pt",
        "",
        "config overrides: trailing KEY VALUE pairs with the config's dotted key names, applied last,",
        "  e.g. OPTIM.MAX_EPOCH 5 DATALOADER.NUM_WORKERS 2; --print-config lists every key and value.",
        "",
        "example (the synthetic testbed on a CPU, nothing to download):",
        "  python train.py --root ./data --seed 1 --trainer CoOp \\",
        "      --dataset-config-file configs/datasets/shapes.yaml \\",
        "      --config-file configs/trainers/CoOp/testbed.yaml --output-dir output/demo \\",
        "      DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base",
        "",
        "environment: RESTORE_NUM_THREADS=N sets torch's threads (default: the CPUs available to the",
        "  process); RESTORE_TRACEBACK=1 shows the traceback behind an error message.",
    ])


def textwrap_names(names, width=100):
    """Lines of "  name name ...", never breaking inside a name."""
    lines = ["  "]
    for name in names:
        if len(lines[-1]) > 2 and len(lines[-1]) + 1 + len(name) > width:
            lines.append("  ")
        lines[-1] += ("" if len(lines[-1]) == 2 else " ") + name
    return lines


def choose_engine(requested, processes=1):
    """The engine to run; several processes (torchrun) need the native one."""
    if processes > 1:
        if requested == "dassl":
            raise ConfigError(f"--engine dassl runs in one process, but torchrun started {processes}: start it "
                              "without torchrun (or --nproc_per_node 1), or use --engine native.")
        return "native"
    have_dassl = importlib.util.find_spec("dassl") is not None
    if requested == "dassl" and not have_dassl:
        raise ConfigError("--engine dassl: Dassl is not installed. Install it from its repository (git clone "
                          "https://github.com/KaiyangZhou/Dassl.pytorch, then pip install -r requirements.txt "
                          "and pip install --no-build-isolation -e . there; README, \"Install\"), "
                          "or use --engine native.")
    if requested == "auto":
        return "dassl" if have_dassl else "native"
    return requested


# ----------------------------------------------------------------------------------- method modules
def _yaml_modules(path):
    """METHOD_MODULES of a yaml config file ([] when it has none or cannot be read: merging it reports
    that with the file's name)."""
    import yaml
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return []
    modules = tree.get("METHOD_MODULES") if isinstance(tree, dict) else None
    if modules is None:
        return []
    if not isinstance(modules, list):
        raise ConfigError(f"METHOD_MODULES in {path} must be a list of module names, e.g. [my_lab.my_method].")
    return modules


def method_modules(args):
    """Import the modules of other packages' methods this run needs, before its config is built (yacs
    refuses their keys until they register), and return their names in order: --method-module, the yaml
    files' and the KEY VALUE pairs' METHOD_MODULES, and those recorded in the run being evaluated
    (--eval-only: --model-dir) or resumed (--resume, --output-dir)."""
    sources = [(list(getattr(args, "method_module", None) or []), "--method-module")]
    for path in (getattr(args, "dataset_config_file", ""), getattr(args, "config_file", "")):
        if path:
            sources.append((_yaml_modules(path), f"METHOD_MODULES in {path}"))
    opts = list(getattr(args, "opts", None) or [])
    for i in range(len(opts) - 1):
        if opts[i] == "METHOD_MODULES":
            from yacs.config import CfgNode
            value = CfgNode._decode_cfg_value(opts[i + 1])
            sources.append((value if isinstance(value, (list, tuple)) else [value],
                            "METHOD_MODULES on the command line"))
    if getattr(args, "eval_only", False):
        folders = [getattr(args, "model_dir", "")]
    else:
        folders = [getattr(args, "resume", ""), getattr(args, "output_dir", "")]
    for folder in filter(None, folders):
        sources.append((registry.recorded_modules(folder),
                        f"METHOD_MODULES of {os.path.join(folder, 'run_info.json')}"))
    modules = []
    for names, source in sources:
        for module in registry.import_modules(names, source):
            if module not in modules:
                modules.append(module)
    return modules


def preparse_method_modules(argv):
    """`method_modules` from the raw command line, before the parser exists (the parser's flags and
    --help include the methods those modules register)."""
    pre = ArgumentParser(prog="train.py", add_help=False, allow_abbrev=False)
    pre.add_argument("--method-module", action="append", default=[])
    pre.add_argument("--eval-only", action="store_true")
    for flag in ("--config-file", "--dataset-config-file", "--model-dir", "--output-dir", "--resume"):
        pre.add_argument(flag, default="")
    args, rest = pre.parse_known_args(list(argv))
    args.opts = rest
    return method_modules(args)


# ---------------------------------------------------------------------------------------- config
def default_cfg(engine):
    from restore.config import extend_cfg, get_cfg_default
    if engine == "dassl":
        from dassl.config import get_cfg_default as dassl_default
        return extend_cfg(dassl_default())
    return get_cfg_default()


def type_mismatch_message(err, source):
    """yacs's "Type mismatch (<class 'float'> vs. <class 'str'>) with values (0.0003 vs. abc) for config
    key: OPTIM.LR" -> which key wants which type."""
    m = re.match(r"Type mismatch \(<class '(\w+)'> vs\. <class '(\w+)'>\) with values \((.*) vs\. (.*)\) "
                 r"for config key: (\S+)", str(err), re.S)
    if not m:
        return f"Config value {source}: {err}"
    want, got, default, value, key = m.groups()
    return (f"Config key {key} {source} must be a {want} (default {default}), got {value!r} ({got}). "
            f"Write e.g. {default!s} in that type.")


def merge_file(cfg, path, flag, trainer=""):
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        avail = sorted(f for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
        hint = did_you_mean(os.path.basename(path), avail, fmt=os.path.join(folder, "{}"))
        raise ConfigError(f"{flag} {path}: file not found.{hint}" +
                          (f" Files in {folder}: {', '.join(avail)}." if avail else ""))
    try:
        merge_from_file(cfg, path, trainer)
    except UserError:  # already one line naming the file
        raise
    except KeyError as err:
        text = str(err.args[0]) if err.args else str(err)
        key = text.split("Non-existent config key:")[-1].strip()
        raise ConfigError(unknown_key(cfg, first_key_under(path, key), f"in {path}", trainer)) from None
    except ValueError as err:
        raise ConfigError(type_mismatch_message(err, f"in {path}")) from None


def first_key_under(path, key):
    """The first full key the yaml file `path` sets under `key`: yacs names the first group the config
    lacks, the message names the key the user wrote under it."""
    import yaml

    from restore.checks import lookup
    try:
        with open(path) as f:
            node = lookup(yaml.safe_load(f), key)
    except (OSError, yaml.YAMLError):
        return key
    while isinstance(node, dict) and node:
        first = next(iter(node))
        key, node = f"{key}.{first}", node[first]
    return key


def merge_opts(cfg, opts, trainer=""):
    check_overrides(opts)  # each KEY with its VALUE
    # A method key's alias (as its authors write it) names its canonical key.
    opts = canonical_opts(opts, trainer)
    for key in opts[0::2]:
        node, _, missing = node_of(cfg, key)
        if missing is not None:
            raise ConfigError(unknown_key(cfg, key, "on the command line", cfg.TRAINER.NAME))
        if isinstance(node, dict):
            raise ConfigError(f"{key} is a group of keys, not a value; set one of "
                              f"{', '.join(sorted(node.keys()))}.")
    try:
        merge_from_list(cfg, opts)  # canonical already
    except ValueError as err:
        raise ConfigError(type_mismatch_message(err, "on the command line")) from None


# CoOp's flags -> the keys they set; a flag sets its key when given (truthy: CoOp's quirk, kept: --seed 0
# leaves SEED unchanged).
FLAG_KEYS = {"root": "DATASET.ROOT", "output_dir": "OUTPUT_DIR", "resume": "RESUME", "seed": "SEED",
             "source_domains": "DATASET.SOURCE_DOMAINS", "target_domains": "DATASET.TARGET_DOMAINS",
             "transforms": "INPUT.TRANSFORMS", "trainer": "TRAINER.NAME", "backbone": "MODEL.BACKBONE.NAME",
             "head": "MODEL.HEAD.NAME", "trust_files": "TRUST_FILES"}


def _set(cfg, key, value):
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


def reset_cfg(cfg, args):
    """Write the given flags into `cfg` (FLAG_KEYS); returns the keys they set."""
    given = [(key, getattr(args, flag)) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None)]
    for key, value in given:
        _set(cfg, key, value)
    return [key for key, _ in given]


def apply_method_flags(cfg, args):
    """Write the given method flags (MethodSpec.flags) into `cfg`; ConfigError for another trainer's flag.
    Returns the keys they set."""
    keys = []
    for spec in registry.specs():
        for flag, key in spec.flags.items():
            value = getattr(args, flag, None)
            if value is None:
                continue
            if cfg.TRAINER.NAME != spec.name:
                raise ConfigError(f"--{flag} is the flag of --trainer {spec.name} ({key}: "
                                  f"{registry.keys()[key].help}); remove it for "
                                  f"{cfg.TRAINER.NAME or 'this trainer'}.")
            _set(cfg, key, value)
            keys.append(key)
    return keys


def apply_dataset_overrides(cfg, keep=()):
    """Write the running method's overrides for DATASET.NAME (MethodSpec.dataset_overrides) into `cfg`,
    except the keys in `keep` (given on the command line, which wins); print each. Returns them as
    "KEY VALUE" strings (recorded as DATASET_OVERRIDES)."""
    name = cfg.TRAINER.NAME
    if name not in registry.names():
        return []
    from restore.checks import lookup
    applied = []
    for key, value in registry.get(name).dataset_overrides.get(cfg.DATASET.NAME, {}).items():
        if key in keep:
            log.warning(f"Note: {name}'s override for {cfg.DATASET.NAME}, {key} {value!r}, is not applied: the "
                        "command line sets the key.")
            continue
        old = lookup(cfg, key)
        value = float(value) if isinstance(old, float) and type(value) is int else value
        _set(cfg, key, value)
        applied.append(f"{key} {value!r}")
        log.info(f"Per-dataset override of {name} for {cfg.DATASET.NAME}: {key} {old!r} -> {value!r}")
    return applied


def running_trainer(args):
    """The trainer of the run `args` describe, before its config is merged (a method's key aliases may
    depend on it: restore.methods.registry.aliases): --trainer, else the last TRAINER.NAME of the KEY VALUE
    pairs, else that of the config files (the method's, then the dataset's); "" when none names one."""
    if getattr(args, "trainer", ""):
        return args.trainer
    opts = list(getattr(args, "opts", None) or [])
    named = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == "TRAINER.NAME"]
    if named:
        return str(named[-1])
    import yaml
    for path in (getattr(args, "config_file", ""), getattr(args, "dataset_config_file", "")):
        try:
            with open(path) as f:
                tree = yaml.safe_load(f)
            name = tree["TRAINER"]["NAME"]
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            continue
        if isinstance(name, str) and name:
            return name
    return ""


def setup_cfg(args, engine="native", run=False):
    """The run's config: defaults, the dataset yaml, the method yaml, the method's per-dataset overrides,
    the flags, the KEY VALUE pairs (those two as the command line: applied before the overrides here,
    which then skip the keys they set, as if applied after); then the method's derive_cfg, the smoke
    fitting and the value checks. Frozen. The trainer and dataset named are checked at once
    (`check_names`); for a `run` they must be given."""
    modules = method_modules(args)
    cfg = default_cfg(engine)
    trainer = running_trainer(args)
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file, "--dataset-config-file", trainer)
    if args.config_file:
        merge_file(cfg, args.config_file, "--config-file", trainer)
    given = reset_cfg(cfg, args) + apply_method_flags(cfg, args)
    opts = args.opts or []
    merge_opts(cfg, opts, trainer)
    given += canonical_opts(opts, trainer)[0::2]
    check_names(cfg, engine, required=run)
    written = list(cfg.DATASET_OVERRIDES)
    cfg.DATASET_OVERRIDES = apply_dataset_overrides(cfg, keep=given)
    if written and written != list(cfg.DATASET_OVERRIDES):  # e.g. a config printed by another run
        log.warning(f"Note: DATASET_OVERRIDES {written} of the config files or the command line is replaced by "
                    f"the overrides this run applied, {list(cfg.DATASET_OVERRIDES)}: train.py writes that key.")
    cfg.METHOD_MODULES = modules
    if cfg.TRAINER.NAME in registry.names() and registry.get(cfg.TRAINER.NAME).derive_cfg:
        registry.get(cfg.TRAINER.NAME).derive_cfg(cfg)  # e.g. MaPLe_FSA: its node onto RESTORE_m's keys
    fit_smoke_backbone(cfg)
    fit_backbone_inputs(cfg)
    from restore.checks import check_config
    check_config(cfg)
    cfg.freeze()
    return cfg


def fit_smoke_backbone(cfg):
    """On a smoke-test backbone (tiny-random) any config runs: INPUT.SIZE and the prompt depths
    are fitted to it, with a note that its accuracies mean nothing."""
    from restore.smoke import SMOKE_BACKBONES, SMOKE_NOTE, fit_cfg_to_backbone
    name = cfg.MODEL.BACKBONE.NAME
    if name not in SMOKE_BACKBONES or cfg.MODEL.BACKBONE.get("PATH", ""):
        return
    from restore.backbone import load_clip
    log.warning(SMOKE_NOTE.format(name=name))
    for change in fit_cfg_to_backbone(cfg, load_clip(name)):
        log.warning(f"  fitted to it: {change}")


def fit_backbone_inputs(cfg):
    """INPUT.* fitted to what the backbone was trained with, before the config is frozen and the
    run recorded (restore.pretrained.fit_inputs): what it adopts is printed; a backbone that
    cannot run as trained stops here, before any work."""
    from restore.pretrained import fit_inputs
    note = fit_inputs(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.get("PATH", ""), cfg)
    if note:
        log.warning(f"Note: {note}")


def check_names(cfg, engine, required=True):
    """The trainer, the dataset and the data folder of the merged config, checked as every entry point
    checks them (restore.cli) and before anything is read or written. A run needs a trainer and a
    dataset (`required`); --print-config prints a config without them."""
    trainers, datasets = dassl_names() if engine == "dassl" else ((), ())
    if cfg.TRAINER.NAME or required:
        check_trainer(cfg.TRAINER.NAME, trainers)
    if cfg.DATASET.NAME or required:
        from restore.data.base import DATASETS, import_readers
        import_readers(include_testbed=True)  # the registry also holds the datasets of --method-module
        check_dataset(cfg.DATASET.NAME, accept="name", source="DATASET.NAME",
                      names=sorted(set(DATASETS) | set(datasets)),
                      fix="Pass --dataset-config-file configs/datasets/<name>.yaml or set DATASET.NAME.")
    check_data_root(cfg.DATASET.ROOT, "--root")


def dassl_names():
    """(trainers, datasets) that Dassl registers itself: --engine dassl runs them too."""
    from restore.logs import kept_enabled
    with kept_enabled():  # Dassl's import disables logging below ERROR (the run's own log lines)
        from dassl.data.datasets import DATASET_REGISTRY
        from dassl.engine import TRAINER_REGISTRY
    return TRAINER_REGISTRY.registered_names(), DATASET_REGISTRY.registered_names()


def print_args(args, cfg):
    log.info("***************\n** Arguments **\n***************")
    for key in sorted(args.__dict__):
        log.info(f"{key}: {args.__dict__[key]}")
    log.info("************\n** Config **\n************")
    changed = config_changes(cfg, args.model_dir) if args.eval_only else None
    if changed is None:
        log.info(str(cfg))
        return
    # An evaluation of a trained model: its training log already holds the full config.
    log.info(f"The training run's config ({os.path.join(args.model_dir, 'log.txt')}), with these changes:")
    for key, value in changed:
        log.info(f"{key}: {value}")


def _config_items(text):
    """{dotted key: value} of a config as `print(cfg)` writes it (yaml)."""
    import yaml

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    return dict(walk(yaml.safe_load(text) or {}, ""))


def config_changes(cfg, model_dir):
    """[(key, value)] where `cfg` differs from the config printed in `model_dir`'s log.txt, or None when
    that log (or its config) cannot be read."""
    import yaml
    try:
        with open(os.path.join(model_dir, "log.txt"), encoding="utf-8") as f:
            log = f.read()
        block = log.split("** Config **\n************\n", 1)[1].split("\n** ", 1)[0]
        before = _config_items(block)
        now = _config_items(str(cfg))
    except (OSError, IndexError, yaml.YAMLError):
        return None
    if "The training run's config" in block or not before:
        return None
    return [(k, v) for k, v in now.items() if before.get(k, object()) != v] + \
           [(k, "(removed)") for k in before if k not in now]


# ---------------------------------------------------------------------------------------- engines
def use_available_cpus(cfg):
    """Threads from the CPUs this process may use (RESTORE_NUM_THREADS overrides); one note when
    DATALOADER.NUM_WORKERS asks for more workers than that (the count is kept)."""
    from restore.engine.cpus import check_num_workers, configure_threads
    configure_threads()
    check_num_workers(cfg.DATALOADER.NUM_WORKERS)


def import_registering(package):
    """Import a package and all its modules, so that they register in Dassl's registries."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        importlib.import_module(f"{package}.{info.name}")


def prepare_output(cfg, lock):
    """Once the log is open: say what the output lock took over, and remove the temporary files a
    killed run left in the output folder (ours now)."""
    from restore.engine.checkpoint import remove_partial_writes
    for note in (lock.notes if lock is not None else []):
        log.warning(note)
    remove_partial_writes(cfg.OUTPUT_DIR)


def register_dassl_trainers(cfg):
    """The Dassl engine's registries: our datasets and one trainer per registered method (also those
    registered since `trainers` was first imported); ConfigError for a trainer Dassl does not know."""
    import_registering("datasets")  # these import Dassl (restore.logs.kept_enabled)
    import_registering("trainers")
    import trainers
    trainers.register_methods()
    check_trainer(cfg.TRAINER.NAME, trainers.base.TRAINER_REGISTRY.registered_names())


def system_info(engine, cfg):
    """The "** System info **" block: Dassl's collect_env_info (what Dassl users read in log.txt) for the
    Dassl engine, a one-line summary for the native one."""
    import torch
    if engine == "dassl":
        from dassl.utils import collect_env_info
        log.info("Collecting env info ...")
        return f"** System info **\n{collect_env_info()}\n"
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu"
    return f"** System info **\nPyTorch {torch.__version__}, Python {sys.version.split()[0]}, device: {device}"


ENGINE_TITLES = {"native": "native (restore.engine)", "dassl": "dassl (Dassl.pytorch trainers from trainers/)"}


def run(args, cfg, engine, lock=None):
    """Prepare the run once for either engine (seed, log.txt on rank 0, the output folder, threads, the
    printed arguments, config and system), build the engine's trainer and run it."""
    import torch

    from restore.distributed import is_primary
    from restore.engine import set_random_seed, setup_logger
    registry.get(cfg.TRAINER.NAME)  # UserError naming the registered methods
    if engine == "dassl":
        register_dassl_trainers(cfg)
    if cfg.SEED >= 0:
        log.info(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if is_primary():  # under torchrun, rank 0 alone writes log.txt (the others log errors only)
        setup_logger(cfg.OUTPUT_DIR)
        prepare_output(cfg, lock)
    log.info(f"Engine: {ENGINE_TITLES[engine]}")
    use_available_cpus(cfg)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    log.info(system_info(engine, cfg))
    if engine == "dassl":
        from dassl.engine import build_trainer
        trainer = build_trainer(cfg)
    else:
        from restore.engine import Trainer
        trainer = Trainer(cfg)
    return run_trainer(trainer, args, cfg, engine)


# ------------------------------------------------------------------------------------ run record
def eval_args(args):
    """What an --eval-only run evaluates (recorded and compared), or None for training."""
    return {"model_dir": args.model_dir, "load_epoch": args.load_epoch} if args.eval_only else None


def check_finished(args, cfg):
    """--check-finished (scripts/common.sh): exit 0 when OUTPUT_DIR holds a finished run of these
    settings, 3 when it holds no finished run; one that differs is an error (exit 1)."""
    from restore.engine.provenance import check_output_dir, skip_message
    if not check_output_dir(cfg, eval_args(args)):
        sys.exit(3)
    print(skip_message(cfg.OUTPUT_DIR))
    sys.exit(0)


def record_run(trainer, args, cfg, engine):
    from restore.engine.provenance import record_run as record
    record(cfg, trainer.dm.dataset, engine, eval_args(args))


def run_trainer(trainer, args, cfg, engine):
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)  # checks the checkpoint's record
        record_run(trainer, args, cfg, engine)
        return trainer.test()
    record_run(trainer, args, cfg, engine)
    if args.no_train:
        return None
    return trainer.train()  # a method with nothing to train (ZeroshotCLIP) is evaluated directly


def user_errors():
    """Exceptions that mean "the user must change something"; reported as one message."""
    from restore.backbone import BackboneError
    from restore.engine import (CheckpointFileError, NonFiniteLossError, OptimizerError,
                                PrecisionError, ScheduleError)
    from restore.methods import CheckpointError
    # ValueError last: the methods and the dataset layer report bad config values with it. OSError: a
    # read-only or full output disk, a folder that cannot be created.
    errors = [UserError, ConfigError, BackboneError, CheckpointError, CheckpointFileError,
              NonFiniteLossError, OptimizerError, PrecisionError, ScheduleError, ValueError, OSError]
    try:
        from restore.data import DatasetError
        errors.append(DatasetError)
    except ImportError:
        pass
    return tuple(errors)


WORKER_MARK = " in DataLoader worker process"


def error_message(err) -> str:
    """The line to show for a user error. An error raised in a DataLoader worker reaches the main
    process as "Caught X in DataLoader worker process N. Original Traceback ..." with the worker's
    message at the end: keep that message. An OSError names its file and what to do."""
    text = str(err)
    if text.startswith("Caught ") and WORKER_MARK in text.split("\n", 1)[0]:
        head = f"{type(err).__module__}.{type(err).__qualname__}: "
        at = text.rfind(head)
        text = text[at + len(head):].strip() if at >= 0 else text.strip().splitlines()[-1]
    elif isinstance(err, OSError) and not isinstance(err, UserError) and err.strerror:
        from restore.files import describe_os_error
        text = describe_os_error(err)
    return text.strip()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        preparse_method_modules(argv)  # their methods' names and flags are in the parser and --help
        parser = build_parser()
    except UserError as err:
        if os.environ.get("RESTORE_TRACEBACK"):
            raise
        sys.exit(f"Error: {err}")
    args = parser.parse_args(argv)
    if args.seed == 0:
        log.warning("Note: --seed 0 is ignored, as in CoOp (`if args.seed:`); pass `SEED 0` as an option "
                    "to fix the seed to 0.")
    from restore.distributed import close_distributed, hand_over_error, init_distributed, world_info_from_env
    from restore.engine.logger import close_logger
    from restore.lock import output_lock
    from restore.engine.stop import RunStopped
    created = None  # the output folder, when this run created it
    output_dir, started = None, time.time()
    stopped = None  # RunStopped: a signal stopped the run after saving its state
    try:
        errors = user_errors()
        try:
            engine = choose_engine(args.engine, processes=world_info_from_env()[2])
            cfg = setup_cfg(args, engine, run=not args.print_config)
            output_dir = cfg.OUTPUT_DIR
            if args.print_config:
                print(cfg)
                return None
            if args.check_finished:
                return check_finished(args, cfg)
            from restore.engine.provenance import check_output_dir
            check_output_dir(cfg, eval_args(args))  # before any work: nothing to mix or overwrite
            init_distributed(cfg)  # under torchrun; before the lock, which rank 0 takes for all
            new = bool(cfg.OUTPUT_DIR) and not os.path.exists(cfg.OUTPUT_DIR)
            # One run per output folder; what a killed run left half-written is removed first.
            with output_lock(cfg.OUTPUT_DIR) as lock:
                created = cfg.OUTPUT_DIR if new and lock is not None else None  # rank 0 holds the lock
                result = run(args, cfg, engine, lock)
        except RunStopped as stop:
            log.warning(str(stop))
            stopped = stop
        except errors as err:
            if os.environ.get("RESTORE_TRACEBACK"):
                raise
            message = f"Error: {error_message(err)}"
            log.error(f"{message}\n(set RESTORE_TRACEBACK=1 to see the traceback)")
            hand_over_error(restore.logs.leave_error(output_dir, message), started)  # torchrun: to log.txt
            sys.exit(1)
        except Exception:
            # Under torchrun, a collective fails on the ranks whose peer stopped on an error: that rank
            # printed its line; rank 0 puts it into log.txt, and no rank adds a traceback of its own.
            if restore.logs.stopped_by_peer(output_dir, started) and not os.environ.get("RESTORE_TRACEBACK"):
                sys.exit(1)
            raise
    finally:
        closing = close_logger()  # the log's last lines could not be written: the run's result is not in it
        close_distributed()
        if created:
            remove_if_not_started(created)
    if closing is not None:
        log.error(f"Error: {error_message(closing)}")
        sys.exit(1)
    if stopped is not None:
        stopped.finish()  # the handler bound before ours (submitit's requeue), else exit 128 + the signal
    return result


def remove_if_not_started(folder):
    """Remove the output folder this run created when the run stopped before it started (no run record:
    refused by a check of its data, checkpoint or backbone, or interrupted while preparing), so that
    no folder, log or lock is left to mistake for a run."""
    from restore.engine.provenance import RUN_INFO
    if not os.path.exists(os.path.join(folder, RUN_INFO)):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
