"""The GPU check: everything this project has never measured on a GPU, in one call of at most 5 minutes.

    python3 benchmarks/gpu_check.py --out "$OUT"                      # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gc  # the CPU rehearsal (shrunken sizes)

Sections, in priority order, each in a process group of its own with a time cap (what one section leaves
unused goes to the next; `--budget` bounds the whole run):

1. tests: the suite's CUDA tests (pytest -k cuda, and the Dassl engine's tests, which use CUDA when it is
   there) and a smoke run of every registered method through train.py (the testbed, 1 epoch; both engines
   when Dassl is there).
2. precision: per method, on the testbed CLIP and data: logits under fp16 (the lineage's default), amp and
   bf16 against fp32 on the same weights (max difference, argmax agreement), and 200 training steps per mode
   from the same state on the same batches (do they stay finite?).
3. originals: the original MaPLe and CoOp trainers in the real Dassl (fp16 on CUDA, as shipped) against this
   code's native engine, on one random CLIP of ViT-B/16's shapes, 224 px, batch 4, 1000 and 100 classes:
   training and evaluation images/s and peak GPU memory (benchmarks/gpu_check_originals.py). Without the
   carried originals: ours alone.
4. restore: RESTORE_m / MaPLe and RESTORE_p / PromptSRC step time and memory at those shapes, the exact trace
   and each option (benchmarks/step_time.py's variants).
5. data: the DataLoader at 224 px decoding real JPEG files (written here) with the configs' settings, in
   images/s, against what the GPU step consumes (sections 3-4).

Each measurement is appended to OUT/gpu_check.jsonl as it is made and OUT/gpu_check.md is rendered after each
(benchmarks/gpu_check_report.py); OUT/gpu_check.log holds every process's output. So a run cut short still
returns what it measured.

On the GPU machine (no network), `.gpu_check/` of this repository (benchmarks/gpu_check_prepare.py writes it)
supplies the missing wheels, installed into --site first, and the originals' code for section 3. The parent
process imports torch but never touches CUDA; sections run in forked children.
"""
import argparse
import os
import resource
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO]

from gpu_check_report import Report  # noqa: E402  (standard library only)

CARRIED = os.path.join(REPO, ".gpu_check")
# (number, name, cap in seconds on the GPU machine); the CPU rehearsal takes the same caps.
# The name is the section's function in gpu_check_sections.
SECTIONS = [(1, "tests", 70), (2, "precision", 50), (3, "originals", 85), (4, "restore_steps", 40),
            (5, "data", 20)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                   help="report folder (default: $OUT if set, else ./gpu_check_out)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="shrunken sizes (the CPU rehearsal and its CI test)")
    p.add_argument("--sections", default=",".join(str(n) for n, _, _ in SECTIONS))
    p.add_argument("--budget", type=float, default=290, help="seconds for the whole run")
    p.add_argument("--cap-scale", type=float, default=1.0, help="multiplies every section's cap (a slow CPU)")
    p.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    p.add_argument("--engines", default="native,dassl", help="train.py engines of the smoke runs (dassl: when "
                                                            "Dassl is importable)")
    p.add_argument("--pairs", default="MaPLe,PromptSRC", help="section 4: base methods timed with their "
                                                             "RESTORE variant")
    p.add_argument("--compare", default="MaPLe,CoOp", help="section 3: the methods timed against the originals")
    p.add_argument("--tests", default="tests", help="pytest paths searched for CUDA tests ('' for none)")
    p.add_argument("--jobs", type=int, default=0, help="parallel smoke runs / precision workers (default: "
                                                       "cores / 2, at most 8)")
    p.add_argument("--carried", default=CARRIED, help="the prepared folder (wheels/, originals/)")
    p.add_argument("--work", default="/tmp/gpu_check", help="scratch folder (data, CLIP file, run outputs)")
    p.add_argument("--site", default="/tmp/gpu_check_site", help="where the carried wheels are installed")
    args = p.parse_args(argv)
    for flag, given, valid in (("--sections", args.sections, [str(n) for n, _, _ in SECTIONS]),
                               ("--engines", args.engines, ["native", "dassl"]),
                               ("--compare", args.compare, ["MaPLe", "CoOp"]),
                               ("--pairs", args.pairs, ["MaPLe", "PromptSRC"])):
        unknown = [v for v in given.split(",") if v and v not in valid]
        if unknown:
            p.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(valid)}")
    args.sections = [int(s) for s in args.sections.split(",") if s]
    args.jobs = args.jobs or max(1, min(8, (os.cpu_count() or 2) // 2))
    return args


def install_carried(args, log):
    """pip-install the carried wheels into args.site (no network; once: a marker file records it); returns
    the folders to put first on sys.path / PYTHONPATH ([] when nothing is carried)."""
    wheels = os.path.join(args.carried, "wheels")
    requirements = os.path.join(args.carried, "requirements.txt")
    if not os.path.isdir(wheels):
        return []
    marker = os.path.join(args.site, ".installed")
    if not os.path.exists(marker):
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--find-links", wheels, "--target", args.site,
               "-r", requirements]
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"installing the carried wheels failed (see {log.name}): {' '.join(cmd)}")
        open(marker, "w").close()
    return [args.site]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the waited-for children and their descendants
    return usage.ru_utime + usage.ru_stime


