"""Every entry point behaves the same (issue 22): --help answers without torch, trainer and dataset names
and config keys are refused in one message form with a did-you-mean (a key under the wrong node names the
node that has it), a refused run leaves nothing behind, and relative paths are the caller's.

Entry points: train.py (a run, --eval-only, --print-config, --check-finished), scripts/*/*.sh,
testbed_benchmark.py, cluster.py, python -m restore.legacy, python -m restore.data.check."""
import os
import re
import subprocess
import sys
from argparse import Namespace

import pytest

import cluster
import testbed_benchmark
import train
from restore import cli, legacy
from restore.data import check as data_check
from restore.lock import LOCK_NAME
from restore.methods import registry
from restore.methods.spec import Alias
from sweep.plan import check_args
from test_engine_fakes import ROOT, cli_opts, make_oxford_pets

PETS = "configs/datasets/oxford_pets.yaml"
# Every registered method, in listing order (the built-in families, then the others as registered).
TRAINERS = ", ".join(registry.names())
assert TRAINERS.startswith("ZeroshotCLIP, CoOp, CoCoOp, LPT, VPT, IVLP, MaPLe, PromptSRC, RESTORE_m, RESTORE_p, "
                           "MaPLe_FSA")
# Every node with an N_CTX key, in the order the methods first list them.
N_CTX_KEYS = ", ".join(f"{n.path}.N_CTX" for n in registry.nodes() if n.key("N_CTX") is not None)
assert N_CTX_KEYS.startswith("TRAINER.COOP.N_CTX, TRAINER.COCOOP.N_CTX, TRAINER.MAPLE.N_CTX, TRAINER.MAPLE_FSA.N_CTX")


def error_of(main, argv, capsys):
    """The one "Error: ..." line an entry point's main() stops with (exit status 1), without "Error: "."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        code = main(argv)
        raise SystemExit(code)
    out = capsys.readouterr()
    message = info.value.code if isinstance(info.value.code, str) else out.err
    assert info.value.code in (1, message) and "Traceback" not in message
    line = next(line for line in message.splitlines() if line.startswith("Error: "))
    return line[len("Error: "):]


# ------------------------------------------------------------------------------------- --help
HELP = [
    [sys.executable, "train.py"],
    [sys.executable, "-m", "restore.data.check"],
    [sys.executable, "-m", "restore.legacy"],
    [sys.executable, "cluster.py"],
    [sys.executable, "testbed_benchmark.py"],
    [sys.executable, "benchmark.py"],
    [sys.executable, "parse_test_res.py"],
]


@pytest.mark.parametrize("command", HELP, ids=lambda c: " ".join(c[1:]))
def test_help_imports_no_torch(command):
    """--help is parsed before anything heavy is imported: no module of torch (nor numpy) is loaded."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([command[0], "-X", "importtime", *command[1:], "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "restore" in imported or command[1] == "parse_test_res.py"  # -X importtime did report
    heavy = [m for m in imported if m.split(".")[0] in ("torch", "numpy", "clip", "open_clip")]
    assert heavy == [], heavy[:5]


