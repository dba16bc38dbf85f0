#!/usr/bin/env python
"""The testbed benchmark's runs on a Slurm cluster, through submitit (optional: pip install submitit).

    python cluster.py submit --protocols base2new --partition gpu --time 60 --gpus 1 --parallelism 32
    python cluster.py status --protocols base2new          # finished / to run, and the arrays submitted
    python cluster.py submit --slurm-config configs/slurm.yaml   # settings from a file (flags override it)
    python cluster.py submit ...                            # again: resubmits only what did not finish
    python testbed_benchmark.py --report-only               # the tables, once the arrays are done

The plan is testbed_benchmark's (sweep.plan: each job is a train step and its test steps, with their
output folders; sweep.runner submits it). Two job arrays: task i of the train array runs job i's train
step, task i of the test array its test steps, and starts once train task i succeeded
(Slurm's aftercorr dependency). Finished steps are skipped, also inside a task. A preempted or timed-out
task is requeued by submitit (up to --max-requeues times) and resumes from its last checkpoint: train.py
resumes from the output folder, and the output lock recognises the requeued job as its own. With
--tasks-per-node N each task is one run over N processes (one GPU each; see README "Several GPUs").
"""
import argparse
import os
import sys

from sweep.plan import ABLATIONS, BASE2NEW, FAST_TRACE, check_args, plan
from sweep.runner import status, submit

# Slurm settings: key of the --slurm-config file (= flag without "--", "_" for "-") -> (default, help)
SLURM = {
    "partition": (None, "Slurm partition (default: the cluster's)"),
    "time": (120, "minutes per task"),
    "gpus": (1, "GPUs per node (= tasks_per_node for DDP runs)"),
    "tasks_per_node": (1, "processes of one run (DDP when > 1)"),
    "cpus": (4, "CPUs per task"),
    "parallelism": (32, "tasks of an array running at once"),
    "max_requeues": (3, "requeues after preemption or timeout"),
}


def slurm_settings(args):
    """{key: value} of SLURM: a flag given on the command line, else the --slurm-config file's value,
    else the default. Exits with one line naming the file and key on an unknown key or a wrong type."""
    given = {}
    if args.slurm_config:
        from restore.config import read_yaml
        from restore.errors import UserError
        try:
            given = read_yaml(args.slurm_config, "--slurm-config") or {}
        except UserError as e:
            sys.exit(f"Error: {e}")
        if not isinstance(given, dict):
            sys.exit(f"Error: --slurm-config {args.slurm_config}: expected KEY: VALUE lines, "
                     f"keys {', '.join(SLURM)}.")
        for key, value in given.items():
            if key not in SLURM:
                sys.exit(f"Error: --slurm-config {args.slurm_config}: unknown key {key!r}; "
                         f"the keys are {', '.join(SLURM)}.")
            want = str if key == "partition" else int
            if value is not None and (type(value) is not want):
                sys.exit(f"Error: --slurm-config {args.slurm_config}: {key} must be "
                         f"{'a name' if want is str else 'an integer'}, not {value!r}.")
    settings = {}
    for key, (default, _) in SLURM.items():
        flag = getattr(args, key)
        settings[key] = flag if flag is not None else given.get(key, default)
    return settings


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["submit", "status"])
    p.add_argument("--protocols", nargs="+", default=["base2new"], choices=["base2new", "xd", "dg", "ablation", "fast"])
    p.add_argument("--methods", nargs="+", default=None,
                   help="trainers (default: the benchmark's methods, MethodSpec.benchmark)")
    p.add_argument("--method-module", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: a method of another package (then name it in --methods)")
    p.add_argument("--datasets", nargs="+", default=BASE2NEW,
                   help=f"testbed datasets of the base-to-novel runs (default: {' '.join(BASE2NEW)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--fast-trace", nargs="+", default=list(FAST_TRACE), choices=list(FAST_TRACE))
    p.add_argument("--data", default=os.environ.get("DATA", "./data"),
                   help="folder of the testbed datasets, generated there on first use "
                        "(default: $DATA, else ./data)")
    p.add_argument("--output", default="output/testbed", help="root of the runs' output folders and the tables")
    p.add_argument("--folder", default="output/slurm", help="submitit's folder (job scripts and logs)")
    p.add_argument("--slurm-config", default=None,
                   help="YAML file of Slurm settings (keys: the flags below, with _ for -); flags override it")
    for key, (default, text) in SLURM.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=str if key == "partition" else int, default=None,
                       help=text if default is None else f"{text} (default {default})")
    p.epilog = ("Relative paths (--data, --output, --folder and --slurm-config) are taken from the folder you "
                "run this in.")
    args = p.parse_args(argv)
    try:  # methods, datasets and folders, before anything runs: one line if not (sweep.plan.check_args)
        check_args(args)
    except ValueError as err:
        sys.exit(f"Error: {err}")
    slurm = slurm_settings(args)  # before the chdir: the file is relative to the caller's folder
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    tasks, gpus = slurm["tasks_per_node"], slurm["gpus"]
    if tasks > 1 and gpus not in (0, tasks):
        sys.exit(f"Error: tasks_per_node {tasks} runs one process per GPU: set gpus {tasks} "
                 f"(--gpus or --slurm-config; or 0 on CPU).")
    jobs = plan(args)
    return submit(jobs, args.folder, slurm) if args.command == "submit" else status(jobs, args.folder)


if __name__ == "__main__":
    main()
