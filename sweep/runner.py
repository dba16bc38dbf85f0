"""Run the plan's jobs (sweep.plan): serially, in a pool of local processes (each worker on its own GPU, or
its own group of GPUs for torchrun jobs, from a queue of device ids; or N CPU workers), or on Slurm through
submitit (a train array and a test array whose task i starts once train task i succeeded). Every way skips
the steps that train.py --check-finished calls finished with the same settings (a run stopped by a signal
never printed its result: it runs again and resumes from its last checkpoint), lists the failed jobs with
the last line of their log, and shows the progress: done / running / failed / to run, with an estimate."""
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
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


def last_line(folder):
    """The last non-empty line of the newest log of a run folder ("" when it has none): why it stopped."""
    import glob
    logs = sorted(glob.glob(os.path.join(folder, "log.txt*")), key=os.path.getmtime)
    for path in reversed(logs):
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        if lines:
            return lines[-1]
    return ""


class JobFailed(RuntimeError):
    """A step of a job did not finish; the message is its folder and the last line of its log."""


class LastError(logging.Handler):
    """Keeps the first line of the last ERROR record train.py logs (its one-line reason to stop)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record):
        self.message = record.getMessage().strip().split("\n")[0]


def run_step(argv, nproc=1):
    """Run one train.py step: in this process, or under torchrun with `nproc` processes (one GPU each).
    Returns the line it stopped with when it failed ("" otherwise, or when it said nothing)."""
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "train.py", *argv]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        lines = [line for line in done.stderr.splitlines() if line.startswith("Error") or "Error: " in line]
        return lines[-1].strip() if done.returncode and lines else ""
    import train
    error = LastError()
    loggers = [logging.getLogger(name) for name in ("train", "restore")]
    for logger in loggers:
        logger.addHandler(error)
    console = sys.stdout
    with open(os.devnull, "w") as quiet:
        sys.stdout = quiet  # the run's own log.txt keeps everything
        try:
            train.main(argv)
        except SystemExit as stop:
            if stop.code in (0, None, 1) or isinstance(stop.code, str):
                pass  # train.py's one-line error is in the log and on stderr
            else:  # stopped by a signal (128 + n) or by the handler before ours (submitit's requeue): its exit
                raise
        except Exception as err:  # a fault of the run: shown, and the job listed as failed
            traceback.print_exc()
            error.message = f"{type(err).__name__}: {err}".split("\n")[0]
        finally:
            sys.stdout = console
            for logger in loggers:
                logger.removeHandler(error)
    return error.message


def run_job(steps, threads, nproc=1):
    """Run the steps of one job (train, then its tests) in this process; skip finished ones. Returns
    (start, end) in seconds since the epoch; JobFailed (the step's folder and the last line of its log, or
    the error it stopped with) when a step did not finish."""
    os.environ["RESTORE_NUM_THREADS"] = str(threads)  # train.py sets torch's threads from it
    start = time.time()
    for folder, argv in steps:
        try:
            if finished_with(argv):
                continue
        except RuntimeError:  # e.g. the folder holds a run of other settings: the keys are printed above
            raise JobFailed(f"{folder}: train.py --check-finished refused it (the reason is printed above)") \
                from None
        error = run_step(argv, nproc)
        if finished(folder) is None:
            raise JobFailed(f"{folder}: {error or last_line(folder) or 'no log'}")
    return start, time.time()


def take_device(devices):
    """Pool worker initializer: this worker's jobs run on the next free GPU (or group of GPUs, "0,1") of
    `devices` (a queue)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())


def device_groups(gpus, nproc):
    """The GPU ids in groups of `nproc` (one torchrun job each): ["0,1", "2,3"] for 0 1 2 3 and 2."""
    if len(gpus) % nproc:
        from restore.errors import UserError
        raise UserError(f"--gpus {' '.join(gpus)}: {len(gpus)} GPUs do not split into jobs of --nproc {nproc}.")
    return [",".join(gpus[i:i + nproc]) for i in range(0, len(gpus), nproc)]


