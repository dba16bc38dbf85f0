"""Readers for the ten split_zhou datasets and FGVCAircraft, with CoOp's class names, folders and files
(DATASETS.md; docs/REPRODUCING.md section 3).

Each one reads `<dataset_dir>/split_zhou_<Name>.json` when present. When it is absent, the split is
generated from the original annotation files exactly as CoOp does (same class names, same use of python's
`random`) and saved there; FGVCAircraft has no split file and always reads its variant lists.
"""
import logging
import os
import re
from collections import OrderedDict

from .base import SplitJSONDataset, register_dataset
from .datum import Datum
from .errors import DatasetError
from .splits import check_images_exist, read_and_split_data, read_json, split_by_ratio, split_trainval

log = logging.getLogger(__name__)


def _read_lines(path):
    """Stripped non-empty lines of a text file."""
    with open(path, "r") as f:
        return [line.strip() for line in f if line.strip()]


def _bad_line(path, n, line, expected):
    return DatasetError(f"{path}, line {n}: {line!r} is not of the form {expected}. Replace the file with the original.")


def _loadmat(path):
    try:
        from scipy.io import loadmat
    except ImportError:  # scipy comes with scikit-learn, a requirement; say so anyway
        raise DatasetError(
            f"Reading {path} needs scipy: pip install scipy (or download the split file, see DATASETS.md)."
        ) from None
    return loadmat(path)


@register_dataset
class OxfordPets(SplitJSONDataset):
    dataset_dir = "oxford_pets"
    published_classes = 37
    image_dir = "images"
    tree = (
        "oxford_pets/\n"
        "    images/                     Abyssinian_1.jpg, ...\n"
        "    annotations/                trainval.txt, test.txt (only to generate the split)\n"
        "    split_zhou_OxfordPets.json"
    )

    def generate_split(self):
        trainval = self.read_annotations(self.source_path("annotations/trainval.txt"))
        test = self.read_annotations(self.source_path("annotations/test.txt"))
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, path):
        """Lines "Abyssinian_100 1 1 1": image stem, 1-based class id, species, breed id.
        Class name = the lower-cased stem without its trailing number."""
        items = []
        for n, line in enumerate(_read_lines(path), 1):
            if line.startswith("#"):
                continue
            parts = line.split(" ")
            if len(parts) != 4 or not parts[1].isdigit():
                raise _bad_line(path, n, line, '"<image stem> <class id> <species> <breed id>"')
            imname, label = parts[0], int(parts[1]) - 1
            breed = "_".join(imname.split("_")[:-1]).lower()
            items.append(Datum(impath=os.path.join(self.image_dir, imname + ".jpg"), label=label, classname=breed))
        return items


@register_dataset
class DescribableTextures(SplitJSONDataset):
    dataset_dir = "dtd"
    published_classes = 47
    image_dir = "images"
    tree = (
        "dtd/\n"
        "    images/                     banded/, blotchy/, ... (one folder per class)\n"
        "    split_zhou_DescribableTextures.json"
    )

    def generate_split(self):
        return read_and_split_data(self.source_path("images", is_dir=True))


# Caltech101: folders left out, and folder -> class name renamings.
CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@register_dataset
class Caltech101(SplitJSONDataset):
    dataset_dir = "caltech-101"
    published_classes = 100
    image_dir = "101_ObjectCategories"
    tree = (
        "caltech-101/\n"
        "    101_ObjectCategories/       accordion/, airplanes/, ... (one folder per class)\n"
        "    split_zhou_Caltech101.json"
    )

    def generate_split(self):
        return read_and_split_data(self.source_path("101_ObjectCategories", is_dir=True),
                                   ignored=CALTECH_IGNORED, new_cnames=CALTECH_NEW_CNAMES)


EUROSAT_NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@register_dataset
class EuroSAT(SplitJSONDataset):
    dataset_dir = "eurosat"
    published_classes = 10
    image_dir = "2750"
    tree = (
        "eurosat/\n"
        "    2750/                       AnnualCrop/, Forest/, ... (one folder per class)\n"
        "    split_zhou_EuroSAT.json"
    )

    def generate_split(self):
        return read_and_split_data(self.source_path("2750", is_dir=True), new_cnames=EUROSAT_NEW_CNAMES)


