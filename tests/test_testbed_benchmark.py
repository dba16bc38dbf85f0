"""testbed_benchmark.py: job plan, resumability and the tables, from fabricated run logs."""
import argparse
import csv
import os
import statistics

import pytest

import testbed_benchmark as tb


def write_log(folder, accuracy):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write(f"Finish training\n=> result\n* total: 100\n* accuracy: {accuracy}%\n* error: 1%\n")


def args_for(tmp_path, **kw):
    a = argparse.Namespace(protocols=["base2new"], methods=["ZeroshotCLIP", "CoOp"],
                           datasets=["shapes", "digits"], seeds=[1, 2], ablations=list(tb.ABLATIONS),
                           jobs=1, threads=1,
                           data=str(tmp_path / "data"), output=str(tmp_path / "out"))
    vars(a).update(kw)
    return a


ACC = {  # (method, dataset, seed) -> (base, novel)
    ("ZeroshotCLIP", "shapes", 1): (80.0, 85.0), ("ZeroshotCLIP", "shapes", 2): (80.0, 85.0),
    ("ZeroshotCLIP", "digits", 1): (90.0, 80.0), ("ZeroshotCLIP", "digits", 2): (90.0, 80.0),
    ("CoOp", "shapes", 1): (90.0, 80.0), ("CoOp", "shapes", 2): (92.0, 78.0),
    ("CoOp", "digits", 1): (95.0, 75.0), ("CoOp", "digits", 2): (97.0, 77.0),
}


def fabricate(out):
    for (method, dataset, seed), (b, n) in ACC.items():
        common = f"{dataset}/shots_16/{method}/testbed/seed{seed}"
        write_log(f"{out}/base2new/train_base/{common}", b)
        write_log(f"{out}/base2new/test_new/{common}", n)


def test_finished_reads_the_last_result(tmp_path):
    assert tb.finished(str(tmp_path / "none")) is None
    write_log(str(tmp_path / "run"), 12.5)
    assert tb.finished(str(tmp_path / "run")) == 12.5
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "log.txt").write_text("epoch [1/2] ...\n")  # interrupted: not finished
    assert tb.finished(str(tmp_path / "run2")) is None


def test_plan_counts_and_skips_finished(tmp_path):
    args = args_for(tmp_path, protocols=["base2new", "xd", "dg"])
    jobs = tb.plan(args)
    b2n = [j for j in jobs if j[0].startswith("b2n")]
    transfer = [j for j in jobs if j[0].startswith("transfer")]
    assert len(b2n) == 2 * 2 * 2 and len(transfer) == 2 * 2  # one source run per method and seed
    assert len(transfer[0][1]) == 1 + len(args.datasets) + len(tb.DG_TARGETS)  # xd targets: --datasets
    train_dir, argv = b2n[0][1][0]
    assert "DATASET.SUBSAMPLE_CLASSES" in argv and argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] == "base"
    assert train_dir.endswith("base2new/train_base/shapes/shots_16/ZeroshotCLIP/testbed/seed1")


def test_job_cost_ranks_every_planned_job(tmp_path):
    args = args_for(tmp_path, protocols=["base2new", "xd", "ablation"],
                    methods=["ZeroshotCLIP", "CoOp", "CoCoOp"], ablations=["fs0_off"])
    cost = {label: tb.job_cost((label, steps)) for label, steps in tb.plan(args)}
    assert len(cost) == 2 * 3 * 2 + 3 * 2 + 2 * 2 and all(c > 0 for c in cost.values())
    # epochs x training classes x the method's epoch cost: digits has 40 base classes, shapes 32
    assert cost["b2n CoOp digits s1"] == pytest.approx(cost["b2n CoOp shapes s1"] * 40 / 32)
    assert cost["b2n CoCoOp digits s1"] > cost["b2n CoOp digits s1"] > cost["b2n ZeroshotCLIP digits s1"]
    assert cost["ablation fs0_off digits s2"] == pytest.approx(
        tb.epoch_cost("RESTORE_m") * tb.max_epoch("RESTORE_m") * 40)
    assert cost["transfer CoOp s1"] == pytest.approx(tb.epoch_cost("CoOp") * tb.XD_EPOCHS * 128)


