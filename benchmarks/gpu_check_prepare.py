"""Prepare what the GPU check (benchmarks/gpu_check.py) needs on a GPU machine that has no network.

    python benchmarks/gpu_check_prepare.py --originals DIR [--python 3.12] [--out .gpu_check]

Writes, into the git-ignored folder `.gpu_check/` of this repository (copy it with the repository to the GPU
machine):

- `wheels/` and `requirements.txt`: the small packages the machine lacks (WHEELS), as wheels for its Python
  (`pip download --no-deps`, or `pip wheel --no-deps` for a package published as source only). The check
  installs them there with `pip install --no-index --find-links .gpu_check/wheels --target ...`.
- `originals/<repo>`: the original Dassl.pytorch, CoOp and MaPLe code at the commits of docs/REPRODUCING.md
  section 1 (`git archive`), with the patches of PATCHES applied: each keeps the original behaviour on a GPU
  and only makes the code run under current torch, without a network, and (for the CPU rehearsal) in fp32.

DIR holds a git clone of each original repository (ORIGINALS), named as the repository (`Dassl.pytorch` or
`Dassl.pytorch.git`), e.g. `git clone https://github.com/KaiyangZhou/Dassl.pytorch DIR/Dassl.pytorch`.
The project never commits the originals' code: it stays in the ignored folder. The folder is kept under 64 MiB
(what a GPU-machine call may carry beside the repository): the script prints its size and stops if it is larger.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, ".gpu_check")
CARRY_LIMIT = 64 * 2**20

# The packages the GPU machine's image lacks (its Python 3.12 has torch, numpy, pandas, scipy, scikit-learn,
# tensorboard, tabulate, requests, tqdm, ...), at the versions this project is tested with. setuptools < 81:
# OpenAI's clip imports pkg_resources. gdown needs beautifulsoup4 (and soupsieve); Dassl imports gdown and,
# through its WILDS datasets, wilds (whose optional `outdated` is left out: it would query the network).
WHEELS = {
    "openai-clip": "1.0.1", "yacs": "0.1.8", "ftfy": "6.3.1", "wcwidth": "0.9.4", "regex": "2026.12.2",
    "setuptools": "80.10.2", "gdown": "6.5.1", "beautifulsoup4": "4.15.0", "soupsieve": "4.1.4",
    "wilds": "1.2.2", "open_clip_torch": "3.3.0", "submitit": "1.5.4",
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")

# name -> (GitHub repository, commit): the versions docs/REPRODUCING.md section 1 names.
ORIGINALS = {
    "Dassl.pytorch": ("KaiyangZhou/Dassl.pytorch", "c61a1b570ac6333bd50fb5ae06aea59002fb20bb"),
    "CoOp": ("KaiyangZhou/CoOp", "ff61507c790454bce7c5052c3ac39e60772f1f89"),
    "multimodal-prompt-learning": ("muzairkhattak/multimodal-prompt-learning",
                                   "69bce21ae8eda80ad6187534b2dce09cf6c59e17"),
}

# The switches the patches read (set by benchmarks/gpu_check_originals.py): the CLIP weights file that
# clip._download returns, and the dtype of MaPLe's forced half casts (float16 unless set: as shipped).
CLIP_ENV, HALF_ENV = "GPU_CHECK_CLIP", "GPU_CHECK_HALF"
HALF_HEADER = (f"import os as _gc_os\nimport torch as _gc_torch\n"
               f"_GPU_CHECK_HALF = getattr(_gc_torch, _gc_os.environ.get('{HALF_ENV}', 'float16'))\n")
DOWNLOAD_OLD = "    os.makedirs(root, exist_ok=True)\n    filename = os.path.basename(url)"
DOWNLOAD_NEW = (f"    if os.environ.get('{CLIP_ENV}'):  # GPU CHECK PATCH: no network\n"
                f"        return os.environ['{CLIP_ENV}']\n" + DOWNLOAD_OLD)
HALF_CAST = re.compile(r"(\.permute\(1, 0, 2\)\s*|expand\(x\.shape\[0\], -1, -1\)\s*)\.half\(\)")

# (repo, file, old, new, expected count; None: at least one), each with why: only what the check needs (the
# developers' parity runs patch more: checkpoint loading, other originals). Every one keeps the original
# behaviour on a GPU unless the check's environment asks otherwise.
PATCHES = [
    # torch >= 2.7 removed LRScheduler's `verbose` argument: TypeError when the scheduler is built.
    ("Dassl.pytorch", "dassl/optim/lr_scheduler.py", "super().__init__(optimizer, last_epoch, verbose)",
     "super().__init__(optimizer, last_epoch)", 1),
    # No network: clip._download returns the check's random CLIP file when GPU_CHECK_CLIP is set.
    ("CoOp", "clip/clip.py", DOWNLOAD_OLD, DOWNLOAD_NEW, 1),
    ("multimodal-prompt-learning", "clip/clip.py", DOWNLOAD_OLD, DOWNLOAD_NEW, 1),
    # MaPLe casts its prompted CLIP's activations and prompt projection to fp16 whatever PREC says; on a
    # GPU that is as shipped (GPU_CHECK_HALF unset), on the CPU rehearsal (fp32) they follow GPU_CHECK_HALF.
    ("multimodal-prompt-learning", "clip/model.py", HALF_CAST, r"\1.to(_GPU_CHECK_HALF)", None),
    ("multimodal-prompt-learning", "trainers/maple.py", "self.proj.half()", "self.proj.to(_GPU_CHECK_HALF)", None),
]
NEEDS_HALF_HEADER = [("multimodal-prompt-learning", "clip/model.py"),
                     ("multimodal-prompt-learning", "trainers/maple.py")]


class PrepareError(RuntimeError):
    pass


def apply_patches(root, patches=PATCHES, header_files=NEEDS_HALF_HEADER):
    """Apply `patches` to the trees under `root` (root/<repo>/<file>); returns "repo/file: N x ..." lines.
    PrepareError naming the file when a patch does not find its text as often as expected."""
    done = []
    for repo, path, old, new, count in patches:
        full = os.path.join(root, repo, path)
        with open(full) as f:
            text = f.read()
        if isinstance(old, re.Pattern):
            text, n = old.subn(new, text)
            what = old.pattern
        else:
            n = text.count(old)
            text = text.replace(old, new)
            what = old
        if n == 0 or (count is not None and n != count):
            raise PrepareError(f"{repo}/{path}: expected {count or 'at least 1'} occurrence(s) of {what[:60]!r}, "
                               f"found {n}: is this the commit docs/REPRODUCING.md names?")
        with open(full, "w") as f:
            f.write(text)
        done.append(f"{repo}/{path}: {n} x {what.strip()[:60]!r}")
    for repo, path in header_files:
        full = os.path.join(root, repo, path)
        with open(full) as f:
            text = f.read()
        if "_GPU_CHECK_HALF = " not in text:
            with open(full, "w") as f:
                f.write(HALF_HEADER + text)
    return done


def find_clone(originals, name):
    for candidate in (name, name + ".git"):
        path = os.path.join(originals, candidate)
        if os.path.isdir(path):
            return path
    repo, _ = ORIGINALS[name]
    raise PrepareError(f"No clone of {repo} in {originals}: git clone https://github.com/{repo} "
                       f"{os.path.join(originals, name)}")


def export_originals(originals, dest):
    """git archive each original at its commit into dest/<name>; returns {name: commit}."""
    os.makedirs(dest, exist_ok=True)
    for name, (repo, commit) in ORIGINALS.items():
        clone = find_clone(originals, name)
        target = os.path.join(dest, name)
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        with tempfile.TemporaryFile() as tar:
            proc = subprocess.run(["git", "-C", clone, "archive", commit], stdout=tar, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                raise PrepareError(f"{clone} has no commit {commit} of {repo} "
                                   f"({proc.stderr.decode().strip()}): git -C {clone} fetch origin")
            tar.seek(0)
            with tarfile.open(fileobj=tar) as archive:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse paths outside target
                    archive.extractall(target, filter="data")
                else:
                    archive.extractall(target)
    return {name: commit for name, (_, commit) in ORIGINALS.items()}


def download_wheels(dest, python_versions):
    """Wheels of WHEELS for each Python version into dest: binary wheels for the GPU machine's platform
    (x86-64 manylinux), else a pure-Python wheel (built here from the source release if need be)."""
    os.makedirs(dest, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    for name, version in WHEELS.items():
        spec = f"{name}=={version}"
        for py in python_versions:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", py, "--implementation", "cp", *platforms, "-d", dest, spec]
            if subprocess.run(cmd, capture_output=True).returncode == 0:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, spec],
                                      capture_output=True, text=True)
                built = os.listdir(tmp) if proc.returncode == 0 else []
                if len(built) != 1 or not built[0].endswith("-none-any.whl"):
                    raise PrepareError(f"no wheel of {spec} for Python {py} on x86-64 Linux, and none could be "
                                       f"built ({proc.stderr.strip()[-300:] or built})")
                shutil.move(os.path.join(tmp, built[0]), os.path.join(dest, built[0]))
            break  # a pure-Python wheel serves every version


def folder_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--originals", required=True, help="folder holding git clones of " + ", ".join(ORIGINALS))
    p.add_argument("--python", default="3.12", help="comma-separated Python versions of the wheels (the GPU "
                                                    "machine's: 3.12; add this machine's to rehearse here)")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isfile(os.path.join(out, "requirements.txt")):
        sys.exit(f"Error: {out} exists and is not a folder this script wrote: choose another --out.")
    work = out + ".partial"  # built aside, then moved into place: nothing half-written is left
    shutil.rmtree(work, ignore_errors=True)
    try:
        commits = export_originals(os.path.abspath(args.originals), os.path.join(work, "originals"))
        for line in apply_patches(os.path.join(work, "originals")):
            print("patched", line)
        download_wheels(os.path.join(work, "wheels"), args.python.split(","))
        with open(os.path.join(work, "requirements.txt"), "w") as f:
            f.write("".join(f"{name}=={version}\n" for name, version in WHEELS.items()))
        with open(os.path.join(work, "originals", "COMMITS"), "w") as f:
            f.write("".join(f"{name} {ORIGINALS[name][0]} {c}\n" for name, c in commits.items()))
        size = folder_size(work)
        if size > CARRY_LIMIT:
            raise PrepareError(f"the folder would be {size / 2**20:.1f} MiB, over the {CARRY_LIMIT // 2**20} MiB a "
                               "GPU-machine call carries.")
    except PrepareError as err:
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(f"Error: {err}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(work, out)
    print(f"{out}: {size / 2**20:.1f} MiB ({len(os.listdir(os.path.join(out, 'wheels')))} wheels; "
          f"originals {', '.join(commits)}). It is git-ignored: copy it with the repository to the GPU machine.")

if __name__ == "__main__":
    main()
