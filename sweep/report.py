"""The report of a sweep: from the finished runs of the plan (sweep.plan), the base-to-novel, cross-dataset,
domain-generalisation and ablation tables (results.md, results.csv), the accuracy plot, and the
feature-shift and t-SNE analyses of the base-trained models."""
import csv
import math
import os
import statistics
import sys

from sweep.plan import (CFG, DG_TARGETS, FAST_TRACE, SHOTS, SOURCE, XD_TARGETS, common_args, finished,
                        max_epoch)


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
def load_trained(trainer, dataset, seed, subsample, args, out=None, extra=()):
    """A Trainer (native engine) holding the base-trained model of a finished run, built for
    `subsample` classes ("base" or "new") of `dataset`; `extra`: the run's config overrides (KEY VALUE ...)."""
    import train
    from restore.engine import Trainer
    out = out or args.output
    model_dir = f"{out}/base2new/train_base/{dataset}/shots_{SHOTS}/{trainer}/{CFG}/seed{seed}"
    argv = common_args(dataset, trainer, seed, args.data) + [
        "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", subsample, "VERBOSE", "False",
        *extra]
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


def fast_trace_report(args):
    """The table of RESTORE_m's trace speed-ups (sweep.plan.FAST_TRACE) against the exact default: base,
    novel and HM (dataset averages, mean ± std over seeds), each option's difference of seed means in
    standard errors of that difference, and the exact inter-modal discrepancy sum_l |N^v_l - N^t_l| of
    the trained models on the base test images (mean over datasets and seeds); appended to results.md.
    MaPLe's base-to-novel runs, where present for the same seeds, give a reference row (no L_fs)."""
    from restore.analysis.feature_shift_study import average_feature_shift
    from restore.feature_shift import discrepancy
    out, results = args.output, {}
    rows = [(name, "RESTORE_m", out if name == "exact" else f"{out}/fast/{name}")
            for name in args.fast_trace] + [("MaPLe (reference)", "MaPLe", out)]
    for name, trainer, root in rows:
        res = base2new_results(root, trainer, args.datasets, args.seeds)
        avg = seed_averages(res, args.datasets, args.seeds)
        if not avg:
            continue
        seeds = [s for s in args.seeds if all(s in res[d] for d in args.datasets)]
        gaps = []
        for dataset in args.datasets:
            for seed in seeds:
                t = load_trained(trainer, dataset, seed, "base", args, out=root,
                                 extra=FAST_TRACE.get(name, []))
                gaps.append(discrepancy(average_feature_shift(t.model, t.test_loader,
                                                              device=t.device)).item())
        results[name] = (avg, gaps)
    if not results:
        return
    lines = ["\n## RESTORE_m trace speed-ups (base-to-novel, dataset averages; mean ± std over seeds)\n",
             "| Option | overrides | Base | Novel | HM | vs exact (SE) B / N / HM | discrepancy | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    exact = results.get("exact", (None,))[0]
    for name, (avg, gaps) in results.items():
        cols = [fmt([a[i] for a in avg]) for i in range(3)]
        vs = "-"
        if exact and name in FAST_TRACE and name != "exact":
            parts = []
            for i in range(3):
                a, e = [x[i] for x in avg], [x[i] for x in exact]
                se = math.sqrt(mean_se(a)[2] ** 2 + mean_se(e)[2] ** 2)
                diff = statistics.mean(a) - statistics.mean(e)
                parts.append(f"{diff:+.2f} ({diff / se:+.1f})" if se > 0 else f"{diff:+.2f}")
            vs = " / ".join(parts)
        overrides = " ".join(FAST_TRACE.get(name, [])).replace("TRAINER.RESTORE.", "") or (
            "(defaults)" if name in FAST_TRACE else "no L_fs, no surgery")
        lines.append(f"| {name} | {overrides} | " + " | ".join(cols) +
                     f" | {vs} | {statistics.mean(gaps):.4f} | {len(avg)} |")
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
