"""Transforms (Dassl's pipelines), DatasetWrapper, build_data_loader (drop_last rule) and DataManager."""
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import RandomSampler, SequentialSampler
from torchvision.transforms import InterpolationMode

from restore import get_cfg_default
from restore.data import (
    DataManager, DatasetError, DatasetWrapper, Datum, build_data_loader, build_dataset, build_transform,
)
from test_data_fakes import FAKES, write_image
from test_data_readers import make_cfg

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_cfg(size=(32, 24)):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = CLIP_MEAN, CLIP_STD
    cfg.INPUT.RRCROP_SCALE = (0.5, 1.0)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    return cfg


def kinds(tfm):
    return [type(t).__name__ for t in tfm.transforms]


def test_clip_train_and_test_pipelines():
    cfg = clip_cfg()
    train = build_transform(cfg, is_train=True)
    assert kinds(train) == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    rrc = train.transforms[0]
    assert rrc.size == (32, 24) and tuple(rrc.scale) == (0.5, 1.0) and rrc.interpolation == InterpolationMode.BICUBIC
    assert train.transforms[3].mean == CLIP_MEAN and train.transforms[3].std == CLIP_STD
    test = build_transform(cfg, is_train=False)
    assert kinds(test) == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert test.transforms[0].size == 32 and test.transforms[0].interpolation == InterpolationMode.BICUBIC
    assert tuple(test.transforms[1].size) == (32, 24)
    out = test(Image.new("RGB", (50, 40), (255, 0, 0)))
    assert out.shape == (3, 32, 24)
    assert torch.allclose(out[0], torch.full((32, 24), (1 - CLIP_MEAN[0]) / CLIP_STD[0]))


def test_other_choices_follow_dassl():
    cfg = clip_cfg()
    cfg.INPUT.TRANSFORMS = ("random_crop", "random_flip")
    cfg.INPUT.CROP_PADDING = 3
    tfm = build_transform(cfg, is_train=True)
    assert kinds(tfm) == ["RandomCrop", "RandomHorizontalFlip", "ToTensor"] and tfm.transforms[0].padding == 3
    cfg.INPUT.TRANSFORMS = ("center_crop",)  # Dassl: only a resize in training; test always center-crops
    cfg.INPUT.INTERPOLATION = "nearest"
    tfm = build_transform(cfg, is_train=True)
    assert kinds(tfm) == ["Resize", "ToTensor"] and tfm.transforms[0].size == (32, 24)
    assert tfm.transforms[0].interpolation == InterpolationMode.NEAREST
    assert kinds(build_transform(cfg, is_train=False)) == ["Resize", "CenterCrop", "ToTensor"]
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None


def test_transform_errors():
    cfg = clip_cfg()
    cfg.INPUT.TRANSFORMS = ("random_flip", "random_rotate")
    with pytest.raises(DatasetError, match="'random_rotate', which is not a transform.*random_resized_crop"):
        build_transform(cfg, is_train=True)
    cfg.INPUT.TRANSFORMS = ("randaugment_fixmatch",)
    with pytest.raises(DatasetError, match="'randaugment_fixmatch', which only Dassl implements"):
        build_transform(cfg, is_train=True)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(DatasetError, match="INPUT.INTERPOLATION is 'lanczos'"):
        build_transform(cfg, is_train=False)


def items(tmp_path, n=5):
    out = []
    for i in range(n):
        p = str(tmp_path / f"{i}.jpg")
        write_image(p, seed=i)
        out.append(Datum(p, i % 2, 1, f"c{i % 2}"))
    return out


