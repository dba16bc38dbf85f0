"""The papers' results tables from any folder of runs: one Method x dataset table per protocol, as the
benchmark (benchmark.py, testbed_benchmark.py) writes it and `parse_test_res.py --table` prints it.

    table = read_table("output/benchmark", "base2new")     # also the original repositories' output folder
    print(markdown(table)); write(table, "output/benchmark")  # results_<protocol>.md, .csv and .png

Layouts read (sweep.plan's, the scripts', and the CoOp-lineage repositories'):

    base2new  <root>/base2new/{train_base,test_new}/<dataset>/shots_<K>/<method>/<config>/seed<N>  (or <root>
              the base2new folder itself)
    xd, dg    <root>/<source>/<method>/<config>_<K>shots/seed<N> and
              <root>/evaluation/<method>/<config>_<K>shots/<target>/seed<N>; dg: the ImageNet / objects variants
    fewshot   <root>/fewshot/<dataset>/shots_<K>/<method>/<config>/seed<N>

A row is a method with one config (and, few-shot, one number of shots); its epochs come from the run
record (run_info.json, OPTIM.MAX_EPOCH) or, for runs of the original code, the config's name ("_ep5_").
A cell is the mean ± std over seeds (population std, as CoOp's parse_test_res.py) of the accuracy each
seed's log printed after "=> result"; a seed whose accuracy is nan or inf is refused, naming its folder.
base2new: Base, Novel and their HM per dataset; the average is the mean over the row's datasets of Base
and of Novel, and the HM of those two averages (as the papers compute it), its std over the seeds that
have every dataset. Where a published value exists (sweep/published.csv), it and the difference to the
measured mean stand beside the cell.
"""
import csv
import glob
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import parse_test_res as ptr

PUBLISHED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published.csv")
TITLES = {"base2new": "Base-to-novel", "xd": "Cross-dataset", "dg": "Domain generalisation",
          "fewshot": "Few-shot (all classes)"}
AVERAGE = "average"
PUBLISHED_BACKBONE = "ViT-B/16"


def published_datasets(protocol):
    """The datasets a published average is over: the 11 (base2new), the 10 targets (xd), the 4 ImageNet
    variants (dg)."""
    from sweep.plan import REAL
    return {"base2new": set(REAL.base2new), "xd": set(REAL.base2new) - {REAL.source},
            "dg": set(REAL.dg_targets)}.get(protocol, set())


def mean(values):
    return sum(values) / len(values)


def std(values):
    """Population std, as CoOp's parse_test_res.py (numpy's default)."""
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def hm(a, b):
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


@dataclass(frozen=True)
class Row:
    """One row: a method with one config and shots (the number; few-shot rows differ in it); `epochs` and
    `backbone` as recorded ("?" unknown)."""
    method: str
    config: str
    shots: str
    epochs: str
    backbone: str = "?"

    def label(self, protocol):
        shots = f", {self.shots} shots" if protocol == "fewshot" else ""
        backbone = f", {self.backbone}" if self.backbone not in (PUBLISHED_BACKBONE, "?") else ""
        return f"{self.config} ({self.epochs} ep{shots}{backbone})"

    @property
    def comparable(self):
        """Whether the published numbers (ViT-B/16, 16 shots) are of runs like these."""
        return self.backbone in (PUBLISHED_BACKBONE, "?") and self.shots == "16"


@dataclass
class Cell:
    """The seeds' values of one (row, dataset, metric): {seed: accuracy}."""
    seeds: Dict[str, float] = field(default_factory=dict)

    @property
    def n(self):
        return len(self.seeds)

    @property
    def mean(self):
        return mean(list(self.seeds.values())) if self.seeds else None

    @property
    def std(self):
        return std(list(self.seeds.values())) if self.seeds else None


@dataclass
class Table:
    """A protocol's table: rows, dataset columns, and {(row, dataset): {metric: Cell}}."""
    protocol: str
    rows: List[Row]
    datasets: List[str]
    cells: Dict[Tuple[Row, str], Dict[str, Cell]]
    sources: List[str] = field(default_factory=list)  # xd / dg: the training dataset(s), first columns

    @property
    def metrics(self):
        return ("base", "novel") if self.protocol == "base2new" else ("accuracy",)


