"""Saved runs stay readable: checkpoints and run records written before the method registry (by the code of
commit 59f2fa7) resume and evaluate, and a key their record lacks is compared as its default.

tests/fixtures/old_records/ holds what that code wrote for the fake OxfordPets of test_engine_fakes:
- coop_epoch1.pth.tar, coop_run_info.json: a CoOp run of 2 epochs stopped after the first (checkpoint of
  epoch 1 and the folder's run_info.json);
- maple_fsa_record.json: the record (trainer, method settings, class names, config) of a finished 1-epoch
  MaPLe_FSA run, whose method settings held TRAINER.MAPLE only (the registry adds its RESTORE and MAPLE_FSA
  nodes).
Both were made with BASE_OPTS, DATASET.NUM_SHOTS 2 on the base classes, seed 1, and TRAINER.COOP.N_CTX 2
(CoOp) / TRAINER.MAPLE_FSA.PROMPT_DEPTH 2 (MaPLe_FSA).
"""
import json
import os
import shutil

import pytest
import torch

import train
from restore.engine.run_record import RunMismatchError, check_checkpoint
from test_engine_fakes import BASE_OPTS, ROOT, make_oxford_pets

OLD = os.path.join(ROOT, "tests", "fixtures", "old_records")
DATASET_CFG = os.path.join(ROOT, "configs", "datasets", "oxford_pets.yaml")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def argv(trainer, data_root, out, *opts):
    return ["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", "native",
            "--dataset-config-file", DATASET_CFG, "--output-dir", str(out),
            *[str(x) for x in BASE_OPTS], "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
            *[str(x) for x in opts]]


COOP = ("TRAINER.COOP.N_CTX", 2, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1)


def old_coop_run(out, record=None, run_info=True):
    """The old CoOp run's folder at `out`; `record(state)` may edit the checkpoint's record first."""
    folder = out / "prompt_learner"
    folder.mkdir(parents=True)
    state = torch.load(os.path.join(OLD, "coop_epoch1.pth.tar"), map_location="cpu", weights_only=True)
    assert "METHOD_MODULES" not in state["config"]  # written before the key existed
    if record is not None:
        record(state)
    torch.save(state, folder / "model.pth.tar-1")
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    if run_info:
        shutil.copy(os.path.join(OLD, "coop_run_info.json"), out / "run_info.json")


def test_an_old_checkpoint_resumes(data_root, tmp_path):
    out = tmp_path / "out"
    old_coop_run(out)
    accuracy = train.main(argv("CoOp", data_root, out, *COOP))
    assert accuracy is not None
    log = open(out / "log.txt").read()
    assert "Found checkpoint at" in log and "resuming at epoch 2" in log and "epoch [2/2]" in log
    state = torch.load(out / "prompt_learner" / "model.pth.tar-2", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["METHOD_MODULES"] == []


def _predating_class_token_position(state):
    del state["config"]["TRAINER"]["COOP"]["CLASS_TOKEN_POSITION"]
    del state["method"]["TRAINER.COOP.CLASS_TOKEN_POSITION"]


def test_a_key_the_old_record_lacks_is_compared_as_its_default(data_root, tmp_path, capsys):
    # As if CLASS_TOKEN_POSITION had been added after the checkpoint was written: that run used the default.
    out = tmp_path / "other"
    old_coop_run(out, _predating_class_token_position, run_info=False)
    with pytest.raises(SystemExit):
        train.main(argv("CoOp", data_root, out, *COOP, "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"))
    err = capsys.readouterr().err
    assert "was trained with other CoOp settings: TRAINER.COOP.CLASS_TOKEN_POSITION 'end' (the default: the " \
           "saved record predates the key) vs 'middle' (now)" in err, err
    same = tmp_path / "same"
    old_coop_run(same, _predating_class_token_position, run_info=False)
    assert train.main(argv("CoOp", data_root, same, *COOP)) is not None  # the default: resumed
    assert (same / "prompt_learner" / "model.pth.tar-2").is_file()


def test_an_old_maple_fsa_record_matches_its_run(data_root, tmp_path):
    """The record's method settings grew (MaPLe_FSA reads TRAINER.RESTORE and TRAINER.MAPLE_FSA too): the
    keys the old record lacks there are read from its config, so the same run matches and another does not."""
    with open(os.path.join(OLD, "maple_fsa_record.json")) as f:
        state = json.load(f)
    assert set(state["method"]) == {"TRAINER.MAPLE.N_CTX", "TRAINER.MAPLE.CTX_INIT", "TRAINER.MAPLE.PREC",
                                    "TRAINER.MAPLE.PROMPT_DEPTH", "MODEL.BACKBONE"}
    opts = ("TRAINER.MAPLE.N_CTX", 2, "TRAINER.MAPLE_FSA.PROMPT_DEPTH", 2)

    def cfg(*flags):
        args = train.build_parser().parse_args([*flags, *argv("MaPLe_FSA", data_root, tmp_path, *opts)])
        return train.setup_cfg(args)
    path = "model.pth.tar-1"
    check_checkpoint(state, cfg(), state["classnames"], False, path)  # --eval-only
    check_checkpoint(state, cfg(), state["classnames"], False, path, resume=True)
    with pytest.raises(RunMismatchError, match="TRAINER.MAPLE_FSA.VIS_CALIB_R 0.1 \\(saved\\) vs 0.3 \\(now\\)"):
        check_checkpoint(state, cfg("--vis_calib_r", "0.3"), state["classnames"], False, path)
