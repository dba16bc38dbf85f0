"""The benchmark on real data (benchmark.py, sweep.plan, sweep.runner, sweep.table): the dry run lists each
method's published configs; a plan whose parts cannot belong together is refused in one line before
anything runs; and, end to end on fake real-layout datasets (a few classes of solid-colour images) with the
tiny random CLIP, the serial run, the local pool (fake GPU ids) and submitit's local executor give the same
Method x dataset table."""
import argparse
import dataclasses
import multiprocessing
import os

import pytest
from PIL import Image

import benchmark
from restore.methods import registry
from sweep import table as tables
from sweep.plan import check_plan, finished, plan
from sweep.report import report
from sweep.runner import job_state, run_jobs, status, submit
from test_data_fakes import make_dtd, make_eurosat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 30), (200, 40, 200)]


def fake_real_data(root):
    """DTD and EuroSAT in their real layouts (4 and 5 classes, 3 train / 1 val / 1 test image each), every
    image one solid colour per class."""
    for make in (make_dtd, make_eurosat):
        for path, label, _ in make(str(root)).items:
            Image.new("RGB", (8, 8), COLOURS[label]).save(path, format="JPEG")


def dry_run(tmp_path, capsys, *extra):
    benchmark.main(["--data", str(tmp_path), "--output", str(tmp_path / "out"), "--dry-run", "--seeds", "1",
                    *extra])
    return capsys.readouterr().out


def option(command, key):
    words = command.split()
    return words[words.index(key) + 1]


def test_dry_run_lists_the_published_configs(tmp_path, capsys):
    """--configs authors (the default) runs each method's own config (MethodSpec.configs), --configs paper the
    same at 10 epochs (in a folder of its own unless the config trains 10 epochs), and nothing is run."""
    out = dry_run(tmp_path, capsys, "--methods", "MaPLe", "RESTORE_m", "CoOp", "--datasets", "dtd",
                  "--protocols", "base2new", "xd")
    commands = [line for line in out.splitlines() if line.startswith("python train.py")]
    assert len(commands) == 3 * 2 + 3 * 2  # base2new: train + test; xd: imagenet + its target dtd
    want = {("MaPLe", "base2new"): "vit_b16_c2_ep5_batch4_2ctx", ("CoOp", "base2new"): "vit_b16_ctxv1",
            ("RESTORE_m", "base2new"): "vit_b16_c2_ep10_batch4_2ctx", ("CoOp", "xd"): "vit_b16_ep50_ctxv1",
            ("MaPLe", "xd"): "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
            ("RESTORE_m", "xd"): "vit_b16_c2_ep4_batch4_2ctx_cross_datasets"}
    for command in commands:
        trainer = option(command, "--trainer")
        protocol = "base2new" if "DATASET.SUBSAMPLE_CLASSES" in command else "xd"
        config = want[trainer, protocol]
        assert registry.get(trainer).config(protocol) == config
        assert option(command, "--config-file") == f"configs/trainers/{trainer}/{config}.yaml", command
        assert f"/{config}/seed1" in command or f"/{config}_16shots/" in command
        assert "OPTIM.MAX_EPOCH" not in command
        # every training run saves each epoch (resumable after a signal); an evaluation saves nothing
        assert ("TRAIN.CHECKPOINT_FREQ 1" in command) == ("--eval-only" not in command)
    assert "--eval-only" in commands[1] and option(commands[1], "--load-epoch") == "5"  # MaPLe's 5 epochs
    assert not os.path.exists(tmp_path / "out")

    out = dry_run(tmp_path, capsys, "--methods", "MaPLe", "RESTORE_m", "--datasets", "dtd", "--configs", "paper")
    maple, _, restore_m, _ = [line for line in out.splitlines() if line.startswith("python train.py")]
    assert option(maple, "OPTIM.MAX_EPOCH") == "10" and "/MaPLe/vit_b16_c2_ep5_batch4_2ctx_paper/seed1" in maple
    assert "OPTIM.MAX_EPOCH" not in restore_m and "/RESTORE_m/vit_b16_c2_ep10_batch4_2ctx/seed1" in restore_m


