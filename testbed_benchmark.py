#!/usr/bin/env python
"""The paper's experiments in miniature, on the synthetic testbed
(design: docs/TESTBED.md; results: docs/RESULTS.md).

    python testbed_benchmark.py                                  # base-to-novel, all methods, 3 seeds
    python testbed_benchmark.py --protocols base2new xd dg ablation --jobs 2
    python testbed_benchmark.py --report-only                    # tables and plots from finished runs
    python testbed_benchmark.py --methods KgCoOp --previous docs/testbed/results.csv   # one more row

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
- fast: RESTORE_m base-to-novel with the opt-in speed-ups of the feature-shift trace (sweep.plan.FAST_TRACE)
  next to the exact default (the base2new RESTORE_m runs of the same seeds): accuracy, and the exact
  inter-modal discrepancy of the trained models.
This script is the command line of the package `sweep` (sweep.plan: the jobs; sweep.runner: serially
or a local process pool; sweep.report: the tables); cluster.py runs the same plan on Slurm.
Writes to --output (default output/testbed): results.md, results.csv, and PNG plots (Base / Novel
/ HM per method; feature shift per layer and modality per method; discrepancy vs accuracy; t-SNE).
"""
import argparse
import os
import sys

from sweep.plan import (ABLATIONS, BASE2NEW, DG_TARGETS, FAST_TRACE, SOURCE, XD_EPOCHS,  # noqa: F401
                        XD_TARGETS, check_args, epoch_cost, finished, job_cost, max_epoch, methods, plan)
from sweep.report import fast_trace_report, read_previous, report, shift_analysis, tsne_analysis
from sweep.runner import finished_with, run_all, run_job, take_device  # noqa: F401


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocols", nargs="+", default=["base2new"],
                   choices=["base2new", "xd", "dg", "ablation", "fast"])
    p.add_argument("--methods", nargs="+", default=None,
                   help="trainers (default: the benchmark's methods, MethodSpec.benchmark)")
    p.add_argument("--method-module", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: a method of another package (then name it in --methods)")
    p.add_argument("--datasets", nargs="+", default=BASE2NEW,
                   help=f"testbed datasets of the base-to-novel runs (default: {' '.join(BASE2NEW)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--fast-trace", nargs="+", default=list(FAST_TRACE), choices=list(FAST_TRACE))
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (CPU)")
    p.add_argument("--gpus", nargs="+", default=[], help="GPU ids: one worker per GPU, each job on its "
                                                          "worker's GPU (instead of --jobs)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (default: the CPUs available to this process / jobs)")
    p.add_argument("--data", default=os.environ.get("DATA", "./data"),
                   help="folder of the testbed datasets, generated there on first use "
                        "(default: $DATA, else ./data)")
    p.add_argument("--output", default="output/testbed", help="root of the runs' output folders and the tables")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--previous", metavar="CSV", default=None,
                   help="an earlier report's results.csv (e.g. docs/testbed/results.csv): the rows of the "
                        "methods without runs in --output are taken from it, so that new methods join the "
                        "tables without rerunning the others")
    p.add_argument("--no-analysis", action="store_true", help="skip feature-shift and t-SNE")
    p.epilog = "Relative paths (--data, --output and --previous) are taken from the folder you run this in."
    args = p.parse_args(argv)
    try:  # methods, datasets and folders, before anything runs: one line if not (sweep.plan.check_args)
        check_args(args)
        read_previous(args.previous)  # an earlier report's results.csv, or one line why not
    except ValueError as err:
        sys.exit(f"Error: {err}")
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    args.jobs = len(args.gpus) or args.jobs
    from restore.engine.cpus import available_cpus
    args.threads = args.threads or max(1, available_cpus() // args.jobs)
    elapsed = None if args.report_only else run_all(plan(args), args.jobs, args.threads, args.gpus)
    summary = report(args, elapsed)
    if "fast" in args.protocols:
        fast_trace_report(args)
    if not args.no_analysis and "base2new" in args.protocols:
        shift_analysis(args, summary)
        tsne_analysis(args)


if __name__ == "__main__":
    main()
