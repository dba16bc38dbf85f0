"""train.py's command line: config precedence, CoOp's --seed quirk, engine choice, and one clear message
(no traceback) for an unknown trainer, config key, dataset or config file."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

import train
from test_engine_fakes import ROOT


def args(*argv):
    return train.build_parser().parse_args(list(argv))


def write(path, text):
    path.write_text(text)
    return str(path)


def test_precedence(tmp_path):
    dataset = write(tmp_path / "d.yaml", 'DATASET:\n  NAME: "OxfordPets"\nOPTIM:\n  LR: 0.1\n  MAX_EPOCH: 3\nSEED: 7\n')
    method = write(tmp_path / "m.yaml", 'OPTIM:\n  LR: 0.2\nMODEL:\n  BACKBONE:\n    NAME: "ViT-B/16"\n')
    base = ["--dataset-config-file", dataset, "--config-file", method, "--trainer", "MaPLe"]
    cfg = train.setup_cfg(args(*base))
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == (0.2, 3)  # method yaml > dataset yaml
    # CoOp's quirk: --seed defaults to -1, which is truthy, so the yaml's SEED is always replaced ...
    assert cfg.SEED == -1
    assert cfg.DATASET.NAME == "OxfordPets" and cfg.TRAINER.NAME == "MaPLe"
    cfg = train.setup_cfg(args(*base, "--backbone", "tiny-random", "--seed", "5", "--root", "/x",
                               "MODEL.BACKBONE.NAME", "RN50", "OPTIM.LR", "0.3"))
    assert cfg.MODEL.BACKBONE.NAME == "RN50" and cfg.OPTIM.LR == 0.3  # opts > flags > yaml
    assert cfg.SEED == 5 and cfg.DATASET.ROOT == "/x"
    assert cfg.is_frozen()
    # ... except by --seed 0, which is falsy and ignored (SEED stays at the yaml's 7).
    assert train.setup_cfg(args(*base, "--seed", "0")).SEED == 7


@pytest.mark.parametrize("argv,expected", [
    (["--trainer", "Maple"], "Unknown trainer 'Maple' (--trainer). Did you mean MaPLe? Valid trainers: ZeroshotCLIP, CoOp"),
    ([], "No trainer given (--trainer)"),
    (["--trainer", "MaPLe", "TRAINER.MAPLE.N_CTXX", "3"],
     "Unknown config key 'TRAINER.MAPLE.N_CTXX' (on the command line). Did you mean TRAINER.MAPLE.N_CTX? "
     "Valid keys under TRAINER.MAPLE: CTX_INIT, N_CTX, PREC, PROMPT_DEPTH."),
    (["--trainer", "MaPLe", "OPTIMS.LR", "3"], "Valid keys at the top level:"),
    (["--trainer", "MaPLe", "OPTIM.LR"], "Missing value for OPTIM.LR (on the command line): config overrides are "
                                         "KEY VALUE pairs, e.g. OPTIM.MAX_EPOCH 5."),
    (["--trainer", "MaPLe", "OPTIM.MAX_EPOCH", "OPTIM.LR", "0.1"], "Missing value for OPTIM.MAX_EPOCH (on the"),
    (["--trainer", "MaPLe", "OPTIM.LR", "0.1", "2"], "must be KEY VALUE pairs; got an odd number of words: "
                                                    "OPTIM.LR 0.1 2"),
    (["--trainer", "MaPLe", "OPTIM", "3"], "OPTIM is a group of keys"),
    (["--trainer", "MaPLe", "OPTIM.LR", "fast"], "OPTIM.LR"),
    (["--trainer", "MaPLe", "--config-file", "configs/trainers/MaPLe/nope.yaml"],
     "file not found. Files in configs/trainers/MaPLe: testbed.yaml, vit_b16_c2_ep5_batch4_2ctx.yaml"),
    (["--trainer", "MaPLe", "--root", "/tmp", "DATASET.NAME", "OxfordPet", "MODEL.BACKBONE.NAME", "tiny-random"],
     "Unknown dataset 'OxfordPet' (DATASET.NAME). Did you mean OxfordPets?"),
])
def test_one_clear_message(argv, expected, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        train.main(["--engine", "native", "--output-dir", str(tmp_path)] + argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and expected in err and "Traceback" not in err


def test_unknown_key_in_yaml_names_the_file(tmp_path, capsys):
    bad = write(tmp_path / "bad.yaml", "TRAINER:\n  MAPLE:\n    PROMPT_DEPT: 3\n")
    with pytest.raises(SystemExit):
        train.main(["--engine", "native", "--trainer", "MaPLe", "--config-file", bad])
    err = capsys.readouterr().err
    assert f"Unknown config key 'TRAINER.MAPLE.PROMPT_DEPT' (in {bad}). Did you mean TRAINER.MAPLE.PROMPT_DEPTH?" in err


def test_engine_choice():
    have_dassl = importlib.util.find_spec("dassl") is not None
    assert train.choose_engine("native") == "native"
    assert train.choose_engine("auto") == ("dassl" if have_dassl else "native")
    if not have_dassl:
        with pytest.raises(train.ConfigError, match="Dassl is not installed"):
            train.choose_engine("dassl")


def test_all_trainer_configs_merge():
    """Every shipped trainer config merges into the project's config (no unknown keys or types)."""
    folder = os.path.join(ROOT, "configs", "trainers")
    files = [os.path.join(folder, t, f) for t in sorted(os.listdir(folder))
             for f in sorted(os.listdir(os.path.join(folder, t))) if f.endswith(".yaml")]
    assert len(files) >= 30
    for path in files:
        trainer = os.path.basename(os.path.dirname(path))
        cfg = train.setup_cfg(args("--config-file", path, "--trainer", trainer))
        assert cfg.TRAINER.NAME == trainer
        if os.path.basename(path).startswith("testbed"):
            assert cfg.MODEL.BACKBONE.NAME == "testbed" and tuple(cfg.INPUT.SIZE) == (32, 32)
        else:
            # the backbone the file name says (CoOp's names: rn50*, rn101*, vit_b32*, vit_b16*); an authors' name
            # that says none: its backbone here
            prefix = {"rn50": "RN50", "rn101": "RN101", "vit_b32": "ViT-B/32", "vit_b16": "ViT-B/16"}
            unnamed = {"CoPrompt/coprompt.yaml": "ViT-B/16"}
            name = os.path.basename(path)
            expected = unnamed.get(f"{trainer}/{name}") or next(
                v for k, v in prefix.items() if re.match(rf"{k}(_|\.)", name))
            assert cfg.MODEL.BACKBONE.NAME == expected, path
            assert cfg.INPUT.INTERPOLATION == "bicubic"
            # one constant warm-up epoch, but MMA's authors': none
            assert cfg.OPTIM.WARMUP_EPOCH == (0 if trainer == "MultiModalAdapter" else 1)
            assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5
            assert cfg.DATALOADER.TEST.BATCH_SIZE == (500 if trainer == "TCP" else 100)  # TCP's authors: 500


