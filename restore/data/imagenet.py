"""ImageNet and its four test-only variants, as CoOp reads them (DATASETS.md; docs/REPRODUCING.md section 3).

- ImageNet: labels = index of the wnid in the sorted folder list of images/train; test = val = images/val
  (also in wnid folders); parsed lists cached in imagenet/preprocessed.pkl (Dassl-compatible, read if
  present); few-shot caches hold only "train".
- ImageNetV2: folders 0..N-1 (N = lines of classnames.txt), class name = the label-th line.
- ImageNet-Sketch / -A / -R: sorted wnid folders (A/R: the 200 present, README.txt ignored) -> labels 0..;
  names from the variant's own copy of classnames.txt. NUM_SHOTS and SUBSAMPLE_CLASSES do not apply
  (CoOp ignores them): train_x = test = every image, no val.
Images inside a class folder are listed in os.listdir order, as CoOp does, so that a given machine yields
the same lists (and hence the same few-shot sample) as the original code.
"""
import logging
import os
from collections import OrderedDict

from .base import DatasetBase, cfg_subsample, load_or_create_fewshot, register_dataset, resolve_dataset_dir, subsample_classes
from .cache_check import check_class_folders, relocate, say_relocated
from .datum import Datum, load_pickle, save_pickle
from .errors import DatasetError
from .splits import check_labels, listdir_nohidden, num_labels

log = logging.getLogger(__name__)

CLASSNAMES_FIX = (
    "It lists one class per line, \"<wnid> <class name>\" (e.g. \"n01440764 tench\"), in sorted-wnid order; "
    "get classnames.txt from CoOp's DATASETS.md (ImageNet section) and put a copy in every ImageNet-variant folder."
)


def read_classnames(text_file):
    """OrderedDict {wnid (folder name): class name} from lines "<wnid> <class name ...>"."""
    if not os.path.isfile(text_file):
        raise DatasetError(f"Class-name file not found: {text_file}\n{CLASSNAMES_FIX}")
    classnames = OrderedDict()
    with open(text_file, "r") as f:
        for n, line in enumerate(f, 1):
            words = line.strip().split(" ")
            if words[0]:
                if words[0] in classnames:  # a second line would silently rename the class
                    raise DatasetError(f"{text_file}, line {n}: {words[0]} is listed twice.\n{CLASSNAMES_FIX}")
                classnames[words[0]] = " ".join(words[1:])
                if not classnames[words[0]].strip():
                    raise DatasetError(f"{text_file}, line {n}: {words[0]} has no class name.\n{CLASSNAMES_FIX}")
    if not classnames:
        raise DatasetError(f"Class-name file is empty: {text_file}\n{CLASSNAMES_FIX}")
    return classnames


def _class_folders(image_dir, ignored=()):
    """Sorted non-hidden sub-folders of `image_dir` (entries in `ignored` skipped)."""
    return sorted(e.name for e in os.scandir(image_dir)
                  if e.is_dir() and not e.name.startswith(".") and e.name not in ignored)


def read_folders(image_dir, folders, classnames, text_file):
    """Datums for `folders` (label = position in the list), names looked up by folder in `classnames`."""
    items = []
    for label, folder in enumerate(folders):
        if folder not in classnames:
            raise DatasetError(
                f"Class folder {os.path.join(image_dir, folder)} has no line in {text_file}.\n{CLASSNAMES_FIX}"
            )
        folder_dir = os.path.join(image_dir, folder)
        imnames = listdir_nohidden(folder_dir)
        if not imnames:
            raise DatasetError(f"Class folder {folder_dir} is empty: add its images or delete the folder.")
        items += [Datum(impath=os.path.join(folder_dir, im), label=label, classname=classnames[folder])
                  for im in imnames]
    if not items:
        raise DatasetError(f"No class folders found in {image_dir}: extract the images there (see DATASETS.md).")
    return items


def _check_cached_paths(path, *lists):
    """A cached list whose first image is gone was made for another copy of the dataset."""
    for items in lists:
        if items and not os.path.isfile(items[0].impath):
            raise DatasetError(
                f"{path} lists images that do not exist (e.g. {items[0].impath}): it was made for a copy of the "
                f"dataset at another place. Delete it; it is rebuilt on the next run."
            )


