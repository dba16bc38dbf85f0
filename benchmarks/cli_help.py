"""How fast each entry point answers --help, and whether it imports torch to do so.

    python benchmarks/cli_help.py [--runs 7] [--repo PATH ...]

Every command runs --runs times, each in a fresh process started in the checkout (PYTHONPATH set to it),
after one run that is not counted; one more run under `python -X importtime` says whether torch was
imported. `--repo` names the checkouts to time (default: this one); give several (e.g. the main branch and
this one) for a before/after table from the same machine and the same minutes, the runs of the checkouts
taken in turn so that a change in the machine's load falls on all of them. Prints the median wall time in
seconds with, in brackets, the fastest and slowest run, and the median CPU time (user + system of the
process and its children), which a loaded machine inflates far less than the wall time.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = [
    ("train.py --help", [sys.executable, "train.py", "--help"]),
    ("python -m restore.data.check --help", [sys.executable, "-m", "restore.data.check", "--help"]),
    ("python -m restore.legacy --help", [sys.executable, "-m", "restore.legacy", "--help"]),
    ("testbed_benchmark.py --help", [sys.executable, "testbed_benchmark.py", "--help"]),
    ("cluster.py --help", [sys.executable, "cluster.py", "--help"]),
    ("parse_test_res.py --help", [sys.executable, "parse_test_res.py", "--help"]),
    ("bash scripts/restore/base2new_train.sh --help", ["bash", "scripts/restore/base2new_train.sh", "--help"]),
]


def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command, repo, importtime=False):
    """(wall seconds, CPU seconds, stderr) of one run of `command` in `repo`."""
    if importtime and command[0] == sys.executable:
        command = [command[0], "-X", "importtime", *command[1:]]
    env = dict(os.environ, PYTHONPATH=repo)
    cpu, start = cpu_of_children(), time.perf_counter()
    proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, cpu_of_children() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {repo} (exit {proc.returncode}): {proc.stderr[-500:]}")
    return elapsed, cpu, proc.stderr


def imports_torch(command, repo):
    if command[0] != sys.executable:
        return "no python"
    log = run(command, repo, importtime=True)[2]
    modules = [line.rsplit("|", 1)[-1].strip() for line in log.splitlines() if line.startswith("import time:")]
    return "yes" if "torch" in modules else "no"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7, help="timed runs of each command in each checkout")
    p.add_argument("--repo", nargs="+", default=[HERE], help="checkouts to time (default: this one)")
    args = p.parse_args(argv)
    repos = [os.path.abspath(r) for r in args.repo]
    print(f"{args.runs} runs each; load average {os.getloadavg()[0]:.2f} at the start; {sys.executable}")
    header = "| entry point | " + " | ".join(f"{r}: wall s, median [min, max] | CPU s | torch" for r in repos)
    print(header + " |")
    print("|---|" + "---|---|---|" * len(repos))
    for name, command in COMMANDS:
        for repo in repos:
            run(command, repo)  # warm-up: file caches
        times = {repo: [] for repo in repos}
        for _ in range(args.runs):
            for repo in repos:
                times[repo].append(run(command, repo)[:2])
        cells = []
        for repo in repos:
            wall, cpu = [t[0] for t in times[repo]], [t[1] for t in times[repo]]
            cells.append(f"{statistics.median(wall):.2f} [{min(wall):.2f}, {max(wall):.2f}] | "
                         f"{statistics.median(cpu):.2f} | {imports_torch(command, repo)}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
