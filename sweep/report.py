"""The report of a sweep: from the finished runs of the plan (sweep.plan), the base-to-novel, cross-dataset,
domain-generalisation and ablation tables (results.md, results.csv), the accuracy plot, and the
feature-shift and t-SNE analyses of the base-trained models.

results.csv holds every number the tables show (mean, std, se and seed count per protocol, method, dataset
and metric, the feature shifts included), so that a later report can take the rows of methods whose runs
it does not have from it (`previous`, testbed_benchmark.py --previous): new methods are run and added to
the tables without rerunning the others. That is the testbed's report (`--configs testbed`); a sweep of
real configs gets one Method x dataset table per protocol (sweep.table: markdown, CSV and a plot), each row
naming its config and epochs, with the published values beside it (`table_report`)."""
import csv
import math
import os
import statistics
import sys

from sweep import table as tables
from sweep.plan import (DG_TARGETS, FAST_TRACE, SHOTS, SOURCE, TESTBED_CFG, XD_TARGETS, common_args, finished,
                        max_epoch, output_root, run_config)

CFG = TESTBED_CFG  # the testbed report's config folder


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
    return fmt_stat(m, sd, len(values))


def fmt_stat(m, sd, n):
    if math.isnan(m):
        return "-"
    return f"{m:.2f}" if n == 1 else f"{m:.2f} ± {sd:.2f}"


CSV_HEADER = ["protocol", "method", "dataset", "metric", "mean", "std", "se", "seeds"]


def read_previous(path):
    """{(protocol, method): {(dataset, metric): (mean, std, se, seeds)}} of an earlier report's results.csv
    (`path`; {} when None). UserError naming the file when it is not one."""
    if not path:
        return {}
    from restore.errors import UserError
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--previous {path}: cannot be read ({err}).") from None
    if not table or table[0] != CSV_HEADER:
        raise UserError(f"--previous {path}: not a results.csv of this report (its header must be "
                        f"{','.join(CSV_HEADER)}).")
    found = {}
    for row in table[1:]:
        try:
            protocol, method, dataset, metric, m, sd, se, n = row
            found.setdefault((protocol, method), {})[dataset, metric] = (float(m), float(sd), float(se), int(n))
        except ValueError:
            raise UserError(f"--previous {path}: the row {','.join(row)!r} is not protocol,method,dataset,metric,"
                            "mean,std,se,seeds.") from None
    return found


def reported(args, previous):
    """(methods, protocols) of the report: args.methods and the methods of the earlier report's rows, in the
    registry's order (others after them), and args.protocols with the earlier report's ones."""
    from restore.methods import registry
    order = registry.names()
    names = list(dict.fromkeys([*args.methods, *(m for _, m in previous if m in order)]))
    names.sort(key=lambda m: order.index(m) if m in order else len(order))
    protocols = [*args.protocols, *sorted({p for p, _ in previous} - set(args.protocols) - {"base2new", "shift"})]
    return names, protocols


ABLATION_HEADER = ["\n## Ablations of RESTORE_m (base-to-novel, dataset averages; mean ± std over seeds)\n",
                   "| FS.WEIGHT | SURGERY.MODE | Base | Novel | HM | seeds |", "|---|---|---|---|---|---|"]


def ablation_runs(out, args, cfg=CFG):
    """(name, the row's "| FS.WEIGHT | SURGERY.MODE | " cells, per-seed (base, novel, hm) averages) of each of
    args.ablations; FS.WEIGHT 1 with fs_guided surgery is the main base-to-novel run of RESTORE_m."""
    for name in args.ablations:
        root = out if name == "fs1_fsguided" else f"{out}/ablation/{name}"
        res = base2new_results(root, "RESTORE_m", args.datasets, args.seeds, cfg)
        weight, mode = name.split("_")
        yield name, f"| {weight[2:]} | {mode.replace('fsguided', 'fs_guided')} | ", \
            seed_averages(res, args.datasets, args.seeds)


def previous_rows(found, protocol, method):
    """The csv rows of `method` in `protocol` from read_previous's result, as report() writes them."""
    return [[protocol, method, d, metric, *stat] for (d, metric), stat in found.get((protocol, method), {}).items()]


def config_name(args, trainer="RESTORE_m"):
    """The folder name of the trainer's base-to-novel config in this sweep (sweep.plan.run_config)."""
    return run_config(trainer, "base2new", getattr(args, "configs", TESTBED_CFG)).name


def base2new_results(out, trainer, datasets, seeds, cfg=CFG):
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


