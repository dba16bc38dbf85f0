"""`build_transform(cfg, is_train)` with Dassl's semantics (docs/REPRODUCING.md section 3).

Train: Resize(SIZE) only when neither random_crop nor random_resized_crop is chosen -> RandomCrop(SIZE,
padding=CROP_PADDING) -> RandomResizedCrop(SIZE, scale=RRCROP_SCALE) -> RandomHorizontalFlip -> RandAugment(RANDAUGMENT_N,
RANDAUGMENT_M) (restore/data/randaugment.py, Dassl's ops and random draws) -> ColorJitter
-> RandomGrayscale -> RandomApply(GaussianBlur) -> ToTensor -> Normalize, each only if chosen, in Dassl's
order. Test (always): Resize(max(SIZE)) -> CenterCrop(SIZE) -> ToTensor -> Normalize (if chosen).
"center_crop" is accepted and, as in Dassl, changes nothing (test always center-crops).
Dassl's printed lines are kept, so both engines log the same.
"""
import torchvision.transforms as T
import logging

from torchvision.transforms import InterpolationMode

from .errors import DatasetError
from .randaugment import RandAugment

log = logging.getLogger(__name__)

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

SUPPORTED_CHOICES = (
    "random_flip", "random_resized_crop", "normalize", "random_crop", "center_crop",
    "colorjitter", "randomgrayscale", "gaussian_blur", "randaugment",
)
# In Dassl's list but not implemented here: use the Dassl engine for them.
DASSL_ONLY_CHOICES = (
    "instance_norm", "random_translation", "cutout", "imagenet_policy", "cifar10_policy", "svhn_policy",
    "randaugment_fixmatch", "randaugment2", "gaussian_noise",
)


def interpolation_mode(cfg):
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise DatasetError(
            f"INPUT.INTERPOLATION is {name!r}; it must be one of {', '.join(INTERPOLATION_MODES)}."
        )
    return INTERPOLATION_MODES[name]


def check_choices(choices):
    for choice in choices:
        if choice in SUPPORTED_CHOICES:
            continue
        if choice in DASSL_ONLY_CHOICES:
            raise DatasetError(
                f"INPUT.TRANSFORMS contains {choice!r}, which only Dassl implements: run with the Dassl engine "
                f"or remove it. Supported here: {', '.join(SUPPORTED_CHOICES)}."
            )
        raise DatasetError(
            f"INPUT.TRANSFORMS contains {choice!r}, which is not a transform. "
            f"Supported: {', '.join(SUPPORTED_CHOICES)}."
        )


def build_transform(cfg, is_train=True, choices=None):
    """The train or test transform for cfg.INPUT (choices default to INPUT.TRANSFORMS); None if NO_TRANSFORM."""
    if cfg.INPUT.NO_TRANSFORM:
        log.warning("Note: no transform is applied!")
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    check_choices(choices)
    interp = interpolation_mode(cfg)
    size = tuple(cfg.INPUT.SIZE)
    target = f"{size[0]}x{size[1]}"
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    tfms = []

    if is_train:
        log.info("Building transform_train")
        if "random_crop" not in choices and "random_resized_crop" not in choices:
            log.info(f"+ resize to {target}")
            tfms.append(T.Resize(size, interpolation=interp))
        if "random_crop" in choices:
            log.info(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
            tfms.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
        if "random_resized_crop" in choices:
            scale = tuple(cfg.INPUT.RRCROP_SCALE)
            log.info(f"+ random resized crop (size={size}, scale={scale})")
            tfms.append(T.RandomResizedCrop(size, scale=scale, interpolation=interp))
        if "random_flip" in choices:
            log.info("+ random flip")
            tfms.append(T.RandomHorizontalFlip())
        if "randaugment" in choices:
            n, m = cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M
            log.info(f"+ randaugment (n={n}, m={m})")
            tfms.append(RandAugment(n, m))
        if "colorjitter" in choices:
            b, c, s, h = (cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C, cfg.INPUT.COLORJITTER_S,
                          cfg.INPUT.COLORJITTER_H)
            log.info(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
            tfms.append(T.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))
        if "randomgrayscale" in choices:
            log.info("+ random gray scale")
            tfms.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
        if "gaussian_blur" in choices:
            log.info(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
            tfms.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    else:
        log.info("Building transform_test")
        log.info(f"+ resize the smaller edge to {max(size)}")
        tfms.append(T.Resize(max(size), interpolation=interp))
        log.info(f"+ {target} center crop")
        tfms.append(T.CenterCrop(size))

    log.info("+ to torch tensor of range [0, 1]")
    tfms.append(T.ToTensor())
    if "normalize" in choices:
        log.info(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfms.append(normalize)
    return T.Compose(tfms)