def test_wrapper_items(tmp_path):
    cfg = clip_cfg()
    data = items(tmp_path)
    w = DatasetWrapper(cfg, data, transform=build_transform(cfg, is_train=False))
    x = w[3]
    assert set(x) == {"img", "label", "domain", "impath", "index"}
    assert (x["label"], x["domain"], x["impath"], x["index"]) == (1, 1, data[3].impath, 3)
    assert x["img"].shape == (3, 32, 24)
    assert isinstance(DatasetWrapper(cfg, data)[0]["img"], Image.Image)  # no transform: the PIL image
    cfg.DATALOADER.K_TRANSFORMS = 2
    cfg.DATALOADER.RETURN_IMG0 = True
    w = DatasetWrapper(cfg, data, transform=[T.ToTensor(), build_transform(cfg, False)], is_train=True)
    x = w[0]
    assert len(x["img"]) == 2 and len(x["img2"]) == 2 and x["img0"].shape == (3, 32, 24)


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    cfg = clip_cfg()
    w = DatasetWrapper(cfg, [Datum(str(bad), 0)], transform=build_transform(cfg, False))
    with pytest.raises(DatasetError, match=f"Cannot read image {bad}"):
        w[0]
    w = DatasetWrapper(cfg, [Datum(str(tmp_path / "gone.jpg"), 0)])
    with pytest.raises(DatasetError, match="Image not found: .*gone.jpg"):
        w[0]


def test_data_loader_drop_last_rule_and_samplers(tmp_path):
    cfg = clip_cfg()
    data = items(tmp_path, 5)
    tfm = build_transform(cfg, False)
    assert len(build_data_loader(cfg, data, 2, tfm, is_train=True, sampler_type="RandomSampler")) == 2  # drop
    assert len(build_data_loader(cfg, data, 8, tfm, is_train=True, sampler_type="RandomSampler")) == 1  # keep
    seq = build_data_loader(cfg, data, 2, tfm, is_train=False, sampler_type="SequentialSampler")
    assert len(seq) == 3 and [b["index"].tolist() for b in seq] == [[0, 1], [2, 3], [4]]
    rnd = build_data_loader(cfg, data, 5, tfm, True, "RandomSampler")
    assert type(rnd.sampler) is RandomSampler and type(seq.sampler) is SequentialSampler  # torch's, as Dassl
    assert rnd.num_workers == cfg.DATALOADER.NUM_WORKERS == 0 and rnd.drop_last and not seq.drop_last

    def order(seed):
        torch.manual_seed(seed)
        return [i for b in rnd for i in b["index"].tolist()]

    assert order(0) == order(0) and sorted(order(0)) == [0, 1, 2, 3, 4]
    assert len({tuple(order(s)) for s in range(5)}) > 1
    with pytest.raises(DatasetError, match="RandomDomainSampler"):
        build_data_loader(cfg, data, 2, tfm, True, "RandomDomainSampler")
    with pytest.raises(DatasetError, match="empty split"):
        build_data_loader(cfg, [], 2, tfm, True)


def test_data_manager(tmp_path, capsys):
    name, make, _ = FAKES["oxford_pets"]
    make(tmp_path)
    cfg = clip_cfg()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.DATASET.SUBSAMPLE_CLASSES = str(tmp_path), name, 2, "base"
    cfg.SEED = 1
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 3
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    dm = DataManager(cfg)
    assert dm.num_classes == 2 and dm.classnames == ["abyssinian", "american_bulldog"]
    assert dm.lab2cname == {0: "abyssinian", 1: "american_bulldog"} and dm.num_source_domains == 0
    assert len(dm.dataset.train_x) == 4 and len(dm.train_loader_x) == 1  # 4 images, batch 3, drop_last
    assert len(dm.dataset.val) == 2 and len(dm.val_loader) == 1
    assert len(dm.dataset.test) == 6 and len(dm.test_loader) == 2
    assert dm.train_loader_u is None
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape == (4, 3, 32, 24) and batch["label"].tolist() == [0, 0, 0, 1]
    out = capsys.readouterr().out
    table = dm.summary_table(cfg)
    assert table in out and "Loading dataset: OxfordPets" in out
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith("#") else ""): line.split()[-1]
             for line in table.splitlines() if not line.startswith("-")}
    assert lines == {"Dataset": "OxfordPets", "# classes": "2", "# train_x": "4", "# val": "2", "# test": "6"}
    # a dataset given ready-made, and no val loader without val
    name, make, _ = FAKES["imagenet_r"]
    make(tmp_path / "r")
    ready = build_dataset(make_cfg(tmp_path / "r", name))
    dm = DataManager(cfg, dataset=ready)
    assert dm.dataset is ready and dm.val_loader is None and dm.num_classes == 3 and len(dm.test_loader) == 3
