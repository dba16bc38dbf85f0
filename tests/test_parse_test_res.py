"""parse_test_res.py: CoOp's output lines and end signals, resumed-run logs, and the tables (HM of the
dataset-averaged Base and Novel, mean ± std over seeds, CSV)."""
import csv
import os

import pytest

import parse_test_res

RESULT = "=> result\n* total: 100\n* correct: {c}\n* accuracy: {a}%\n* error: {e}%\n* macro_f1: 50.0%\n"


def write_log(folder, acc, end="Finish training", name="log.txt", before=""):
    os.makedirs(folder, exist_ok=True)
    text = before + "epoch [1/1] batch [1/1] loss 1.0 (1.0)\n"
    if end:
        text += end + "\nDeploy the last-epoch model\nEvaluate on the *test* set\n"
    text += RESULT.format(c=int(acc), a=acc, e=round(100 - acc, 1)) + "Elapsed: 0:00:01\n"
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)


def test_coop_mode(tmp_path, capsys):
    write_log(tmp_path / "seed1", 80.0)
    write_log(tmp_path / "seed2", 90.0, end="Finished training")  # older Dassl's signal
    write_log(tmp_path / ".hidden", 10.0)
    parse_test_res.main([str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Parsing files in {tmp_path}"
    assert out[1] == f"file: {tmp_path / 'seed1' / 'log.txt'}. accuracy: 80.00%. "
    assert out[2] == f"file: {tmp_path / 'seed2' / 'log.txt'}. accuracy: 90.00%. "
    assert out[3:] == ["===", f"Summary of directory: {tmp_path}", "* accuracy: 85.00% +- 5.00%", "==="]
    parse_test_res.main([str(tmp_path), "--ci95", "--keyword", "macro_f1"])
    assert "* macro_f1: 50.00% +- 0.00%" in capsys.readouterr().out


def test_test_log_and_nothing_found(tmp_path, capsys):
    write_log(tmp_path / "seed1", 70.0, end=None)  # evaluation only: no "Finish training"
    with pytest.raises(SystemExit, match="Nothing found .*--test-log"):
        parse_test_res.main([str(tmp_path)])
    parse_test_res.main([str(tmp_path), "--test-log"])
    assert "* accuracy: 70.00% +- 0.00%" in capsys.readouterr().out


def test_resumed_run_reads_timestamped_log(tmp_path, capsys):
    folder = tmp_path / "seed1"
    os.makedirs(folder)
    (folder / "log.txt").write_text("epoch [1/2] batch [1/1] loss 1.0 (1.0)\n")  # interrupted
    write_log(folder, 66.7, name="log.txt-2026-01-01-10-00-00")
    parse_test_res.main([str(tmp_path)])
    assert "log.txt-2026-01-01-10-00-00. accuracy: 66.70%." in capsys.readouterr().out


def test_multi_exp(tmp_path, capsys):
    for exp, accs in (("exp1", (60.0, 70.0)), ("exp2", (80.0, 90.0))):
        for i, a in enumerate(accs):
            write_log(tmp_path / exp / f"seed{i + 1}", a)
    parse_test_res.main([str(tmp_path), "--multi-exp"])
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["Average performance", "* accuracy: 75.00%"]


def b2n(root, dataset, trainer, seed, base, novel, cfg="cfg"):
    common = os.path.join(dataset, "shots_16", trainer, cfg, f"seed{seed}")
    write_log(root / "train_base" / common, base)
    write_log(root / "test_new" / common, novel, end=None)


def test_base2new_table(tmp_path, capsys):
    root = tmp_path / "base2new"
    b2n(root, "dtd", "RESTORE_m", 1, 80.0, 60.0)
    b2n(root, "dtd", "RESTORE_m", 2, 82.0, 62.0)
    b2n(root, "eurosat", "RESTORE_m", 1, 90.0, 70.0)
    b2n(root, "eurosat", "MaPLe", 1, 10.0, 10.0)
    parse_test_res.main(["--table", "base2new", "--root", str(root), "--trainer", "RESTORE_m",
                         "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    assert "### Base-to-novel: RESTORE_m / cfg / shots 16" in out and "MaPLe" not in out
    assert "| dtd | 81.00 ± 1.00 | 61.00 ± 1.00 | 69.59 | 2/2 |" in out
    assert "| eurosat | 90.00 | 70.00 | 78.75 | 1/1 |" in out
    # Averages over datasets, then the HM of the averages (not the mean of the per-dataset HMs).
    b, n = (81 + 90) / 2, (61 + 70) / 2
    assert f"| **Average** (2 datasets) | {b:.2f} | {n:.2f} | {2 * b * n / (b + n):.2f} | |" in out
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    dtd_base = [r for r in rows if r["dataset"] == "dtd" and r["metric"] == "base"][0]
    assert (dtd_base["mean"], dtd_base["std"], dtd_base["seeds"]) == ("81.0000", "1.0000", "2")
    assert [r["mean"] for r in rows if r["dataset"] == "average" and r["metric"] == "hm"] == [
        f"{2 * b * n / (b + n):.4f}"]


def test_xd_and_dg_tables(tmp_path, capsys):
    write_log(tmp_path / "imagenet" / "MaPLe" / "c_16shots" / "seed1", 70.0)
    for dataset, acc in (("dtd", 40.0), ("eurosat", 50.0), ("imagenetv2", 64.0), ("imagenet_r", 76.0)):
        write_log(tmp_path / "evaluation" / "MaPLe" / "c_16shots" / dataset / "seed1", acc, end=None)
    parse_test_res.main(["--table", "xd", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| Method | imagenet | dtd | eurosat | Average |" in out
    assert "| MaPLe / c_16shots | 70.00 | 40.00 | 50.00 | 45.00 |" in out
    parse_test_res.main(["--table", "dg", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| MaPLe / c_16shots | 70.00 | 64.00 | 76.00 | 70.00 |" in out


def test_table_without_results(tmp_path):
    os.makedirs(tmp_path / "train_base")
    with pytest.raises(SystemExit, match="no base-to-novel results"):
        parse_test_res.main(["--table", "base2new", "--root", str(tmp_path)])
