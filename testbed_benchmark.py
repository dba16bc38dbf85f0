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
This script is the testbed's command line of the package `sweep` (sweep.plan: the jobs; sweep.runner:
serially or a local process pool; sweep.report: the tables, and the testbed's analyses); benchmark.py runs
the same plan on real data with the published configs, cluster.py on Slurm (docs/BENCHMARK.md).
Writes to --output (default output/testbed): results.md, results.csv, and PNG plots (Base / Novel
/ HM per method; feature shift per layer and modality per method; discrepancy vs accuracy; t-SNE).
"""
import argparse
import os
import sys

from restore.cli import ArgumentParser
from restore.errors import UserError
from sweep.plan import (ABLATIONS, BASE2NEW, DG_TARGETS, FAST_TRACE, SOURCE, XD_EPOCHS,  # noqa: F401
                        XD_TARGETS, add_arguments, check_args, check_plan, epoch_cost, finished, job_cost,
                        max_epoch, methods, plan)
from sweep.report import fast_trace_report, read_previous, report, shift_analysis, tsne_analysis
from sweep.runner import finished_with, run_all, run_job, take_device  # noqa: F401


def main(argv=None):
    p = ArgumentParser(prog="testbed_benchmark.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (CPU)")
    p.add_argument("--gpus", nargs="+", default=[], help="GPU ids: one worker per GPU, each job on its "
                                                          "worker's GPU (instead of --jobs)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (default: the CPUs available to this process / jobs)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--previous", metavar="CSV", default=None,
                   help="an earlier report's results.csv (e.g. docs/testbed/results.csv): the rows of the "
                        "methods without runs in --output are taken from it, so that new methods join the "
                        "tables without rerunning the others")
    p.add_argument("--no-analysis", action="store_true", help="skip feature-shift and t-SNE")
    p.epilog = "Relative paths (--data, --output and --previous) are taken from the folder you run this in."
    args = p.parse_args(argv)
    if args.configs != "testbed":
        sys.exit(f"Error: --configs {args.configs}: testbed_benchmark.py runs the testbed (--configs testbed); "
                 "the benchmark on real data is benchmark.py (docs/BENCHMARK.md).")
    try:  # the names, then the plan as a whole, before anything runs: one line if not (sweep.plan)
        check_args(args)
        read_previous(args.previous)  # an earlier report's results.csv, or one line why not
        os.chdir(os.path.dirname(os.path.abspath(__file__)))
        jobs = plan(args)
        if not args.report_only:
            check_plan(jobs, args.configs)
    except (UserError, ValueError) as err:
        sys.exit(f"Error: {err}")
    args.jobs = len(args.gpus) or args.jobs
    from restore.engine.cpus import available_cpus
    args.threads = args.threads or max(1, available_cpus() // args.jobs)
    elapsed = None if args.report_only else run_all(jobs, args.jobs, args.threads, args.gpus)[0]
    summary = report(args, elapsed)
    if "fast" in args.protocols:
        fast_trace_report(args)
    if not args.no_analysis and "base2new" in args.protocols:
        shift_analysis(args, summary)
        tsne_analysis(args)


if __name__ == "__main__":
    main()