def run_jobs(jobs, workers=1, threads=1, gpus=(), nproc=1, progress=None):
    """Run `jobs` ([(label, steps)]) serially (workers 1, no gpus) or in a pool of `workers` processes
    (one per group of `nproc` GPU ids of `gpus` when given, each holding its GPUs for all its jobs); jobs
    start in the given order. `progress(label, error)` is called as each job ends (error None, or the
    failed step's folder and last log line). Returns ({label: (start, end)}, {label: error})."""
    times, failed = {}, {}

    def ended(label, outcome):
        try:
            times[label] = outcome()
        except JobFailed as err:
            failed[label] = str(err)
        if progress:
            progress(label, failed.get(label))

    if workers == 1 and not gpus:
        for label, steps in jobs:
            ended(label, lambda: run_job(steps, threads, nproc))
        return times, failed
    import multiprocessing
    # Fresh worker processes: a fork of a process whose torch has run parallel code (the plan's checks
    # build a smoke backbone) can hang in its first parallel region (OpenMP's threads are not forked).
    context = multiprocessing.get_context("spawn")
    pool_args = {}
    groups = device_groups(list(gpus), nproc) if gpus else []
    if groups:
        devices = context.Manager().Queue()
        for group in groups:
            devices.put(group)
        pool_args = dict(initializer=take_device, initargs=(devices,))
    with ProcessPoolExecutor(max_workers=len(groups) or workers, mp_context=context, **pool_args) as pool:
        futures = {pool.submit(run_job, steps, threads, nproc): label for label, steps in jobs}
        for future in as_completed(futures):
            ended(futures[future], future.result)
    return times, failed


class Progress:
    """done / running / failed / to run of a local sweep, with an estimate of the time left from the
    jobs' costs (sweep.plan.job_cost) and the time the finished ones took."""

    def __init__(self, todo, workers, finished_before=0):
        self.cost = {label: job_cost((label, steps)) for label, steps in todo}
        self.workers, self.before, self.start = workers, finished_before, time.time()
        self.done, self.failed = [], []

    def line(self):
        ended = len(self.done) + len(self.failed)
        left = len(self.cost) - ended
        running = min(self.workers, left)
        spent = sum(self.cost[label] for label in self.done + self.failed)
        elapsed = time.time() - self.start
        estimate = ""
        if spent > 0 and left:
            rest = sum(self.cost.values()) - spent
            estimate = f"; about {elapsed * rest / spent / 60:.0f} min left"
        return (f"[{elapsed / 60:.1f} min] done {self.before + len(self.done)}, running {running}, "
                f"failed {len(self.failed)}, to run {left - running}{estimate}")

    def __call__(self, label, error):
        (self.failed if error else self.done).append(label)
        print(f"{'FAILED' if error else 'done'}: {label}{f' ({error})' if error else ''}")
        print(self.line(), flush=True)


def run_all(jobs, workers, threads, gpus=(), nproc=1):
    """Run the unfinished jobs of `jobs` locally, heaviest first (so that no long job runs alone at the
    end), printing the progress; at the end, the failed jobs with the last line of their log. Returns
    (wall time in seconds, {label: error})."""
    todo = sorted(unfinished(jobs), key=lambda job: -job_cost(job))
    workers = len(gpus) // nproc if gpus else workers
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already finished, {len(todo)} to run "
          f"with {workers} worker(s) x {threads} thread(s)" + (f", {nproc} GPUs per run" if nproc > 1 else ""))
    progress = Progress(todo, workers, len(jobs) - len(todo))
    print(progress.line(), flush=True)
    _, failed = run_jobs(todo, workers, threads, gpus, nproc, progress)
    elapsed = time.time() - progress.start
    print(f"ran {len(todo)} jobs in {elapsed / 60:.1f} min")
    report_failed(failed)
    return elapsed, failed


def report_failed(failed):
    if failed:
        print(f"{len(failed)} job(s) failed (run the same command again to retry them):")
        for label, error in failed.items():
            print(f"  {label}: {error}")


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
                        raise JobFailed(f"{folder}: {last_line(folder) or 'no log'}")

    return Steps()


def slurm_executor(folder, slurm):
    """submitit's Slurm executor with the settings `slurm` (cluster.SLURM's keys)."""
    import submitit
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=slurm["max_requeues"])
    executor.update_parameters(
        partition=slurm["partition"], time=slurm["time"], gpus_per_node=slurm["gpus"],
        ntasks_per_node=slurm["tasks_per_node"], cpus_per_task=slurm["cpus"],
        array_parallelism=slurm["parallelism"], job_name="restore-train")
    return executor


