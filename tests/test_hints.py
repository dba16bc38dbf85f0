"""Every hint a message gives points the right way: the config keys, command-line flags and script
variables that the project's text names exist where the message sends the user.

Scanned: every string literal of the code users run (restore/, train.py, cluster.py, parse_test_res.py,
testbed_benchmark.py, sweep/, datasets/, trainers/) and the scripts (scripts/**/*.sh). That a named file or
documentation section exists is tests/test_docs_references.py's; that a hint is the fix is asserted where
each message is tested (e.g. test_backbone_pretraining.py, test_data_complete.py, test_cli_scripts.py).
"""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sorted([*REPO.glob("restore/**/*.py"), *REPO.glob("sweep/*.py"), *REPO.glob("datasets/*.py"),
                 *REPO.glob("trainers/*.py"), *(REPO / f for f in ("train.py", "cluster.py",
                                                                    "parse_test_res.py",
                                                                    "testbed_benchmark.py",
                                                                    "benchmark.py"))])
SCRIPTS = sorted(REPO.glob("scripts/**/*.sh"))
# Flags of the other programs a message tells the user to run: torchrun, pip, git.
EXTERNAL_FLAGS = {"--nproc_per_node", "--standalone", "--no-build-isolation", "--porcelain", "--untracked-files"}
TOP_NODES = ("INPUT", "DATASET", "DATALOADER", "MODEL", "OPTIM", "TRAIN", "TEST", "TRAINER")
KEY = re.compile(r"\b(?:%s)(?:\.[A-Z][A-Z0-9_]*)+\b" % "|".join(TOP_NODES))
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


def python_strings(path):
    """The string literals of a Python file (f-strings: their literal parts)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def texts():
    for path in PYTHON:
        for text in python_strings(path):
            yield path.relative_to(REPO), text
    for path in SCRIPTS:
        yield path.relative_to(REPO), path.read_text()


def defined_flags():
    """Every flag the project's parsers define: add_argument("--x") literally, plus the ones built
    from tables (cluster.py's Slurm settings, the release's MaPLe_FSA flags)."""
    import cluster
    from restore.methods import registry
    flags = {f"--{k.replace('_', '-')}" for k in cluster.SLURM}
    flags |= {flag if flag.startswith("--") else f"--{flag}" for spec in registry.specs() for flag in spec.flags}
    for path in [*PYTHON, *REPO.glob("tools/*.py"), *REPO.glob("benchmarks/*.py")]:
        for call in re.finditer(r"add_argument\(\s*((?:\"[^\"]+\"\s*,\s*)+)", path.read_text()):
            flags |= set(re.findall(r"\"(--[^\"]+)\"", call.group(1)))
    return flags | {"--help"}


# Keys named in docstrings and messages as examples of a form, not as keys of this config: a node path of
# a method of your own, an author's spelling of a key that a declared alias would map, a key under the
# wrong node (restore/cli.py: the message names the node that has it).
EXAMPLE_KEYS = {"TRAINER.MYMETHOD", "TRAINER.COOP.W", "TRAINER.RESTORE.N_CTX"}


def test_config_keys_named_in_messages_exist():
    from restore.config import get_cfg_default
    cfg = get_cfg_default()

    def exists(key):
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True
    from restore.methods import registry
    aliases = set(registry.aliases())
    missing = sorted({f"{where}: {key}" for where, text in texts() for key in KEY.findall(text)
                      if not exists(key) and key not in aliases and key not in EXAMPLE_KEYS})
    assert not missing, "keys named in the project's text that the config lacks:\n" + "\n".join(missing)


def test_flags_named_in_messages_exist():
    defined = defined_flags() | EXTERNAL_FLAGS
    missing = sorted({f"{where}: {flag}" for where, text in texts() for flag in FLAG.findall(text)
                      if flag not in defined})
    assert not missing, "flags named in the project's text that no parser defines:\n" + "\n".join(missing)


def test_script_variables_named_in_hints_are_read_by_the_scripts():
    """"use SHOTS=2", "set LOADEP": each variable a script's message names is one the scripts read."""
    common = (REPO / "scripts" / "common.sh").read_text()
    hints = re.findall(r'(?:die|fix=)\s*"([^"]*)"', common)
    named = {v for hint in hints for v in re.findall(r"\b(?:use|set|Set) ([A-Z][A-Z_]+)\b", hint)}
    assert {"SHOTS", "SEEDS", "DATA", "OUTPUT", "LOADEP"} <= named
    for variable in named:
        assert re.search(r"\$\{?%s\b" % variable, common), variable


@pytest.mark.parametrize("text, found", [
    ("set MODEL.BACKBONE.PATH to it", ["MODEL.BACKBONE.PATH"]),
    ("TRAINER.<node>.PREC or DATALOADER.*.SAMPLER", []),  # placeholders are not keys
    ("FS.WEIGHT (of TRAINER.RESTORE)", ["TRAINER.RESTORE"]),
])
def test_the_key_pattern(text, found):
    assert KEY.findall(text) == found
