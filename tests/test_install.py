"""The test install: README's commands are the ones CI runs, in a fresh virtual environment, and the
`test` extra brings every third-party package the tests import."""
import ast
import os
import re
import sys

import pytest

from test_engine_fakes import ROOT

MARK = "# --- README: test install ---\n"


def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def ci_commands():
    return read(".ci/run").split(MARK, 1)[1].strip().splitlines()


def test_ci_runs_readme_commands_word_for_word():
    blocks = re.findall(r"```bash\n(.*?)```", read("README.md"), re.S)
    commands = ci_commands()
    assert commands == ['pip install -e ".[test]"', "python -m pytest -q"]
    assert commands in [block.strip().splitlines() for block in blocks]


def test_ci_uses_a_fresh_environment():
    script = read(".ci/run").split(MARK, 1)[0]
    assert re.search(r'^python3 -m venv "\$tmp/venv"$', script, re.M)
    assert re.search(r'^source "\$tmp/venv/bin/activate"$', script, re.M)
    assert "system-site-packages" not in script and "set -euo pipefail" in script


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="sys.stdlib_module_names: Python >= 3.10")
def test_test_extra_covers_the_tests_imports():
    """Every top-level module imported by tests/ is ours, the standard library's, or installed by
    requirements.txt or the `test` extra (module names as the packages install them)."""
    provides = {"torch": "torch", "torchvision": "torchvision", "clip": "openai-clip", "yacs": "yacs",
                "numpy": "numpy", "PIL": "Pillow", "tabulate": "tabulate", "tqdm": "tqdm",
                "matplotlib": "matplotlib", "sklearn": "scikit-learn", "tensorboard": "tensorboard",
                "pytest": "pytest", "open_clip": "open-clip-torch", "submitit": "submitit",
                "setuptools": "setuptools", "pkg_resources": "setuptools", "scipy": "scipy",
                "yaml": "yacs"}  # PyYAML comes with yacs, which requires it
    requirements = {re.split(r"[<>=\[ ]", line)[0].lower()
                    for line in read("requirements.txt").splitlines() if line and not line.startswith("#")}
    extra = re.search(r"^test = \[(.*)\]$", read("pyproject.toml"), re.M).group(1)
    requirements |= {re.split(r"[<>=\[ ]", name.strip().strip('"'))[0].lower() for name in extra.split(",")}
    ours = {"dassl"}  # optional: its tests skip
    for folder in (ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "benchmarks")):  # the project's modules
        ours |= {f[:-3] if f.endswith(".py") else f for f in os.listdir(folder)
                 if f.endswith(".py") or os.path.isdir(os.path.join(folder, f))}
    missing = set()
    for name in os.listdir(os.path.join(ROOT, "tests")):
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(read(os.path.join("tests", name)))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in ours or top in sys.stdlib_module_names:
                    continue
                if provides.get(top, top).lower() not in requirements:
                    missing.add((name, top))
    assert missing == set()