def test_the_scripts_run_the_configs_the_specs_declare():
    """scripts/<method>/*.sh name each benchmarked method's published configs too: they agree with
    MethodSpec.configs."""
    import glob
    import re
    checked = set()
    for path in glob.glob(os.path.join(ROOT, "scripts", "*", "*.sh")):
        text = open(path).read()
        found = dict(re.findall(r"^(TRAINER|CFG|XD_CFG)=(\S+)$", text, re.M))  # the first, default variant
        if found.get("TRAINER") == '"${BASE}_DePT"':  # scripts/dept: one CFG per BASE (a case), XD_CFG="$CFG"
            cases = re.findall(r"^\s*(\w+)\) CFG=(\S+) ;;", text, re.M)
            configs = {f"{base}_DePT": (cfg, cfg) for base, cfg in cases}
        elif "TRAINER" in found and "CFG" in found and ("XD_CFG" in found or path.endswith("method.sh")):
            configs = {found["TRAINER"]: (found["CFG"], found.get("XD_CFG", found["CFG"]))}  # CoPrompt: one CFG
        else:
            continue  # not a method's base-to-novel / cross-dataset settings (e.g. a few-shot script)
        for trainer, (cfg, xd_cfg) in configs.items():
            spec = registry.get(trainer)
            if spec.name not in registry.benchmark_methods():  # a script's default may be another backbone's
                continue
            assert (spec.config("base2new"), spec.config("xd")) == (cfg, xd_cfg), path
            checked.add(spec.name)
    assert checked >= set(registry.benchmark_methods())


def test_fewshot_plan_is_coops_protocol(tmp_path, capsys):
    out = dry_run(tmp_path, capsys, "--methods", "CoOp", "--datasets", "dtd", "--protocols", "fewshot")
    commands = [line for line in out.splitlines() if line.startswith("python train.py")]
    assert [option(c, "DATASET.NUM_SHOTS") for c in commands] == ["1", "2", "4", "8", "16"]
    assert all("SUBSAMPLE_CLASSES" not in c and "--eval-only" not in c for c in commands)  # all classes
    assert option(commands[0], "--output-dir").endswith("fewshot/dtd/shots_1/CoOp/vit_b16/seed1")


def refusal(main, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    message = str(stop.value)
    assert message.startswith("Error: ") and "\n" not in message
    return message


@pytest.mark.parametrize("argv, says", [
    (["--configs", "testbed", "--datasets", "dtd"], "the testbed's configs (32 px, the testbed CLIP) on the "
                                                    "real dataset dtd: run real data with --configs authors"),
    (["--datasets", "shapes"], "--configs authors (published configs for real data) on the testbed dataset "
                               "shapes: the testbed runs --configs testbed"),
    (["--datasets", "dtd", "--methods", "CoOp", "--backbone", "open_clip:ViT-B-16-SigLIP/webli"],
     "b2n CoOp dtd s1: open_clip ViT-B-16-SigLIP/webli was trained on images resized by 'squash'"),
])
def test_a_mixed_plan_is_refused_before_anything_runs(tmp_path, capsys, argv, says):
    message = refusal(benchmark.main, ["--data", str(tmp_path), "--output", str(tmp_path / "out"), "--seeds", "1",
                                       *argv], capsys)
    assert says in message
    assert not os.path.exists(tmp_path / "out")


def test_the_issue_command_is_refused_by_cluster_py(tmp_path, capsys):
    """cluster.py's default --configs is the testbed's: real datasets with it stop before any submission."""
    import cluster
    message = refusal(cluster.main, ["status", "--protocols", "base2new", "--methods", "RESTORE_m", "MaPLe",
                                     "--datasets", "dtd", "--data", str(tmp_path), "--folder",
                                     str(tmp_path / "slurm")], capsys)
    assert message.startswith("Error: the testbed's configs") and not os.path.exists(tmp_path / "slurm")


def test_a_methods_required_input_is_checked_on_the_resolved_config(tmp_path, monkeypatch, capsys):
    """MethodSpec.check_plan: asked of every distinct run of the plan with the config train.py would run
    (here: the smoke backbone's fitted input size), its reason refused in one line naming the job."""
    seen = []

    def needs_descriptions(cfg):
        seen.append((cfg.DATASET.NAME, cfg.DATASET.SUBSAMPLE_CLASSES, tuple(cfg.INPUT.SIZE), cfg.OPTIM.MAX_EPOCH))
        path = os.path.join(cfg.DATASET.ROOT, "descriptions.json")
        return None if os.path.isfile(path) else f"CoOp needs class descriptions here: {path} is missing"

    monkeypatch.setitem(registry._SPECS, "CoOp", dataclasses.replace(registry.get("CoOp"),
                                                                     check_plan=needs_descriptions))
    argv = ["--data", str(tmp_path), "--output", str(tmp_path / "out"), "--methods", "CoOp", "--seeds", "1", "2",
            "--datasets", "dtd", "eurosat", "--backbone", "tiny-random"]
    message = refusal(benchmark.main, argv, capsys)
    assert message == f"Error: b2n CoOp dtd s1: CoOp needs class descriptions here: {tmp_path}/descriptions.json " \
                      "is missing"
    (tmp_path / "descriptions.json").write_text("{}")
    seen.clear()
    benchmark.main(argv + ["--dry-run"])
    # one check per distinct run (the seeds share it; the test step is on other classes), on the fitted config
    assert sorted(seen) == [(name, classes, (32, 32), 200) for name in ("DescribableTextures", "EuroSAT")
                            for classes in ("base", "new")]


def bench_args(tmp_path, name):
    return argparse.Namespace(
        protocols=["base2new"], configs="authors", methods=["CoOp", "MaPLe"], datasets=["dtd", "eurosat"],
        seeds=[1], backbone="tiny-random", data=str(tmp_path / "data"), output=str(tmp_path / name),
        overrides=["OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0"], ablations=[], fast_trace=[])


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the pool's workers inherit the test's "
                                                                          "environment through fork")
