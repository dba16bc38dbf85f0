"""What every command line of the project checks, in one place and in one message form, without torch.

    check_trainer(name)          a registered method (train.py, restore.legacy, testbed_benchmark.py, cluster.py)
    check_dataset(name, accept)  a dataset config name or DATASET.NAME (train.py, the scripts,
                                 restore.data.check, testbed_benchmark.py, cluster.py)
    unknown_key(cfg, key, ...)   the message for a config key the config lacks (yaml files, KEY VALUE pairs)
    check_data_root(path, flag)  a folder of data, not the repository's `datasets/` package (--root, DATA, --data)
    check_overrides(opts, where) trailing KEY VALUE pairs, each KEY with its VALUE (train.py, the scripts, the sweep)
    ArgumentParser               argparse's parser with one-line errors (every Python entry point)
    dataset_configs(), BACKBONES the names --help lists

Every refusal reads the same (`unknown`): "Unknown <kind> '<name>' (<where it was given>). Did you mean
<name>? Valid <kinds>: ... <the fix>", a name that differs only in case suggested first
(restore.suggest.closest: RESTORE_M -> RESTORE_m). Nothing here imports torch, so an entry point answers
--help and refuses a bad name at once, before a model or a dataset is built and before it writes anything.

The scripts (scripts/common.sh) run the same checks through this module:

    python -m restore.cli dataset NAME          prints configs/datasets/<name>.yaml, or the error (exit 1)
    python -m restore.cli data-root PATH SOURCE  exit 1 with the error when PATH may not hold data
    python -m restore.cli overrides WHERE KEY VALUE ...   exit 1 with the error when a KEY lacks its VALUE
"""
import argparse
import functools
import os
import re
import sys

from .errors import UserError
from .suggest import closest, did_you_mean

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_CONFIG_DIR = os.path.join("configs", "datasets")  # relative to REPOSITORY, as the scripts pass it
# The repository's Python package of Dassl dataset adapters (datasets/): a name users also give a data folder.
DATASETS_PACKAGE = os.path.join(REPOSITORY, "datasets")

# MODEL.BACKBONE.NAME values besides open_clip:MODEL/TAG: OpenAI's released CLIPs (clip.available_models())
# and the project's small ones (restore.backbone._small_backbones). Listed here so that --help needs no
# torch; tests/test_cli_entry_points.py holds it equal to restore.backbone.available_backbones().
BACKBONES = ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14",
             "ViT-L/14@336px", "tiny-random", "tiny-random-resnet", "testbed")

TRAINER_FIX = ("A method of another package registers when its module is imported (--method-module, "
               "METHOD_MODULES).")


# ------------------------------------------------------------------------------------- the message
def unknown(kind, name, valid, source="", fix="", hint=None, listing=None) -> str:
    """The one message for a `name` that is not among `valid`:

        Unknown trainer 'RESTORE_M' (--trainer). Did you mean RESTORE_m? Valid trainers: ... <fix>

    ("No trainer given (--trainer). ..." for an empty name). `hint` replaces the did-you-mean over
    `valid`, `listing` the "Valid <kind>s: ..." sentence."""
    where = f" ({source})" if source else ""
    head = f"Unknown {kind} {name!r}{where}." if name else f"No {kind} given{where}."
    if hint is None:
        hint = did_you_mean(name, valid) if name else ""
    if listing is None:
        listing = f"Valid {kind}s: {', '.join(map(str, valid))}."
    return " ".join(part for part in (head + hint, listing, fix) if part)


# ------------------------------------------------------------------------------------------ trainers
def check_trainer(name, also=(), source="--trainer") -> str:
    """`name` when it is a registered method (restore.methods.registry) or one of `also` (Dassl's own
    trainers under --engine dassl); UserError otherwise, suggesting the closest name."""
    from .methods import registry
    valid = registry.names()
    valid += [n for n in also if n not in valid]
    if name in valid:
        return name
    raise UserError(unknown("trainer", name, valid, source, TRAINER_FIX))


# ------------------------------------------------------------------------------------------ datasets
@functools.lru_cache(maxsize=None)
def _dataset_configs() -> tuple:
    import yaml
    folder = os.path.join(REPOSITORY, DATASET_CONFIG_DIR)
    found = []
    for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if file.endswith(".yaml"):
            with open(os.path.join(folder, file)) as f:
                tree = yaml.safe_load(f) or {}
            name = (tree.get("DATASET") or {}).get("NAME") if isinstance(tree, dict) else None
            if name:
                found.append((file[:-len(".yaml")], name))
    return tuple(found)