# ------------------------------------------------------------------------------------------ reading
def seed_value(folder, keyword="accuracy"):
    """The accuracy the seed folder's log printed after "=> result" (nan or inf for a diverged run), or
    None (parse_test_res.read_result)."""
    return ptr.read_result(folder, keyword, (ptr.TEST_SIGNAL,))[1]


def seeds(pattern, keyword):
    """{seed folder name: value} of the seed folders matching the glob that printed a result (their
    settings checked to agree, parse_test_res.check_same_settings); exits naming every seed folder whose
    value is nan or inf (parse_test_res.finite_results): such a seed is never averaged."""
    folders = [f for f in sorted(glob.glob(pattern)) if os.path.isdir(f)]
    ptr.check_same_settings(folders, os.path.dirname(pattern))
    found = [(folder, seed_value(folder, keyword)) for folder in folders]
    found = [(folder, value) for folder, value in found if value is not None]
    values = ptr.finite_results(found, keyword, os.path.dirname(pattern))
    return {os.path.basename(folder): value for (folder, _), value in zip(found, values)}


def recorded(folders, config):
    """(epochs, backbone): OPTIM.MAX_EPOCH and MODEL.BACKBONE.NAME of the first run record among
    `folders`; without one (the original code's runs) the config name's "_ep<N>" and "?"."""
    from restore.engine.provenance import read_run_info
    for folder in folders:
        info = read_run_info(folder)
        try:
            return str(info["config"]["OPTIM"]["MAX_EPOCH"]), str(info["config"]["MODEL"]["BACKBONE"]["NAME"])
        except (TypeError, KeyError):
            continue
    match = re.search(r"(?:^|_)ep(\d+)(?:_|$)", config)
    return (match.group(1) if match else "?"), "?"


def method_rank(name):
    """Rows in the registry's order (built-in families, then the others), unknown methods last."""
    from restore.methods import registry
    try:
        names = registry.names()
    except Exception:  # a table of runs must not depend on every plug-in importing
        names = []
    return (names.index(name) if name in names else len(names), name)


def read_table(root, protocol, keyword="accuracy", trainer=None, cfg=None):
    """The Table of `protocol` (base2new, xd, dg, fewshot) over the runs under `root`; rows of `trainer`
    and configs `cfg` only when given. An empty table when there are no runs."""
    if protocol == "base2new":
        found = _read_split(root, "base2new", keyword, trainer, cfg)
    elif protocol == "fewshot":
        found = _read_split(root, "fewshot", keyword, trainer, cfg)
    else:
        found = _read_transfer(root, protocol, keyword, trainer, cfg)
    cells, sources = found
    rows = sorted({row for row, _ in cells}, key=lambda r: (method_rank(r.method), r.config, int(r.shots or 0)))
    datasets = sorted({d for _, d in cells if d not in sources}, key=ptr.dataset_key)
    return Table(protocol, rows, datasets, cells, sorted(sources, key=ptr.dataset_key))


def _read_split(root, protocol, keyword, trainer, cfg):
    """base2new (Base from train_base, Novel from test_new) or fewshot (the run's own test)."""
    if protocol == "base2new":
        base = os.path.join(root, "base2new") if os.path.isdir(os.path.join(root, "base2new")) else root
        first = os.path.join(base, "train_base")
    else:
        base = first = os.path.join(root, "fewshot")
    cells = {}
    for run in sorted(glob.glob(os.path.join(first, "*", "shots_*", trainer or "*", cfg or "*"))):
        dataset, shots, method, config = os.path.relpath(run, first).split(os.sep)
        folders = sorted(glob.glob(os.path.join(run, "seed*")))
        row = Row(method, config, re.sub(r"\D", "", shots), *recorded(folders, config))
        if protocol == "base2new":
            metrics = {"base": Cell(seeds(os.path.join(run, "seed*"), keyword)),
                       "novel": Cell(seeds(os.path.join(base, "test_new", dataset, shots, method, config, "seed*"),
                                           keyword))}
        else:
            metrics = {"accuracy": Cell(seeds(os.path.join(run, "seed*"), keyword))}
        if any(c.n for c in metrics.values()):
            cells[(row, dataset)] = metrics
    return cells, set()