def submit(jobs, folder, slurm=None, executor=None):
    """Submit the unfinished jobs through submitit. On Slurm (`slurm`: {partition, time (minutes), gpus (per
    node), tasks_per_node, cpus (per task), parallelism, max_requeues}): a train array and a test array whose
    task i starts once train task i succeeded (aftercorr). Another submitit `executor` (the local one), which
    has no dependencies: one array whose task i runs job i's steps in order, waited for. Writes
    `folder`/submitted.json; returns {"train": id, "test": id, "labels": [...]} (one array: the same id
    twice), or None when every job is finished."""
    import submitit
    todo = unfinished(jobs)
    if not todo:
        print(f"All {len(jobs)} jobs are finished: nothing to submit.")
        return None
    runner = steps_runner()
    if executor is None or isinstance(executor, submitit.SlurmExecutor):
        executor = executor or slurm_executor(folder, slurm)
        train_jobs = executor.map_array(runner, [steps[:1] for _, steps in todo])
        train_id = train_jobs[0].job_id.split("_")[0]
        executor.update_parameters(job_name="restore-test", dependency=f"aftercorr:{train_id}")
        test_id = executor.map_array(runner, [steps[1:] for _, steps in todo])[0].job_id.split("_")[0]
        waited = []
    else:
        waited = executor.map_array(runner, [steps for _, steps in todo])
        train_id = test_id = waited[0].job_id.split("_")[0]
    record = {"train": train_id, "test": test_id, "labels": [label for label, _ in todo], "time": time.time()}
    with open(os.path.join(folder, SUBMITTED), "w") as f:
        json.dump(record, f, indent=1)
    print(f"Submitted {len(todo)} of {len(jobs)} jobs: train array {train_id}, test array {test_id} "
          f"(after each train task); logs in {folder}")
    for job in waited:
        job.wait()
    return {key: record[key] for key in ("train", "test", "labels")}


def job_state(steps):
    """"done", "running" (a step's folder is locked by a live run, here or on another node), "failed"
    (a step ran and stopped without its result: an error, or a signal) or "to run"."""
    from restore.lock import held
    if all(finished(folder) is not None for folder, _ in steps):
        return "done"
    if any(held(folder) for folder, _ in steps):
        return "running"
    if any(os.path.isdir(folder) and finished(folder) is None and last_line(folder) for folder, _ in steps):
        return "failed"
    return "to run"


def status(jobs, folder):
    """Print done / running / failed (with the last line of its log) / to run of every job, the arrays of
    the last submission and an estimate of the time left; returns the unfinished jobs."""
    states = {label: job_state(steps) for label, steps in jobs}
    count = {s: sum(1 for v in states.values() if v == s) for s in ("done", "running", "failed", "to run")}
    print(f"{count['done']} of {len(jobs)} jobs finished; running {count['running']}, failed "
          f"{count['failed']}, to run {count['to run']}")
    for label, steps in jobs:
        if states[label] == "failed":
            stopped = next(f for f, _ in steps if finished(f) is None and os.path.isdir(f))
            print(f"  failed: {label}: {stopped}: {last_line(stopped)}")
        elif states[label] in ("running", "to run"):
            print(f"  {states[label]}: {label}")
    path = os.path.join(folder, SUBMITTED)
    if os.path.isfile(path):
        with open(path) as f:
            record = json.load(f)
        print(f"last submission: train array {record['train']}, test array {record['test']} "
              f"({len(record['labels'])} jobs); `squeue -j {record['train']},{record['test']}` or "
              f"`sacct -j {record['train']},{record['test']}` for their states")
        cost = {label: job_cost((label, steps)) for label, steps in jobs if label in record["labels"]}
        spent = sum(c for label, c in cost.items() if states[label] == "done")
        if "time" in record and 0 < spent < sum(cost.values()):
            elapsed = time.time() - record["time"]
            print(f"about {elapsed * (sum(cost.values()) - spent) / spent / 60:.0f} min left at the pace "
                  f"since the submission")
    return [(label, steps) for label, steps in jobs if states[label] != "done"]