def test_serial_pool_and_submitit_give_the_same_table(tmp_path, monkeypatch, capsys):
    submitit = pytest.importorskip("submitit", reason="submitit is optional (pip install submitit)")
    monkeypatch.chdir(ROOT)  # the plan names configs/ relative to the repository
    monkeypatch.setenv("RESTORE_NUM_THREADS", "1")
    fake_real_data(tmp_path / "data")
    runs = {name: bench_args(tmp_path, name) for name in ("serial", "pool", "submitit")}
    jobs = {name: plan(args) for name, args in runs.items()}
    check_plan(jobs["serial"], "authors")
    assert len(jobs["serial"]) == 4 and all("MODEL.BACKBONE.NAME" in argv for _, steps in jobs["serial"]
                                            for _, argv in steps)

    assert run_jobs(jobs["serial"], workers=1, threads=1)[1] == {}
    times, failed = run_jobs(jobs["pool"], threads=1, gpus=["5", "7"])  # fake GPU ids: one worker each
    assert failed == {} and len(times) == 4
    record = submit(jobs["submitit"], str(tmp_path / "slurm"),
                    executor=submitit.LocalExecutor(folder=str(tmp_path / "slurm")))
    assert len(record["labels"]) == 4

    texts = []
    for name, args in runs.items():
        assert all(job_state(steps) == "done" for _, steps in jobs[name])
        table = tables.read_table(os.path.join(args.output, "backbone_tiny-random"), "base2new")
        assert [(r.method, r.config, r.epochs, r.backbone) for r in table.rows] == [
            ("CoOp", "vit_b16_ctxv1", "1", "tiny-random"), ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "1", "tiny-random")]
        assert table.datasets == ["dtd", "eurosat"]
        for (label, steps) in jobs[name]:  # every cell is the run's own printed accuracy
            trainer, dataset = label.split()[1:3]
            row = next(r for r in table.rows if r.method == trainer)
            assert table.cells[(row, dataset)]["base"].seeds == {"seed1": finished(steps[0][0])}
            assert table.cells[(row, dataset)]["novel"].seeds == {"seed1": finished(steps[1][0])}
        texts.append(tables.markdown(table))
    assert texts[0] == texts[1] == texts[2]
    print(texts[0])
    reports = []
    for args in runs.values():  # the sweep's report: the same files
        report(args)
        with open(os.path.join(args.output, "backbone_tiny-random", "results.md")) as f, \
                open(os.path.join(args.output, "backbone_tiny-random", "results.csv")) as g:
            reports.append((f.read(), g.read()))
    assert reports[0] == reports[1] == reports[2] and texts[0] in reports[0][0]

    status(jobs["serial"], str(tmp_path / "none"))
    assert "4 of 4 jobs finished; running 0, failed 0, to run 0" in capsys.readouterr().out