def _read_transfer(root, protocol, keyword, trainer, cfg):
    """xd / dg: each target's accuracy, and the source's own under the source's name."""
    cells, sources, rows = {}, set(), {}
    for run in sorted(glob.glob(os.path.join(root, "evaluation", trainer or "*", "*", "*"))):
        method, config_shots, dataset = os.path.relpath(run, os.path.join(root, "evaluation")).split(os.sep)
        config, _, shots = config_shots.rpartition("_")
        if (dataset in ptr.DG_DATASETS) != (protocol == "dg") or (cfg and config != cfg) or not config:
            continue
        values = seeds(os.path.join(run, "seed*"), keyword)
        if not values:
            continue
        if (method, config_shots) not in rows:
            trained = [f for s in ptr.SOURCES for f in sorted(glob.glob(
                os.path.join(root, s, method, config_shots, "seed*")))]
            rows[(method, config_shots)] = Row(method, config, re.sub(r"\D", "", shots), *recorded(trained, config))
        cells[(rows[(method, config_shots)], dataset)] = {"accuracy": Cell(values)}
    for (method, config_shots), row in rows.items():
        for source in ptr.SOURCES:
            values = seeds(os.path.join(root, source, method, config_shots, "seed*"), keyword)
            if values:
                cells[(row, source)] = {"accuracy": Cell(values)}
                sources.add(source)
    return cells, sources


# --------------------------------------------------------------------------------------- aggregates
def average(table, row):
    """{metric: (mean, std or None, seeds)} of the row's average over its datasets (not the sources): the
    mean over datasets of each dataset's seed mean; std over the seeds that have every dataset; base2new
    adds "hm", the HM of the averaged Base and Novel. {} when the row has no dataset."""
    datasets = [d for d in table.datasets if (row, d) in table.cells]
    if not datasets:
        return {}
    out = {}
    for metric in table.metrics:
        cells = [table.cells[(row, d)][metric] for d in datasets]
        if not all(c.n for c in cells):
            return {}
        common = set.intersection(*(set(c.seeds) for c in cells))
        per_seed = [mean([c.seeds[s] for c in cells]) for s in sorted(common)]
        out[metric] = (mean([c.mean for c in cells]), std(per_seed) if len(per_seed) > 1 else None,
                       len(per_seed))
    if table.protocol == "base2new":
        out["hm"] = (hm(out["base"][0], out["novel"][0]), None, min(out["base"][2], out["novel"][2]))
    return out


def complete(table, row):
    """Whether the row has every dataset column of the table (else its average is over fewer)."""
    return all((row, d) in table.cells for d in table.datasets)


