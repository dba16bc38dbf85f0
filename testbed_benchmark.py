#!/usr/bin/env python
"""The paper's experiments in miniature, on the synthetic testbed (design: docs/TESTBED.md; results: README).

    python testbed_benchmark.py                                  # base-to-novel, all methods, 3 seeds
    python testbed_benchmark.py --protocols base2new xd dg ablation --jobs 2
    python testbed_benchmark.py --report-only                    # tables and plots from finished runs

Every run is an ordinary `train.py` run with the testbed configs (configs/trainers/<T>/testbed.yaml),
in the same output layout as the scripts (scripts/common.sh), so runs are resumable: a run whose
log already holds its result is skipped. Protocols:
- base2new: train on the base classes of shapes, patterns, digits; test on their new classes.
- xd / dg: train once on all classes of `objects` (XD_EPOCHS epochs); test on shapes, patterns, digits (xd) and on
  the domain-shifted renderings objects_v2, objects_sketch, objects_noise, objects_clutter (dg).
  ZeroshotCLIP takes each xd target's own hand prompt, and on the dg targets the source's prompt (as CoOp
  evaluates the ImageNet variants with ImageNet's).
- ablation: RESTORE_m base-to-novel with FS.WEIGHT in {0, 0.5, 1, 2} and SURGERY.MODE in
  {off, fixed, fs_guided} (paper Tables 4/5).
Writes to --output (default output/testbed): results.md, results.csv, and PNG plots (Base / Novel
/ HM per method; feature shift per layer and modality per method; discrepancy vs accuracy; t-SNE).
"""
import argparse
import csv
import glob
import math
import os
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

