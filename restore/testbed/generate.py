"""Write testbed datasets in CoOp's on-disk format.

Layout: ``<root>/<dataset_dir>/images/<split>/<class_folder>/<index>.png`` and
``<root>/<dataset_dir>/split_zhou_<Name>.json`` = {"train"|"val"|"test": [[rel_impath, label, classname]]}
(indent 4, labels 0-based, ``rel_impath`` relative to ``images/``), plus ``testbed.json`` (seed, counts).

Generation is deterministic by seed, idempotent (an existing complete dataset is left alone) and atomic:
everything is written into a temporary folder under ``root`` and moved into place; the split file, moved
last, marks a dataset as complete.

CLI: ``python -m restore.testbed.generate --root DATA [--datasets shapes digits ...] [--seed 0] [--force]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from ..cli import ArgumentParser
from ..files import describe_os_error, naming
from . import datasets as D

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
INFO_FILE = "testbed.json"


def class_folder(classname: str) -> str:
    return classname.replace(" ", "_")


def is_complete(root, name: str) -> bool:
    ds = D.get(name)
    return (Path(root) / ds.dataset_dir / ds.split_file).is_file()


def _write(ds: D.TestbedDataset, out: Path, seed: int) -> dict:
    split = {}
    for s in D.SPLITS:
        rows = []
        for y, c in enumerate(ds.classes):
            folder = out / "images" / s / class_folder(c.name)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(D.count(ds, s)):
                rel = f"{s}/{class_folder(c.name)}/{i:04d}.png"
                with naming(out / "images" / rel):  # a full disk names the file
                    Image.fromarray(D.render_image(ds, s, y, i, seed)).save(out / "images" / rel, optimize=False,
                                                                             compress_level=6)
                rows.append([rel, y, c.name])
        split[s] = rows
    return split


def _tmp_prefix(ds: D.TestbedDataset) -> str:
    return f".{ds.dataset_dir}.tmp-"


def remove_abandoned(root, ds: D.TestbedDataset) -> list:
    """Delete the temporary folders of killed generations of ``ds`` under ``root``: named
    ``.<dataset_dir>.tmp-<host>-<pid>-<random>``, abandoned when that pid no longer runs on this host
    (a generation running elsewhere, or in another live process, is left alone). Returns them."""
    from ..lock import pid_running
    root, removed = Path(root), []
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    for entry in root.iterdir():
        if not entry.name.startswith(_tmp_prefix(ds)) or not entry.is_dir():
            continue
        owner = entry.name[len(_tmp_prefix(ds)):].rsplit("-", 2)
        if len(owner) == 3 and owner[0] == host and not pid_running(owner[1]):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    target = root / ds.dataset_dir  # a killed replacement (--force) leaves .<item>.old-<host>-<pid>
    for entry in (target.iterdir() if target.is_dir() else []):
        owner = entry.name.rsplit(".old-", 1)[-1].rsplit("-", 1)
        if (entry.name.startswith(".") and ".old-" in entry.name and len(owner) == 2 and owner[0] == host
                and not pid_running(owner[1])):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else os.remove(entry)
            removed.append(entry)
    if removed:
        log.info(f"Removed {len(removed)} folder(s) of an interrupted testbed generation: "
                 f"{', '.join(map(str, removed))}")
    return removed


def generate(root, name: str, seed: int = 0, force: bool = False, verbose: bool = False) -> Path:
    """Generate dataset ``name`` under ``root`` (if absent, or always with ``force``); return its folder.
    Folders left by a killed generation are removed first."""
    ds = D.get(name)
    root = Path(root)
    target = root / ds.dataset_dir
    remove_abandoned(root, ds)
    if is_complete(root, name) and not force:
        info = target / INFO_FILE
        if info.is_file():
            have = json.loads(info.read_text()).get("seed")
            if have is not None and have != seed:
                raise RuntimeError(f"{target} was generated with seed {have}, not {seed}: delete it; it is "
                                   "generated again on first use")
        return target
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    owner = f"{socket.gethostname()}-{os.getpid()}-"  # lets the next start tell an abandoned folder
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(ds) + owner, dir=root))
    try:
        split = _write(ds, tmp, seed)
        with naming(tmp / ds.split_file), open(tmp / ds.split_file, "w") as f:
            json.dump(split, f, indent=4)
        info = {"dataset": ds.registry_name, "key": ds.key, "seed": seed, "generator_version": GENERATOR_VERSION,
                "classes": len(ds.classes), "num_base": ds.num_base, "template": ds.template,
                "description": ds.description, "counts": {s: len(v) for s, v in split.items()}}
        with naming(tmp / INFO_FILE):
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=4))
        if is_complete(root, name) and not force:  # someone else finished first
            return target
        target.mkdir(exist_ok=True)
        if (target / ds.split_file).exists():
            os.remove(target / ds.split_file)
        for item in ("images", INFO_FILE):
            if (target / item).exists():
                old = target / f".{item}.old-{socket.gethostname()}-{os.getpid()}"
                os.replace(target / item, old)
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else os.remove(old)
            os.replace(tmp / item, target / item)
        os.replace(tmp / ds.split_file, target / ds.split_file)  # last: marks completion
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        log.info(f"generated {ds.registry_name} ({sum(info['counts'].values())} images) in {target} "
                 f"[{time.time() - t0:.1f}s]")
    return target


def ensure(root, name: str, seed: int = 0) -> Path:
    """Generate on first use; a no-op when the dataset is already there."""
    return generate(root, name, seed=seed, force=False, verbose=True)


def main(argv=None):
    p = ArgumentParser(prog="python -m restore.testbed.generate", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="data root (DATASET.ROOT)")
    p.add_argument("--datasets", nargs="+", default=list(D.DATASETS), help="keys: " + " ".join(D.DATASETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    a = p.parse_args(argv)
    for n in a.datasets:
        if is_complete(a.root, n) and not a.force:
            log.info(f"{D.get(n).registry_name}: present in {Path(a.root) / D.get(n).dataset_dir}, skipped")
            continue
        try:
            generate(a.root, n, seed=a.seed, force=a.force, verbose=True)
        except OSError as err:  # a full disk: one line naming the file (nothing half-written is kept)
            sys.exit(f"Error: {describe_os_error(err)}")
        except RuntimeError as err:  # generated there before with another seed
            sys.exit(f"Error: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