def published():
    """{(protocol, method, dataset, metric): (value, source)} of sweep/published.csv."""
    with open(PUBLISHED, encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    return {(r["protocol"], r["method"], r["dataset"], r["metric"]): (float(r["value"]), r["source"])
            for r in csv.DictReader(lines)}


# ---------------------------------------------------------------------------------------- rendering
def entries(table):
    """[(row, dataset, metric, mean, std, seeds, published, difference)] of every cell and average, in
    the table's order: the rows of the CSV and the cells of the markdown."""
    pub = published()
    out = []
    for row in table.rows:
        for dataset in table.sources + table.datasets:
            metrics = table.cells.get((row, dataset))
            if metrics is None:
                continue
            values = {m: (c.mean, c.std if c.n > 1 else None, c.n) for m, c in metrics.items() if c.n}
            if table.protocol == "base2new" and len(values) == 2:
                values["hm"] = (hm(values["base"][0], values["novel"][0]), None,
                                min(values["base"][2], values["novel"][2]))
            for metric, value in values.items():
                out.append(_entry(row, dataset, metric, value, pub if row.comparable else {}, table.protocol))
        over = {d for d in table.datasets if (row, d) in table.cells}
        same = row.comparable and over == published_datasets(table.protocol)  # else not the published average
        for metric, value in average(table, row).items():
            out.append(_entry(row, AVERAGE, metric, value, pub if same else {}, table.protocol))
    return out


def _entry(row, dataset, metric, value, pub, protocol):
    mean_, std_, n = value
    known = pub.get((protocol, row.method, dataset, metric))
    ref = known[0] if known else None
    return (row, dataset, metric, mean_, std_, n, ref, None if ref is None else mean_ - ref)


def cell_text(mean_, std_, ref, diff):
    text = f"{mean_:.2f}" + (f" ± {std_:.2f}" if std_ is not None else "")
    return text + (f" ({ref:.2f}, {diff:+.2f})" if ref is not None else "")


def columns(table):
    """[(dataset, metric)] of the markdown's value columns."""
    metrics = ("base", "novel", "hm") if table.protocol == "base2new" else ("accuracy",)
    return ([(s, "accuracy") for s in table.sources] + [(d, m) for d in table.datasets for m in metrics] +
            [(AVERAGE, m) for m in metrics])


def markdown(table):
    """The table as markdown: a title, a header naming each column, one line per row."""
    if not table.rows:
        return f"## {TITLES[table.protocol]}\n\nNo finished runs.\n"
    scope = {"base2new": "the 11 datasets", "xd": "the 10 targets", "dg": "the 4 ImageNet variants"}
    cols = columns(table)
    names = {"base": "Base", "novel": "Novel", "hm": "HM", "accuracy": ""}
    head = [f"{'Average' if d == AVERAGE else d}{' (source)' if d in table.sources else ''} {names[m]}".strip()
            for d, m in cols]
    cells = defaultdict(dict)
    seeds_of = defaultdict(list)
    for row, dataset, metric, mean_, std_, n, ref, diff in entries(table):
        cells[row][(dataset, metric)] = cell_text(mean_, std_, ref, diff)
        if dataset != AVERAGE:
            seeds_of[row].append(n)
    lines = [f"## {TITLES[table.protocol]}\n",
             "Mean ± std over seeds (population std); (published, difference) where a published value exists "
             f"(ViT-B/16, 16 shots; averages over {scope.get(table.protocol, '-')}); "
             "Average: mean over the datasets" + (", HM of the averaged Base and Novel" if table.protocol ==
                                                   "base2new" else "") + "; * averaged over fewer datasets "
             "than the table's.\n",
             "| Method | Config (epochs) | Seeds | " + " | ".join(head) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for row in table.rows:
        n = seeds_of[row]
        count = str(n[0]) if min(n) == max(n) else f"{min(n)}-{max(n)}"
        star = "" if complete(table, row) else "*"
        values = [cells[row].get(c, "-") + (star if c[0] == AVERAGE and c in cells[row] else "") for c in cols]
        lines.append(f"| {row.method} | {row.label(table.protocol)} | {count} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


CSV_HEADER = ["protocol", "method", "config", "epochs", "shots", "dataset", "metric", "mean", "std", "seeds",
              "published", "difference"]


def csv_rows(table):
    def number(x):
        return "" if x is None else f"{x:.4f}"
    return [[table.protocol, row.method, row.config, row.epochs, row.shots, dataset, metric,
             number(mean_), number(std_), n, number(ref), number(diff)]
            for row, dataset, metric, mean_, std_, n, ref, diff in entries(table)]


def write_csv(tables, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for table in tables:
            w.writerows(csv_rows(table))


def plot(table, path):
    """base2new: the rows' average Base / Novel / HM (bars, std over seeds); xd / dg: the average
    accuracy; fewshot: the average accuracy against the shots (a learning curve per method and config)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in table.rows if average(table, r)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows)), 3.8))
    if table.protocol == "fewshot":
        curves = defaultdict(list)
        for row in rows:
            curves[(row.method, row.config)].append((int(row.shots), average(table, row)["accuracy"]))
        for (method, config), points in curves.items():
            points.sort()
            ax.errorbar([p[0] for p in points], [p[1][0] for p in points],
                        yerr=[p[1][1] or 0 for p in points], marker="o", capsize=2, label=f"{method} ({config})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shots per class")
    else:
        metrics = ("base", "novel", "hm") if table.protocol == "base2new" else ("accuracy",)
        width = 0.8 / len(metrics)
        for i, metric in enumerate(metrics):
            stats = [average(table, r)[metric] for r in rows]
            ax.bar([x + (i - (len(metrics) - 1) / 2) * width for x in range(len(rows))], [s[0] for s in stats],
                   width, yerr=[s[1] or 0 for s in stats], capsize=2, label=metric if metric != "hm" else "HM")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"{r.method}\n{r.config}" for r in rows], rotation=20, fontsize=7)
    ax.set_ylabel(f"accuracy (%), average over {len(table.datasets)} datasets")
    ax.set_title(TITLES[table.protocol])
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(table, out):
    """results_<protocol>.md, .csv and .png into `out`; returns the markdown."""
    os.makedirs(out, exist_ok=True)
    text = markdown(table)
    with open(os.path.join(out, f"results_{table.protocol}.md"), "w") as f:
        f.write(text)
    write_csv([table], os.path.join(out, f"results_{table.protocol}.csv"))
    plot(table, os.path.join(out, f"results_{table.protocol}.png"))
    return text
