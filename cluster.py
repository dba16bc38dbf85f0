#!/usr/bin/env python
"""The testbed benchmark's runs on a Slurm cluster, through submitit (optional: pip install submitit).

    python cluster.py submit --protocols base2new --partition gpu --time 60 --gpus 1 --parallelism 32
    python cluster.py status --protocols base2new          # finished / to run, and the arrays submitted
    python cluster.py submit ...                            # again: resubmits only what did not finish
    python testbed_benchmark.py --report-only               # the tables, once the arrays are done

The plan is testbed_benchmark's (`plan`: each job is a train step and its test steps, with their output
folders and the "finished" rule `testbed_benchmark.finished`). Two job arrays: task i of the train array
runs job i's train step, task i of the test array its test steps, and starts once train task i succeeded
(Slurm's aftercorr dependency). Finished steps are skipped, also inside a task. A preempted or timed-out
task is requeued by submitit (up to --max-requeues times) and resumes from its last checkpoint: train.py
resumes from the output folder, and the output lock recognises the requeued job as its own. With
--tasks-per-node N each task is one run over N processes (one GPU each; see README "Several GPUs").
"""
import argparse
import json
import os
import sys

import testbed_benchmark as tb

SUBMITTED = "submitted.json"


def _steps_runner():
    import submitit

    class Steps(submitit.helpers.Checkpointable):
        """Run train.py steps in order, skipping finished ones (a requeued task continues where it was)."""

        def __call__(self, steps):
            if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # one run over the tasks: torchrun's variables
                submitit.helpers.TorchDistributedEnvironment().export()
            import train
            primary = os.environ.get("RANK", "0") == "0"
            for folder, argv in steps:
                if not tb.finished_with(argv):  # same settings, or one line saying what differs
                    train.main(argv)
                    if primary and tb.finished(folder) is None:
                        raise RuntimeError(f"run did not finish: {folder} (see its log.txt)")

    return Steps()


def unfinished(jobs):
    return [(label, steps) for label, steps in jobs if any(tb.finished(f) is None for f, _ in steps)]


def submit(jobs, args):
    """Submit the unfinished jobs as a train array and a dependent test array; returns their job ids."""
    import submitit
    todo = unfinished(jobs)
    if not todo:
        print(f"All {len(jobs)} jobs are finished: nothing to submit.")
        return None
    executor = submitit.SlurmExecutor(folder=args.folder, max_num_timeout=args.max_requeues)
    executor.update_parameters(
        partition=args.partition, time=args.time, gpus_per_node=args.gpus,
        ntasks_per_node=args.tasks_per_node, cpus_per_task=args.cpus, array_parallelism=args.parallelism,
        job_name="restore-train")
    runner = _steps_runner()
    train_jobs = executor.map_array(runner, [steps[:1] for _, steps in todo])
    train_id = train_jobs[0].job_id.split("_")[0]
    executor.update_parameters(job_name="restore-test", dependency=f"aftercorr:{train_id}")
    test_jobs = executor.map_array(runner, [steps[1:] for _, steps in todo])
    test_id = test_jobs[0].job_id.split("_")[0]
    record = {"train": train_id, "test": test_id, "labels": [label for label, _ in todo]}
    with open(os.path.join(args.folder, SUBMITTED), "w") as f:
        json.dump(record, f, indent=1)
    print(f"Submitted {len(todo)} of {len(jobs)} jobs: train array {train_id}, test array {test_id} "
          f"(after each train task); logs in {args.folder}")
    return record


def status(jobs, args):
    todo = unfinished(jobs)
    print(f"{len(jobs) - len(todo)} of {len(jobs)} jobs finished")
    for label, _ in todo:
        print(f"  to run: {label}")
    path = os.path.join(args.folder, SUBMITTED)
    if os.path.isfile(path):
        with open(path) as f:
            record = json.load(f)
        print(f"last submission: train array {record['train']}, test array {record['test']} "
              f"({len(record['labels'])} jobs); `squeue -j {record['train']},{record['test']}` or "
              f"`sacct -j {record['train']},{record['test']}` for their states")
    return todo


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["submit", "status"])
    p.add_argument("--protocols", nargs="+", default=["base2new"], choices=["base2new", "xd", "dg", "ablation"])
    p.add_argument("--methods", nargs="+", default=tb.METHODS)
    p.add_argument("--datasets", nargs="+", default=tb.BASE2NEW)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--ablations", nargs="+", default=list(tb.ABLATIONS), choices=list(tb.ABLATIONS))
    p.add_argument("--data", default=os.environ.get("DATA", "./data"))
    p.add_argument("--output", default="output/testbed")
    p.add_argument("--folder", default="output/slurm", help="submitit's folder (job scripts and logs)")
    p.add_argument("--partition", default=None)
    p.add_argument("--time", type=int, default=120, help="minutes per task")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per node (= --tasks-per-node for DDP runs)")
    p.add_argument("--tasks-per-node", type=int, default=1, help="processes of one run (DDP when > 1)")
    p.add_argument("--cpus", type=int, default=4, help="CPUs per task")
    p.add_argument("--parallelism", type=int, default=32, help="tasks of an array running at once")
    p.add_argument("--max-requeues", type=int, default=3, help="requeues after preemption or timeout")
    args = p.parse_args(argv)
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    if args.tasks_per_node > 1 and args.gpus not in (0, args.tasks_per_node):
        sys.exit(f"Error: --tasks-per-node {args.tasks_per_node} runs one process per GPU: "
                 f"set --gpus {args.tasks_per_node} (or 0 on CPU).")
    jobs = tb.plan(args)
    return submit(jobs, args) if args.command == "submit" else status(jobs, args)


if __name__ == "__main__":
    main()
