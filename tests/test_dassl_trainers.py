"""Our trainers end to end through Dassl (skipped when Dassl cannot be imported).

For every trainer: train one epoch on the base classes of a tiny fake OxfordPets (CoOp's
split_zhou layout) with the random tiny CLIP (32 px), then a fresh trainer evaluates the saved
checkpoint on the new classes (CoOp's --eval-only flow). Also: Dassl's per-epoch LRs, resume,
best_val, and loading original-layout checkpoints that pickle a scheduler object, on whatever torch
is installed. On a GPU the configs' PREC fp16 path runs.
"""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from restore.logs import kept_enabled

try:
    with kept_enabled():  # Dassl disables logging below ERROR when imported
        import dassl.engine  # noqa: F401
except Exception as err:  # not installed, or installed without its import-time deps (wilds, ...)
    pytest.skip(f"Dassl cannot be imported ({err!r}): the Dassl trainers are checked only where "
                "it is installed", allow_module_level=True)

import restore  # noqa: E402
import trainers  # noqa: E402
from dassl.config import get_cfg_default  # noqa: E402
from dassl.engine import TRAINER_REGISTRY, build_trainer  # noqa: E402
from restore.engine import registered_name  # noqa: E402
from restore.methods import registry  # noqa: E402
from restore.engine.schedule import epoch_lr  # noqa: E402

import datasets  # noqa: E402,F401  (registers OxfordPets in Dassl)

# wilds (imported by Dassl) asks PyPI for its latest version in a thread; offline it warns.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to check for latest version")

ALL = registry.names()
CLASSES = ["abyssinian", "bengal", "birman", "bombay", "boxer", "chihuahua"]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DEVICE_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """oxford_pets/{images/, split_zhou_OxfordPets.json}: 6 classes (3 base, 3 new), 4 train,
    1 val and 2 test images per class; each class a colour, so that training can move."""
    root = tmp_path_factory.mktemp("data")
    image_dir = root / "oxford_pets" / "images"
    image_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(CLASSES):
        colour = rng.integers(0, 255, size=3)
        for i in range(7):
            pixels = np.clip(colour + rng.normal(0, 20, size=(40, 40, 3)), 0, 255)
            fname = f"{name}_{i + 1}.jpg"
            Image.fromarray(pixels.astype(np.uint8)).save(image_dir / fname)
            part = "train" if i < 4 else "val" if i == 4 else "test"
            split[part].append([fname, label, name])
    with open(root / "oxford_pets" / "split_zhou_OxfordPets.json", "w") as f:
        json.dump(split, f, indent=4)
    (root / "oxford_pets" / "SUBSET").touch()  # 6 of the 37 classes, on purpose
    return str(root)


def make_cfg(trainer, data_root, output_dir, subsample="base", epochs=1, **opts):
    cfg = get_cfg_default()
    restore.extend_cfg(cfg)
    cfg.TRAINER.NAME = trainer
    cfg.DATASET.NAME = "OxfordPets"
    cfg.DATASET.ROOT = data_root
    cfg.DATASET.NUM_SHOTS = 2
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = 1
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.USE_CUDA = DEVICE_CUDA
    cfg.MODEL.BACKBONE.NAME = "tiny-random"
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = CLIP_MEAN, CLIP_STD
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 2
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.0035
    cfg.OPTIM.MAX_EPOCH = epochs
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.OPTIM.WARMUP_CONS_LR = 1e-5
    cfg.TRAIN.PRINT_FREQ = 20
    # The tiny CLIP has 3 layers per tower.
    cfg.merge_from_list(list(registry.get(trainer).tiny))  # MMA's adapted blocks
    cfg.TRAINER.LPT.PROMPT_DEPTH_TEXT = 3
    cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 2
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 3
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 3
    cfg.TRAINER.COPROMPT.PROMPT_DEPTH = 3
    cfg.TRAINER.COPROMPT.DESCRIPTIONS = "captions"  # the testbed's generated descriptions, for any class names
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 3
    cfg.TRAINER.TCP.INSERT_LAYER = 2  # a block index: the last of 3
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 1.0
    cfg.TRAINER.COOP.N_CTX = cfg.TRAINER.COCOOP.N_CTX = 4
    for key, value in opts.items():
        node = cfg
        *path, leaf = key.split("__")
        for p in path:
            node = node[p]
        node[leaf] = value
    cfg.freeze()
    return cfg


def accuracy(output):
    found = re.findall(r"\* accuracy: ([\d.]+)%", output)
    assert found, output[-2000:]
    return float(found[-1])


def learned(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_to_save().items()
            if torch.is_tensor(v)}