@register_dataset
class Food101(SplitJSONDataset):
    dataset_dir = "food-101"
    published_classes = 101
    image_dir = "images"
    tree = (
        "food-101/\n"
        "    images/                     apple_pie/, baby_back_ribs/, ... (one folder per class)\n"
        "    split_zhou_Food101.json"
    )

    def generate_split(self):
        return read_and_split_data(self.source_path("images", is_dir=True))


@register_dataset
class OxfordFlowers(SplitJSONDataset):
    dataset_dir = "oxford_flowers"
    published_classes = 102
    image_dir = "jpg"
    tree = (
        "oxford_flowers/\n"
        "    jpg/                        image_00001.jpg, ...\n"
        "    imagelabels.mat             (only to generate the split)\n"
        "    cat_to_name.json            (only to generate the split)\n"
        "    split_zhou_OxfordFlowers.json"
    )

    def generate_split(self):
        label_file = self.source_path("imagelabels.mat")
        names_file = self.source_path("cat_to_name.json")
        labels = _loadmat(label_file)["labels"][0]
        lab2cname = read_json(names_file)
        tracker = OrderedDict()  # 1-based label -> images, in first-appearance order (CoOp's dict)
        for i, label in enumerate(labels):
            tracker.setdefault(int(label), []).append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        log.info("Splitting data into 50% train, 20% val, and 30% test")
        by_label = OrderedDict()
        for label, impaths in tracker.items():
            if str(label) not in lab2cname:
                raise DatasetError(f"{names_file} has no name for class {label}: use the file from CoOp's DATASETS.md.")
            by_label[label - 1] = (lab2cname[str(label)], impaths)
        return split_by_ratio(by_label, 0.5, 0.2, where=f" in {label_file}")


@register_dataset
class StanfordCars(SplitJSONDataset):
    dataset_dir = "stanford_cars"
    published_classes = 196
    image_dir = ""  # split paths are relative to the dataset folder: cars_train/00001.jpg
    tree = (
        "stanford_cars/\n"
        "    cars_train/                 00001.jpg, ...\n"
        "    cars_test/                  00001.jpg, ...\n"
        "    devkit/                     cars_train_annos.mat, cars_meta.mat (only to generate the split)\n"
        "    cars_test_annos_withlabels.mat   (only to generate the split)\n"
        "    split_zhou_StanfordCars.json"
    )

    def generate_split(self):
        meta = self.source_path("devkit/cars_meta.mat")
        trainval = self.read_annotations("cars_train", self.source_path("devkit/cars_train_annos.mat"), meta)
        test = self.read_annotations("cars_test", self.source_path("cars_test_annos_withlabels.mat"), meta)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, image_subdir, anno_file, meta_file):
        """Class name = the devkit name with its trailing year moved to the front."""
        annos = _loadmat(anno_file)["annotations"][0]
        names = _loadmat(meta_file)["class_names"][0]
        items = []
        for anno in annos:
            label = int(anno["class"][0, 0]) - 1
            words = str(names[label][0]).split(" ")
            words.insert(0, words.pop(-1))
            impath = os.path.join(self.dataset_dir, image_subdir, str(anno["fname"][0]))
            items.append(Datum(impath=impath, label=label, classname=" ".join(words)))
        return items


@register_dataset
class SUN397(SplitJSONDataset):
    dataset_dir = "sun397"
    published_classes = 397
    image_dir = "SUN397"
    tree = (
        "sun397/\n"
        "    SUN397/                     a/abbey/sun_*.jpg, ...\n"
        "    ClassName.txt, Training_01.txt, Testing_01.txt   (only to generate the split)\n"
        "    split_zhou_SUN397.json"
    )

    def generate_split(self):
        class_file = self.source_path("ClassName.txt")
        classnames = [line[1:] for line in _read_lines(class_file)]  # "/a/abbey" -> "a/abbey"
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_list(cname2lab, self.source_path("Training_01.txt"), class_file)
        test = self.read_list(cname2lab, self.source_path("Testing_01.txt"), class_file)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, cname2lab, path, class_file):
        """Lines "/a/abbey/sun_x.jpg"; class "a/apartment_building/outdoor" -> "outdoor apartment_building"."""
        items = []
        for n, line in enumerate(_read_lines(path), 1):
            imname = line[1:]
            folder = os.path.dirname(imname)
            if folder not in cname2lab:
                raise DatasetError(f"{path}, line {n}: class folder {folder!r} is not listed in {class_file}.")
            classname = " ".join(folder.split("/")[1:][::-1])
            items.append(Datum(impath=os.path.join(self.image_dir, imname), label=cname2lab[folder],
                               classname=classname))
        return items