def test_restore_configs_follow_method_md():
    b2n = train.setup_cfg(args("--config-file", "configs/trainers/RESTORE_m/vit_b16_c2_ep10_batch4_2ctx.yaml",
                               "--trainer", "RESTORE_m"))
    assert (b2n.OPTIM.LR, b2n.OPTIM.MAX_EPOCH, b2n.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.0035, 10, 4)
    assert (b2n.TRAINER.MAPLE.N_CTX, b2n.TRAINER.MAPLE.PROMPT_DEPTH) == (2, 9)
    assert b2n.TRAINER.RESTORE.FS.DEFINITION == "paper" and b2n.TRAINER.RESTORE.SURGERY.MODE == "fs_guided"
    xd = train.setup_cfg(args("--config-file",
                              "configs/trainers/RESTORE_m/vit_b16_c2_ep4_batch4_2ctx_cross_datasets.yaml"))
    assert xd.OPTIM.MAX_EPOCH == 4
    rel = train.setup_cfg(args("--config-file", "configs/trainers/RESTORE_m/vit_b16_c2_ep10_batch4_2ctx_release.yaml"))
    assert rel.TRAINER.RESTORE.FS.DEFINITION == "release" and rel.TRAINER.RESTORE.SURGERY.MODE == "release"


def test_subprocess_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "train.py", "--engine", "native", "--trainer", "Nope"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Error: Unknown trainer 'Nope' (--trainer)" in proc.stderr and "Traceback" not in proc.stderr


def test_dassl_engine_end_to_end(tmp_path, capsys):
    """--engine dassl: the same command line through Dassl's build_trainer and our trainers/ package
    (only where Dassl imports)."""
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    pytest.importorskip("dassl.engine", exc_type=ImportError)
    from test_engine_fakes import cli_opts, make_oxford_pets
    make_oxford_pets(str(tmp_path / "data"))
    common = ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "MaPLe", "--engine", "dassl",
              "--dataset-config-file", "configs/datasets/oxford_pets.yaml"]
    train.main(common + ["--output-dir", str(tmp_path / "base")]
               + cli_opts("MaPLe", "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"))
    log = (tmp_path / "base" / "log.txt").read_text()
    assert "Engine: dassl" in log and "Finish training" in log and "* accuracy:" in log
    assert (tmp_path / "base" / "MultiModalPromptLearner" / "model.pth.tar-1").is_file()
    train.main(common + ["--output-dir", str(tmp_path / "new"), "--eval-only", "--model-dir",
                         str(tmp_path / "base"), "--load-epoch", "1"]
               + cli_opts("MaPLe", "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new"))
    log = (tmp_path / "new" / "log.txt").read_text()
    assert "SUBSAMPLE NEW CLASSES!" in log and "* accuracy:" in log
