"""How long README's smoke test without weights takes: the two commands it documents, timed.

    python benchmarks/smoke_time.py [--work /tmp/smoke-time] [--epochs 1]

Writes a stand-in OxfordPets of the real dataset's sizes into --work (37 classes; 2,944 train, 736 val and
3,669 test images of 500 x 375 px, CoOp's split_zhou_OxfordPets.json), since the smoke test needs a real
dataset's layout and sizes, not its pictures: one JPEG per class and index mod 5, hard-linked under every
name (decoding costs what a photograph of that size costs). Then runs, from --work,

    BACKBONE=tiny-random bash scripts/restore/base2new_train.sh oxford_pets 1 OPTIM.MAX_EPOCH 1
    BACKBONE=tiny-random bash scripts/restore/base2new_test.sh oxford_pets 1 OPTIM.MAX_EPOCH 1

and prints each command's wall time, its CPU time (user + system of its processes, which a loaded machine
inflates far less), the training epoch's time from the log, and the machine's load average before and after.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"train": 2944, "val": 736, "test": 3669}  # OxfordPets' split_zhou_OxfordPets.json
N_CLASSES = 37


def write_pets(root):
    """The stand-in OxfordPets under `root` (kept between runs: written once)."""
    import numpy as np
    from PIL import Image
    folder = os.path.join(root, "oxford_pets")
    split_file = os.path.join(folder, "split_zhou_OxfordPets.json")
    if os.path.isfile(split_file):
        return
    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    yy, xx = np.mgrid[0:375, 0:500]
    made, split = {}, {part: [] for part in SIZES}
    for part, total in SIZES.items():
        for i in range(total):
            label, variant = i % N_CLASSES, i % 5
            if (label, variant) not in made:
                base = np.sin(xx / (20 + label) + variant) * 60 + np.cos(yy / (15 + i % 7)) * 60 + 128
                pixels = np.stack([base, np.roll(base, label, 1), 255 - base], -1).clip(0, 255).astype(np.uint8)
                made[label, variant] = os.path.join(folder, f"source_{label}_{variant}.jpg")
                Image.fromarray(pixels).save(made[label, variant], quality=90)
            name = f"breed_{label}_{part}_{i}.jpg"
            os.link(made[label, variant], os.path.join(images, name))
            split[part].append([name, label, f"breed {label}"])
    with open(split_file, "w") as f:
        json.dump(split, f)


def timed(command, env, cwd):
    """(wall seconds, CPU seconds of its processes, output) of `command`; stops on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"Error: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/smoke-time", help="the stand-in dataset and the runs' output")
    p.add_argument("--epochs", type=int, default=1, help="OPTIM.MAX_EPOCH of both commands (README: 1)")
    args = p.parse_args(argv)
    work = os.path.abspath(args.work)
    write_pets(os.path.join(work, "data"))
    shutil.rmtree(os.path.join(work, "output"), ignore_errors=True)
    env = dict(os.environ, DATA=os.path.join(work, "data"), OUTPUT=os.path.join(work, "output"),
               BACKBONE="tiny-random", PYTHON=sys.executable, PYTHONPATH=HERE)
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    for script in ("base2new_train", "base2new_test"):
        command = ["bash", os.path.join(HERE, "scripts", "restore", f"{script}.sh"), "oxford_pets", "1",
                   "OPTIM.MAX_EPOCH", str(args.epochs)]
        wall, cpu, out = timed(command, env, work)
        epoch = re.findall(r"Progress: epoch \d+/\d+ took (\S+)", out)
        tested = re.findall(r"\* total: ([\d,]+)", out)
        print(f"{script}.sh: {wall:.1f} s wall, {cpu:.1f} s CPU"
              + (f"; epochs took {', '.join(epoch)}" if epoch else "") + f"; {tested[-1]} test images")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
