"""parse_test_res.py: CoOp's output lines and end signals, resumed-run logs, and the tables (HM of the
dataset-averaged Base and Novel, mean ± std over seeds, CSV)."""
import csv
import os
import re

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


ELEVEN = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
          "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
MAPLE = "vit_b16_c2_ep5_batch4_2ctx"


def row_of(out, method):
    return next(line for line in out.splitlines() if line.startswith(f"| {method} |")).split(" | ")


def test_base2new_table_is_one_method_by_dataset_table(tmp_path, capsys):
    """The original repositories' layout (--root: their base2new folder): one table, a row per method and
    config with its epochs and seeds; Base / Novel / HM per dataset in the papers' order; the average is the
    HM of the dataset-averaged Base and Novel; the published average and the difference beside it only where
    the row covers the published 11 datasets."""
    root = tmp_path / "base2new"
    base, novel = {}, {}
    for i, dataset in enumerate(ELEVEN):
        for seed, shift in ((1, 0.0), (2, 2.0)):
            base[dataset, seed], novel[dataset, seed] = 70.0 + i + shift, 60.0 + 2 * i - shift
            b2n(root, dataset, "MaPLe", seed, base[dataset, seed], novel[dataset, seed], cfg=MAPLE)
    b2n(root, "dtd", "RESTORE_m", 1, 80.0, 60.0)
    b2n(root, "dtd", "RESTORE_m", 2, 82.0, 62.0)
    b2n(root, "eurosat", "RESTORE_m", 1, 90.0, 70.0)
    parse_test_res.main(["--table", "base2new", "--root", str(root), "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    assert out.count("| Method | Config (epochs) | Seeds |") == 1
    header = next(line for line in out.splitlines() if line.startswith("| Method"))
    assert header.startswith("| Method | Config (epochs) | Seeds | imagenet Base | imagenet Novel | imagenet HM | "
                             "caltech101 Base |") and header.endswith("| Average Base | Average Novel | Average HM |")
    maple = row_of(out, "MaPLe")
    assert maple[1:3] == [f"{MAPLE} (5 ep)", "2"]
    dtd = ELEVEN.index("dtd")
    assert maple[3 + 3 * dtd: 6 + 3 * dtd] == ["79.00 ± 1.00", "75.00 ± 1.00", f"{2 * 79 * 75 / (79 + 75):.2f}"]
    avg_b = sum(base.values()) / len(base)
    avg_n = sum(novel.values()) / len(novel)
    avg_hm = 2 * avg_b * avg_n / (avg_b + avg_n)
    assert maple[-3:] == [f"{avg_b:.2f} ± 1.00 (82.28, {avg_b - 82.28:+.2f})",
                          f"{avg_n:.2f} ± 1.00 (75.14, {avg_n - 75.14:+.2f})",
                          f"{avg_hm:.2f} (78.55, {avg_hm - 78.55:+.2f}) |"]
    restore_m = row_of(out, "RESTORE_m")
    assert restore_m[1:3] == ["cfg (? ep)", "1-2"]  # no run record, no _ep<N> in the name; 2 seeds on dtd
    # over its 2 datasets only: marked, and no published value (none is over these two)
    assert restore_m[-3:] == ["85.50*", "65.50*", f"{2 * 85.5 * 65.5 / (85.5 + 65.5):.2f}* |"]
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    dtd_base = [r for r in rows if r["method"] == "RESTORE_m" and r["dataset"] == "dtd" and r["metric"] == "base"][0]
    assert (dtd_base["mean"], dtd_base["std"], dtd_base["seeds"], dtd_base["epochs"]) == ("81.0000", "1.0000", "2", "?")
    hm = [r for r in rows if r["method"] == "MaPLe" and r["dataset"] == "average" and r["metric"] == "hm"][0]
    assert (hm["mean"], hm["published"], hm["difference"]) == (f"{avg_hm:.4f}", "78.5500", f"{avg_hm - 78.55:.4f}")
    parse_test_res.main(["--table", "base2new", "--root", str(root), "--trainer", "RESTORE_m"])
    assert "| MaPLe |" not in capsys.readouterr().out


def test_xd_and_dg_tables(tmp_path, capsys):
    write_log(tmp_path / "imagenet" / "MaPLe" / "c_ep2_16shots" / "seed1", 70.0)
    for dataset, acc in (("dtd", 40.0), ("eurosat", 50.0), ("imagenetv2", 64.0), ("imagenet_r", 76.0)):
        write_log(tmp_path / "evaluation" / "MaPLe" / "c_ep2_16shots" / dataset / "seed1", acc, end=None)
    parse_test_res.main(["--table", "xd", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| Method | Config (epochs) | Seeds | imagenet (source) | dtd | eurosat | Average |" in out
    assert "| MaPLe | c_ep2 (2 ep) | 1 | 70.00 | 40.00 | 50.00 | 45.00 |" in out
    parse_test_res.main(["--table", "dg", "--root", str(tmp_path)])
    out = capsys.readouterr().out  # the published per-target values of MaPLe beside its cells
    assert "| MaPLe | c_ep2 (2 ep) | 1 | 70.00 | 64.00 (64.07, -0.07) | 76.00 (76.98, -0.98) | 70.00 |" in out


def test_fewshot_table_rows_per_shots(tmp_path, capsys):
    for shots, acc in ((1, 50.0), (16, 80.0)):
        write_log(tmp_path / "fewshot" / "dtd" / f"shots_{shots}" / "CoOp" / "vit_b16" / "seed1", acc)
    parse_test_res.main(["--table", "fewshot", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| CoOp | vit_b16 (? ep, 1 shots) | 1 | 50.00 | 50.00 |" in out
    assert "| CoOp | vit_b16 (? ep, 16 shots) | 1 | 80.00 | 80.00 |" in out


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_seed_with_a_nonfinite_accuracy_is_refused_by_folder(tmp_path, bad):
    b2n(tmp_path, "dtd", "CoOp", 1, 70.0, 60.0)
    folder = tmp_path / "test_new" / "dtd" / "shots_16" / "CoOp" / "cfg" / "seed2"
    b2n(tmp_path, "dtd", "CoOp", 2, 70.0, 60.0)
    (folder / "log.txt").write_text(f"=> result\n* accuracy: {bad}%\n")
    # The one message of parse_test_res.finite_results in both modes: the seed folder, its value, "not averaged".
    expected = (f"^Error: seed2 \\({bad}%\\) in {re.escape(str(folder.parent))} report a non-finite accuracy: "
                "not averaged")
    with pytest.raises(SystemExit, match=expected):
        parse_test_res.main(["--table", "base2new", "--root", str(tmp_path)])
    with pytest.raises(SystemExit, match=expected):  # CoOp's mode
        parse_test_res.main([str(folder.parent), "--test-log"])


def test_table_without_results(tmp_path):
    os.makedirs(tmp_path / "train_base")
    with pytest.raises(SystemExit, match="no base2new results"):
        parse_test_res.main(["--table", "base2new", "--root", str(tmp_path)])