METHODS = ["ZeroshotCLIP", "CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "RESTORE_m", "RESTORE_p"]
BASE2NEW = ["shapes", "patterns", "digits"]
SOURCE = "objects"
XD_TARGETS = ["shapes", "patterns", "digits"]
DG_TARGETS = ["objects_v2", "objects_sketch", "objects_noise", "objects_clutter"]
ABLATIONS = {  # name -> overrides of RESTORE_m
    "fs0_fsguided": ["TRAINER.RESTORE.FS.WEIGHT", "0.0"],
    "fs0.5_fsguided": ["TRAINER.RESTORE.FS.WEIGHT", "0.5"],
    "fs1_fsguided": [],  # the default: the RESTORE_m row of the main table
    "fs2_fsguided": ["TRAINER.RESTORE.FS.WEIGHT", "2.0"],
    "fs1_off": ["TRAINER.RESTORE.SURGERY.MODE", "off"],
    "fs1_fixed": ["TRAINER.RESTORE.SURGERY.MODE", "fixed"],
    "fs0_off": ["TRAINER.RESTORE.FS.WEIGHT", "0.0", "TRAINER.RESTORE.SURGERY.MODE", "off"],
}
# Rough cost of one epoch per training class, relative to CoOp (from the testbed logs, 2 cores).
# Only used to start the heaviest jobs first, so that no long job runs alone at the end.
EPOCH_COST = {"ZeroshotCLIP": 0.05, "CoOp": 1.0, "CoCoOp": 10.0, "IVLP": 1.45, "MaPLe": 1.45,
              "PromptSRC": 1.75, "RESTORE_m": 2.3, "RESTORE_p": 2.9}
SHOTS = 16
CFG = "testbed"
XD_EPOCHS = 2  # as the release's cross-dataset runs; the source has 128 classes (8x the base-class steps per epoch)
RESULT = re.compile(r"\* accuracy: ([\.\deE+-]+)%")


# ------------------------------------------------------------------------------------ runs
def finished(folder):
    """The accuracy a finished run printed (a log.txt* of `folder` holds "=> result" and its accuracy), or
    None. The one "finished" rule: scripts/common.sh and cluster.py call it too."""
    for path in sorted(glob.glob(os.path.join(folder, "log.txt*"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if "=> result" in text:
            found = RESULT.findall(text.split("=> result")[-1])
            if found:
                return float(found[0])
    return None


def common_args(dataset, trainer, seed, data):
    return ["--root", data, "--seed", str(seed), "--trainer", trainer, "--engine", "native",
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{trainer}/{CFG}.yaml"]


def base2new_job(out, trainer, dataset, seed, data, extra=()):
    common = f"{dataset}/shots_{SHOTS}/{trainer}/{CFG}/seed{seed}"
    train_dir, test_dir = f"{out}/base2new/train_base/{common}", f"{out}/base2new/test_new/{common}"
    epoch = max_epoch(trainer)
    return [
        (train_dir, common_args(dataset, trainer, seed, data) + [
            "--output-dir", train_dir, "DATASET.NUM_SHOTS", str(SHOTS),
            "DATASET.SUBSAMPLE_CLASSES", "base", *extra]),
        (test_dir, common_args(dataset, trainer, seed, data) + [
            "--output-dir", test_dir, "--model-dir", train_dir, "--load-epoch", str(epoch),
            "--eval-only", "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", "new",
            *extra]),
    ]


def transfer_job(out, trainer, seed, data, targets):
    train_dir = f"{out}/{SOURCE}/{trainer}/{CFG}_{SHOTS}shots/seed{seed}"
    epochs = ["OPTIM.MAX_EPOCH", str(XD_EPOCHS)]
    steps = [(train_dir, common_args(SOURCE, trainer, seed, data) + [
        "--output-dir", train_dir, "DATASET.NUM_SHOTS", str(SHOTS), *epochs])]
    for target in targets:
        test_dir = f"{out}/evaluation/{trainer}/{CFG}_{SHOTS}shots/{target}/seed{seed}"
        steps.append((test_dir, common_args(target, trainer, seed, data) + [
            "--output-dir", test_dir, "--model-dir", train_dir,
            "--load-epoch", str(XD_EPOCHS), "--eval-only", *epochs]))
    return steps


def max_epoch(trainer):
    from restore.config import get_cfg_default, merge_from_file
    cfg = get_cfg_default()
    merge_from_file(cfg, f"configs/trainers/{trainer}/{CFG}.yaml")
    return cfg.OPTIM.MAX_EPOCH


def finished_with(argv):
    """Whether the run of `argv` is finished with these settings (train.py --check-finished, as the
    scripts ask); a folder finished with other settings raises, naming the keys."""
    import contextlib

    import train
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            train.main(["--check-finished", *argv])
    except SystemExit as status:
        if status.code in (0, 3):
            return status.code == 0
        raise RuntimeError(f"train.py --check-finished {' '.join(argv)} failed (see above)") from None
    return False


def run_job(steps, threads):
    """Run the steps of one job (train, then its tests) in this worker; skip finished ones."""
    os.environ["RESTORE_NUM_THREADS"] = str(threads)  # train.py sets torch's threads from it
    import train
    start = time.time()
    for folder, argv in steps:
        if finished_with(argv):
            continue
        console = sys.stdout
        with open(os.devnull, "w") as quiet:
            sys.stdout = quiet  # the run's own log.txt keeps everything
            try:
                train.main(argv)
            finally:
                sys.stdout = console
        if finished(folder) is None:
            raise RuntimeError(f"run did not finish: {folder} (see its log.txt)")
    return time.time() - start


def plan(args):
    jobs = []  # (label, steps)
    out, data = args.output, args.data
    for protocol in args.protocols:
        for seed in args.seeds:
            for trainer in args.methods:
                if protocol == "base2new":
                    for dataset in args.datasets:
                        jobs.append((f"b2n {trainer} {dataset} s{seed}",
                                     base2new_job(out, trainer, dataset, seed, data)))
                elif protocol in ("xd", "dg") and not any(
                        j[0] == f"transfer {trainer} s{seed}" for j in jobs):
                    targets = [t for p in args.protocols if p in ("xd", "dg")
                               for t in (XD_TARGETS if p == "xd" else DG_TARGETS)]
                    jobs.append((f"transfer {trainer} s{seed}",
                                 transfer_job(out, trainer, seed, data, targets)))
            if protocol == "ablation":
                for name in args.ablations:
                    extra = ABLATIONS[name]
                    if name == "fs1_fsguided":
                        continue  # read from the main base-to-novel runs
                    for dataset in args.datasets:
                        jobs.append((f"ablation {name} {dataset} s{seed}", base2new_job(
                            f"{out}/ablation/{name}", "RESTORE_m", dataset, seed, data, extra)))
    return jobs


def job_cost(label):
    """Rough cost of a job from its label: epoch cost x epochs x training classes."""
    from restore.testbed.datasets import get
    words = label.split()
    trainer = "RESTORE_m" if words[0] == "ablation" else words[1]
    if words[0] == "transfer":
        epochs, n_classes = XD_EPOCHS, len(get(SOURCE).classes)
    else:
        epochs, n_classes = max_epoch(trainer), get(words[-2]).num_base
    return EPOCH_COST.get(trainer, 1.0) * epochs * n_classes


def take_device(devices):
    """Pool worker initializer: this worker's jobs run on the next free GPU of `devices` (a queue)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())


def run_all(args):
    from tqdm import tqdm
    jobs = plan(args)
    todo = sorted(((label, steps) for label, steps in jobs
                   if any(finished(folder) is None for folder, _ in steps)),
                  key=lambda job: -job_cost(job[0]))
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already finished, {len(todo)} to run "
          f"with {args.jobs} worker(s) x {args.threads} thread(s)")
    start = time.time()
    bar = tqdm(total=len(todo), unit="job", dynamic_ncols=True)
    gpus = getattr(args, "gpus", [])
    if args.jobs == 1 and not gpus:
        for label, steps in todo:
            bar.set_postfix_str(label)
            run_job(steps, args.threads)
            bar.update(1)
    else:
        pool_args = {}
        if gpus:  # one worker per GPU, each holding its own for all its jobs
            import multiprocessing
            devices = multiprocessing.Manager().Queue()
            for gpu in gpus:
                devices.put(gpu)
            pool_args = dict(initializer=take_device, initargs=(devices,))
        with ProcessPoolExecutor(max_workers=len(gpus) or args.jobs, **pool_args) as pool:
            futures = {pool.submit(run_job, steps, args.threads): label for label, steps in todo}
            for future in as_completed(futures):
                future.result()
                bar.set_postfix_str(futures[future])
                bar.update(1)
    bar.close()
    elapsed = time.time() - start
    print(f"ran {len(todo)} jobs in {elapsed / 60:.1f} min")
    return elapsed


# ---------------------------------------------------------------------------------- report
def hm(b, n):
    return 2 * b * n / (b + n) if b + n > 0 else 0.0


def mean_se(values):
    if not values:
        return float("nan"), float("nan"), float("nan")
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, sd, sd / math.sqrt(len(values))


def fmt(values):
    """mean ± std over seeds (just the value when there is one seed)."""
    m, sd, _ = mean_se(values)
    if math.isnan(m):
        return "-"
    return f"{m:.2f}" if len(values) == 1 else f"{m:.2f} ± {sd:.2f}"


def base2new_results(out, trainer, datasets, seeds):
    """{dataset: {seed: (base, novel)}} of finished runs."""
    res = {}
    for dataset in datasets:
        for seed in seeds:
            common = f"{dataset}/shots_{SHOTS}/{trainer}/{CFG}/seed{seed}"
            b = finished(f"{out}/base2new/train_base/{common}")
            n = finished(f"{out}/base2new/test_new/{common}")
            if b is not None and n is not None:
                res.setdefault(dataset, {})[seed] = (b, n)
    return res


def seed_averages(res, datasets, seeds):
    """Per seed, the dataset-averaged base and novel, and the HM of those averages."""
    rows = []
    for seed in seeds:
        if all(seed in res.get(d, {}) for d in datasets):
            b = statistics.mean(res[d][seed][0] for d in datasets)
            n = statistics.mean(res[d][seed][1] for d in datasets)
            rows.append((b, n, hm(b, n)))
    return rows


def report(args, elapsed=None):
    out = args.output
    lines, rows = [], []
    lines.append("## Base-to-novel (testbed; mean ± std over seeds, HM of the dataset averages)\n")
    header = "| Method | " + " | ".join(f"{d} B / N / HM" for d in args.datasets) + \
             " | Avg Base | Avg Novel | Avg HM |"
    lines += [header, "|---" * (len(args.datasets) + 4) + "|"]
    summary = {}
    for trainer in args.methods:
        res = base2new_results(out, trainer, args.datasets, args.seeds)
        if not res:
            continue
        cells = []
        for d in args.datasets:
            per = res.get(d, {})
            bs = [v[0] for v in per.values()]
            ns = [v[1] for v in per.values()]
            hs = [hm(b, n) for b, n in per.values()]
            cells.append(f"{fmt(bs)} / {fmt(ns)} / {fmt(hs)}" if per else "-")
            for metric, vals in (("base", bs), ("novel", ns), ("hm", hs)):
                m, sd, se = mean_se(vals)
                rows.append(["base2new", trainer, d, metric, m, sd, se, len(vals)])
        avg = seed_averages(res, args.datasets, args.seeds)
        summary[trainer] = avg
        cols = [fmt([a[i] for a in avg]) for i in range(3)]
        for metric, i in (("base", 0), ("novel", 1), ("hm", 2)):
            m, sd, se = mean_se([a[i] for a in avg])
            rows.append(["base2new", trainer, "average", metric, m, sd, se, len(avg)])
        lines.append(f"| {trainer} | " + " | ".join(cells) + " | " + " | ".join(cols) + " |")

    if "ZeroshotCLIP" in summary and "CoOp" in summary:
        lines.append("\n**The trade-off RESTORE addresses** (dataset averages, difference of seed "
                     "means, in standard errors of that difference):\n")
        for other in [m for m in summary if m != "ZeroshotCLIP"]:
            parts = []
            for i, name in ((0, "base"), (1, "novel")):
                a = [x[i] for x in summary[other]]
                z = [x[i] for x in summary["ZeroshotCLIP"]]
                if len(a) > 1 and len(z) > 0:
                    diff = statistics.mean(a) - statistics.mean(z)
                    se = math.sqrt(mean_se(a)[2] ** 2 + mean_se(z)[2] ** 2)
                    parts.append(f"{name} {diff:+.2f} ({diff / se:+.1f} SE)" if se > 0
                                 else f"{name} {diff:+.2f}")
            if parts:
                lines.append(f"- {other} vs ZeroshotCLIP: " + ", ".join(parts))

    for kind, targets in (("xd", XD_TARGETS), ("dg", DG_TARGETS)):
        if kind not in args.protocols:
            continue
        title = "Cross-dataset" if kind == "xd" else "Domain generalisation"
        lines.append(f"\n## {title} (train: all classes of {SOURCE}; mean ± std over seeds)\n")
        lines.append(f"| Method | {SOURCE} | " + " | ".join(targets) + " | Average | seeds |")
        lines.append("|---" * (len(targets) + 4) + "|")
        for trainer in args.methods:
            src = [v for s in args.seeds if (v := finished(
                f"{out}/{SOURCE}/{trainer}/{CFG}_{SHOTS}shots/seed{s}")) is not None]
            if not src:
                continue
            per_target, per_seed = [], {}
            for t in targets:
                vals = []
                for s in args.seeds:
                    v = finished(f"{out}/evaluation/{trainer}/{CFG}_{SHOTS}shots/{t}/seed{s}")
                    if v is not None:
                        vals.append(v)
                        per_seed.setdefault(s, []).append(v)
                per_target.append(fmt(vals))
                m, sd, se = mean_se(vals)
                rows.append([kind, trainer, t, "accuracy", m, sd, se, len(vals)])
            avg = [statistics.mean(v) for v in per_seed.values() if len(v) == len(targets)]
            m, sd, se = mean_se(avg)
            rows.append([kind, trainer, "average", "accuracy", m, sd, se, len(avg)])
            lines.append(f"| {trainer} | {fmt(src)} | " + " | ".join(per_target) +
                         f" | {fmt(avg)} | {len(src)} |")

    if "ablation" in args.protocols:
        lines.append("\n## Ablations of RESTORE_m (base-to-novel, dataset averages; "
                     "mean ± std over seeds)\n")
        lines.append("| FS.WEIGHT | SURGERY.MODE | Base | Novel | HM | seeds |")
        lines.append("|---|---|---|---|---|---|")
        for name in args.ablations:
            root = out if name == "fs1_fsguided" else f"{out}/ablation/{name}"
            res = base2new_results(root, "RESTORE_m", args.datasets, args.seeds)
            avg = seed_averages(res, args.datasets, args.seeds)
            if not avg:
                continue
            weight, mode = name.split("_")
            lines.append(f"| {weight[2:]} | {mode.replace('fsguided', 'fs_guided')} | " +
                         " | ".join(fmt([a[i] for a in avg]) for i in range(3)) + f" | {len(avg)} |")
            for metric, i in (("base", 0), ("novel", 1), ("hm", 2)):
                m, sd, se = mean_se([a[i] for a in avg])
                rows.append(["ablation", f"RESTORE_m {name}", "average", metric, m, sd, se,
                             len(avg)])
    if elapsed is not None:
        lines.append(f"\nRun time of this invocation: {elapsed / 60:.1f} min.")

    text = "\n".join(lines) + "\n"
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/results.md", "w") as f:
        f.write(text)
    with open(f"{out}/results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["protocol", "method", "dataset", "metric", "mean", "std", "se", "seeds"])
        for r in rows:
            w.writerow([f"{v:.4f}" if isinstance(v, float) else v for v in r])
    print(text)
    plot_accuracy(summary, f"{out}/base2new_accuracy.png")
    return summary


def plot_accuracy(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    methods = [m for m in summary if summary[m]]
    if not methods:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(methods)), 3.8))
    x = np.arange(len(methods))
    for i, (name, colour) in enumerate((("Base", "tab:blue"), ("Novel", "tab:red"),
                                        ("HM", "tab:green"))):
        stats = [mean_se([a[i] for a in summary[m]]) for m in methods]
        ax.bar(x + (i - 1) * 0.27, [s[0] for s in stats], 0.27, yerr=[s[2] for s in stats],
               label=name, color=colour, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(methods, rotation=20, fontsize=8)
    ax.set_ylabel("accuracy (%), testbed average")
    lo = min(mean_se([a[i] for a in summary[m]])[0] for m in methods for i in range(3))
    ax.set_ylim(max(0, lo - 10), 100)
    ax.legend(fontsize=8, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------ shift analysis
def load_trained(trainer, dataset, seed, subsample, args, out=None):
    """A Trainer (native engine) holding the base-trained model of a finished run, built for
    `subsample` classes ("base" or "new") of `dataset`."""
    import train
    from restore.engine import Trainer
    out = out or args.output
    model_dir = f"{out}/base2new/train_base/{dataset}/shots_{SHOTS}/{trainer}/{CFG}/seed{seed}"
    argv = common_args(dataset, trainer, seed, args.data) + [
        "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", subsample, "VERBOSE", "False"]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv), "native")
    console = sys.stdout
    with open(os.devnull, "w") as quiet:
        sys.stdout = quiet
        try:
            trainer_obj = Trainer(cfg)
            if trainer_obj.trainable:
                trainer_obj.load_model(model_dir, epoch=max_epoch(trainer))
        finally:
            sys.stdout = console
    return trainer_obj


def shift_analysis(args, summary):
    from restore.analysis.feature_shift_study import (average_feature_shift, plot_per_layer,
                                                      plot_shift_vs_accuracy, summarize)
    from restore.feature_shift import FeatureShift
    seeds = args.seeds[:1]
    shifts, rows = {}, []
    for trainer in args.methods:
        if trainer not in summary or not summary[trainer]:
            continue
        per = []
        for dataset in args.datasets:
            for seed in seeds:
                t = load_trained(trainer, dataset, seed, "base", args)
                per.append(average_feature_shift(t.model, t.test_loader, device=t.device))
        shift = FeatureShift(sum(s.vision for s in per) / len(per),
                             sum(s.text for s in per) / len(per))
        shifts[trainer] = shift
        avg = summary[trainer]
        row = {"method": trainer, **summarize(shift),
               "base": statistics.mean(a[0] for a in avg),
               "novel": statistics.mean(a[1] for a in avg), "hm": statistics.mean(a[2] for a in avg)}
        rows.append(row)
    if not rows:
        return
    out = args.output
    plot_per_layer(shifts, f"{out}/feature_shift_per_layer.png",
                   title="Feature shift per layer (testbed base test sets, seed 1)")
    for key in ("novel", "base"):
        plot_shift_vs_accuracy(rows, f"{out}/discrepancy_vs_{key}.png", accuracy_key=key)
    lines = ["\n## Feature shift (base test images, base-trained models, seed "
             f"{seeds[0]}; relative norm)\n",
             "| Method | mean N^v | mean N^t | discrepancy sum_l abs(N^v_l - N^t_l) | Base | Novel | HM |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['shift_vision']:.4f} | {r['shift_text']:.4f} | "
                     f"{r['discrepancy']:.4f} | {r['base']:.2f} | {r['novel']:.2f} | "
                     f"{r['hm']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(f"{out}/results.md", "a") as f:
        f.write(text)


def tsne_analysis(args, methods=("ZeroshotCLIP", "CoOp", "MaPLe", "RESTORE_m")):
    from restore.analysis.tsne import collect_features, plot_tsne
    dataset, seed = args.datasets[0], args.seeds[0]
    for trainer in methods:
        if trainer not in args.methods:
            continue
        groups = {}
        for subsample, name in (("base", "base"), ("new", "novel")):
            t = load_trained(trainer, dataset, seed, subsample, args)
            groups[name] = collect_features(t.model, t.test_loader, device=t.device)
        plot_tsne(groups, f"{args.output}/tsne_{dataset}_{trainer}.png",
                  title=f"{trainer} on {dataset} (seed {seed})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocols", nargs="+", default=["base2new"],
                   choices=["base2new", "xd", "dg", "ablation"])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--datasets", nargs="+", default=BASE2NEW)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (CPU)")
    p.add_argument("--gpus", nargs="+", default=[], help="GPU ids: one worker per GPU, each job on its "
                                                          "worker's GPU (instead of --jobs)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (default: the CPUs available to this process / jobs)")
    p.add_argument("--data", default=os.environ.get("DATA", "./data"))
    p.add_argument("--output", default="output/testbed")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-analysis", action="store_true", help="skip feature-shift and t-SNE")
    args = p.parse_args(argv)
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    args.jobs = len(args.gpus) or args.jobs
    from restore.engine.cpus import available_cpus
    args.threads = args.threads or max(1, available_cpus() // args.jobs)
    elapsed = None if args.report_only else run_all(args)
    summary = report(args, elapsed)
    if not args.no_analysis and "base2new" in args.protocols:
        shift_analysis(args, summary)
        tsne_analysis(args)


if __name__ == "__main__":
    main()