@pytest.mark.parametrize("name", ALL)
def test_train_base_then_eval_new(name, data_root, tmp_path, capsys):
    out = tmp_path / "train_base"
    trainer = build_trainer(make_cfg(name, data_root, out))
    assert type(trainer) is TRAINER_REGISTRY.get(name)
    assert trainer.dm.dataset.classnames == CLASSES[:3]
    trainer.train()
    log = capsys.readouterr().out
    assert ("Finish training" in log) != (name == "ZeroshotCLIP")
    base_acc = accuracy(log)
    assert 0 <= base_acc <= 100

    if name == "ZeroshotCLIP":  # nothing trained, nothing saved
        assert not out.exists() or not any(p.is_dir() for p in out.iterdir()
                                           if p.name != "tensorboard")
    else:
        folder = out / registered_name(name)
        assert (folder / "model.pth.tar-1").is_file()
        assert (folder / "checkpoint").read_text().strip() == "model.pth.tar-1"
        # Only our learned state, and loadable with torch's safe default.
        ckpt = torch.load(folder / "model.pth.tar-1", map_location="cpu", weights_only=True)
        assert not any(k.startswith("clip.") for k in ckpt["state_dict"])
        assert ckpt["epoch"] == 1 and ckpt["val_result"] is None
        # The LR of epoch 0 was the warm-up LR; one step later the schedule's next value.
        assert trainer.optim.param_groups[0]["lr"] == pytest.approx(epoch_lr(trainer.cfg.OPTIM, 1))
    trained = learned(trainer.model)

    # --eval-only on the new classes, from the base-class checkpoint.
    new = build_trainer(make_cfg(name, data_root, tmp_path / "test_new", subsample="new"))
    assert new.dm.dataset.classnames == CLASSES[3:]
    new.load_model(str(out), epoch=1)
    for key, value in learned(new.model).items():
        if key in trained and not key.startswith(("alpha_ema", "release_init")):
            assert torch.equal(value, trained[key]), key
    new.test()
    log = capsys.readouterr().out
    assert "val_result" not in log
    new_acc = accuracy(log)
    print(f"{name}: base {base_acc:.1f}% new {new_acc:.1f}%")


def test_lr_per_epoch_resume_and_gpa(data_root, tmp_path, capsys):
    """PromptSRC for 3 epochs: Dassl's per-epoch LRs (constant warm-up, then cosine shifted by one
    epoch), the GPA swap before saving, and resuming a finished run into the same folder."""
    cfg = make_cfg("PromptSRC", data_root, tmp_path, epochs=3, TRAINER__PROMPTSRC__GPA_MEAN=2.0)
    trainer = build_trainer(cfg)
    seen = []
    original = trainer.forward_backward

    def spy(batch):
        seen.append((trainer.epoch, trainer.get_current_lr()))
        return original(batch)

    trainer.forward_backward = spy
    trainer.train()
    lrs = {e: lr for e, lr in seen}
    assert lrs == pytest.approx({e: epoch_lr(cfg.OPTIM, e) for e in range(3)})
    assert lrs[0] == 1e-5 and lrs[1] == pytest.approx(0.0035)
    log = capsys.readouterr().out
    assert log.count("Using GPA model for final inference") == 1
    saved = torch.load(tmp_path / "VLPromptLearner" / "model.pth.tar-3", weights_only=True)
    for key, value in learned(trainer.model).items():
        assert torch.equal(saved["state_dict"][key].cpu(), value), key

    # Re-running into the same output dir resumes (Dassl's behaviour): nothing left to train.
    again = build_trainer(cfg)
    again.train()
    log = capsys.readouterr().out
    assert "will resume training" in log and "epoch [" not in log
    assert again.start_epoch == 3


def test_interrupted_run_resumes_to_the_same_prompts(data_root, tmp_path, capsys):
    """Stopped after epoch 1 of 2 (CHECKPOINT_FREQ 1), a re-run resumes and ends with the same
    prompts as the uninterrupted run: model, optimizer, LR, RNG and PromptSRC's GPA sum restored."""
    cfg = make_cfg("PromptSRC", data_root, tmp_path, epochs=2, TRAIN__CHECKPOINT_FREQ=1,
                   TRAINER__PROMPTSRC__GPA_MEAN=1.5, TEST__NO_TEST=True)
    full = build_trainer(cfg)
    full.train()
    expected = learned(full.model)
    folder = tmp_path / "VLPromptLearner"
    (folder / "model.pth.tar-2").unlink()
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    capsys.readouterr()

    resumed = build_trainer(cfg)
    resumed.train()
    log = capsys.readouterr().out
    assert "will resume training" in log and "epoch [1/2]" not in log and "epoch [2/2]" in log
    for key, value in learned(resumed.model).items():
        assert torch.allclose(value, expected[key], atol=1e-6), key


