"""Saved and cached state is checked against the run about to use it (faults of section 3 of the trust
issue): checkpoints of another trainer, settings or classes; reruns into a folder made with another
config; the scripts' "finished" check; caches of a moved or changed dataset; seed folders of different
runs averaged together; and the run record (versions, hashes) of every run.

One IVLP run (3 epochs on the base classes of a fake OxfordPets, tiny CLIP read from a file) is trained
once per module; every refusal is checked to leave that folder unchanged.
"""
import hashlib
import json
import os
import pickle
import shutil
import subprocess

import pytest
import torch

import parse_test_res
import train
from restore.backbone import save_clip, tiny_clip, tiny_clip_dims
from restore.data import DatasetError, build_dataset
from restore.engine import Trainer
from restore.engine.run_record import RunMismatchError
from test_data_fakes import FAKES
from test_data_readers import make_cfg as data_cfg
from test_data_readers import rows
from test_engine_fakes import CLASSNAMES, ROOT, cli_opts, make_cfg, make_oxford_pets

DATASET_CFG = "configs/datasets/oxford_pets.yaml"
BASE = ["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"]
NEW = ["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new"]
TRAINED = ["OPTIM.MAX_EPOCH", 3, "OPTIM.WARMUP_EPOCH", 0, *BASE]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """(data root, backbone file, finished 3-epoch IVLP run folder)."""
    root = tmp_path_factory.mktemp("state")
    make_oxford_pets(str(root / "data"))
    backbone = str(root / "tiny_clip.pt")
    save_clip(tiny_clip(0), backbone, tiny_clip_dims())
    out = root / "ivlp"
    assert run(root / "data", backbone, "IVLP", out, opts=TRAINED) is not None
    return str(root / "data"), backbone, out


def run(data_root, backbone, trainer, out, *extra, opts=()):
    args = ["--root", str(data_root), "--seed", "1", "--trainer", trainer, "--engine", "native",
            "--dataset-config-file", DATASET_CFG, "--output-dir", str(out), *extra]
    return train.main(args + cli_opts(trainer, "MODEL.BACKBONE.PATH", backbone, *opts))