def dataset_configs() -> dict:
    """{config name: DATASET.NAME} of the dataset configs, configs/datasets/<config name>.yaml (the
    names the scripts take and --dataset-config-file points at), read without building a dataset."""
    return dict(_dataset_configs())


def dataset_config_file(config: str) -> str:
    """The config file of a dataset config name, relative to the repository."""
    return os.path.join(DATASET_CONFIG_DIR, f"{config}.yaml")


def check_dataset(name, accept="either", source="", fix="", configs=None, names=None) -> str:
    """The DATASET.NAME that `name` stands for; UserError otherwise, suggesting the closest name.

    accept   "config": a config name (oxford_pets; the scripts, the sweep's --datasets),
             "name": a DATASET.NAME (OxfordPets; train.py's DATASET.NAME), "either" (restore.data.check).
    configs  {config name: DATASET.NAME} accepted (default: every dataset config, `dataset_configs()`).
    names    the DATASET.NAMEs accepted (default: those the configs name; train.py passes the dataset
             registry's, which holds the datasets other packages register too).
    A name of the other kind is suggested as its counterpart: OxfordPets -> oxford_pets."""
    configs = dataset_configs() if configs is None else dict(configs)
    names = list(dict.fromkeys(configs.values())) if names is None else list(names)
    if accept in ("config", "either") and name in configs:
        return configs[name]
    if accept in ("name", "either") and name in names:
        return name
    if accept == "config":
        valid, listing = list(configs), None
        counterparts = {n.lower(): c for c, n in configs.items()}  # OxfordPets -> oxford_pets
    elif accept == "name":
        valid, listing = names, None
        counterparts = {c.lower(): n for c, n in configs.items() if n in names}  # dtd -> DescribableTextures
    else:
        valid, counterparts = list(configs) + names, {}
        listing = "Valid datasets: " + ", ".join(f"{c} ({n})" for c, n in configs.items()) + \
                  "".join(f", {n}" for n in names if n not in configs.values()) + "."
    same_case = next((v for v in valid if v.lower() == name.lower()), None)
    match = (same_case or counterparts.get(name.lower()) or closest(name, valid)) if name else None
    hint = f" Did you mean {match}?" if match else ""
    raise UserError(unknown("dataset", name, valid, source, fix, hint=hint, listing=listing))


# ------------------------------------------------------------------------------------- config keys
# A dotted config key as the overrides write it (OPTIM.MAX_EPOCH): no value of a key looks like this.
DOTTED_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")
KEY_LIKE = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")  # what could be meant as a key (SEED, OPTIM.LR, optim.lr)


def check_overrides(opts, where="on the command line") -> list:
    """`opts` (KEY VALUE ...) when every KEY has its VALUE; UserError otherwise, naming the KEY whose VALUE is
    missing: the last word of an odd count, or a key followed by another dotted key (`OPTIM.MAX_EPOCH
    OPTIM.LR 0.1`: MAX_EPOCH's value is missing, where pairing by position would set it to "OPTIM.LR").
    `where` says where the pairs were given ("on the command line", "after DATASET SEED")."""
    opts = [str(o) for o in opts]
    for i in range(0, len(opts), 2):
        key = opts[i]
        if KEY_LIKE.match(key) and (i + 1 == len(opts) or DOTTED_KEY.match(opts[i + 1])):
            raise UserError(f"Missing value for {key} ({where}): config overrides are KEY VALUE pairs, "
                            "e.g. OPTIM.MAX_EPOCH 5.")
    if len(opts) % 2:
        raise UserError(f"Config overrides ({where}) must be KEY VALUE pairs; got an odd number of words: "
                        f"{' '.join(opts)}")
    return opts


def node_of(cfg, key):
    """(the deepest existing node on the dotted `key`, its dotted path, the first part missing there)."""
    node, prefix = cfg, []
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return node, ".".join(prefix), part
        node, prefix = node[part], prefix + [part]
    return node, ".".join(prefix), None


def _all_keys(tree, prefix=""):
    """Every dotted key of a nested config, groups included."""
    for k, v in tree.items():
        yield f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _all_keys(v, f"{prefix}{k}.")


