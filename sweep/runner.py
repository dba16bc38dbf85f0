"""Run the plan's jobs (sweep.plan): serially, in a pool of local processes (each worker on its own GPU
from a queue of device ids, or N CPU workers), or on Slurm through submitit (a train array and a test
array whose task i starts once train task i succeeded). Every way skips the steps that train.py
--check-finished calls finished with the same settings, and runs a step as an in-process train.main."""
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from sweep.plan import finished, job_cost

SUBMITTED = "submitted.json"  # written into submitit's folder: the arrays of the last submission


def finished_with(argv):
    """Whether the run of `argv` is finished with these settings (train.py --check-finished, as the
    scripts ask); a folder finished with other settings raises, naming the keys."""
    import train
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            train.main(["--check-finished", *argv])
    except SystemExit as status:
        if status.code in (0, 3):
            return status.code == 0
        raise RuntimeError(f"train.py --check-finished {' '.join(argv)} failed (see above)") from None
    return False


def unfinished(jobs):
    """The jobs of `jobs` ([(label, steps)]) with a step whose folder holds no result yet."""
    return [(label, steps) for label, steps in jobs if any(finished(f) is None for f, _ in steps)]


def run_job(steps, threads):
    """Run the steps of one job (train, then its tests) in this process; skip finished ones.
    Returns (start, end) in seconds since the epoch."""
    os.environ["RESTORE_NUM_THREADS"] = str(threads)  # train.py sets torch's threads from it
    import train
    start = time.time()
    for folder, argv in steps:
        if finished_with(argv):
            continue
        console = sys.stdout
        with open(os.devnull, "w") as quiet:
            sys.stdout = quiet  # the run's own log.txt keeps everything
            try:
                train.main(argv)
            finally:
                sys.stdout = console
        if finished(folder) is None:
            raise RuntimeError(f"run did not finish: {folder} (see its log.txt)")
    return start, time.time()


def take_device(devices):
    """Pool worker initializer: this worker's jobs run on the next free GPU of `devices` (a queue)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())


def run_jobs(jobs, workers=1, threads=1, gpus=(), progress=None):
    """Run `jobs` ([(label, steps)]) serially (workers 1, no gpus) or in a pool of `workers` processes
    (one per GPU id of `gpus` when given, each holding its GPU for all its jobs); jobs start in the given
    order. `progress(label)` is called as each job ends. Returns {label: (start, end)} (seconds)."""
    times = {}
    if workers == 1 and not gpus:
        for label, steps in jobs:
            times[label] = run_job(steps, threads)
            if progress:
                progress(label)
        return times
    pool_args = {}
    if gpus:
        import multiprocessing
        devices = multiprocessing.Manager().Queue()
        for gpu in gpus:
            devices.put(gpu)
        pool_args = dict(initializer=take_device, initargs=(devices,))
    with ProcessPoolExecutor(max_workers=len(gpus) or workers, **pool_args) as pool:
        futures = {pool.submit(run_job, steps, threads): label for label, steps in jobs}
        for future in as_completed(futures):
            times[futures[future]] = future.result()
            if progress:
                progress(futures[future])
    return times


def run_all(jobs, workers, threads, gpus=()):
    """Run the unfinished jobs of `jobs` locally, heaviest first (so that no long job runs alone at the
    end), with a progress bar. Returns the wall time in seconds."""
    from tqdm import tqdm
    todo = sorted(unfinished(jobs), key=lambda job: -job_cost(job[0]))
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already finished, {len(todo)} to run "
          f"with {workers} worker(s) x {threads} thread(s)")
    start = time.time()
    bar = tqdm(total=len(todo), unit="job", dynamic_ncols=True)

    def progress(label):
        bar.set_postfix_str(label)
        bar.update(1)

    run_jobs(todo, workers, threads, gpus, progress)
    bar.close()
    elapsed = time.time() - start
    print(f"ran {len(todo)} jobs in {elapsed / 60:.1f} min")
    return elapsed


# ------------------------------------------------------------------------------------ Slurm
def steps_runner():
    """The callable submitit pickles for each array task: run its steps in order, skipping finished ones
    (a requeued task continues where it was, train.py resuming from the output folder)."""
    import submitit

    class Steps(submitit.helpers.Checkpointable):
        def __call__(self, steps):
            if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # one run over the tasks: torchrun's variables
                submitit.helpers.TorchDistributedEnvironment().export()
            import train
            primary = os.environ.get("RANK", "0") == "0"
            for folder, argv in steps:
                if not finished_with(argv):  # same settings, or one line saying what differs
                    train.main(argv)
                    if primary and finished(folder) is None:
                        raise RuntimeError(f"run did not finish: {folder} (see its log.txt)")

    return Steps()


def submit(jobs, folder, slurm):
    """Submit the unfinished jobs as a train array and a dependent test array (Slurm, through submitit).
    `slurm`: {partition, time (minutes), gpus (per node), tasks_per_node, cpus (per task), parallelism,
    max_requeues}. Writes `folder`/submitted.json; returns {"train": id, "test": id, "labels": [...]},
    or None when every job is finished."""
    import submitit
    todo = unfinished(jobs)
    if not todo:
        print(f"All {len(jobs)} jobs are finished: nothing to submit.")
        return None
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=slurm["max_requeues"])
    executor.update_parameters(
        partition=slurm["partition"], time=slurm["time"], gpus_per_node=slurm["gpus"],
        ntasks_per_node=slurm["tasks_per_node"], cpus_per_task=slurm["cpus"],
        array_parallelism=slurm["parallelism"], job_name="restore-train")
    runner = steps_runner()
    train_jobs = executor.map_array(runner, [steps[:1] for _, steps in todo])
    train_id = train_jobs[0].job_id.split("_")[0]
    executor.update_parameters(job_name="restore-test", dependency=f"aftercorr:{train_id}")
    test_jobs = executor.map_array(runner, [steps[1:] for _, steps in todo])
    test_id = test_jobs[0].job_id.split("_")[0]
    record = {"train": train_id, "test": test_id, "labels": [label for label, _ in todo]}
    with open(os.path.join(folder, SUBMITTED), "w") as f:
        json.dump(record, f, indent=1)
    print(f"Submitted {len(todo)} of {len(jobs)} jobs: train array {train_id}, test array {test_id} "
          f"(after each train task); logs in {folder}")
    return record


def status(jobs, folder):
    """Print finished / to run and the arrays of the last submission; returns the unfinished jobs."""
    todo = unfinished(jobs)
    print(f"{len(jobs) - len(todo)} of {len(jobs)} jobs finished")
    for label, _ in todo:
        print(f"  to run: {label}")
    path = os.path.join(folder, SUBMITTED)
    if os.path.isfile(path):
        with open(path) as f:
            record = json.load(f)
        print(f"last submission: train array {record['train']}, test array {record['test']} "
              f"({len(record['labels'])} jobs); `squeue -j {record['train']},{record['test']}` or "
              f"`sacct -j {record['train']},{record['test']}` for their states")
    return todo
