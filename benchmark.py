#!/usr/bin/env python
"""The papers' benchmark on real data from one command: plan, run, progress and the Method x dataset tables
(docs/BENCHMARK.md walks through it on a workstation and on Slurm).

    python benchmark.py --data /data --methods RESTORE_m MaPLe --dry-run          # every job's command
    python benchmark.py --data /data --methods RESTORE_m MaPLe --gpus 0 1 2 3     # one GPU per job
    python benchmark.py --data /data --gpus 0 1 2 3 --nproc 2                     # each run on 2 GPUs (torchrun)
    python benchmark.py --data /data --slurm --partition gpu --time 240           # Slurm arrays (submitit)
    python benchmark.py --data /data --status                                     # done / running / failed / to run
    python benchmark.py --data /data --report-only                                # the tables of what finished

The plan (sweep.plan): --protocols base2new (default), xd, dg, fewshot; --configs authors (default: each
method's published configs), paper (the RESTORE paper's 10 epochs) or testbed; --methods (default: the
registry's benchmark methods), --datasets (default: the papers' 11), --seeds (1 2 3), --backbone (default
the configs' ViT-B/16; tiny-random smoke-tests the whole plan). A plan whose data and configs cannot belong
together is refused in one line before anything runs or is submitted. Finished runs are skipped; run the
same command again to resume (a run stopped by a signal resumes from its last checkpoint). Writes to --output
(default output/benchmark): results.md and results.csv (every protocol's table), <protocol>_accuracy.png.
"""
import argparse
import os
import sys

from restore.cli import ArgumentParser
from restore.errors import UserError
from sweep.plan import add_arguments, check_args, check_plan, command, plan
from sweep.report import report
from sweep.runner import run_all, status, submit


def build_parser():
    from cluster import add_slurm_arguments
    p = ArgumentParser(prog="benchmark.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, configs="authors")
    run = p.add_argument_group("running (default: here, serially)")
    run.add_argument("--jobs", type=int, default=1, help="parallel worker processes (CPU)")
    run.add_argument("--gpus", nargs="+", default=[], metavar="ID",
                     help="GPU ids: one worker per GPU (per --nproc GPUs), each job on its worker's GPU(s) "
                          "(CUDA_VISIBLE_DEVICES)")
    run.add_argument("--nproc", type=int, default=1,
                     help="processes (GPUs) of one run: > 1 runs each job under torchrun (DDP); on Slurm, "
                          "tasks and GPUs per node")
    run.add_argument("--threads", type=int, default=0,
                     help="torch threads per worker (default: the CPUs available to this process / workers)")
    run.add_argument("--dry-run", action="store_true", help="print every job's commands; run nothing")
    run.add_argument("--status", action="store_true",
                     help="done / running / failed (with the last line of its log) / to run, and an estimate")
    run.add_argument("--report-only", action="store_true", help="the tables of the finished runs")
    slurm = p.add_argument_group("Slurm (through submitit; cluster.py takes the same settings)")
    slurm.add_argument("--slurm", action="store_true",
                       help="submit the unfinished jobs as a train and a test array instead of running them")
    add_slurm_arguments(slurm, keys=("partition", "time", "cpus", "parallelism", "max_requeues"))
    p.epilog = ("Relative paths (--data, --output, --folder and --slurm-config) are taken from the folder you "
                "run this in. KEY VALUE overrides go last, after `--` when the option before them takes a list "
                "(--seeds 1 2 -- DATALOADER.NUM_WORKERS 4).")
    return p


def dry_run(jobs, nproc):
    """Print each job's steps as the commands the runners start (in the repository), finished ones marked."""
    from sweep.plan import finished
    for label, steps in jobs:
        done = all(finished(folder) is not None for folder, _ in steps)
        print(f"# {label}{' (finished)' if done else ''}")
        for _, argv in steps:
            print(command(argv, nproc))
    print(f"# {len(jobs)} jobs; commands run in {os.getcwd()}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:  # the names, then the plan as a whole, before anything runs or is submitted: one line if not
        if args.slurm:
            from cluster import slurm_settings
            settings = slurm_settings(args, {k: getattr(args, k, None) for k in
                                             ("partition", "time", "cpus", "parallelism", "max_requeues")})
            if args.nproc > 1:
                settings.update(gpus=args.nproc, tasks_per_node=args.nproc)
        check_args(args)
        os.chdir(os.path.dirname(os.path.abspath(__file__)))
        jobs = plan(args)
        if not args.report_only:
            check_plan(jobs, args.configs)
    except (UserError, ValueError) as err:
        sys.exit(f"Error: {err}")
    if args.dry_run:
        return dry_run(jobs, args.nproc)
    if args.status:
        return status(jobs, args.folder)
    if args.slurm:
        return submit(jobs, args.folder, settings)
    failed = {}
    if not args.report_only:
        from restore.engine.cpus import available_cpus
        workers = len(args.gpus) // args.nproc if args.gpus else args.jobs
        threads = args.threads or max(1, available_cpus() // workers)
        try:
            _, failed = run_all(jobs, args.jobs, threads, args.gpus, args.nproc)
        except UserError as err:
            sys.exit(f"Error: {err}")
    report(args)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
