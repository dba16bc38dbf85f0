#!/usr/bin/env python
"""Read test results from log files; mean and spread over seeds; result tables.

CoOp-compatible mode (same arguments, same output lines):

    python parse_test_res.py output/.../seed-parent-dir [--ci95] [--test-log] [--multi-exp] [--keyword accuracy]

reads `<sub>/log.txt` of every non-hidden sub-folder (seed1, seed2, ...) and prints, per file,
`file: <path>. accuracy: 97.30%. `, then the mean and std (or 95% confidence interval) over them. A value
counts only after the end signal: "Finish training" (also "Finished training", what older Dassl printed), or
"=> result" with --test-log; the last match wins. Differences from CoOp: when a run was resumed, its results
are in a timestamped log (log.txt-YYYY-MM-DD-...), so when log.txt has none the newest timestamped log that
has one is read; the sub-folders need no Dassl. Seed folders whose run_info.json (written by train.py)
records other settings (config, trainer, evaluated epoch; the seed aside) are refused, naming the folder; so
are seeds whose result is nan or inf (CoOp's parser drops a `nan%` silently and averages `1e999%` to
`inf% +- nan%`).

Table mode: one Method x dataset table per protocol, as the papers print it and the benchmark writes it
(sweep.table: Base / Novel / HM per dataset and the HM of the dataset-averaged Base and Novel, mean ± std
over seeds with their number, each row's config and epochs, published values and differences beside):

    python parse_test_res.py --table base2new --root output [--trainer T] [--cfg C] [--csv FILE]
    python parse_test_res.py --table xd|dg|fewshot --root output [--trainer T] [--cfg C] [--csv FILE]

base2new reads `<root>/base2new/train_base/<dataset>/shots_<K>/<trainer>/<cfg>/seed*/` (Base) and
`.../test_new/...` (Novel; --root may also be the base2new folder, as the original repositories' output);
xd/dg read `<root>/<source>/<trainer>/<cfg>_<K>shots/seed*/` (the source's own test accuracy) and
`<root>/evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed*/`; fewshot `<root>/fewshot/<dataset>/shots_<K>/
<trainer>/<cfg>/seed*/`. Std is the population std, as CoOp. A seed whose accuracy is nan or inf is refused.
"""
import glob
import math
import os
import re
import sys

from restore.cli import ArgumentParser

END_SIGNALS = ("Finish training", "Finished training")
TEST_SIGNAL = "=> result"

# Datasets of the domain-generalisation protocol (the rest of the evaluated datasets form cross-dataset).
DG_DATASETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r",
               "objects_v2", "objects_sketch", "objects_noise", "objects_clutter")
SOURCES = ("imagenet", "objects")
# The papers' column order; other datasets follow alphabetically.
ORDER = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
         "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch",
         "imagenet_a", "imagenet_r", "objects", "shapes", "patterns", "digits", "objects_v2",
         "objects_sketch", "objects_noise", "objects_clutter")


def listdir_nohidden(path):
    return sorted(d for d in os.listdir(path) if not d.startswith("."))


def mean(values):
    return sum(values) / len(values)


def std(values):
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def ci95(values):
    return 1.96 * std(values) / math.sqrt(len(values))


def hm(a, b):
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


# ----------------------------------------------------------------------------------------- reading
def log_candidates(folder):
    """log.txt first, then the timestamped logs of resumed/re-run jobs, newest first."""
    stamped = sorted(glob.glob(os.path.join(folder, "log.txt-*")), reverse=True)
    plain = os.path.join(folder, "log.txt")
    return ([plain] if os.path.isfile(plain) else []) + stamped


def parse_log(path, regex, signals):
    """The last value matching `regex` after a line equal to one of `signals`, or None."""
    value, armed = None, False
    try:
        f = open(path, "r", errors="replace")
    except OSError as err:
        sys.exit(f"Error: cannot read {path} ({err.strerror or err}).")
    with f:
        for line in f:
            line = line.strip()
            if line in signals:
                armed = True
            match = regex.search(line)
            if match and armed:
                value = float(match.group(1))
    return value


def read_result(folder, keyword="accuracy", signals=END_SIGNALS):
    """(log path, value) from the log files of one run folder, or (None, None). A value may be nan or inf
    (a run whose training diverged): `finite_results` refuses those."""
    regex = re.compile(rf"\* {re.escape(keyword)}: ([-+]?(?:nan|inf|[\d.]+(?:[eE][-+]?\d+)?))%", re.I)
    for path in log_candidates(folder):
        value = parse_log(path, regex, signals)
        if value is not None:
            return path, value
    return None, None


def finite_results(found, keyword, where):
    """The values of [(folder, value)], after exiting with an error that names every seed folder whose
    value is NaN or infinite: averaging one in would make the mean meaningless (nan, or inf +- nan)."""
    bad = [f"{os.path.basename(folder)} ({value}%)" for folder, value in found if not math.isfinite(value)]
    if bad:
        sys.exit(f"Error: {', '.join(bad)} in {where} report a non-finite {keyword}: not averaged. Its training "
                 f"diverged (see its log.txt): rerun it, or move it out of {where}.")
    return [value for _, value in found]


