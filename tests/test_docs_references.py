"""Every file and section the project's own text cites is in the repository.

Scanned: Markdown, yaml, shell and JSON files whole; in Python, every comment and string literal of the
project's code (docstrings, help texts, messages) and the comments and docstrings of the tests (their other
strings are fabricated file names). A citation fails when it
- names a file (*.md, *.py, *.yaml, *.sh, *.json) that no path of the repository matches,
- cites a numbered section of a Markdown file ("docs/METHOD.md section 2", "X.md 6.6", "§3") that is not
  a numbered heading there, or a section by its title (README, "Several GPUs"; DATASETS.md "Caches") that
  is no heading there,
- points into the reference material outside the repository (a `shared/...` path) or, with `../`, out of
  the repository.
Not citations: URLs, absolute or home paths (/path/to/data/x.json), names with placeholders
(configs/trainers/<T>/testbed.yaml, {a,b}.sh, $DATA/x.json, split_zhou_*.json), and the few upstream and
data file names listed in EXTERNAL.
"""
import ast
import io
import os
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve()
EXTS = ("md", "py", "yaml", "sh", "json")

# Files that the text names on purpose although they are not (and must not be) in the repository.
EXTERNAL = [
    r"split_\w+\.json",             # a dataset's split file (DATASETS.md), in the user's data folder
    r"testbed\.json",               # written by the testbed generator into each dataset folder
    r"submitted\.json",             # written by cluster.py into the output folder
    r"(before|after)\.json",        # tools/fingerprint.py's example output files
    r"(OUTPUT_DIR/)?run_info\.json",  # every run's record, written into its output folder
    r"cat_to_name\.json",           # Oxford Flowers' class names, in the user's data folder
    r"(\w+/)*setup\.py",            # Dassl's installer (README's install steps)
    r"(\w+/)*requirements\.txt",
    r"clip/model\.py",              # the openai-clip package's model, used unmodified
    r"dassl/[\w/]+\.py",            # Dassl's modules, described where the behaviour is reproduced
    r"(trainers/)?maple_fsa\.py",   # the official RESTORE release's trainer
    r"run_maple_fsa\.sh",           # the release's run script
    r"memory_originals\.py",        # the reference harness's script that measured benchmarks/memory_originals.json
    r"(OUT/)?gpu_check\.md",         # benchmarks/gpu_check.py's report, written into its output folder
    r"clip/clip\.py",                # the originals' copy of OpenAI's clip module (patched by gpu_check_prepare)
    r"(trainers/)?(kgcoop|prograd)\.py",  # KgCoOp's and ProGrad's original trainers (REPRODUCING.md section 12)
    r"(trainers/)?tcp\.py", r"trainers/clip_text/model\.py",  # TCP's trainer and text encoder (section 16)
    r"(run|prograd)\.sh",           # their run scripts
    r"(trainers/)?(elp_\w+|optim)\.py|configs\.py",  # DePT's original trainers, optimiser and task table
    r"configs/trainers/ExtrasLinearProbe\w+/\w+\.yaml",  # DePT's original configs (ours: configs/trainers/*_DePT)
    r"(trainers/mmadapter|clip/gsl)\.py|run_examples\.sh",  # MMA's original trainer, gradient op, run script
    r"(trainers/)?(coprompt|constants)\.py",  # CoPrompt's original trainer and per-dataset table
    r"configs/trainers/coprompt\.yaml",       # its config (ours: configs/trainers/CoPrompt/coprompt.yaml)
    r"(gpt_file/)?(<dataset>|<name>|\w+)_prompt\.json",  # its descriptions files, the user's
    r"base2new_(train|test)_coprompt\.sh",  # its run scripts
]
EXTERNAL_RE = re.compile("(?:" + "|".join(EXTERNAL) + r")\Z")

URL = re.compile(r"[a-zA-Z][\w+.-]*://\S+")
# A file name: path characters only, not glued to a placeholder, an absolute or home path, or a longer name.
FILE = re.compile(r"(?<![\w./\-<>{}*$~@:\\])((?:\.\./)*[A-Za-z0-9_][\w.\-/+]*\.(?:" + "|".join(EXTS) +
                  r"))(?![\w\-*{<>/$]|\.\w)")
PARENT = re.compile(r"(?<![\w.])((?:\.\./)+[\w.\-/]*)")
SHARED = re.compile(r"(?<![\w\-])shared/(?:docs|reference|tools)\b")
NUM = r"\d+(?:\.\d+)*"
SECTION = re.compile(r"(?<![\w./\-<>{}*$~@:])([\w.\-/]*\w\.md)`?(?:'s)?,?\s+(?:(?:sections?|§|s\.)\s*(" + NUM +
                     r"(?:\s*(?:-|–|,|and)\s*" + NUM + r")*)|(\d+\.\d+(?:\.\d+)*)\b)")
SECTION_SIGN = re.compile(r"([\w.\-/]*\w\.md)`?\s*§\s*(" + NUM + ")")
HEADING = re.compile(r"^#+\s+(" + NUM + r")[.)]?\s", re.M)
# A section cited by its title in double quotes (escaped in a Python string), after the file's name.
NAMED = re.compile(r'(?<![\w./\-])(README(?:\.md)?|[\w.\-/]*\w\.md)`?(?:\'s)?,?\s+\\?"([^"\\\n]+)\\?"')
TITLE = re.compile(r"^#+\s+(?:" + NUM + r"[.)]?\s+)?(.+?)\s*$", re.M)


