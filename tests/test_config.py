"""Config: every trainer's node, and the anchors' yaml files (ints where we default to floats)."""
import pytest

import restore
from restore.config import merge_from_file, merge_from_list


def test_every_trainer_node_and_anchor_defaults():
    cfg = restore.get_cfg_default()
    for node in ("COOP", "COCOOP", "LPT", "VPT", "IVLP", "MAPLE", "PROMPTSRC", "RESTORE"):
        assert node in cfg.TRAINER
    assert (cfg.TRAINER.MAPLE.N_CTX, cfg.TRAINER.MAPLE.PROMPT_DEPTH) == (2, 9)
    assert cfg.TRAINER.MAPLE.CTX_INIT == "a photo of a"
    assert cfg.TRAINER.PROMPTSRC.GPA_MEAN == 15 and cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT == 25
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all" and cfg.OPTIM.WARMUP_CONS_LR == 1e-5
    r = cfg.TRAINER.RESTORE
    assert (r.FS.DEFINITION, r.FS.NORM, r.FS.WEIGHT, r.FS.TEXT_CLASSES) == ("paper", "relative", 1.0, 0)
    assert (r.SURGERY.MODE, r.SURGERY.GAMMA, r.SURGERY.BETA, r.SURGERY.EMA) == ("fs_guided", 0.05, 0.05, 0.9)


def test_anchor_yaml_integers_merge_into_float_keys(tmp_path):
    path = tmp_path / "promptsrc.yaml"
    path.write_text("TRAINER:\n  PROMPTSRC:\n    GPA_MEAN: 6\n    GPA_STD: 10\nOPTIM:\n  MAX_EPOCH: 20\n")
    cfg = restore.get_cfg_default()
    merge_from_file(cfg, str(path))
    assert cfg.TRAINER.PROMPTSRC.GPA_MEAN == 6.0 and isinstance(cfg.TRAINER.PROMPTSRC.GPA_MEAN, float)
    assert cfg.OPTIM.MAX_EPOCH == 20 and isinstance(cfg.OPTIM.MAX_EPOCH, int)
    merge_from_list(cfg, ["TRAINER.RESTORE.FS.WEIGHT", "2", "TRAINER.PROMPTSRC.GPA_STD", "1.5"])
    assert cfg.TRAINER.RESTORE.FS.WEIGHT == 2.0 and cfg.TRAINER.PROMPTSRC.GPA_STD == 1.5
    with pytest.raises(ValueError):  # other type errors are still errors
        merge_from_list(cfg, ["OPTIM.MAX_EPOCH", "2.5"])