def test_a_failed_job_is_listed_with_its_reason_and_the_rest_run(tmp_path, monkeypatch, capsys):
    """A job that stops (here: its dataset is missing) is listed with the line it stopped with; the other
    jobs run; status calls it to run again (nothing of it was left)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RESTORE_NUM_THREADS", "1")
    make_dtd(str(tmp_path / "data"))
    args = bench_args(tmp_path, "out")
    args.methods, args.datasets = ["CoOp"], ["dtd", "eurosat"]
    jobs = plan(args)
    from sweep.runner import run_all
    _, failed = run_all(jobs, workers=1, threads=1)
    out = capsys.readouterr().out
    assert list(failed) == ["b2n CoOp eurosat s1"] and "eurosat" in failed["b2n CoOp eurosat s1"]
    assert "1 job(s) failed" in out and f"  b2n CoOp eurosat s1: {failed['b2n CoOp eurosat s1']}" in out
    assert "done 1, running 0, failed 1, to run 0" in out
    assert job_state(jobs[0][1]) == "done" and job_state(jobs[1][1]) == "to run"


def test_the_docs_name_the_configs_and_numbers_the_code_uses():
    """docs/BENCHMARK.md's table of published configs (and their epochs) is the specs', and docs/RESULTS.md
    section 9's published averages are sweep/published.csv's."""
    import re

    from sweep.plan import config_file, max_epoch
    text = open(os.path.join(ROOT, "docs", "BENCHMARK.md")).read().split("| few-shot |")[1].split("\n\n")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    assert {row[0] for row in rows} == set(registry.benchmark_methods())
    for method, base2new, xd, fewshot in rows:
        spec = registry.get(method)
        for protocol, cell in (("base2new", base2new), ("xd", xd), ("fewshot", fewshot)):
            name = spec.config("base2new") if cell.startswith(("the same", "as base-to-novel")) else cell.split()[0]
            assert spec.config(protocol) == name, (method, protocol)
            epochs = re.search(r"\((\d+)\)", cell)
            if epochs:
                assert max_epoch(config_file(method, name)) == int(epochs.group(1)), (method, protocol)
    section = open(os.path.join(ROOT, "docs", "RESULTS.md")).read().split("## 9.")[1]
    names = {"CLIP (zero-shot)": "ZeroshotCLIP", "IVLP (MaPLe repo, 5 epochs)": "IVLP"}
    published = tables.published()
    lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
             if re.match(r"\| [A-Z].* \| \d", line)]
    assert len(lines) == 6
    for name, *values in lines:
        method = names.get(name, name)
        assert [published["base2new", method, "average", m][0] for m in ("base", "novel", "hm")] == \
            [float(v) for v in values], method


def test_running_and_stopped_runs_are_told_apart(tmp_path):
    """A folder locked by a live process is running; one whose run stopped without its result (a signal, an
    error) is failed, never done; a folder with the result is done."""
    from restore.lock import LOCK_NAME, owner_record
    import json
    steps = [(str(tmp_path / "train"), []), (str(tmp_path / "test"), [])]
    assert job_state(steps) == "to run"
    os.makedirs(steps[0][0])
    (tmp_path / "train" / "log.txt").write_text("epoch [3/10] batch [1/4] loss 1.0\n")  # killed mid-run
    assert job_state(steps) == "failed"
    (tmp_path / "train" / LOCK_NAME).write_text(json.dumps(owner_record()))  # this live process holds it
    assert job_state(steps) == "running"
    (tmp_path / "train" / LOCK_NAME).unlink()
    for folder, _ in steps:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "log.txt"), "a") as f:
            f.write("=> result\n* accuracy: 50.0%\n")
    assert job_state(steps) == "done"


def test_slurm_submission_of_the_real_plan(tmp_path, monkeypatch):
    """benchmark.py --slurm: the plan's unfinished jobs as a train and a dependent test array, each task a
    run over --nproc GPUs of a node (a stand-in sbatch records what submitit submits)."""
    pytest.importorskip("submitit", reason="submitit is optional (pip install submitit)")
    from submitit.core.utils import DelayedSubmission
    from test_cluster import FAKE, sbatch_options
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "srun"):
        (bin_dir / name).write_text(FAKE.format(count=tmp_path / "count"))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = benchmark.main(["--slurm", "--data", str(tmp_path), "--output", str(tmp_path / "out"),
                             "--folder", str(tmp_path / "slurm"), "--methods", "MaPLe", "--datasets", "dtd",
                             "eurosat", "--seeds", "1", "--nproc", "2", "--partition", "gpu", "--time", "240"])
    assert record["labels"] == ["b2n MaPLe dtd s1", "b2n MaPLe eurosat s1"]
    train, test = (sbatch_options(tmp_path / "slurm" / f"{record[a]}_submission.sh") for a in ("train", "test"))
    assert train["gpus-per-node"] == train["ntasks-per-node"] == "2" and train["partition"] == "gpu"
    assert train["time"] == "240" and test["dependency"] == f"aftercorr:{record['train']}"
    steps = DelayedSubmission.load(tmp_path / "slurm" / f"{record['train']}_0_submitted.pkl").args[0]
    argv = steps[0][1]
    assert argv[argv.index("--config-file") + 1] == "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"