@register_dataset
class ImageNet(DatasetBase):
    dataset_dir = "imagenet"
    published_classes = 1000
    tree = (
        "imagenet/\n"
        "    images/\n"
        "        train/                  n01440764/, ... (one folder per wnid)\n"
        "        val/                    n01440764/, ... (the same wnid folders)\n"
        "    classnames.txt              \"<wnid> <class name>\" per line"
    )

    def __init__(self, cfg):
        self.dataset_dir = resolve_dataset_dir(cfg, "ImageNet", type(self).dataset_dir, self.tree)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        if os.path.exists(self.preprocessed):
            data = load_pickle(self.preprocessed, trust=cfg.TRUST_FILES)
            if not isinstance(data, dict) or "train" not in data or "test" not in data:
                raise DatasetError(f"{self.preprocessed} does not hold \"train\" and \"test\": delete it; it is rebuilt.")
            check_labels({k: data[k] for k in ("train", "test")}, self.preprocessed, num_labels(data["train"]),
                         fix="Delete it; it is rebuilt on the next run.")
            train, test = self.check_preprocessed(data["train"], data["test"])
            source = self.preprocessed
        else:
            classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
            train = self.read_data(classnames, "train")
            # Standard practice: evaluate on the val set, which also serves as val (last-step model).
            test = self.read_data(classnames, "val")
            try:
                save_pickle({"train": train, "test": test}, self.preprocessed)
            except OSError as e:
                log.warning(f"Warning: could not write {self.preprocessed} ({e}); continuing without it.")
            source = f"the class folders of {os.path.join(self.image_dir, 'train')}"

        self.check_complete({"train": train, "test": test}, source)
        train, _ = load_or_create_fewshot(self, cfg, train, None)
        train, test = subsample_classes(train, test, subsample=cfg_subsample(cfg))
        super().__init__(train_x=train, val=test, test=test)

    read_classnames = staticmethod(read_classnames)

    def check_preprocessed(self, train, test):
        """preprocessed.pkl's lists, re-rooted when the dataset moved; refused when the class folders
        (or, when classnames.txt is present, the class names) changed since it was written."""
        source = self.preprocessed
        train, old = relocate(train, self.dataset_dir, source)
        test, old_test = relocate(test, self.dataset_dir, source)
        say_relocated(source, old or old_test, self.dataset_dir)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(text_file) if os.path.isfile(text_file) else None
        for split, items in (("train", train), ("val", test)):
            split_dir = os.path.join(self.image_dir, split)
            folders = _class_folders(split_dir) if os.path.isdir(split_dir) else []
            check_class_folders(source, items, folders, classnames)
        _check_cached_paths(source, train, test)
        return train, test

    def read_data(self, classnames, split):
        split_dir = os.path.join(self.image_dir, split)
        if not os.path.isdir(split_dir):
            tree = "\n".join("    " + line for line in self.tree.splitlines())
            raise DatasetError(f"ImageNet: folder not found: {split_dir}\nExpected:\n{tree}\nSee DATASETS.md.")
        folders = _class_folders(split_dir)
        if split != "train":
            train_folders = _class_folders(os.path.join(self.image_dir, "train"))
            if folders != train_folders:
                odd = sorted(set(folders) ^ set(train_folders))[:5]
                raise DatasetError(
                    f"ImageNet: {split_dir} must hold the same wnid folders as images/train (labels are the "
                    f"position in the sorted list); these are in one but not the other: {', '.join(odd)}. "
                    f"Sort the val images into wnid folders (see DATASETS.md)."
                )
        return read_folders(split_dir, folders, classnames, os.path.join(self.dataset_dir, "classnames.txt"))


class _ImageNetTestSet(DatasetBase):
    """A test-only ImageNet variant: train_x = test = every image, no val, no few-shot, no base/new."""

    dataset_dir = ""
    image_subdir = ""
    tree = ""
    ignored = ()

    def __init__(self, cfg):
        name = type(self).__name__
        self.dataset_dir = resolve_dataset_dir(cfg, name, type(self).dataset_dir, self.tree)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        if not os.path.isdir(self.image_dir):
            raise DatasetError(f"{name}: image folder not found: {self.image_dir}\nExpected:\n{self.tree}\nSee DATASETS.md.")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        data = self.read_data(read_classnames(text_file), text_file)
        self.check_complete({"test": data}, f"the class folders of {self.image_dir}")
        if cfg_subsample(cfg) != "all":
            log.warning(f"Note: {name} is test-only; DATASET.SUBSAMPLE_CLASSES is ignored (as in CoOp).")
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames, text_file):
        return read_folders(self.image_dir, _class_folders(self.image_dir, self.ignored), classnames, text_file)


@register_dataset
class ImageNetV2(_ImageNetTestSet):
    dataset_dir = "imagenetv2"
    published_classes = 1000
    image_subdir = "imagenetv2-matched-frequency-format-val"
    tree = (
        "imagenetv2/\n"
        "    imagenetv2-matched-frequency-format-val/   0/, 1/, ..., 999/\n"
        "    classnames.txt              (a copy of imagenet/classnames.txt)"
    )

    def read_data(self, classnames, text_file):
        """Folder str(label) for label in 0..N-1 (N = classes in classnames.txt); name = the label-th line."""
        items = []
        for label, classname in enumerate(classnames.values()):
            class_dir = os.path.join(self.image_dir, str(label))
            if not os.path.isdir(class_dir):
                raise DatasetError(
                    f"ImageNetV2: class folder not found: {class_dir} ({text_file} lists {len(classnames)} classes, "
                    f"so folders 0..{len(classnames) - 1} are expected). Extract "
                    f"imagenetv2-matched-frequency.tar.gz there (see DATASETS.md)."
                )
            imnames = listdir_nohidden(class_dir)
            if not imnames:
                raise DatasetError(f"Class folder {class_dir} is empty: add its images or delete the folder.")
            items += [Datum(impath=os.path.join(class_dir, im), label=label, classname=classname) for im in imnames]
        return items


@register_dataset
class ImageNetSketch(_ImageNetTestSet):
    dataset_dir = "imagenet-sketch"
    published_classes = 1000
    image_subdir = "images"
    tree = (
        "imagenet-sketch/\n"
        "    images/                     n01440764/, ... (1000 wnid folders)\n"
        "    classnames.txt              (a copy of imagenet/classnames.txt)"
    )


@register_dataset
class ImageNetA(_ImageNetTestSet):
    dataset_dir = "imagenet-adversarial"
    published_classes = 200
    image_subdir = "imagenet-a"
    ignored = ("README.txt",)
    tree = (
        "imagenet-adversarial/\n"
        "    imagenet-a/                 n01498041/, ... (200 wnid folders; README.txt ignored)\n"
        "    classnames.txt              (a copy of imagenet/classnames.txt)"
    )


@register_dataset
class ImageNetR(_ImageNetTestSet):
    dataset_dir = "imagenet-rendition"
    published_classes = 200
    image_subdir = "imagenet-r"
    ignored = ("README.txt",)
    tree = (
        "imagenet-rendition/\n"
        "    imagenet-r/                 n01443537/, ... (200 wnid folders; README.txt ignored)\n"
        "    classnames.txt              (a copy of imagenet/classnames.txt)"
    )