def test_scripts_help_starts_no_python_and_shows_a_runnable_example():
    """Every script answers --help from bash alone (PYTHON=false would fail any python call), says where
    relative paths are taken from, and its example names a real seed, not "..."."""
    scripts = sorted(os.path.join(d, f) for d in ("scripts/" + m for m in os.listdir(os.path.join(ROOT, "scripts")))
                     if os.path.isdir(os.path.join(ROOT, d)) for f in os.listdir(os.path.join(ROOT, d))
                     if f.endswith(".sh") and f != "method.sh")
    assert len(scripts) >= 45
    env = dict(os.environ, PYTHON="false")
    for script in scripts:
        proc = subprocess.run(["bash", script, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, (script, proc.stderr)
        assert "taken from the folder you run" in proc.stdout, script
        assert "..." not in proc.stdout.split("Example")[-1].split("\n")[0], script
    example = subprocess.run(["bash", "scripts/maple/base2new_train.sh", "--help"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60).stdout
    assert example.rstrip().endswith("bash scripts/maple/base2new_train.sh shapes 1")
    assert "bash scripts/coop/main.sh shapes rn50 end 4 16 False" in subprocess.run(
        ["bash", "scripts/coop/main.sh", "--help"], cwd=ROOT, env=env, capture_output=True, text=True).stdout


def test_the_torch_free_name_tables_match_the_registries():
    """--help lists backbones and datasets without torch; they are the ones the registries hold."""
    from restore.backbone import available_backbones
    from restore.data import BENCHMARK_DATASETS, DATASETS
    from restore.data.testbed import TESTBED_DATASETS
    assert list(cli.BACKBONES) == available_backbones()
    assert cli.dataset_configs() == {**BENCHMARK_DATASETS, **TESTBED_DATASETS}
    assert set(cli.dataset_configs().values()) == set(DATASETS)
    text = train.build_parser().format_help()
    assert "oxford_pets (OxfordPets)" in text and "shapes (TestbedShapes)" in text and "ViT-L/14@336px" in text


# ------------------------------------------------------------------------------- trainer names
def test_every_entry_point_refuses_a_trainer_alike(tmp_path, capsys):
    """RESTORE_M is refused by each entry point in the same words, RESTORE_m suggested before the
    equally distant RESTORE_p; only the place it was given differs."""
    run = ["--engine", "native", "--trainer", "RESTORE_M", "--output-dir", str(tmp_path / "out")]
    got = {
        "run": error_of(train.main, run, capsys),
        "--print-config": error_of(train.main, run + ["--print-config"], capsys),
        "--eval-only": error_of(train.main, run + ["--eval-only", "--model-dir", str(tmp_path)], capsys),
        "--check-finished": error_of(train.main, run + ["--check-finished"], capsys),
        "legacy": error_of(legacy.main, ["--trainer", "RESTORE_M", "--model-dir", str(tmp_path),
                                         "--output-dir", str(tmp_path / "export")], capsys),
        "benchmark": error_of(testbed_benchmark.main, ["--methods", "CoOp", "RESTORE_M"], capsys),
        "cluster": error_of(cluster.main, ["status", "--methods", "RESTORE_M"], capsys),
    }
    expected = (f"Unknown trainer 'RESTORE_M' (--trainer). Did you mean RESTORE_m? Valid trainers: {TRAINERS}. "
                "A method of another package registers when its module is imported (--method-module, "
                "METHOD_MODULES).")
    for where, message in got.items():
        assert message == expected.replace("--trainer", "--methods" if where in ("benchmark", "cluster")
                                           else "--trainer"), where
    assert not os.listdir(tmp_path)  # no output folder, export folder or log


def test_the_registry_lookup_gives_the_same_message():
    with pytest.raises(ValueError) as info:
        registry.get("coop")
    assert str(info.value).startswith(f"Unknown trainer 'coop'. Did you mean CoOp? Valid trainers: {TRAINERS}.")


# ------------------------------------------------------------------------------- dataset names
def test_every_entry_point_refuses_a_dataset_alike(tmp_path, capsys):
    """A dataset name in the one form, the right kind of name suggested: DATASET.NAME takes OxfordPets,
    the scripts and the benchmark take config names (oxford_pets, shapes), the check takes either."""
    train_msg = error_of(train.main, ["--engine", "native", "--trainer", "CoOp", "--root", str(tmp_path),
                                      "--output-dir", str(tmp_path / "out"), "DATASET.NAME", "oxfordpets"], capsys)
    assert train_msg.startswith("Unknown dataset 'oxfordpets' (DATASET.NAME). Did you mean OxfordPets? "
                                "Valid datasets: Caltech101, DescribableTextures, EuroSAT,")
    assert train_msg.endswith("Pass --dataset-config-file configs/datasets/<name>.yaml or set DATASET.NAME.")
    # a config name where a DATASET.NAME belongs: its DATASET.NAME
    assert "Did you mean DescribableTextures?" in error_of(
        train.main, ["--engine", "native", "--trainer", "CoOp", "--print-config", "DATASET.NAME", "dtd"], capsys)

    check_msg = error_of(data_check.main, ["oxford_pet", "--root", str(tmp_path)], capsys)
    assert check_msg.startswith("Unknown dataset 'oxford_pet'. Did you mean oxford_pets? Valid datasets: "
                                "caltech101 (Caltech101), digits (TestbedDigits), dtd (DescribableTextures),")

    proc = subprocess.run(["bash", "scripts/maple/base2new_train.sh", "OxfordPets", "1"], cwd=ROOT,
                          env=dict(os.environ, DATA=str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: Unknown dataset 'OxfordPets'. Did you mean oxford_pets? Valid datasets: "
                                  "caltech101, digits, dtd,")

    bench = error_of(testbed_benchmark.main, ["--datasets", "shapes", "Patterns"], capsys)
    assert bench == ("Unknown dataset 'Patterns' (--datasets). Did you mean patterns? Valid datasets: shapes, "
                     "patterns, digits, objects, objects_v2, objects_sketch, objects_noise, objects_clutter. "
                     "The benchmark runs on the testbed datasets.")
    assert error_of(cluster.main, ["status", "--datasets", "Patterns"], capsys) == bench
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------- config keys
@pytest.mark.parametrize("trainer,key,suggestion", [
    ("RESTORE_m", "TRAINER.RESTORE.N_CTX", "Did you mean TRAINER.MAPLE.N_CTX?"),  # the trainer's own node
    ("RESTORE_m", "TRAINER.MAPLE.FS.WEIGHT", "Did you mean TRAINER.RESTORE.FS.WEIGHT?"),  # a sub-node
    ("RESTORE_m", "RESTORE.FS.WEIGHT", "Did you mean TRAINER.RESTORE.FS.WEIGHT?"),  # its parent left out
    ("MaPLe_FSA", "TRAINER.RESTORE.N_CTX", "Did you mean one of TRAINER.MAPLE.N_CTX, TRAINER.MAPLE_FSA.N_CTX?"),
    ("", "TRAINER.RESTORE.N_CTX", f"Did you mean one of {N_CTX_KEYS}?"),  # no trainer: every node
    ("CoOp", "TRAINER.MAPLE.n_ctx", "Did you mean TRAINER.MAPLE.N_CTX?"),  # case-only, same node, first
    ("CoOp", "OPTIM.LR_SCHEDULR", "Did you mean OPTIM.LR_SCHEDULER?"),
])
def test_a_key_under_the_wrong_node_names_the_node_that_has_it(trainer, key, suggestion, tmp_path, capsys):
    """On the command line (--print-config, a run, --eval-only) and in a yaml file alike."""
    argv = ["--engine", "native", "--output-dir", str(tmp_path / "out")] + (["--trainer", trainer] if trainer else [])
    for extra in (["--print-config"], [], ["--eval-only", "--model-dir", str(tmp_path)]):
        message = error_of(train.main, argv + extra + [key, "4"], capsys)
        assert message.startswith(f"Unknown config key {key!r} (on the command line). {suggestion} Valid keys "), \
            message
    if key.startswith("TRAINER.RESTORE."):
        assert message.endswith("Valid keys under TRAINER.RESTORE: FS, SURGERY.")
    parts = key.split(".")
    yaml = tmp_path / "method.yaml"
    yaml.write_text("".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parts[:-1])) + f"{'  ' * (len(parts) - 1)}"
                    f"{parts[-1]}: 4\n")
    message = error_of(train.main, argv + ["--print-config", "--config-file", str(yaml)], capsys)
    assert message.startswith(f"Unknown config key {key!r} (in {yaml}). {suggestion}")
    assert not (tmp_path / "out").exists()


def test_the_key_search_covers_declared_aliases(monkeypatch, capsys):
    """An alias (a key's spelling in its authors' files) names its canonical key (a made-up spelling: no node has
    a key of that name)."""
    monkeypatch.setattr(registry, "aliases",
                        lambda trainer=None: {"TRAINER.COOP.LAB_WEIGHT": Alias("TRAINER.COCOOP.N_CTX")})
    message = error_of(train.main, ["--engine", "native", "--print-config", "TRAINER.MAPLE.LAB_WEIGHT", "3"], capsys)
    assert message.startswith("Unknown config key 'TRAINER.MAPLE.LAB_WEIGHT' (on the command line). Did you mean "
                              "TRAINER.COCOOP.N_CTX? Valid keys under TRAINER.MAPLE: CTX_INIT, N_CTX, PREC, "
                              "PROMPT_DEPTH.")


# --------------------------------------------------------------------------- nothing left behind
@pytest.fixture
def data_root(tmp_path):
    make_oxford_pets(str(tmp_path / "data"))
    return str(tmp_path / "data")


@pytest.mark.parametrize("extra,says", [
    (["--trainer", "RESTORE_M"], "Unknown trainer 'RESTORE_M'"),
    (["--trainer", "CoOp", "DATASET.NAME", "OxfordPet"], "Unknown dataset 'OxfordPet'"),
    (["--trainer", "CoOp", "TRAINER.MAPLE.CSC", "True"], "Did you mean TRAINER.COOP.CSC?"),
    (["--trainer", "CoOp", "--eval-only", "--model-dir", "/no/such/run"], "/no/such/run"),  # after the log opened
    (["--trainer", "CoOp", "--root", "/no/such/data"], "/no/such/data"),  # the dataset, after the log opened
])
def test_a_refused_run_leaves_nothing_behind(extra, says, data_root, tmp_path, capsys):
    """No output folder, log or lock: whether refused before anything was written or once the log was
    open (the data or the checkpoint to evaluate cannot be read). A folder that was there is kept, with
    the error in its log."""
    out = tmp_path / "out"
    argv = ["--engine", "native", "--root", data_root, "--dataset-config-file", PETS, "--output-dir", str(out),
            *extra, *cli_opts("CoOp", "DATASET.NUM_SHOTS", 2)]
    assert says in error_of(train.main, argv, capsys)
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert says in error_of(train.main, argv, capsys)
    assert (out / "notes.txt").read_text() == "mine" and not (out / LOCK_NAME).exists()
    if "/no/such" in says:  # the log was open: the error is in it
        assert says in (out / "log.txt").read_text()


def test_data_must_not_be_the_repositorys_datasets_package(tmp_path, capsys):
    package = os.path.join(ROOT, "datasets")
    fix = "the repository's datasets/ package (the Dassl dataset adapters, Python code), not a folder of data"
    assert fix in error_of(train.main, ["--engine", "native", "--trainer", "CoOp", "--print-config", "--root",
                                        package], capsys)
    assert fix in error_of(data_check.main, ["shapes", "--root", os.path.join(package, "x")], capsys)
    assert fix in error_of(testbed_benchmark.main, ["--data", package], capsys)
    proc = subprocess.run(["bash", "scripts/restore/base2new_train.sh", "shapes", "1"], cwd=ROOT,
                          env=dict(os.environ, DATA="./datasets"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr == (
        f"Error: DATA={package} is {fix}: keep the datasets in a folder of their own (DATASETS.md) and set "
        "DATA to it.\n")


# ------------------------------------------------------------------------- the caller's folder
def fake_python(tmp_path):
    """A stand-in interpreter for the scripts: `-m restore.cli` runs for real, train.py's finished check
    says "not finished", and the train.py command line is written to argv.txt."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\nif [ "$1" = "-m" ]; then exec {sys.executable} "$@"; fi\n'
                    'for a in "$@"; do [ "$a" = "--check-finished" ] && exit 3; done\n'
                    f'echo "$PWD $@" > {tmp_path}/argv.txt\n')
    fake.chmod(0o755)
    return fake


def test_scripts_take_relative_paths_from_the_callers_folder(tmp_path):
    """DATA, OUTPUT and PYTHON relative to where the script is run, although train.py runs in the
    repository; ./datasets there is the caller's own folder, not the repository's package."""
    fake_python(tmp_path)
    (tmp_path / "datasets").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS", "BACKBONE")}
    env.update(DATA="./datasets", OUTPUT="runs", PYTHON="bin/python", PYTHONPATH=ROOT)
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts/restore/base2new_train.sh"), "oxford_pets", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cwd, *argv = (tmp_path / "argv.txt").read_text().split()
    assert cwd == ROOT
    assert argv[argv.index("--root") + 1] == str(tmp_path / "datasets")
    assert argv[argv.index("--output-dir") + 1] == str(
        tmp_path / "runs/base2new/train_base/oxford_pets/shots_16/RESTORE_m/vit_b16_c2_ep10_batch4_2ctx/seed3")
    assert sorted(os.listdir(tmp_path)) == ["argv.txt", "bin", "datasets"]  # nothing made before train.py


def test_the_benchmark_takes_relative_paths_from_the_callers_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = Namespace(method_module=[], methods=None, datasets=["shapes"], data="data", output="out/testbed",
                     folder="out/slurm")
    check_args(args)
    assert (args.data, args.output, args.folder) == (str(tmp_path / "data"), str(tmp_path / "out/testbed"),
                                                     str(tmp_path / "out/slurm"))
    assert args.methods == registry.benchmark_methods()


# ------------------------------------------------------------------------------ argument errors
@pytest.mark.parametrize("main, argv, line", [
    (train.main, ["--seed", "one"], "argument --seed: invalid int value: 'one' (python train.py --help"),
    (train.main, ["--config-file"], "argument --config-file: expected one argument (python train.py --help"),
    (testbed_benchmark.main, ["--seeds", "1", "a"], "argument --seeds: invalid int value: 'a' (python "
                                                    "testbed_benchmark.py --help lists the arguments)"),
    (cluster.main, ["submit", "--time", "4h"], "argument --time: invalid int value: '4h' (python cluster.py"),
    ("benchmark", ["--jobs", "two"], "argument --jobs: invalid int value: 'two' (python benchmark.py --help"),
    ("parse_test_res", ["--table", "base"], "argument --table: invalid choice: 'base'"),
    (legacy.main, ["--trainer", "CoOp", "--model-dir", "m", "--output-dir", "o", "--load-epoch", "last"],
     "argument --load-epoch: invalid int value: 'last' (python -m restore.legacy --help lists the arguments)"),
    (data_check.main, ["shapes", "--max-images", "all"], "argument --max-images: invalid int value: 'all' "
                                                         "(python -m restore.data.check --help"),
    ("restore.testbed.generate", ["--root", "r", "--seed", "x"], "argument --seed: invalid int value: 'x' "
                                                                "(python -m restore.testbed.generate --help"),
])
def test_an_argument_error_is_one_line_without_the_usage_block(main, argv, line, capsys):
    """argparse's error line alone (restore.cli.ArgumentParser), exit status 2, not its usage block above it."""
    import importlib
    if isinstance(main, str):
        main = importlib.import_module(main).main
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "usage:" not in err
    assert len(err.splitlines()) == 1 and err.startswith("Error: " + line)


@pytest.mark.parametrize("opts, line", [
    (["OPTIM.MAX_EPOCH", "2", "TRAINER.X"], "Missing value for TRAINER.X (on the command line): config "
                                            "overrides are KEY VALUE pairs, e.g. OPTIM.MAX_EPOCH 5."),
    (["OPTIM.MAX_EPOCH", "OPTIM.LR", "0.1"], "Missing value for OPTIM.MAX_EPOCH (on the command line)"),
    (["OPTIM.MAX_EPOCH", "2", "3"], "Config overrides (on the command line) must be KEY VALUE pairs; got an odd "
                                    "number of words: OPTIM.MAX_EPOCH 2 3"),
])
def test_a_key_without_its_value_is_named(opts, line, capsys):
    """train.py, the sweep (benchmark.py, testbed_benchmark.py, cluster.py) and the scripts (python -m
    restore.cli overrides) name the KEY whose VALUE is missing, where pairing by position would misread it."""
    with pytest.raises(cli.UserError, match="^" + re.escape(line)):
        cli.check_overrides(opts)
    with pytest.raises(cli.UserError, match=re.escape(line)):
        check_args(sweep_args(opts))
    assert cli.main(["overrides", "on the command line", *opts]) == 1
    assert capsys.readouterr().err.startswith("Error: " + line)
    assert cli.check_overrides(["OPTIM.LR", "0.1", "METHOD_MODULES", "['my_lab.m']"]) == [
        "OPTIM.LR", "0.1", "METHOD_MODULES", "['my_lab.m']"]  # values are not keys, whatever their dots


def sweep_args(overrides):
    """testbed_benchmark.py's parsed arguments with these overrides."""
    parser = cli.ArgumentParser()
    from sweep.plan import add_arguments
    add_arguments(parser)
    return parser.parse_args([*overrides, "--methods", "CoOp"])
