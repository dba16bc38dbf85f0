"""The report of a sweep: from the finished runs of the plan (sweep.plan), one Method x dataset table per
protocol (sweep.table: markdown, CSV and a plot), the trade-off against zero-shot CLIP and the ablation
table (results.md, results.csv), and the testbed's feature-shift and t-SNE analyses of the base-trained
models."""
import csv
import math
import os
import statistics
import sys

from sweep import table as tables
from sweep.plan import (FAST_TRACE, SHOTS, TESTBED_CFG, common_args, finished, max_epoch, output_root,
                        run_config)


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


def config_name(args, trainer="RESTORE_m"):
    """The folder name of the trainer's base-to-novel config in this sweep (sweep.plan.run_config)."""
    return run_config(trainer, "base2new", getattr(args, "configs", TESTBED_CFG)).name


def base2new_results(out, trainer, datasets, seeds, cfg=TESTBED_CFG):
    """{dataset: {seed: (base, novel)}} of finished runs."""
    res = {}
    for dataset in datasets:
        for seed in seeds:
            common = f"{dataset}/shots_{SHOTS}/{trainer}/{cfg}/seed{seed}"
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
    """The tables of the sweep's protocols over its output folder (every method and config found there,
    each row naming its config and epochs), written to results.md, results.csv and
    <protocol>_accuracy.png; the base-to-novel trade-off against ZeroshotCLIP and the ablation table
    follow. Returns {method: [(base, novel, hm) per seed]} of the plan's base-to-novel runs."""
    out = output_root(args)
    found = [tables.read_table(out, p) for p in ("base2new", "xd", "dg", "fewshot") if p in args.protocols]
    lines = [tables.markdown(t) for t in found]
    rows = [r for t in found for r in tables.csv_rows(t)]
    summary = {}
    if "base2new" in args.protocols:
        for trainer in args.methods:
            res = base2new_results(out, trainer, args.datasets, args.seeds, config_name(args, trainer))
            if res:
                summary[trainer] = seed_averages(res, args.datasets, args.seeds)

    if "ZeroshotCLIP" in summary and "CoOp" in summary:
        lines.append("**The trade-off RESTORE addresses** (dataset averages, difference of seed "
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

    if "ablation" in args.protocols:
        cfg = config_name(args)
        lines.append("\n## Ablations of RESTORE_m (base-to-novel, dataset averages; "
                     "mean ± std over seeds)\n")
        lines.append("| FS.WEIGHT | SURGERY.MODE | Base | Novel | HM | seeds |")
        lines.append("|---|---|---|---|---|---|")
        for name in args.ablations:
            root = out if name == "fs1_fsguided" else f"{out}/ablation/{name}"
            res = base2new_results(root, "RESTORE_m", args.datasets, args.seeds, cfg)
            avg = seed_averages(res, args.datasets, args.seeds)
            if not avg:
                continue
            weight, mode = name.split("_")
            lines.append(f"| {weight[2:]} | {mode.replace('fsguided', 'fs_guided')} | " +
                         " | ".join(fmt([a[i] for a in avg]) for i in range(3)) + f" | {len(avg)} |")
            for metric, i in (("base", 0), ("novel", 1), ("hm", 2)):
                m, sd, _ = mean_se([a[i] for a in avg])
                rows.append(["ablation", f"RESTORE_m {name}", cfg, "", SHOTS, "average", metric,
                             f"{m:.4f}", f"{sd:.4f}", len(avg), "", ""])
    if elapsed is not None:
        lines.append(f"\nRun time of this invocation: {elapsed / 60:.1f} min.")

    text = "\n".join(lines) + "\n"
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/results.md", "w") as f:
        f.write(text)
    with open(f"{out}/results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(tables.CSV_HEADER)
        w.writerows(rows)
    print(text)
    for t in found:
        tables.plot(t, f"{out}/{t.protocol}_accuracy.png")
    return summary


# ------------------------------------------------------------------------ shift analysis
def load_trained(trainer, dataset, seed, subsample, args, out=None, extra=()):
    """A Trainer (native engine) holding the base-trained model of a finished run, built for
    `subsample` classes ("base" or "new") of `dataset`; `extra`: the run's config overrides (KEY VALUE ...)."""
    import train
    from restore.engine import Trainer
    out = out or output_root(args)
    config = run_config(trainer, "base2new", getattr(args, "configs", TESTBED_CFG))
    model_dir = f"{out}/base2new/train_base/{dataset}/shots_{SHOTS}/{trainer}/{config.name}/seed{seed}"
    argv = common_args(dataset, trainer, seed, args.data, config) + [
        "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", subsample, "VERBOSE", "False",
        *config.overrides, *extra]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv), "native")
    console = sys.stdout
    with open(os.devnull, "w") as quiet:
        sys.stdout = quiet
        try:
            trainer_obj = Trainer(cfg)
            if trainer_obj.trainable:
                trainer_obj.load_model(model_dir, epoch=max_epoch(config.file, config.overrides))
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
    out = output_root(args)
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
    out, results = output_root(args), {}
    rows = [(name, "RESTORE_m", out if name == "exact" else f"{out}/fast/{name}")
            for name in args.fast_trace] + [("MaPLe (reference)", "MaPLe", out)]
    for name, trainer, root in rows:
        res = base2new_results(root, trainer, args.datasets, args.seeds, config_name(args, trainer))
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
        plot_tsne(groups, f"{output_root(args)}/tsne_{dataset}_{trainer}.png",
                  title=f"{trainer} on {dataset} (seed {seed})")