@register_dataset
class UCF101(SplitJSONDataset):
    dataset_dir = "ucf101"
    published_classes = 101
    image_dir = "UCF-101-midframes"
    tree = (
        "ucf101/\n"
        "    UCF-101-midframes/          Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg, ...\n"
        "    ucfTrainTestlist/           classInd.txt, trainlist01.txt, testlist01.txt (only to generate the split)\n"
        "    split_zhou_UCF101.json"
    )

    def generate_split(self):
        class_file = self.source_path("ucfTrainTestlist/classInd.txt")
        cname2lab = {}
        for n, line in enumerate(_read_lines(class_file), 1):
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0].isdigit():
                raise _bad_line(class_file, n, line, '"<class id> <ActionName>"')
            cname2lab[parts[1]] = int(parts[0]) - 1
        trainval = self.read_list(cname2lab, self.source_path("ucfTrainTestlist/trainlist01.txt"), class_file)
        test = self.read_list(cname2lab, self.source_path("ucfTrainTestlist/testlist01.txt"), class_file)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, cname2lab, path, class_file):
        """Lines "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi [id]" -> Apply_Eye_Makeup/v_..._c01.jpg."""
        items = []
        for n, line in enumerate(_read_lines(path), 1):
            video = line.split(" ")[0]
            if video.count("/") != 1:
                raise _bad_line(path, n, line, '"<ActionName>/<video>.avi [class id]"')
            action, filename = video.split("/")
            if action not in cname2lab:
                raise DatasetError(f"{path}, line {n}: action {action!r} is not listed in {class_file}.")
            renamed = "_".join(re.findall("[A-Z][^A-Z]*", action))
            impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
            items.append(Datum(impath=impath, label=cname2lab[action], classname=renamed))
        return items


@register_dataset
class FGVCAircraft(SplitJSONDataset):
    """No split JSON: classes from variants.txt, splits from images_variant_{train,val,test}.txt."""

    dataset_dir = "fgvc_aircraft"
    published_classes = 100
    image_dir = "images"
    tree = (
        "fgvc_aircraft/\n"
        "    images/                     1025794.jpg, ...\n"
        "    variants.txt\n"
        "    images_variant_train.txt, images_variant_val.txt, images_variant_test.txt"
    )

    def split_source(self):
        return os.path.join(self.dataset_dir, "images_variant_{train,val,test}.txt")

    def load_split(self):
        variants = os.path.join(self.dataset_dir, "variants.txt")
        if not os.path.isfile(variants):
            raise DatasetError(
                f"FGVCAircraft: class-name file not found: {variants}\n"
                f"Copy variants.txt from fgvc-aircraft-2013b/data/ into {self.dataset_dir} (see DATASETS.md)."
            )
        cname2lab = {}
        for i, variant in enumerate(_read_lines(variants)):
            if cname2lab.setdefault(variant, i) != i:  # a second line would shift every later label
                raise DatasetError(f"{variants}: variant {variant!r} is listed twice. Replace the file with "
                                   f"the original (fgvc-aircraft-2013b/data/variants.txt).")
        return tuple(self.read_list(cname2lab, s, variants) for s in ("train", "val", "test"))

    def read_list(self, cname2lab, split, variants):
        """Lines "1025794 Boeing 707-320": image stem, variant name."""
        path = os.path.join(self.dataset_dir, f"images_variant_{split}.txt")
        if not os.path.isfile(path):
            raise DatasetError(
                f"FGVCAircraft: split file not found: {path}\n"
                f"Copy images_variant_{split}.txt from fgvc-aircraft-2013b/data/ into {self.dataset_dir}."
            )
        items = []
        for n, line in enumerate(_read_lines(path), 1):
            parts = line.split(" ")
            classname = " ".join(parts[1:])
            if classname not in cname2lab:
                raise DatasetError(f"{path}, line {n}: variant {classname!r} is not listed in {variants}.")
            items.append(Datum(impath=os.path.join(self.image_dir, parts[0] + ".jpg"), label=cname2lab[classname],
                               classname=classname))
        check_images_exist(items, path, self.image_dir)
        return items