def refused(capsys, *args, **kwargs):
    """Run train.main expecting the one-line error exit; returns the error line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(*args, **kwargs)
    assert info.value.code == 1
    return capsys.readouterr().err.splitlines()[0]


def snapshot(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


def checkpoint(folder, epoch=3, name="VLPromptLearner"):
    return torch.load(os.path.join(folder, name, f"model.pth.tar-{epoch}"), weights_only=True)


# ------------------------------------------------------------------------ checkpoint records
def test_checkpoint_records_trainer_settings_and_classes(run_dirs):
    _, backbone, out = run_dirs
    saved = checkpoint(out)
    assert saved["trainer"] == "IVLP"
    assert saved["classnames"] == CLASSNAMES[:3]  # the base half of 6 classes
    assert saved["method"]["TRAINER.IVLP.PROMPT_DEPTH_TEXT"] == 2
    assert saved["method"]["MODEL.BACKBONE"] == os.path.basename(backbone)
    assert saved["config"]["OPTIM"]["MAX_EPOCH"] == 3 and saved["config"]["SEED"] == 1


def test_eval_as_another_trainer_is_refused(run_dirs, tmp_path, capsys):
    """IVLP and PromptSRC share the VLPromptLearner folder and, with equal prompt sizes, the keys and
    shapes: only the record tells them apart."""
    data, backbone, out = run_dirs
    before = snapshot(out)
    same_shapes = ["TRAINER.PROMPTSRC.N_CTX_TEXT", 2, "TRAINER.PROMPTSRC.N_CTX_VISION", 2,
                   "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2]
    line = refused(capsys, data, backbone, "PromptSRC", tmp_path / "as_src", "--eval-only",
                   "--model-dir", str(out), "--load-epoch", "3", opts=NEW + same_shapes)
    path = os.path.join(out, "VLPromptLearner", "model.pth.tar-3")
    assert line == (f"Error: {path} was trained with IVLP, not PromptSRC: pass --trainer IVLP with the "
                    "config it was trained with, or point --model-dir at a PromptSRC run.")
    # Positive control: the same checkpoint evaluated as IVLP on the new classes (other class names,
    # class-agnostic prompts) is legal.
    assert run(data, backbone, "IVLP", tmp_path / "as_ivlp", "--eval-only", "--model-dir", str(out),
               "--load-epoch", "3", opts=NEW) is not None
    assert snapshot(out) == before


def test_eval_with_other_method_settings_is_refused(run_dirs, tmp_path, capsys):
    data, backbone, out = run_dirs
    line = refused(capsys, data, backbone, "IVLP", tmp_path / "e", "--eval-only", "--model-dir",
                   str(out), "--load-epoch", "3", opts=NEW + ["TRAINER.IVLP.CTX_INIT", "a photo"])
    assert "was trained with other IVLP settings: TRAINER.IVLP.CTX_INIT 'a photo of a' (saved) vs " \
           "'a photo' (now). Use the settings it was trained with" in line
    # Evaluation-time keys (precision) are not method settings of the saved state.
    assert run(data, backbone, "IVLP", tmp_path / "fp32", "--eval-only", "--model-dir", str(out),
               "--load-epoch", "3", opts=NEW + ["TRAINER.IVLP.PREC", "fp32"]) is not None


def test_class_specific_contexts_on_other_classes_are_refused(run_dirs, tmp_path, capsys):
    """CoOp with CSC learns one context per class; base and new have 3 classes each, so the shapes
    match and only the recorded class names show the mix-up."""
    data, backbone, _ = run_dirs
    csc = ["TRAINER.COOP.CSC", True]
    out = tmp_path / "csc"
    run(data, backbone, "CoOp", out, opts=BASE + csc)
    line = refused(capsys, data, backbone, "CoOp", tmp_path / "new", "--eval-only", "--model-dir",
                   str(out), "--load-epoch", "1", opts=NEW + csc)
    assert "holds class-specific contexts (TRAINER.COOP.CSC) learned for 3 classes: abyssinian, " \
           "beagle, boxer, not for this run's 3 classes: chihuahua, persian, pug" in line
    assert not os.path.exists(tmp_path / "new" / "run_info.json")
    assert run(data, backbone, "CoOp", tmp_path / "base", "--eval-only", "--model-dir", str(out),
               "--load-epoch", "1", opts=BASE + csc) is not None


def test_original_checkpoint_without_record_still_loads(run_dirs, tmp_path, capsys):
    """A CoOp-lineage checkpoint (state_dict + epoch only) has no record: it loads, with a note."""
    data, backbone, out = run_dirs
    original = tmp_path / "orig" / "VLPromptLearner"
    original.mkdir(parents=True)
    saved = checkpoint(out)
    torch.save({"state_dict": saved["state_dict"], "epoch": 3}, original / "model.pth.tar-3")
    capsys.readouterr()
    assert run(data, backbone, "IVLP", tmp_path / "e", "--eval-only", "--model-dir",
               str(tmp_path / "orig"), "--load-epoch", "3", opts=NEW) is not None
    assert "has no record of the trainer, settings and classes it was trained with" in \
        capsys.readouterr().out


# ------------------------------------------------------------------- reruns into a used folder
def test_rerun_with_other_schedule_is_refused(run_dirs, tmp_path, capsys):
    """A finished 3-epoch run rerun with MAX_EPOCH 5: today it would resume at epoch 4 of a 5-epoch
    cosine. Refused before any work, folder unchanged; operational keys still resume."""
    data, backbone, out = run_dirs
    before = snapshot(out)
    line = refused(capsys, data, backbone, "IVLP", out, opts=TRAINED + ["OPTIM.MAX_EPOCH", 5])
    assert line == (f"Error: {out} holds a finished run made with other settings: OPTIM.MAX_EPOCH 3 "
                    f"(saved) vs 5 (now). Choose a new output folder (--output-dir, or OUTPUT for the "
                    f"scripts), or delete {out} to run it again.")
    line = refused(capsys, data, backbone, "IVLP", out,
                   opts=TRAINED + ["DATALOADER.NUM_WORKERS", 1])
    assert "DATALOADER.NUM_WORKERS 0 (saved) vs 1 (now)" in line
    assert snapshot(out) == before

    # Not finished (only epoch 2 saved, as after a kill): resuming with another schedule is refused.
    part = tmp_path / "part"
    shutil.copytree(out, part)
    os.remove(part / "VLPromptLearner" / "model.pth.tar-3")
    (part / "VLPromptLearner" / "checkpoint").write_text("model.pth.tar-2\n")
    shutil.copy(os.path.join(out, "VLPromptLearner", "model.pth.tar-3"),
                part / "VLPromptLearner" / "model.pth.tar-2")
    for log in [f for f in os.listdir(part) if f.startswith("log.txt")]:
        os.remove(part / log)
    line = refused(capsys, data, backbone, "IVLP", part, opts=TRAINED + ["OPTIM.LR", 0.02])
    assert line.startswith(f"Error: {part} holds checkpoints of a run made with other settings: "
                           f"OPTIM.LR 0.01 (saved) vs 0.02 (now). Resuming would mix them")

    # The engines check the checkpoint's own record too (Python API, --resume elsewhere).
    cfg = make_cfg("IVLP", data, part, "MODEL.BACKBONE.PATH", backbone, "SEED", 1, *TRAINED,
                   "OPTIM.MAX_EPOCH", 5)
    with pytest.raises(RunMismatchError, match=r"OPTIM.MAX_EPOCH 3 \(saved\) vs 5 \(now\)"):
        Trainer(cfg).train()

    # Operational keys (print frequency, output path, where the backbone file lies) are not
    # compared: a requeued job on another node resumes.
    moved = tmp_path / "requeued"
    shutil.copytree(out, moved)
    os.makedirs(tmp_path / "node2")
    backbone2 = shutil.copy(backbone, tmp_path / "node2")
    assert run(data, backbone2, "IVLP", moved, opts=TRAINED + ["TRAIN.PRINT_FREQ", 1]) is not None
    log = (moved / max(f for f in os.listdir(moved) if f.startswith("log.txt-"))).read_text()
    assert "resuming at epoch 4" in log and "epoch [" not in log and "=> result" in log


def test_check_finished_notices_epoch_and_overrides(run_dirs, tmp_path, capsys):
    """train.py --check-finished, which scripts/common.sh calls: 0 = same finished run (skip),
    3 = nothing finished (run), 1 = finished with another LOADEP or other overrides."""
    data, backbone, out = run_dirs
    ev = tmp_path / "eval"
    run(data, backbone, "IVLP", ev, "--eval-only", "--model-dir", str(out), "--load-epoch", "3",
        opts=NEW)

    def check(folder, *extra, opts=NEW):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            run(data, backbone, "IVLP", folder, "--check-finished", "--eval-only", "--model-dir",
                str(out), *extra, opts=opts)
        return info.value.code, capsys.readouterr()

    code, outs = check(ev, "--load-epoch", "3")
    assert code == 0 and f"Results are available in {ev}. Skip this job" in outs.out
    code, outs = check(ev, "--load-epoch", "2")
    assert code == 1 and "--load-epoch (LOADEP) 3 (saved) vs 2 (now)" in outs.err
    code, outs = check(ev, "--load-epoch", "3", opts=NEW + ["TEST.PER_CLASS_RESULT", "True"])
    assert code == 1 and "TEST.PER_CLASS_RESULT False (saved) vs True (now)" in outs.err
    code, outs = check(tmp_path / "empty", "--load-epoch", "3")
    assert code == 3 and outs.out == "" and not os.path.exists(tmp_path / "empty")


# --------------------------------------------------------------------------------- caches
def fewshot_cache(root, shots=2, seed=1):
    return os.path.join(root, "oxford_pets", "split_fewshot", f"shot_{shots}-seed_{seed}.pkl")


def test_moved_dataset_keeps_its_fewshot_sample(tmp_path):
    make_oxford_pets(str(tmp_path / "old"))
    first = build_dataset(data_cfg(tmp_path / "old", "OxfordPets", shots=2))
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    cache_bytes = open(fewshot_cache(tmp_path / "new"), "rb").read()
    moved = build_dataset(data_cfg(tmp_path / "new", "OxfordPets", shots=2))
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    assert rows(moved.train_x) == [(p.replace(old, new, 1), y, c) for p, y, c in rows(first.train_x)]
    assert rows(moved.val) == [(p.replace(old, new, 1), y, c) for p, y, c in rows(first.val)]
    assert open(fewshot_cache(tmp_path / "new"), "rb").read() == cache_bytes  # left as CoOp wrote it


@pytest.mark.parametrize("change", ["renamed_class", "label_shift", "new_class"])
def test_changed_dataset_refuses_its_fewshot_cache(tmp_path, change):
    make_oxford_pets(str(tmp_path))
    build_dataset(data_cfg(tmp_path, "OxfordPets", shots=2))
    cache = fewshot_cache(tmp_path)
    cache_bytes = open(cache, "rb").read()
    split_path = tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json"
    split = json.loads(split_path.read_text())
    for part in split.values():
        for entry in part:
            if change == "renamed_class" and entry[2] == "beagle":
                entry[2] = "basset"
            if change == "label_shift":
                entry[1] = (entry[1] + 1) % 6
    if change == "new_class":  # a seventh class, with copies of the first one's images
        for p, y, _ in [e for e in split["train"] if e[1] == 0]:
            shutil.copy(tmp_path / "oxford_pets" / "images" / p, tmp_path / "oxford_pets" / "images" / f"x_{p}")
            split["train"].append([f"x_{p}", 6, "sphynx"])
    split_path.write_text(json.dumps(split))
    with pytest.raises(DatasetError) as err:
        build_dataset(data_cfg(tmp_path, "OxfordPets", shots=2))
    msg = str(err.value)
    assert msg.startswith(f"The few-shot cache {cache} ")
    assert ("no images of 1 class(es)" in msg) if change == "new_class" else ("does not match" in msg)
    assert f"delete {cache} to draw a new sample" in msg
    assert open(cache, "rb").read() == cache_bytes  # never silently re-sampled


def test_preprocessed_imagenet_moved_and_changed(tmp_path):
    _, make, _ = FAKES["imagenet"]
    make(str(tmp_path / "old"))
    first = build_dataset(data_cfg(tmp_path / "old", "ImageNet"))
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    moved = build_dataset(data_cfg(tmp_path / "new", "ImageNet"))
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    assert rows(moved.test) == [(p.replace(old, new, 1), y, c) for p, y, c in rows(first.test)]
    # A class folder added since preprocessed.pkl was written: labels would shift.
    for split in ("train", "val"):
        extra = tmp_path / "new" / "imagenet" / "images" / split / "n01443000"
        extra.mkdir()
        shutil.copy(moved.test[0].impath, extra / "x.JPEG")
    with pytest.raises(DatasetError) as err:
        build_dataset(data_cfg(tmp_path / "new", "ImageNet"))
    pkl = os.path.join(new, "imagenet", "preprocessed.pkl")
    assert str(err.value).startswith(f"{pkl} was made from other class folders or class names than "
                                     "today's (4 cached vs 5 folders)")


# ------------------------------------------------------------------------ parse_test_res.py
def seed_folder(parent, seed, cfg_changes=(), accuracy=50.0):
    from restore.config import get_cfg_default
    from restore.engine.run_record import plain
    cfg = get_cfg_default()
    cfg.merge_from_list(["SEED", seed, "TRAINER.NAME", "IVLP", *cfg_changes])
    folder = os.path.join(parent, f"seed{seed}")
    os.makedirs(folder)
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write(f"Finish training\n=> result\n* accuracy: {accuracy:.2f}%\n")
    with open(os.path.join(folder, "run_info.json"), "w") as f:
        json.dump({"config": plain(cfg), "eval": None, "trainer": "IVLP"}, f)
    return folder


def test_parse_test_res_refuses_seeds_of_other_runs(tmp_path, capsys):
    seed_folder(tmp_path / "same", 1, accuracy=50.0)
    seed_folder(tmp_path / "same", 2, accuracy=60.0)
    parse_test_res.main([str(tmp_path / "same")])
    assert "* accuracy: 55.00% +- 5.00%" in capsys.readouterr().out

    seed_folder(tmp_path / "mixed", 1)
    stale = seed_folder(tmp_path / "mixed", 2, ["OPTIM.MAX_EPOCH", 5])
    with pytest.raises(SystemExit) as info:
        parse_test_res.main([str(tmp_path / "mixed")])
    assert str(info.value).startswith(f"Error: {stale} was made with other settings than "
                                      f"{tmp_path / 'mixed' / 'seed1'}: OPTIM.MAX_EPOCH 10 (saved) "
                                      "vs 5 (now)")
    seed_folder(tmp_path / "trainers", 1)
    other = seed_folder(tmp_path / "trainers", 2, ["TRAINER.NAME", "PromptSRC"])
    with pytest.raises(SystemExit) as info:
        parse_test_res.main([str(tmp_path / "trainers")])
    assert f"{other} was made with other settings" in str(info.value)
    assert "TRAINER.NAME 'IVLP' (saved) vs 'PromptSRC' (now)" in str(info.value)

    # Original CoOp-lineage outputs (log.txt only) are parsed as before.
    for seed, acc in ((1, 40.0), (2, 44.0)):
        os.remove(seed_folder(tmp_path / "orig", seed, accuracy=acc) + "/run_info.json")
    parse_test_res.main([str(tmp_path / "orig")])
    assert "* accuracy: 42.00% +- 2.00%" in capsys.readouterr().out


# --------------------------------------------------------------------------------- run record
def test_run_record_in_log_and_run_info(run_dirs):
    data, backbone, out = run_dirs
    info = json.loads((out / "run_info.json").read_text())
    log = (out / "log.txt").read_text()
    cache = fewshot_cache(data, shots=4)
    cache_sha = hashlib.sha256(open(cache, "rb").read()).hexdigest()
    backbone_sha = hashlib.sha256(open(backbone, "rb").read()).hexdigest()
    assert info["fewshot_cache"] == {"path": cache, "sha256": cache_sha}
    assert info["backbone"] == {"name": backbone, "path": backbone, "sha256": backbone_sha}
    assert info["versions"]["torch"] == torch.__version__
    assert info["config"]["OPTIM"]["MAX_EPOCH"] == 3 and info["eval"] is None
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert info["code"]["git_commit"] == (commit or None)
    assert f"few-shot cache: {cache} sha256 {cache_sha}" in log
    assert f"backbone: {backbone} sha256 {backbone_sha}" in log
    # Before the first training line.
    assert log.index("** Run record") < log.index("epoch [1/3]")


def test_file_sha256_reads_in_chunks(tmp_path):
    from restore.engine.provenance import file_sha256
    path = tmp_path / "blob"
    data = pickle.dumps(list(range(5000)))
    path.write_bytes(data)
    assert file_sha256(str(path), chunk=1000) == hashlib.sha256(data).hexdigest()
