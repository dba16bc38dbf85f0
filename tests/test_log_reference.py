"""log.txt stays line for line what Dassl users and parse_test_res.py read: a short native run's log equals
tests/fixtures/reference_log.txt, recorded from the engine before it logged through `logging` (the
library's records reach log.txt through the tee of sys.stdout, as print did). Its TensorBoard scalars
(tag, step, value) equal tests/fixtures/reference_scalars.json, recorded then too (one point per step).

Masked before comparing: timings (batch and data times, eta, elapsed, epoch durations), the machine's load
note, the torch and Python versions, the run's folders, the commit, the few-shot cache's hash (it holds the paths), and the bodies of the Arguments and Config
blocks (train.py's own dump of its arguments and of the config, whose keys other changes add to). Set
RESTORE_RECORD_LOG=1 to write the fixture again from the current code (only for a deliberate change)."""
import json
import os
import re

import train
from test_engine_fakes import cli_opts, make_oxford_pets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "tests", "fixtures", "reference_log.txt")
SCALARS = os.path.join(ROOT, "tests", "fixtures", "reference_scalars.json")
# RESTORE_m traces the feature shift and logs its extra values (l_fs, shifts, alphas); 2 epochs of 3 steps
# (PRINT_FREQ 2: a line after the second, none after the third), a checkpoint each, one evaluation.
OPTS = ["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", 2,
        "TRAIN.CHECKPOINT_FREQ", 1]

MASKS = [
    (re.compile(r"time \d+\.\d+ \(\d+\.\d+\) data \d+\.\d+ \(\d+\.\d+\)"), "time T (T) data T (T)"),
    (re.compile(r"eta \d+:\d\d:\d\d"), "eta H:MM:SS"),
    (re.compile(r"^Elapsed: \d+:\d\d:\d\d$"), "Elapsed: H:MM:SS"),
    (re.compile(r"took \d+:\d\d:\d\d"), "took H:MM:SS"),
    (re.compile(r"about \d+:\d\d:\d\d"), "about H:MM:SS"),
    (re.compile(r"^PyTorch \S+, Python \S+, device: .*$"), "PyTorch V, Python V, device: D"),
    (re.compile(r"^Threads: \d+ "), "Threads: N "),
    (re.compile(r"^restore-clip \S+, commit .*$"), "restore-clip V, commit C"),
    (re.compile(r"^python \S+, torch \S+, .*$"), "python V, torch V, ..."),
    (re.compile(r"sha256 [0-9a-f]{64}$"), "sha256 H"),  # the cache pickles the images' paths
]
LOAD_NOTE = "Note: this machine is oversubscribed"


def normalise(text, folders):
    """The log's lines with the masks applied and the run's folders named by placeholders."""
    for folder, name in folders:
        text = text.replace(folder, name)
    lines, block = [], None
    for line in text.splitlines():
        if line in ("** Arguments **", "** Config **"):
            block = line
        elif block and line.startswith("** "):  # the block after the config ("** System info **")
            block = None
        elif block and not line.startswith("*" * 8):
            continue
        if line.startswith(LOAD_NOTE):
            continue
        for pattern, mask in MASKS:
            line = pattern.sub(mask, line)
        lines.append(line)
    return lines


def tensorboard_scalars(folder):
    """{tag: [[step, value]]} of the TensorBoard event files in `folder` (values as written: float32)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [[e.step, e.value] for e in events.Scalars(tag)] for tag in sorted(events.Tags()["scalars"])}


def short_run(tmp_path):
    """(the normalised lines of log.txt, the TensorBoard scalars) of the short run."""
    data = tmp_path / "data"
    make_oxford_pets(str(data))
    out = tmp_path / "out"
    train.main(["--root", str(data), "--seed", "1", "--trainer", "RESTORE_m", "--engine", "native",
                "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
                "--output-dir", str(out), *cli_opts("RESTORE_m", *OPTS)])
    with open(out / "log.txt") as f:
        lines = normalise(f.read(), [(str(out), "<out>"), (str(data), "<data>")])
    return lines, tensorboard_scalars(out / "tensorboard")


def test_log_and_scalars_equal_the_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    lines, scalars = short_run(tmp_path)
    if os.environ.get("RESTORE_RECORD_LOG"):
        with open(REFERENCE, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(SCALARS, "w") as f:
            json.dump(scalars, f, indent=0)
    with open(REFERENCE) as f:
        reference = f.read().splitlines()
    assert len(lines) > 60
    assert lines == reference
    with open(SCALARS) as f:
        assert scalars == json.load(f)
    assert [step for step, _ in scalars["train/loss"]] == list(range(6))  # every step, not only printed ones