def check_same_settings(folders, where):
    """Exit with an error naming the first seed folder whose run_info.json records other settings
    (config, trainer, evaluated epoch) than the first recorded one; the seed may differ. Folders
    without a record (original CoOp-lineage outputs) are not compared (said once)."""
    from restore.engine.provenance import read_run_info, run_differences
    from restore.engine.run_record import OPERATIONAL_KEYS, describe
    from restore.errors import UserError
    infos = {}
    for folder in folders:
        try:
            info = read_run_info(folder)  # a damaged run_info.json: one line naming it
        except UserError as err:
            sys.exit(f"Error: {err}")
        if info is not None:
            infos[folder] = info
    if not infos:
        return
    unrecorded = [os.path.basename(f) for f in folders if f not in infos]
    if unrecorded:
        print(f"Note: {', '.join(unrecorded)} in {where} have no run_info.json; their settings are "
              "not compared.")
    first, *rest = infos
    for folder in rest:
        diffs = run_differences(infos[first], infos[folder]["config"], infos[folder].get("eval"),
                                ignore=OPERATIONAL_KEYS + ("SEED",))
        if diffs:
            sys.exit(f"Error: {folder} was made with other settings than {first}: {describe(diffs)}. "
                     f"Averaging them would mix two experiments: rerun it with the same settings, or "
                     f"move it out of {where}.")


# ------------------------------------------------------------------------------- CoOp-compatible
def parse_function(directory, keyword, signals, use_ci95):
    print(f"Parsing files in {directory}")
    folders = [os.path.join(directory, sub) for sub in listdir_nohidden(directory)]
    folders = [f for f in folders if os.path.isdir(f)]
    check_same_settings(folders, directory)
    found = []
    for folder in folders:
        if not log_candidates(folder):
            sys.exit(f"Error: no log.txt in {folder}")
        path, value = read_result(folder, keyword, signals)
        if value is not None:
            found.append((folder, value))
            print(f"file: {path}. {keyword}: {value:.2f}%. ")
    results = finite_results(found, keyword, directory)
    if not results:
        hint = "" if TEST_SIGNAL in signals else " (for evaluation-only logs add --test-log)"
        sys.exit(f"Error: Nothing found in {directory}{hint}")
    avg = mean(results)
    spread = ci95(results) if use_ci95 else std(results)
    print("===")
    print(f"Summary of directory: {directory}")
    print(f"* {keyword}: {avg:.2f}% +- {spread:.2f}%")
    print("===")
    return avg


def coop_main(args):
    signals = (TEST_SIGNAL,) if args.test_log else END_SIGNALS
    if not os.path.isdir(args.directory):
        sys.exit(f"Error: {args.directory} is not a folder")
    if args.multi_exp:
        averages = []
        for sub in listdir_nohidden(args.directory):
            folder = os.path.join(args.directory, sub)
            if os.path.isdir(folder):
                averages.append(parse_function(folder, args.keyword, signals, args.ci95))
        print("Average performance")
        print(f"* {args.keyword}: {mean(averages):.2f}%")
    else:
        parse_function(args.directory, args.keyword, signals, args.ci95)


# ---------------------------------------------------------------------------------------- tables
def seed_values(folder_glob, keyword):
    """Values of every seed folder matching the glob (runs that printed a result)."""
    folders = [f for f in sorted(glob.glob(folder_glob)) if os.path.isdir(f)]
    check_same_settings(folders, os.path.dirname(folder_glob))
    found = [(folder, read_result(folder, keyword, (TEST_SIGNAL,))[1]) for folder in folders]
    return finite_results([(f, v) for f, v in found if v is not None], keyword, os.path.dirname(folder_glob))


def dataset_key(name):
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def table_main(args):
    """The single Method x dataset table of a protocol over the runs under --root (sweep.table)."""
    from sweep.table import markdown, read_table, write_csv
    root = args.root or "output"
    if not os.path.isdir(root):
        sys.exit(f"Error: --root {root} is not a folder")
    table = read_table(root, args.table, args.keyword, args.trainer, args.cfg)
    if not table.rows:
        sys.exit(f"Error: no {args.table} results under {root} (the layouts: python parse_test_res.py --help)")
    print(markdown(table))
    if args.csv:
        write_csv([table], args.csv)
        print(f"CSV written to {args.csv}")


def build_parser():
    p = ArgumentParser(prog="parse_test_res.py", description=__doc__.split("\n\n")[0])
    p.add_argument("directory", nargs="?", type=str, help="path to directory (CoOp mode)")
    p.add_argument("--ci95", action="store_true", help=r"compute 95%% confidence interval")
    p.add_argument("--test-log", action="store_true", help="parse test-only logs")
    p.add_argument("--multi-exp", action="store_true", help="parse multiple experiments")
    p.add_argument("--keyword", default="accuracy", type=str, help="which keyword to extract")
    p.add_argument("--table", choices=("base2new", "xd", "dg", "fewshot"),
                   help="print the protocol's Method x dataset table of the runs under --root")
    p.add_argument("--root", default="", help="table mode: the output folder of the runs (default output; "
                                              "base2new also takes its base2new folder)")
    p.add_argument("--trainer", default=None, help="table mode: only this trainer")
    p.add_argument("--cfg", default=None, help="table mode: only this config")
    p.add_argument("--csv", default="", help="table mode: also write the table as CSV to this file")
    return p


def main(argv=None):
    from restore.errors import UserError
    args = build_parser().parse_args(argv)
    if not (args.table or args.directory):
        build_parser().error("give a DIRECTORY (CoOp mode) or --table base2new|xd|dg|fewshot")
    try:
        table_main(args) if args.table else coop_main(args)
    except UserError as err:  # a seed that diverged (nan / inf), named by its folder
        sys.exit(f"Error: {err}")


if __name__ == "__main__":
    main()
