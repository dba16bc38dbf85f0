"""The official release's own commands: `--trainer MaPLe_FSA` with its yaml files, its TRAINER.MAPLE_FSA
node and its --vis_calib_r / --text_calib_r / --fs_loss_r flags, read as RESTORE_m's release variant."""
import pytest

import restore
import train
from restore.engine import registered_name
from restore.methods import MaPLe_FSA, RESTORE_m, registry

RELEASE = "configs/trainers/MaPLe_FSA/"


def setup(*argv):
    return train.setup_cfg(train.build_parser().parse_args(["--trainer", "MaPLe_FSA", *argv]))


@pytest.mark.parametrize("name,epochs,depth", [
    ("vit_b16_c2_ep5_batch4_2ctx", 10, 9),  # the release's "ep5" config trains 10 epochs
    ("vit_b16_c2_ep10_batch4_2ctx_promptdepth12", 10, 12),
    ("vit_b16_c2_ep5_batch4_2ctx_cross_datasets", 2, 9),
])
def test_release_yaml_maps_onto_restore_m(name, epochs, depth):
    cfg = setup("--config-file", RELEASE + name + ".yaml")
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == \
        ("sgd", 0.0035, epochs, 4)
    m = cfg.TRAINER.MAPLE
    assert (m.N_CTX, m.CTX_INIT, m.PROMPT_DEPTH, m.PREC) == (2, "a photo of a", depth, "fp16")
    r = cfg.TRAINER.RESTORE
    assert (r.FS.DEFINITION, r.SURGERY.MODE) == ("release", "release")
    # No flags: the values the release's own train.py gives (its flag defaults).
    assert (r.SURGERY.RELEASE_VIS_R, r.SURGERY.RELEASE_TEXT_R, r.FS.WEIGHT) == (0.1, 0.1, 1.0)


def test_flags_and_trailing_keys():
    cfg = setup("--config-file", RELEASE + "vit_b16_c2_ep5_batch4_2ctx.yaml",
                "--vis_calib_r", "0.3", "--text_calib_r", "0.02", "--fs_loss_r", "2")
    r = cfg.TRAINER.RESTORE
    assert (r.SURGERY.RELEASE_VIS_R, r.SURGERY.RELEASE_TEXT_R, r.FS.WEIGHT) == (0.3, 0.02, 2.0)
    # Trailing KEY VALUE pairs come last, as in the release; TRAINER.MAPLE_FSA wins over TRAINER.MAPLE.
    cfg = setup("--vis_calib_r", "0.3", "TRAINER.MAPLE_FSA.VIS_CALIB_R", "0.4",
                "TRAINER.MAPLE_FSA.PROMPT_DEPTH", "3", "TRAINER.MAPLE.PROMPT_DEPTH", "5")
    assert cfg.TRAINER.RESTORE.SURGERY.RELEASE_VIS_R == 0.4 and cfg.TRAINER.MAPLE.PROMPT_DEPTH == 3


def test_yaml_ratio_is_kept_unless_a_flag_is_given(tmp_path):
    """The release's quirk (its flag defaults always overwrite the yaml) is not kept."""
    path = tmp_path / "fsa.yaml"
    path.write_text("TRAINER:\n  MAPLE_FSA:\n    VIS_CALIB_R: 0.05\n    FS_LOSS_R: 0.5\n")
    cfg = setup("--config-file", str(path))
    assert (cfg.TRAINER.RESTORE.SURGERY.RELEASE_VIS_R, cfg.TRAINER.RESTORE.FS.WEIGHT) == (0.05, 0.5)
    assert setup("--config-file", str(path), "--vis_calib_r", "0.2").TRAINER.RESTORE.SURGERY.RELEASE_VIS_R == 0.2


def test_other_trainers_are_untouched_and_refuse_the_flags(capsys, tmp_path):
    args = train.build_parser().parse_args(["--trainer", "RESTORE_m", "TRAINER.MAPLE_FSA.PROMPT_DEPTH", "3"])
    cfg = train.setup_cfg(args)
    assert cfg.TRAINER.MAPLE.PROMPT_DEPTH == 9 and cfg.TRAINER.RESTORE.SURGERY.MODE == "fs_guided"
    with pytest.raises(SystemExit):
        train.main(["--engine", "native", "--output-dir", str(tmp_path), "--trainer", "RESTORE_m",
                    "--vis_calib_r", "0.2"])
    err = capsys.readouterr().err
    assert "--vis_calib_r is the flag of --trainer MaPLe_FSA (TRAINER.MAPLE_FSA.VIS_CALIB_R" in err
    assert "TRAINER.RESTORE.SURGERY.RELEASE_VIS_R" in err and "Traceback" not in err


def test_registered_as_restore_m_release_variant():
    assert issubclass(registry.model_class("MaPLe_FSA"), RESTORE_m)
    assert registered_name("MaPLe_FSA") == "MultiModalPromptLearner"  # the release's folder
    import trainers
    assert issubclass(trainers.TRAINERS["MaPLe_FSA"], trainers.TRAINERS["RESTORE_m"])
    cfg = restore.get_cfg_default()  # built directly (no mapping): still the release variant
    cfg.TRAINER.NAME = "MaPLe_FSA"
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 3
    cfg.freeze()
    model = MaPLe_FSA(cfg, ["a", "b"], restore.tiny_clip())
    assert (model.definition, model.mode) == ("release", "release")
    assert model.calib_ratio.tolist() == pytest.approx([0.1, 0.1])
    assert cfg.TRAINER.RESTORE.SURGERY.MODE == "fs_guided"  # the caller's config is not changed