def test_report_tables(tmp_path):
    args = args_for(tmp_path)
    fabricate(args.output)
    summary = tb.report(args)
    # CoOp seed 1: base (90 + 95) / 2 = 92.5, novel (80 + 75) / 2 = 77.5
    assert summary["CoOp"][0][:2] == (92.5, 77.5)
    hm1 = 2 * 92.5 * 77.5 / (92.5 + 77.5)
    assert summary["CoOp"][0][2] == pytest.approx(hm1)
    rows = list(csv.DictReader(open(os.path.join(args.output, "results.csv"))))
    avg = {(r["method"], r["metric"]): r for r in rows if r["dataset"] == "average"}
    base = [92.5, 94.5]
    assert float(avg[("CoOp", "base")]["mean"]) == pytest.approx(statistics.mean(base))
    assert float(avg[("CoOp", "base")]["std"]) == pytest.approx(statistics.stdev(base), abs=1e-4)
    text = open(os.path.join(args.output, "results.md")).read()
    assert "| CoOp |" in text and "CoOp vs ZeroshotCLIP: base +8.50 (+8.5 SE), novel -5.00" in text
    assert os.path.getsize(os.path.join(args.output, "base2new_accuracy.png")) > 5000


def test_fast_trace_plan_and_table(tmp_path, monkeypatch):
    """The fast protocol plans RESTORE_m runs with each speed-up's overrides (the exact row is the main
    base-to-novel run); its table gives each option's difference to exact in standard errors and the
    discrepancy of the trained models."""
    import torch

    import restore.analysis.feature_shift_study as study
    import sweep.report
    from restore.feature_shift import FeatureShift

    args = args_for(tmp_path, protocols=["fast"], methods=["RESTORE_m"], fast_trace=list(tb.FAST_TRACE))
    jobs = tb.plan(args)
    assert len(jobs) == (len(tb.FAST_TRACE) - 1) * 2 * 2  # options x datasets x seeds, exact not rerun
    label, ((train_dir, argv), _) = jobs[0]
    assert label == "fast nograd shapes s1"
    assert train_dir.endswith("fast/nograd/base2new/train_base/shapes/shots_16/RESTORE_m/testbed/seed1")
    assert argv[argv.index("TRAINER.RESTORE.FS.PROMPT_FREE") + 1] == "no_grad"
    main = tb.plan(args_for(tmp_path, methods=["RESTORE_m"]))[0]
    assert main[0] == "b2n RESTORE_m shapes s1" and tb.job_cost(jobs[0]) == tb.job_cost(main)

    out = args.output
    acc = {"exact": (90.0, 80.0), "nograd": (89.0, 80.0), "nograd_subsets": (90.0, 79.0)}
    for name, (b, n) in acc.items():
        root = out if name == "exact" else f"{out}/fast/{name}"
        for dataset in args.datasets:
            for seed in args.seeds:
                common = f"{dataset}/shots_16/RESTORE_m/testbed/seed{seed}"
                write_log(f"{root}/base2new/train_base/{common}", b + seed)  # seeds differ by 1
                write_log(f"{root}/base2new/test_new/{common}", n + seed)
    for dataset in args.datasets:  # the MaPLe reference, seed 1 only
        common = f"{dataset}/shots_16/MaPLe/testbed/seed1"
        write_log(f"{out}/base2new/train_base/{common}", 88.0)
        write_log(f"{out}/base2new/test_new/{common}", 78.0)
    gap = {("RESTORE_m", out): 0.01, ("RESTORE_m", f"{out}/fast/nograd"): 0.02,
           ("RESTORE_m", f"{out}/fast/nograd_subsets"): 0.03, ("MaPLe", out): 0.5}
    monkeypatch.setattr(sweep.report, "load_trained",
                        lambda trainer, dataset, seed, subsample, args, out, extra: argparse.Namespace(
                            model=gap[trainer, out], test_loader=None, device=None))
    monkeypatch.setattr(study, "average_feature_shift", lambda model, loader, device: FeatureShift(
        torch.tensor([model, 0.0]), torch.zeros(2)))
    tb.fast_trace_report(args)
    text = open(os.path.join(out, "results.md")).read()
    # seed means 91.5 / 90.5 (std 0.71 each, SE of the difference 0.71): base -1.00 = -1.4 SE
    assert "| exact | (defaults) | 91.50 ± 0.71 | 81.50 ± 0.71 |" in text
    assert "| nograd | FS.PROMPT_FREE no_grad | 90.50 ± 0.71 | 81.50 ± 0.71 |" in text
    assert "-1.00 (-1.4) / +0.00 (+0.0) /" in text
    assert "| 0.0200 | 2 |" in text and "| 0.0300 | 2 |" in text
    assert "| MaPLe (reference) | no L_fs, no surgery | 88.00 | 78.00 | 82.70 | - | 0.5000 | 1 |" in text