def repository_files():
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        files = [REPO / line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk it
        skip = {".git", "output", "data", "__pycache__", ".pytest_cache", ".gpu_check"}  # .gpu_check: not ours
        files = [Path(d) / f for d, dirs, names in os.walk(REPO)
                 for f in names if not dirs.__setitem__(slice(None), [x for x in dirs if x not in skip])]
    return sorted({p for p in files if p.is_file()})  # a path in a merge conflict is listed per stage


FILES = repository_files()
RELATIVE = {p.relative_to(REPO).as_posix() for p in FILES}
BASENAMES = {p.name for p in FILES}
DIRS = {Path(r).parent.as_posix() for r in RELATIVE} | {"."}


def python_text(path):
    """Comments and string literals (project code), or comments and docstrings (tests)."""
    source = path.read_text(encoding="utf-8")
    parts = []
    is_test = path.relative_to(REPO).parts[0] == "tests"
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and not is_test):
            parts.append(tok.string)
    if is_test:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    parts.append(doc)
    return "\n".join(parts)


def scanned():
    for path in FILES:
        if path == SELF or path.suffix.lstrip(".") not in EXTS:
            continue
        text = python_text(path) if path.suffix == ".py" else path.read_text(encoding="utf-8")
        yield path, URL.sub(" ", text)


def resolve(name, citing):
    """The repository path `name` refers to from file `citing`, or None."""
    rel_dir = citing.parent.relative_to(REPO).as_posix()
    for candidate in (name, os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")):
        if candidate in RELATIVE or candidate in DIRS:
            return candidate
    if "/" not in name:
        matches = sorted(r for r in RELATIVE if r.rsplit("/", 1)[-1] == name)
        return matches[0] if matches else None
    matches = sorted(r for r in RELATIVE if r.endswith("/" + name))
    return matches[0] if matches else None


def problems_in(path, text):
    where = path.relative_to(REPO).as_posix()
    found = []
    for m in SHARED.finditer(text):
        found.append(f"{where}: points outside the repository: {text[m.start():m.end() + 30].split()[0]}")
    for m in PARENT.finditer(text):
        target = os.path.normpath(os.path.join(path.parent, m.group(1)))
        if not (target == str(REPO) or target.startswith(str(REPO) + os.sep)):
            found.append(f"{where}: '{m.group(1)}' points outside the repository")
        elif not os.path.exists(target):
            found.append(f"{where}: '{m.group(1)}' is not in the repository")
    for m in FILE.finditer(text):
        name = m.group(1)
        if name.startswith("../") or EXTERNAL_RE.match(name):
            continue  # ../ paths are checked above
        if resolve(name, path) is None:
            found.append(f"{where}: names {name}, which is not in the repository")
    for m in list(SECTION.finditer(text)) + list(SECTION_SIGN.finditer(text)):
        name, numbers = m.group(1), m.group(2) or m.group(3) if m.re is SECTION else m.group(2)
        target = resolve(name, path)
        if target is None:
            continue  # reported as a file name above
        headings = set(HEADING.findall((REPO / target).read_text(encoding="utf-8")))
        for number in re.findall(NUM, numbers):
            if number not in headings:
                found.append(f"{where}: cites {name} section {number}, but {target} has no heading "
                             f"numbered {number} (it has: {', '.join(sorted(headings)) or 'none'})")
    for m in NAMED.finditer(text):
        name = "README.md" if m.group(1) == "README" else m.group(1)
        target = resolve(name, path)
        if target is None:
            continue  # reported as a file name above
        titles = TITLE.findall((REPO / target).read_text(encoding="utf-8"))
        if m.group(2) not in titles:
            found.append(f'{where}: cites {name} "{m.group(2)}", but {target} has no heading of that title')
    return list(dict.fromkeys(found))


def test_every_citation_points_into_the_repository():
    problems = [p for path, text in scanned() for p in problems_in(path, text)]
    assert not problems, "\n" + "\n".join(problems)


# -------------------------------------------------------------- the checker itself catches what it should
@pytest.mark.parametrize("text,expected", [
    ("see docs/METHOD.md section 2", None),
    ("see docs/METHOD.md sections 2-4", None),
    ("see docs/METHOD.md section 12", "no heading numbered 12"),
    ("ANCHORS.md 6.6", "names ANCHORS.md"),
    ("docs/METHOD.md §99", "no heading numbered 99"),
    ("(shared/reference/ANCHORS.md 1.5)", "points outside the repository"),
    ("see ../shared/docs/TESTBED.md", "points outside the repository"),
    ("configs/trainers/CoOp/missing.yaml", "names configs/trainers/CoOp/missing.yaml"),
    ("the spec is METHOD_SPEC.md", "names METHOD_SPEC.md"),
    ("configs/trainers/<T>/testbed.yaml, /path/to/x.json, split_zhou_Food101.json, model.pth.tar-10", None),
    ("https://github.com/KaiyangZhou/Dassl.pytorch/blob/master/setup_x.py", None),
    ('source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"', None),
    ("restore/data/loader.py and train.py", None),
    ('see README, "Several GPUs"', None),
    ('(README \\"Install\\")', None),  # as written inside a Python string
    ('DATASETS.md "Checking a dataset folder"; docs/METHOD.md "Setting"', None),
    ('README\'s "Deviations from the anchors"', 'has no heading of that title'),
    ('DATASETS.md, "Caching"', 'has no heading of that title'),
])
def test_checker_on_examples(text, expected):
    citing = REPO / "scripts" / "coop" / "example.sh"  # a file two folders deep
    problems = problems_in(citing, URL.sub(" ", text))
    if expected is None:
        assert problems == []
    else:
        assert problems and all(expected in p or "not in the repository" in p for p in problems), problems
        assert any(expected in p for p in problems), problems
