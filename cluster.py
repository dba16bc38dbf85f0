#!/usr/bin/env python
"""The benchmark's runs on a Slurm cluster, through submitit (pip install "restore-clip[cluster]", or submitit).

    python cluster.py submit --configs authors --data /data --partition gpu --time 240   # the real benchmark
    python cluster.py status --configs authors --data /data   # done / running / failed / to run, the arrays
    python cluster.py submit --slurm-config configs/slurm.yaml   # settings from a file (flags override it)
    python cluster.py submit ...                            # again: resubmits only what did not finish
    python benchmark.py --configs authors --data /data --report-only   # the tables, once the arrays are done

The plan is sweep.plan's, as benchmark.py and testbed_benchmark.py make it (--configs testbed, the default
here, runs the testbed; benchmark.py --slurm submits the same arrays); docs/BENCHMARK.md walks through it.
Two job arrays: task i of the train array runs job i's train step, task i of the test array its test steps,
and starts once train task i succeeded (Slurm's aftercorr dependency). Finished steps are skipped, also
inside a task. A preempted or timed-out task is requeued by submitit (up to --max-requeues times) and
resumes from its last checkpoint: train.py resumes from the output folder, and the output lock recognises
the requeued job as its own. With --tasks-per-node N each task is one run over N processes (one GPU each;
see README "Several GPUs"). A plan whose data and configs cannot belong together is refused before
anything is submitted (sweep.plan.check_plan).
"""
import os
import sys

from restore.cli import ArgumentParser
from restore.errors import UserError
from sweep.plan import add_arguments, check_args, check_plan, plan
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


def add_slurm_arguments(parser, keys=tuple(SLURM)):
    """--slurm-config and the flags of SLURM's `keys` (--partition, --time, ...)."""
    parser.add_argument("--folder", default="output/slurm", help="submitit's folder (job scripts and logs)")
    parser.add_argument("--slurm-config", default=None,
                        help="YAML file of Slurm settings (keys: the flags below, with _ for -); flags override it")
    for key in keys:
        default, text = SLURM[key]
        parser.add_argument(f"--{key.replace('_', '-')}", type=str if key == "partition" else int, default=None,
                            help=text if default is None else f"{text} (default {default})")


def slurm_settings(args, flags=None):
    """{key: value} of SLURM: a flag given on the command line (`flags`, default: args' attributes), else
    the --slurm-config file's value, else the default. Exits with one line naming the file and key on an
    unknown key or a wrong type."""
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
    flags = {key: getattr(args, key) for key in SLURM} if flags is None else flags
    for key, (default, _) in SLURM.items():
        flag = flags.get(key)
        settings[key] = flag if flag is not None else given.get(key, default)
    return settings


def main(argv=None):
    p = ArgumentParser(prog="cluster.py", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["submit", "status"])
    add_arguments(p)
    add_slurm_arguments(p)
    p.epilog = ("Relative paths (--data, --output, --folder and --slurm-config) are taken from the folder you "
                "run this in.")
    args = p.parse_args(argv)
    slurm = slurm_settings(args)  # before the chdir: the file is relative to the caller's folder
    tasks, gpus = slurm["tasks_per_node"], slurm["gpus"]
    if tasks > 1 and gpus not in (0, tasks):
        sys.exit(f"Error: tasks_per_node {tasks} runs one process per GPU: set gpus {tasks} "
                 f"(--gpus or --slurm-config; or 0 on CPU).")
    try:  # the names, then the plan as a whole, before anything is submitted: one line if not
        check_args(args)
        os.chdir(os.path.dirname(os.path.abspath(__file__)))
        jobs = plan(args)
        check_plan(jobs, args.configs)
    except (UserError, ValueError) as err:
        sys.exit(f"Error: {err}")
    return submit(jobs, args.folder, slurm) if args.command == "submit" else status(jobs, args.folder)


if __name__ == "__main__":
    main()