def test_a_new_method_joins_an_earlier_reports_tables(tmp_path, monkeypatch):
    """--previous: the rows of the methods without runs (base-to-novel, transfer, ablation, feature shift) come
    from an earlier report's results.csv, unchanged, and the new method's from its runs, in the registry's
    order; the trade-off line of the new method compares it with the earlier ZeroshotCLIP row."""
    import torch

    import restore.analysis.feature_shift_study as study
    import sweep.report
    from restore.feature_shift import FeatureShift

    first = args_for(tmp_path, protocols=["base2new", "xd"], output=str(tmp_path / "first"))
    fabricate(first.output)
    for method, acc in (("ZeroshotCLIP", 60.0), ("CoOp", 70.0)):
        for seed in (1, 2):
            write_log(f"{first.output}/objects/{method}/testbed_16shots/seed{seed}", acc + seed)
            for target in tb.XD_TARGETS:
                write_log(f"{first.output}/evaluation/{method}/testbed_16shots/{target}/seed{seed}", acc - seed)
    shift = {"ZeroshotCLIP": 0.0, "CoOp": 0.3, "KgCoOp": 0.2}
    monkeypatch.setattr(sweep.report, "load_trained", lambda trainer, *a, **k: argparse.Namespace(
        model=trainer, test_loader=None, device=None))
    monkeypatch.setattr(study, "average_feature_shift", lambda model, loader, device: FeatureShift(
        torch.zeros(2), torch.tensor([shift[model], 2 * shift[model]])))
    tb.shift_analysis(first, tb.report(first))
    earlier = open(os.path.join(first.output, "results.md")).read()

    second = args_for(tmp_path, methods=["KgCoOp"], output=str(tmp_path / "second"),
                      previous=os.path.join(first.output, "results.csv"))
    for (method, dataset, seed), (b, n) in ACC.items():
        if method == "CoOp":  # KgCoOp: CoOp's accuracies + 1
            common = f"{dataset}/shots_16/KgCoOp/testbed/seed{seed}"
            write_log(f"{second.output}/base2new/train_base/{common}", b + 1)
            write_log(f"{second.output}/base2new/test_new/{common}", n + 1)
    summary = tb.report(second)
    assert set(summary) == {"KgCoOp"}  # the methods with runs
    tb.shift_analysis(second, summary)
    text = open(os.path.join(second.output, "results.md")).read()
    table = [line for line in text.splitlines() if line.startswith("| ") and " B / N / HM" not in line]
    for line in earlier.splitlines():  # every row of the earlier report, unchanged
        if line.startswith("| ZeroshotCLIP |") or line.startswith("| CoOp |"):
            assert line in table, line
    names = [line.split(" | ")[0][2:] for line in text.split("## Base-to-novel")[1].split("**")[0].splitlines()
             if line.startswith("| ") and "---" not in line and "Method" not in line]
    assert names == ["ZeroshotCLIP", "CoOp", "KgCoOp"]  # the registry's order
    assert "| KgCoOp | 92.00 ± 1.41 / 80.00 ± 1.41 / " in text
    # KgCoOp's base average: seeds (91 + 96) / 2 = 93.5 and 95.5 -> 94.5 ± 1.41; ZeroshotCLIP's 85.0 ± 0
    assert "- KgCoOp vs ZeroshotCLIP: base +9.50 (+9.5 SE)" in text
    assert "## Cross-dataset" in text and "| CoOp | 71.50 ± 0.71 | 68.50 ± 0.71 |" in text  # xd from the csv
    assert "| CoOp | 0.0000 | 0.4500 | 0.9000 |" in text and "| KgCoOp | 0.0000 | 0.3000 | 0.6000 |" in text
    rows = list(csv.reader(open(os.path.join(second.output, "results.csv"))))
    assert ["shift", "KgCoOp", "base test, seed 1, layer 2", "shift_text", "0.4000", "0.0000", "0.0000", "1"] in rows
    from restore.errors import UserError
    with pytest.raises(UserError, match="--previous .*results.md: not a results.csv"):
        tb.report(args_for(tmp_path, previous=os.path.join(first.output, "results.md")))