def test_best_val_saves_and_deploys_best(data_root, tmp_path, capsys):
    cfg = make_cfg("CoOp", data_root, tmp_path, epochs=2, TEST__FINAL_MODEL="best_val")
    trainer = build_trainer(cfg)
    trainer.train()
    log = capsys.readouterr().out
    assert "Deploy the model with the best val performance" in log
    best = torch.load(tmp_path / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    assert isinstance(best["val_result"], float)
    assert re.search(r'from ".*model-best.pth.tar" \(epoch = \d\)', log)


def _original_checkpoint(trainer_name, model):
    """A checkpoint in the original trainers' layout, as Dassl's save_model writes it: the state
    dict of the registered module, fp16 prompts, frozen weights, class buffers, and a pickled
    scheduler object (what makes torch >= 2.6 refuse it with weights_only=True)."""
    from test_legacy import original_state_dict

    state = original_state_dict(trainer_name, model)
    params = [torch.nn.Parameter(torch.zeros(2))]
    optim = torch.optim.SGD(params, lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=5.0)
    return {"state_dict": state, "epoch": 5, "optimizer": optim.state_dict(),
            "scheduler": {"successor": sched, "last_epoch": 5}, "val_result": None}


@pytest.mark.parametrize("name", ["CoOp", "CoCoOp", "VPT", "IVLP", "MaPLe", "PromptSRC"])
def test_eval_only_from_original_checkpoint(name, data_root, tmp_path, capsys):
    cfg = make_cfg(name, data_root, tmp_path / "out", subsample="new")
    trainer = build_trainer(cfg)
    reference = restore.build_model(cfg, CLASSES[:3], restore.tiny_clip())
    with torch.no_grad():
        for p in reference.trainable_parameters():
            p.normal_(std=0.1)
    folder = tmp_path / "orig" / registered_name(name)
    folder.mkdir(parents=True)
    torch.save(_original_checkpoint(name, reference), folder / "model.pth.tar-5")
    with pytest.raises(Exception):  # what Dassl's own load_checkpoint hits on torch >= 2.6
        torch.load(folder / "model.pth.tar-5", weights_only=True)
    trainer.load_model(str(tmp_path / "orig"), epoch=5)
    for key, value in learned(reference).items():
        assert torch.allclose(learned(trainer.model)[key], value, atol=1e-3), key
    trainer.test()
    accuracy(capsys.readouterr().out)


def test_resume_from_original_checkpoint(data_root, tmp_path, capsys):
    """An original MaPLe run stopped after epoch 1 of 2 resumes: prompts loaded, the LR of epoch 2
    from the schedule (its pickled scheduler and whole-model optimizer are not reused)."""
    cfg = make_cfg("MaPLe", data_root, tmp_path, epochs=2, TEST__NO_TEST=True)
    reference = restore.build_model(cfg, CLASSES[:3], restore.tiny_clip())
    folder = tmp_path / "MultiModalPromptLearner"
    folder.mkdir()
    checkpoint = _original_checkpoint("MaPLe", reference)
    checkpoint["epoch"] = 1
    torch.save(checkpoint, folder / "model.pth.tar-1")
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    trainer = build_trainer(cfg)
    seen = []
    original = trainer.forward_backward

    def spy(batch):
        seen.append((trainer.epoch, trainer.get_current_lr()))
        return original(batch)

    trainer.forward_backward = spy
    trainer.train()
    log = capsys.readouterr().out
    assert "an original (non-RESTORE) checkpoint" in log
    assert {e for e, _ in seen} == {1}
    assert seen[0][1] == pytest.approx(epoch_lr(cfg.OPTIM, 1))
    assert (folder / "model.pth.tar-2").is_file()


def test_registered_and_reimport_safe():
    import importlib

    for name in ALL:
        assert TRAINER_REGISTRY.get(name) is trainers.TRAINERS[name]
    importlib.reload(importlib.import_module("trainers.maple"))  # registering again never raises
    assert issubclass(TRAINER_REGISTRY.get("RESTORE_m"), trainers.MaPLe)
    assert issubclass(TRAINER_REGISTRY.get("RESTORE_p"), trainers.PromptSRC)
    assert issubclass(TRAINER_REGISTRY.get("MaPLe_FSA"), trainers.RESTORE_m)  # the release's name


def test_dassl_warmup_scheduler_is_never_built(data_root, tmp_path, monkeypatch):
    """Dassl's warm-up wrappers break on torch >= 2.7 (removed `verbose`); ours never call them."""
    import dassl.optim

    def boom(*args, **kwargs):
        raise AssertionError("dassl.optim.build_lr_scheduler was called")

    monkeypatch.setattr(dassl.optim, "build_lr_scheduler", boom)
    monkeypatch.setattr("dassl.engine.trainer.build_lr_scheduler", boom)
    trainer = build_trainer(make_cfg("MaPLe", data_root, tmp_path))
    assert type(trainer.sched).__name__ == "EpochLR"
