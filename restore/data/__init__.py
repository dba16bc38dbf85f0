"""The dataset layer: CoOp's 15 benchmark datasets, the split_zhou format, few-shot sampling and caching,
base/new subsampling, transforms and loaders, all with Dassl/CoOp semantics and without Dassl.

    from restore.data import build_dataset, DataManager
    dataset = build_dataset(cfg)          # by cfg.DATASET.NAME, e.g. "OxfordPets"

Every problem a user can cause raises `DatasetError` (a ValueError) naming the path or key and the fix.

Imported on first use: `python -m restore.data.check --help` and the dataset names of restore.cli need no
torch. The first public name used imports the whole layer, registering the built-in readers, as a plain
import did.
"""
import importlib
import importlib.util

# Public name -> the module of this package that defines it.
_EXPORTS = {
    **dict.fromkeys(("DATASETS", "SUBSAMPLE_CHOICES", "DatasetBase", "SplitJSONDataset", "build_dataset",
                     "dataset_root", "fewshot_cache_path", "generate_fewshot_dataset", "load_or_create_fewshot",
                     "register_dataset", "resolve_dataset_dir", "subsample_classes"), "base"),
    **dict.fromkeys(("Datum", "load_pickle", "save_pickle"), "datum"),
    **dict.fromkeys(("DatasetError",), "errors"),
    **dict.fromkeys(("ImageNet", "ImageNetA", "ImageNetR", "ImageNetSketch", "ImageNetV2", "read_classnames"),
                    "imagenet"),
    **dict.fromkeys(("DataManager", "DatasetWrapper", "build_data_loader", "read_image"), "loader"),
    **dict.fromkeys(("UCF101", "Caltech101", "DescribableTextures", "EuroSAT", "FGVCAircraft", "Food101",
                     "OxfordFlowers", "OxfordPets", "StanfordCars", "SUN397"), "readers"),
    **dict.fromkeys(("check_images_exist", "listdir_nohidden", "read_and_split_data", "read_json", "read_split",
                     "save_split", "split_trainval", "write_json"), "splits"),
    **dict.fromkeys(("INTERPOLATION_MODES", "build_transform"), "transforms"),
}

# CoOp's 15 benchmark datasets: configs/datasets/<file>.yaml -> DATASET.NAME (the registry key).
BENCHMARK_DATASETS = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "OxfordFlowers",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DescribableTextures",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA",
    "imagenet_r": "ImageNetR",
}

__all__ = [
    "BENCHMARK_DATASETS", "DATASETS", "SUBSAMPLE_CHOICES", "INTERPOLATION_MODES",
    "Datum", "DatasetBase", "SplitJSONDataset", "DatasetError",
    "DataManager", "DatasetWrapper",
    "build_dataset", "build_data_loader", "build_transform", "register_dataset",
    "generate_fewshot_dataset", "subsample_classes", "load_or_create_fewshot", "fewshot_cache_path",
    "dataset_root", "resolve_dataset_dir",
    "read_split", "save_split", "split_trainval", "read_and_split_data", "check_images_exist",
    "read_json", "write_json", "listdir_nohidden", "read_classnames", "read_image",
    "load_pickle", "save_pickle",
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft",
    "SUN397", "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2", "ImageNetSketch", "ImageNetA",
    "ImageNetR",
]


def __getattr__(name):
    if name not in _EXPORTS:
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")  # a submodule: restore.data.loader, ...
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in dict.fromkeys(_EXPORTS.values()):  # all of them: the readers register on import
        importlib.import_module(f"{__name__}.{module}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