@pytest.mark.parametrize("trainer", ["CoOp", "KgCoOp", "RESTORE_m"])
def test_the_shift_analysis_loads_the_run_the_plan_trained(tmp_path, monkeypatch, trainer):
    """load_trained (the report's shift, t-SNE and fast-trace analyses) rebuilds the base-to-novel training
    step's config (sweep.plan.base2new_job: its file, overrides and seed) and loads the epoch the test step
    loads, from the folder the training step wrote."""
    import restore.engine
    import sweep.report
    import train
    from restore.config import flatten
    from sweep.plan import base2new_job

    seen = {}

    class Loaded:
        trainable = True

        def __init__(self, cfg):
            seen["cfg"] = cfg

        def load_model(self, folder, epoch):
            seen["load"] = (folder, epoch)

    monkeypatch.setattr(restore.engine, "Trainer", Loaded)
    args = argparse.Namespace(output=str(tmp_path), data=str(tmp_path / "data"), configs="testbed")
    sweep.report.load_trained(trainer, "shapes", 2, "base", args)
    (train_dir, train_argv), (_, test_argv) = base2new_job(args.output, trainer, "shapes", 2, args.data)
    planned = flatten(train.setup_cfg(train.build_parser().parse_args(train_argv), "native"))
    loaded = flatten(seen["cfg"])
    differing = {k for k in planned.keys() | loaded.keys() if planned.get(k) != loaded.get(k)}
    assert differing <= {"OUTPUT_DIR", "TRAIN.CHECKPOINT_FREQ", "VERBOSE"}, differing
    assert (loaded["SEED"], loaded["DATASET.SUBSAMPLE_CLASSES"]) == (2, "base")
    assert seen["load"] == (train_dir, int(test_argv[test_argv.index("--load-epoch") + 1]))


def test_ablation_table_from_runs_and_from_an_earlier_report(tmp_path):
    """The ablation rows: FS.WEIGHT and SURGERY.MODE from the variant's name, seed means of the dataset averages
    (fs1_fsguided read from the main RESTORE_m runs); a variant without runs takes an earlier report's row."""
    first = args_for(tmp_path, protocols=["base2new", "ablation"], methods=["RESTORE_m"],
                     ablations=["fs1_fsguided", "fs0_off"], output=str(tmp_path / "first"))
    for root, b in ((first.output, 90.0), (f"{first.output}/ablation/fs0_off", 80.0)):
        for dataset in first.datasets:
            for seed in first.seeds:
                common = f"{dataset}/shots_16/RESTORE_m/testbed/seed{seed}"
                write_log(f"{root}/base2new/train_base/{common}", b + seed)  # seed means: b + 1.5
                write_log(f"{root}/base2new/test_new/{common}", b - 10)
    tb.report(first)
    hm = lambda b, n: 2 * b * n / (b + n)  # noqa: E731
    rows = [line for line in open(os.path.join(first.output, "results.md")).read().splitlines()
            if line.startswith("| 1 | fs_guided |") or line.startswith("| 0 | off |")]
    seed_hms = statistics.mean([hm(91, 80), hm(92, 80)])
    assert rows[0].startswith(f"| 1 | fs_guided | 91.50 ± 0.71 | 80.00 ± 0.00 | {seed_hms:.2f}")
    assert rows[1].startswith("| 0 | off | 81.50 ± 0.71 | 70.00 ± 0.00 |") and rows[1].endswith("| 2 |")
    second = args_for(tmp_path, protocols=["ablation"], methods=["RESTORE_m"], ablations=["fs0_off"],
                      output=str(tmp_path / "second"), previous=os.path.join(first.output, "results.csv"))
    os.makedirs(second.output)
    tb.report(second)
    assert rows[1] in open(os.path.join(second.output, "results.md")).read().splitlines()