def run_section(fn, ctx, cap, log):
    """Run fn(ctx) in a forked child (its own process group, output to the log) for at most `cap` seconds;
    returns (state, wall seconds, CPU seconds of the section's processes)."""
    start, cpu = time.time(), cpu_seconds()
    pid = os.fork()
    if pid == 0:  # the section
        os.setpgid(0, 0)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout.reconfigure(line_buffering=True)  # a killed section's last lines reach the log
        code = 0
        try:
            ctx.deadline = start + cap
            fn(ctx)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            state = "done" if code == 0 else f"failed (exit {code}: see gpu_check.log)"
            return state, time.time() - start, cpu_seconds() - cpu
        if time.time() - start > cap:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return f"cut at its cap of {cap:.0f} s", time.time() - start, cpu_seconds() - cpu
        time.sleep(0.1)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    report = Report(args.out)
    for name in ("gpu_check.jsonl", "gpu_check.md"):
        if os.path.exists(os.path.join(args.out, name)):
            os.remove(os.path.join(args.out, name))
    log = open(os.path.join(args.out, "gpu_check.log"), "w", buffering=1)
    site = install_carried(args, log)
    sys.path[:0] = site
    os.environ["PYTHONPATH"] = os.pathsep.join(site + [REPO] + [p for p in os.environ.get("PYTHONPATH", "")
                                                                   .split(os.pathsep) if p])
    try:
        import gpu_check_sections as sections  # torch, restore: imported once, before any fork
    except ImportError as err:
        sys.exit(f"Error: {err}. Install the project's requirements, or on a machine without network carry "
                 f"the folder benchmarks/gpu_check_prepare.py writes ({args.carried}).")
    if args.quick:  # the CPU rehearsal's models are tiny: one thread each is fastest (as the test suite)
        os.environ["RESTORE_NUM_THREADS"] = "1"
        sections.torch.set_num_threads(1)
    try:
        ctx = sections.Context(args, report)
    except ValueError as err:  # an unknown method: one line naming the registered ones
        sys.exit(f"Error: {err}")
    state, seconds, cpu = run_section(sections.setup, ctx, 60 * args.cap_scale, log)
    report.add(0, "status", state=state, seconds=seconds, cpu_seconds=cpu)
    print(f"setup: {state} ({seconds:.0f} s)", flush=True)
    if state != "done":
        sys.exit(f"setup {state}: see {log.name}")
    saved = 0.0
    for number, name, cap in SECTIONS:
        if number not in args.sections:
            continue
        left = args.budget - (time.time() - t0)
        if left < 5:
            report.add(number, "status", state="not started: the budget was spent", seconds=0.0)
            continue
        cap = min(cap * args.cap_scale + saved, left)
        state, seconds, cpu = run_section(getattr(sections, name), ctx, cap, log)
        saved = max(0.0, cap - seconds)
        report.add(number, "status", state=state, seconds=seconds, cpu_seconds=cpu)
        print(f"section {number} ({name}): {state} ({seconds:.0f} s)", flush=True)
    print(report.render())
    print(f"total {time.time() - t0:.0f} s; report in {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
