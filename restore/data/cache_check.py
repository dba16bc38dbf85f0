"""Caches are valid only for the dataset they were made from.

CoOp-lineage caches (`split_fewshot/shot_K-seed_S.pkl`, `imagenet/preprocessed.pkl`) store absolute image
paths. Read back:

- a dataset that was moved or copied keeps its sample: paths under the folder the cache was made in are
  re-rooted onto the current dataset folder when the relative layout is the same (`relocate`);
- a dataset that changed since (class folders renamed, added or removed, images replaced) is refused:
  every cached item must be in the current split with the same label and class name
  (`check_fewshot_sample`), and ImageNet's parsed lists must have today's class folders and names
  (`check_class_folders`). Silently re-sampling would change the experiment.

The cache files themselves are not changed (CoOp-lineage code keeps reading them).
"""
import logging
import os

from .datum import Datum
from .errors import DatasetError

log = logging.getLogger(__name__)


def _cached_root(impath: str, dataset_dir: str):
    """The folder that played `dataset_dir`'s role when `impath` was cached: its shallowest ancestor
    A such that `dataset_dir/relpath(impath, A)` is a file (the longest matching relative path)."""
    parts = impath.split(os.sep)
    for i in range(1, len(parts) - 1):
        ancestor = os.sep.join(parts[:i]) or os.sep
        if os.path.isfile(os.path.join(dataset_dir, *parts[i:])):
            return ancestor
    return None


def relocate(items: list, dataset_dir: str, source: str):
    """`items` with their paths re-rooted from the folder the cache was made in onto `dataset_dir`.

    Returns (items, old folder or None when nothing moved). Items outside the old folder are left as
    they are (the membership checks then report them)."""
    dataset_dir = os.path.abspath(dataset_dir)
    prefix = dataset_dir + os.sep
    if not items or all(it.impath.startswith(prefix) for it in items):
        return items, None
    first = next(it.impath for it in items if not it.impath.startswith(prefix))
    old = _cached_root(first, dataset_dir) if os.path.isabs(first) else None
    if old is None:
        raise DatasetError(
            f"{source} lists images outside {dataset_dir} (e.g. {first}) that are not found there "
            f"under the same relative path: it was made for another dataset. Delete it to sample "
            f"anew (this changes the few-shot images), or restore the dataset it was made from.")
    old_prefix = old.rstrip(os.sep) + os.sep
    moved = [Datum(impath=os.path.join(dataset_dir, it.impath[len(old_prefix):]), label=it.label,
                   domain=it.domain, classname=it.classname)
             if it.impath.startswith(old_prefix) else it for it in items]
    return moved, old


def say_relocated(source: str, old, dataset_dir: str) -> None:
    if old:
        log.warning(f"Note: {source} was made in {old}; its images are read from {dataset_dir} "
                    "(same relative paths, same sample).")


def check_fewshot_sample(path: str, cached: list, current: list, dataset_dir: str) -> None:
    """Every cached item must be an item of `current` (same path, label, class name), and the
    cache must cover the same labels; otherwise DatasetError naming the first difference."""
    known = {(it.impath, it.label, it.classname) for it in current}
    stale = [it for it in cached if (it.impath, it.label, it.classname) not in known]
    fix = (f"The dataset changed since the cache was made; re-sampling would change the experiment. "
           f"Restore the dataset as it was, or delete {path} to draw a new sample of the changed "
           f"dataset.")
    if stale:
        it = stale[0]
        rel = os.path.relpath(it.impath, dataset_dir)
        raise DatasetError(
            f"The few-shot cache {path} does not match the split of {dataset_dir}: {len(stale)} of its "
            f"{len(cached)} images are not in it with the same label and class name (e.g. {rel}, "
            f"label {it.label}, {it.classname!r}). {fix}")
    missing = sorted({it.label for it in current} - {it.label for it in cached})
    if missing:
        names = sorted({it.classname for it in current if it.label in missing})[:3]
        raise DatasetError(
            f"The few-shot cache {path} has no images of {len(missing)} class(es) of the current split "
            f"of {dataset_dir} (e.g. label {missing[0]}, {', '.join(map(repr, names))}). {fix}")


def check_class_folders(path: str, items: list, folders: list, classnames=None) -> None:
    """ImageNet's parsed lists: label y must be the y-th of today's sorted class `folders`, with the
    name `classnames[folder]` of today's classnames.txt (when given)."""
    cached = {}
    for it in items:
        name = it.classname if classnames is not None else None
        cached.setdefault(it.label, (os.path.basename(os.path.dirname(it.impath)), name))
    expected = {y: (f, classnames.get(f) if classnames is not None else None)
                for y, f in enumerate(folders)}
    if cached != expected:
        diff = sorted(set(cached.items()) ^ set(expected.items()), key=str)[:1]
        example = f" (e.g. label {diff[0][0]}: {diff[0][1]})" if diff else ""
        raise DatasetError(
            f"{path} was made from other class folders or class names than today's "
            f"({len(cached)} cached vs {len(folders)} folders){example}. Delete it to rebuild it from "
            f"today's folders, or restore the folders it was made from.")