def tradeoff_lines(stats, lead=""):
    """The trade-off against ZeroshotCLIP (when it and CoOp were run): per method, the base and novel
    differences of the seed means of the dataset averages, in standard errors of that difference. `stats`:
    {method: [(mean, std, se, seeds) of base, novel, ...]}."""
    if "ZeroshotCLIP" not in stats or "CoOp" not in stats:
        return []
    lines = [f"{lead}**The trade-off RESTORE addresses** (dataset averages, difference of seed "
             "means, in standard errors of that difference):\n"]
    z = stats["ZeroshotCLIP"]
    for other in [m for m in stats if m != "ZeroshotCLIP"]:
        parts = []
        for i, name in ((0, "base"), (1, "novel")):
            (m_a, _, se_a, n_a), (m_z, _, se_z, n_z) = stats[other][i], z[i]
            if n_a > 1 and n_z > 0:
                diff = m_a - m_z
                se = math.sqrt(se_a ** 2 + se_z ** 2)
                parts.append(f"{name} {diff:+.2f} ({diff / se:+.1f} SE)" if se > 0 else f"{name} {diff:+.2f}")
        if parts:
            lines.append(f"- {other} vs ZeroshotCLIP: " + ", ".join(parts))
    return lines


def write_results(out, lines, header, rows):
    """results.md (the lines) and results.csv (header, rows) in `out`; the text printed too."""
    text = "\n".join(lines) + "\n"
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/results.md", "w") as f:
        f.write(text)
    with open(f"{out}/results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print(text)


def report(args, elapsed=None):
    """The sweep's report: the testbed's tables (`testbed_report`, with --previous) for `--configs testbed`,
    one Method x dataset table per protocol (`table_report`) for real configs. Returns {method: [(base,
    novel, hm) per seed]} of the base-to-novel runs."""
    if getattr(args, "configs", TESTBED_CFG) == TESTBED_CFG:
        return testbed_report(args, elapsed)
    return table_report(args, elapsed)


def testbed_report(args, elapsed=None):
    """Write results.md and results.csv of the finished runs (and of args.previous's rows for the methods
    without runs); returns {method: [(base, novel, hm) per seed]} of the methods with runs."""
    out = args.output
    previous = read_previous(getattr(args, "previous", None))
    methods, protocols = reported(args, previous)
    lines, rows = [], []
    lines.append("## Base-to-novel (testbed; mean ± std over seeds, HM of the dataset averages)\n")
    header = "| Method | " + " | ".join(f"{d} B / N / HM" for d in args.datasets) + \
             " | Avg Base | Avg Novel | Avg HM |"
    lines += [header, "|---" * (len(args.datasets) + 4) + "|"]
    summary, stats = {}, {}  # stats: {method: [(mean, std, se, n) of base, novel, hm averages]}
    for trainer in methods:
        res = base2new_results(out, trainer, args.datasets, args.seeds)
        if not res:
            old = previous.get(("base2new", trainer))
            if old:  # an earlier report's row
                rows += previous_rows(previous, "base2new", trainer)
                cell = lambda d, m: fmt_stat(old[d, m][0], old[d, m][1], old[d, m][3]) \
                    if (d, m) in old else "-"  # noqa: E731
                stats[trainer] = [old.get(("average", m), (math.nan,) * 3 + (0,)) for m in ("base", "novel", "hm")]
                lines.append(f"| {trainer} | " + " | ".join(
                    " / ".join(cell(d, m) for m in ("base", "novel", "hm")) for d in args.datasets) + " | " +
                    " | ".join(cell("average", m) for m in ("base", "novel", "hm")) + " |")
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
        stats[trainer] = []
        cols = [fmt([a[i] for a in avg]) for i in range(3)]
        for metric, i in (("base", 0), ("novel", 1), ("hm", 2)):
            m, sd, se = mean_se([a[i] for a in avg])
            rows.append(["base2new", trainer, "average", metric, m, sd, se, len(avg)])
            stats[trainer].append((m, sd, se, len(avg)))
        lines.append(f"| {trainer} | " + " | ".join(cells) + " | " + " | ".join(cols) + " |")

    lines += tradeoff_lines(stats, "\n")

    for kind, targets in (("xd", XD_TARGETS), ("dg", DG_TARGETS)):
        if kind not in protocols:
            continue
        title = "Cross-dataset" if kind == "xd" else "Domain generalisation"
        lines.append(f"\n## {title} (train: all classes of {SOURCE}; mean ± std over seeds)\n")
        lines.append(f"| Method | {SOURCE} | " + " | ".join(targets) + " | Average | seeds |")
        lines.append("|---" * (len(targets) + 4) + "|")
        for trainer in methods:
            src = [v for s in args.seeds if (v := finished(
                f"{out}/{SOURCE}/{trainer}/{CFG}_{SHOTS}shots/seed{s}")) is not None]
            if not src:
                old = previous.get((kind, trainer))
                if old and (SOURCE, "accuracy") in old:  # an earlier report's row
                    rows += previous_rows(previous, kind, trainer)
                    cell = lambda d: fmt_stat(old[d, "accuracy"][0], old[d, "accuracy"][1],  # noqa: E731
                                              old[d, "accuracy"][3]) if (d, "accuracy") in old else "-"
                    lines.append(f"| {trainer} | {cell(SOURCE)} | " + " | ".join(cell(t) for t in targets) +
                                 f" | {cell('average')} | {old[SOURCE, 'accuracy'][3]} |")
                continue
            m, sd, se = mean_se(src)
            rows.append([kind, trainer, SOURCE, "accuracy", m, sd, se, len(src)])
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

    if "ablation" in protocols:
        lines += ABLATION_HEADER
        for name, label, avg in ablation_runs(out, args):
            if not avg:
                old = previous.get(("ablation", f"RESTORE_m {name}"))
                if old and ("average", "hm") in old:  # an earlier report's row
                    rows += previous_rows(previous, "ablation", f"RESTORE_m {name}")
                    lines.append(label + " | ".join(
                        fmt_stat(*old["average", m][:2], old["average", m][3]) for m in ("base", "novel", "hm")) +
                        f" | {old['average', 'hm'][3]} |")
                continue
            lines.append(label + " | ".join(fmt([a[i] for a in avg]) for i in range(3)) + f" | {len(avg)} |")
            for metric, i in (("base", 0), ("novel", 1), ("hm", 2)):
                m, sd, se = mean_se([a[i] for a in avg])
                rows.append(["ablation", f"RESTORE_m {name}", "average", metric, m, sd, se,
                             len(avg)])
    if elapsed is not None:
        lines.append(f"\nRun time of this invocation: {elapsed / 60:.1f} min.")

    write_results(out, lines, CSV_HEADER, [csv_row(r) for r in rows])
    plot_accuracy(stats, f"{out}/base2new_accuracy.png")
    return summary


def table_report(args, elapsed=None):
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

    stats = {m: [(*mean_se([x[i] for x in avg]), len(avg)) for i in range(3)] for m, avg in summary.items()}
    lines += tradeoff_lines(stats)

    if "ablation" in args.protocols:
        cfg = config_name(args)
        lines += ABLATION_HEADER
        for name, label, avg in ablation_runs(out, args, cfg):
            if not avg:
                continue
            lines.append(label + " | ".join(fmt([a[i] for a in avg]) for i in range(3)) + f" | {len(avg)} |")
            for metric, i in (("base", 0), ("novel", 1), ("hm", 2)):
                m, sd, _ = mean_se([a[i] for a in avg])
                rows.append(["ablation", f"RESTORE_m {name}", cfg, "", SHOTS, "average", metric,
                             f"{m:.4f}", f"{sd:.4f}", len(avg), "", ""])
    if elapsed is not None:
        lines.append(f"\nRun time of this invocation: {elapsed / 60:.1f} min.")

    write_results(out, lines, tables.CSV_HEADER, rows)
    for t in found:
        tables.plot(t, f"{out}/{t.protocol}_accuracy.png")
    return summary


def csv_row(row):
    return [f"{v:.4f}" if isinstance(v, float) else v for v in row]


def plot_accuracy(stats, path):
    """Base, novel and HM (dataset averages: mean and standard error over seeds) per method; `stats` as
    report() collects them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    methods = [m for m in stats if not math.isnan(stats[m][2][0])]
    if not methods:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(methods)), 3.8))
    x = np.arange(len(methods))
    for i, (name, colour) in enumerate((("Base", "tab:blue"), ("Novel", "tab:red"),
                                        ("HM", "tab:green"))):
        ax.bar(x + (i - 1) * 0.27, [stats[m][i][0] for m in methods], 0.27,
               yerr=[stats[m][i][2] for m in methods], label=name, color=colour, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(methods, rotation=20, fontsize=8)
    ax.set_ylabel("accuracy (%), testbed average")
    lo = min(stats[m][i][0] for m in methods for i in range(3))
    ax.set_ylim(max(0, lo - 10), 100)
    ax.legend(fontsize=8, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------ shift analysis
def load_trained(trainer, dataset, seed, subsample, args, out=None, extra=()):
    """A Trainer (native engine) holding the base-trained model of a finished run, built for
    `subsample` classes ("base" or "new") of `dataset`; `extra`: the run's config overrides (KEY VALUE ...).
    The config is the one sweep.plan.base2new_job trained with (its file and overrides, then `extra`)."""
    import train
    from restore.engine import Trainer
    out = out or args.output
    config = run_config(trainer, "base2new", getattr(args, "configs", TESTBED_CFG))
    extra = [*config.overrides, *extra]
    model_dir = f"{out}/base2new/train_base/{dataset}/shots_{SHOTS}/{trainer}/{config.name}/seed{seed}"
    argv = common_args(dataset, trainer, seed, args.data, config) + [
        "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", subsample, "VERBOSE", "False",
        *extra]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv), "native")
    console = sys.stdout
    with open(os.devnull, "w") as quiet:
        sys.stdout = quiet
        try:
            trainer_obj = Trainer(cfg)
            if trainer_obj.trainable:
                trainer_obj.load_model(model_dir, epoch=max_epoch(config.file, extra))
        finally:
            sys.stdout = console
    return trainer_obj


SHIFT_METRICS = ("shift_vision", "shift_text", "discrepancy")


def shift_analysis(args, summary):
    """The feature shifts of the base-trained models (seed args.seeds[0], base test images): per method its
    mean N^v, mean N^t and discrepancy with its base-to-novel averages, appended to results.md and (with the
    per-layer values) to results.csv; plots per layer and against accuracy. A method without runs takes its
    row from args.previous (an earlier report's results.csv), when that has one."""
    from restore.analysis.feature_shift_study import (average_feature_shift, plot_per_layer,
                                                      plot_shift_vs_accuracy, summarize)
    from restore.feature_shift import FeatureShift
    seeds = args.seeds[:1]
    where = f"base test, seed {seeds[0]}"
    previous = read_previous(getattr(args, "previous", None))
    averages = read_previous(f"{args.output}/results.csv")  # what report() just wrote, earlier rows included
    shifts, rows, csv_rows = {}, [], []
    for trainer in reported(args, previous)[0]:
        avg = averages.get(("base2new", trainer), {})
        if not all(("average", m) in avg for m in ("base", "novel", "hm")):
            continue
        accuracy = {m: avg["average", m][0] for m in ("base", "novel", "hm")}
        if summary.get(trainer):
            per = []
            for dataset in args.datasets:
                for seed in seeds:
                    t = load_trained(trainer, dataset, seed, "base", args)
                    per.append(average_feature_shift(t.model, t.test_loader, device=t.device))
            shift = FeatureShift(sum(s.vision for s in per) / len(per),
                                 sum(s.text for s in per) / len(per))
            shifts[trainer] = shift
            values = summarize(shift)
            csv_rows += [["shift", trainer, where, m, values[m], 0.0, 0.0, 1] for m in SHIFT_METRICS]
            csv_rows += [["shift", trainer, f"{where}, layer {i + 1}", f"shift_{branch}", float(v), 0.0, 0.0, 1]
                         for branch in ("vision", "text") for i, v in enumerate(getattr(shift, branch).tolist())]
        else:
            old = previous.get(("shift", trainer), {})
            if not all((where, m) in old for m in SHIFT_METRICS):
                continue
            values = {m: old[where, m][0] for m in SHIFT_METRICS}
            csv_rows += previous_rows(previous, "shift", trainer)
            layers = {branch: [old[d, f"shift_{branch}"][0] for i in range(1, 100)
                               if (d := f"{where}, layer {i}", f"shift_{branch}") in old]
                      for branch in ("vision", "text")}
            if layers["vision"] or layers["text"]:
                import torch
                shifts[trainer] = FeatureShift(torch.tensor(layers["vision"]), torch.tensor(layers["text"]))
        rows.append({"method": trainer, **values, **accuracy})
    if not rows:
        return
    out = args.output
    if shifts:
        plot_per_layer(shifts, f"{out}/feature_shift_per_layer.png",
                       title=f"Feature shift per layer (testbed base test sets, seed {seeds[0]})")
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
    with open(f"{out}/results.csv", "a", newline="") as f:
        csv.writer(f).writerows(csv_row(r) for r in csv_rows)


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
        if trainer not in args.methods or not base2new_results(args.output, trainer, [dataset], [seed]):
            continue  # not run here (its row may come from an earlier report)
        groups = {}
        for subsample, name in (("base", "base"), ("new", "novel")):
            t = load_trained(trainer, dataset, seed, subsample, args)
            groups[name] = collect_features(t.model, t.test_loader, device=t.device)
        plot_tsne(groups, f"{args.output}/tsne_{dataset}_{trainer}.png",
                  title=f"{trainer} on {dataset} (seed {seed})")
