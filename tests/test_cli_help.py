"""The help a user reads first: train.py --help, --print-config, the scripts' usage, the config printed once."""
import os
import subprocess
import sys

import train
from restore.backbone import available_backbones
from restore.config import get_cfg_default
from restore.data import DATASETS
from restore.methods import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_lists_every_registered_name():
    text = train.build_parser().format_help()
    import restore.data.testbed  # noqa: F401  (the testbed datasets register on import)
    for name in registry.names() + list(DATASETS) + available_backbones():
        assert f" {name} " in text.replace("\n", " ").replace("(", " ").replace(")", " "), name
    for must in ("KEY VALUE", "MODEL.BACKBONE.PATH", "example", "--print-config", "RESTORE_NUM_THREADS"):
        assert must in text
    assert "CNN" not in text


def test_print_config_prints_the_resolved_config_and_stops(tmp_path, capsys):
    out = tmp_path / "out"
    train.main(["--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/testbed.yaml",
                "--output-dir", str(out), "--print-config", "OPTIM.MAX_EPOCH", "7"])
    text = capsys.readouterr().out
    assert "MAX_EPOCH: 7" in text and "N_CTX: 5" in text and "NAME: CoOp" in text
    assert not out.exists()  # nothing run, nothing written


def test_eval_config_printed_as_changes_from_training(tmp_path, capsys):
    cfg = get_cfg_default()
    cfg.OPTIM.MAX_EPOCH = 3
    (tmp_path / "log.txt").write_text("** Config **\n************\n" + str(cfg) + "\n** System info **\n")
    now = cfg.clone()
    now.DATASET.SUBSAMPLE_CLASSES = "new"
    now.OUTPUT_DIR = "elsewhere"
    assert train.config_changes(now, str(tmp_path)) == [("DATASET.SUBSAMPLE_CLASSES", "new"),
                                                         ("OUTPUT_DIR", "elsewhere")]
    assert train.config_changes(now, str(tmp_path / "absent")) is None
    args = train.build_parser().parse_args(["--eval-only", "--model-dir", str(tmp_path)])
    train.print_args(args, now)
    text = capsys.readouterr().out
    assert text.count("MAX_EPOCH") == 0 and "with these changes:\nDATASET.SUBSAMPLE_CLASSES: new\n" in text
    args = train.build_parser().parse_args([])
    train.print_args(args, now)
    assert capsys.readouterr().out.count("MAX_EPOCH: 3") == 1  # a training run prints it in full, once


def test_scripts_usage_lists_environment_and_datasets():
    for args in (["--help"], []):
        proc = subprocess.run(["bash", "scripts/maple/xd_test.sh", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        text = proc.stdout if args else proc.stderr
        assert proc.returncode == (0 if args else 1)
        assert text.startswith("usage: [VARIABLE=value ...] bash scripts/maple/xd_test.sh DATASET SEED")
        for var in ("DATA", "SHOTS", "OUTPUT", "LOADEP", "ENGINE", "VARIANT", "SOURCE", "RESTORE_NUM_THREADS"):
            assert f"\n  {var} " in text, var
        datasets = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "configs", "datasets")))
        assert text.split("Datasets:\n")[1].split("\nEnvironment")[0].split() == datasets
    proc = subprocess.run(["bash", "scripts/restore/testbed_demo.sh", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "Usage: bash scripts/restore/testbed_demo.sh [DATASET [SEED]]" in proc.stdout


def test_testbed_benchmark_help_is_whole():
    proc = subprocess.run([sys.executable, "testbed_benchmark.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "(design: docs/TESTBED.md; results: docs/RESULTS.md)." in proc.stdout and "shared" not in proc.stdout