def keys_ending_with(cfg, tail, trainer=""):
    """The full keys that end in `tail` (case-insensitively): every key and group of `cfg` (the general
    keys and every declared method node) and every alias a run of `trainer` reads
    (restore.methods.registry.aliases), named by its canonical key. When the `trainer`'s own nodes hold
    some of them, only those."""
    from .methods import registry
    want = "." + tail.lower()
    found = [k for k in _all_keys(cfg) if ("." + k.lower()).endswith(want)]
    found += [target.key for alias, target in registry.aliases(trainer or None).items()
              if ("." + alias.lower()).endswith(want) and target.key not in found]
    own = registry.method_nodes(trainer) if trainer else []
    mine = [k for k in found if any(k == node or k.startswith(node + ".") for node in own)]
    return mine or found


def unknown_key(cfg, key, source, trainer="") -> str:
    """The message for a `key` that `cfg` lacks (`source`: "on the command line", "in <file>"): the key
    it most likely meant (one that differs only in case under the same node; else the same key under
    another node, preferring the nodes `trainer` reads, TRAINER.RESTORE.N_CTX -> TRAINER.MAPLE.N_CTX for
    RESTORE_m; else a close name under the same node) and the keys valid where it went wrong."""
    node, where, missing = node_of(cfg, key)
    if not isinstance(node, dict):
        return unknown("config key", key, [], source, listing=f"{where} is a value, not a group of keys.")
    valid = sorted(node.keys())
    fmt = f"{where}.{{}}" if where else "{}"
    tail = key[len(where) + 1:] if where else key
    elsewhere = keys_ending_with(cfg, tail, trainer)
    same_case = any(v.lower() == missing.lower() for v in valid)
    if same_case or not elsewhere:
        match = closest(missing, valid)  # a case-only match first, else the closest name
        hint = f" Did you mean {fmt.format(match)}?" if match else ""
    elif len(elsewhere) == 1:
        hint = f" Did you mean {elsewhere[0]}?"
    else:
        hint = f" Did you mean one of {', '.join(elsewhere)}?"
    under = f"under {where}" if where else "at the top level"
    return unknown("config key", key, valid, source, hint=hint,
                   listing=f"Valid keys {under}: {', '.join(valid)}.")


# ------------------------------------------------------------------------------------- data folders
def check_data_root(path, source="--root") -> str:
    """`path`, unless it is the repository's `datasets/` Python package (the Dassl dataset adapters) or
    a folder inside it: `DATA=./datasets` in the repository would mix the datasets with its code (and a
    testbed run would generate its images there). UserError naming `source` (a flag, or an environment
    variable such as DATA) and the fix."""
    if path and os.path.isfile(os.path.join(DATASETS_PACKAGE, "__init__.py")):
        real, package = os.path.realpath(os.path.expanduser(path)), os.path.realpath(DATASETS_PACKAGE)
        if real == package or real.startswith(package + os.sep):
            variable = source.isupper()
            where = "is" if real == package else "is inside"
            raise UserError(f"{source}{'=' if variable else ' '}{path} {where} the repository's datasets/ "
                            "package (the Dassl dataset adapters, Python code), not a folder of data: keep the "
                            f"datasets in a folder of their own (DATASETS.md) and "
                            f"{'set ' + source + ' to' if variable else 'point ' + source + ' at'} it.")
    return path


# ------------------------------------------------------------------------------------ argument errors
class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, in the project's form, exit status 2 as argparse's:

        Error: argument --seed: invalid int value: 'one' (python train.py --help lists the arguments)

    argparse prints its whole usage block above that line, which for a parser of many options buries it.
    Subparsers are of the same class (argparse's default `parser_class`)."""

    def error(self, message):
        command = f"python {self.prog}" if self.prog.endswith(".py") else self.prog
        self.exit(2, f"Error: {message} ({command} --help lists the arguments)\n")


# ---------------------------------------------------------------------------------- for the scripts
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if len(argv) == 2 and argv[0] == "dataset":
            check_dataset(argv[1], accept="config")
            print(dataset_config_file(argv[1]))
            return 0
        if len(argv) == 3 and argv[0] == "data-root":
            check_data_root(argv[1], argv[2])
            return 0
        if len(argv) >= 2 and argv[0] == "overrides":
            check_overrides(argv[2:], argv[1])
            return 0
    except UserError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print("usage: python -m restore.cli dataset NAME | data-root PATH SOURCE | overrides WHERE [KEY VALUE ...]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
