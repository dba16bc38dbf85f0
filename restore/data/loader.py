"""Data loading with Dassl's semantics (docs/REPRODUCING.md section 3): `DatasetWrapper`,
`build_data_loader` and `DataManager`, for the native engine (the Dassl engine uses Dassl's own)."""
import logging
import torch
import torchvision.transforms as T
from PIL import Image
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import RandomSampler, SequentialSampler

from .base import build_dataset
from .errors import DatasetError
from .transforms import build_transform, interpolation_mode

log = logging.getLogger(__name__)

SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def read_image(path):
    """The image at `path` as an RGB PIL image; unreadable -> DatasetError naming the file, in one line
    (a DataLoader worker re-raises it in the main process inside its traceback; train.py shows the line)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(
            f"Image not found: {path}. Restore the file (the dataset's split file or a cache lists it)."
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(
            f"Cannot read image {path} ({type(e).__name__}: {e}). Replace the file with a good copy "
            f"(re-extract the dataset archive)."
        ) from None


class DatasetWrapper(TorchDataset):
    """Items as dicts {"img", "label", "domain", "impath", "index"} (Dassl's keys).

    As Dassl: a list/tuple of transforms gives "img", "img2", ...; DATALOADER.K_TRANSFORMS > 1 (train only)
    gives a list of K augmented views per key; DATALOADER.RETURN_IMG0 adds "img0" (resized, unaugmented).
    """

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise DatasetError(
                f"DATALOADER.K_TRANSFORMS is {self.k_tfm} but there is no transform to apply "
                f"(INPUT.NO_TRANSFORM is set): set DATALOADER.K_TRANSFORMS 1 or INPUT.NO_TRANSFORM False."
            )
        to_tensor = [T.Resize(tuple(cfg.INPUT.SIZE), interpolation=interpolation_mode(cfg)), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._apply(tfm, img0)
        else:
            output["img"] = self._apply(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _apply(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views


def build_data_loader(cfg, data_source, batch_size, transform=None, is_train=True,
                      sampler_type="SequentialSampler", dataset_wrapper=None):
    """A torch DataLoader as Dassl builds it: the given sampler, DATALOADER.NUM_WORKERS workers,
    drop_last = is_train and len(data_source) >= batch_size, pin_memory when CUDA is used (the engines copy
    batches to the GPU with non_blocking); DATALOADER.PERSISTENT_WORKERS keeps the workers across epochs
    (opt-in: torch then seeds them once, not every epoch, so the augmentations differ from Dassl's)."""
    if sampler_type not in SAMPLERS:
        raise DatasetError(
            f"Sampler {sampler_type!r} (DATALOADER.*.SAMPLER) is not supported by the native engine: use one of "
            f"{', '.join(SAMPLERS)}, or the Dassl engine for Dassl's domain/class samplers."
        )
    if not data_source:
        raise DatasetError("Cannot build a data loader over an empty split: check the dataset and its split file.")
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=transform, is_train=is_train)
    return torch.utils.data.DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=SAMPLERS[sampler_type](data_source),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        persistent_workers=bool(cfg.DATALOADER.get("PERSISTENT_WORKERS", False)) and cfg.DATALOADER.NUM_WORKERS > 0,
    )


class DataManager:
    """Dataset + transforms + loaders, as Dassl's DataManager.

    Attributes: dataset, train_loader_x, train_loader_u (None unless the dataset has train_u), val_loader
    (None when there is no val), test_loader, num_classes, num_source_domains, lab2cname, classnames.
    `dataset` may be given ready-made (else built from cfg.DATASET.NAME).
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None, dataset=None):
        dataset = build_dataset(cfg) if dataset is None else dataset
        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            log.info("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            log.info("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        dl = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg, dataset.train_x, dl.TRAIN_X.BATCH_SIZE, tfm_train, True, dl.TRAIN_X.SAMPLER, dataset_wrapper)
        self.train_loader_u = None
        if dataset.train_u:
            src = dl.TRAIN_X if dl.TRAIN_U.SAME_AS_X else dl.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg, dataset.train_u, src.BATCH_SIZE, tfm_train, True, src.SAMPLER, dataset_wrapper)
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, dataset.val, dl.TEST.BATCH_SIZE, tfm_test, False, dl.TEST.SAMPLER, dataset_wrapper)
        self.test_loader = build_data_loader(
            cfg, dataset.test, dl.TEST.BATCH_SIZE, tfm_test, False, dl.TEST.SAMPLER, dataset_wrapper)

        self.dataset = dataset
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    num_classes = property(lambda self: self._num_classes)
    num_source_domains = property(lambda self: self._num_source_domains)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self.dataset.classnames)

    def summary_table(self, cfg):
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        return tabulate(rows)

    def show_dataset_summary(self, cfg):
        log.info(self.summary_table(cfg))
