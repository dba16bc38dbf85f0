"""A method of another package, declared in its own module only (tests/fixtures/lab_method: AnchoredCoOp),
runs through everything without an edit to the repository: train.py (native engine) with
`--method-module`, per-dataset overrides, key aliases and its flag; resume and --eval-only in fresh
processes, which import the module again from the run's record; the Dassl trainer class generated for it;
the sweep's plan, executed by a forkserver worker; `python -m restore.legacy`; an installed package's entry
point. Each check runs in a fresh interpreter, so that the registry of this test session never holds it."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from test_engine_fakes import BASE_OPTS, ROOT, make_oxford_pets

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
DATASET_CFG = os.path.join(ROOT, "configs", "datasets", "oxford_pets.yaml")


def python(code, *args, path=(), check=True):
    """Run `code` in a fresh interpreter that finds the repository and tests/fixtures (not lab_method's
    registration); returns the completed process."""
    paths = [ROOT, FIXTURES, os.path.join(ROOT, "tests"), *path, os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def argv(data_root, out, *opts, flags=(), module=True, engine="native"):
    return [*(["--method-module", "lab_method"] if module else []), *map(str, flags),
            "--root", data_root, "--seed", "1", "--trainer", "AnchoredCoOp", "--engine", engine,
            "--dataset-config-file", DATASET_CFG, "--output-dir", str(out),
            *[str(x) for x in BASE_OPTS], "TRAINER.COOP.N_CTX", "2", "DATASET.NUM_SHOTS", "2",
            *[str(x) for x in opts]]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_oxford_pets(str(root))
    return str(root)


def record(path):
    return torch.load(path, map_location="cpu", weights_only=True)


STOP_AFTER_EPOCH_1 = """
    import json, sys, train
    import restore.engine.trainer as T
    after = T.Trainer.after_epoch
    def stop(self):
        after(self)
        if self.epoch == 0:
            raise KeyboardInterrupt("stopped after epoch 1")
    T.Trainer.after_epoch = stop
    try:
        train.main(json.loads(sys.argv[1]))
    except KeyboardInterrupt:
        print("stopped")
"""
MAIN = """
    import json, sys, train
    try:
        print("accuracy", train.main(json.loads(sys.argv[1])))
    except SystemExit as exit:
        print("exit", exit.code)
"""


def test_train_resume_and_evaluate_through_train_py(data_root, tmp_path):
    out = tmp_path / "train"
    epochs = ("OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1, "DATASET.SUBSAMPLE_CLASSES", "base")
    proc = python(STOP_AFTER_EPOCH_1, json.dumps(argv(data_root, out, *epochs)))
    assert "stopped" in proc.stdout
    # The spec's override for OxfordPets, applied after the yaml files and printed; the record keeps it.
    assert "Per-dataset override of AnchoredCoOp for OxfordPets: LAB.ANCHOR.W 1.0 -> 0.5" in proc.stdout
    state = record(out / "prompt_learner" / "model.pth.tar-1")
    assert state["trainer"] == "AnchoredCoOp" and state["method"]["LAB.ANCHOR.W"] == 0.5
    assert state["config"]["METHOD_MODULES"] == ["lab_method"]
    assert state["config"]["DATASET_OVERRIDES"] == ["LAB.ANCHOR.W 0.5"]

    # Fresh processes without --method-module: the module comes from the run's run_info.json. The key's
    # alias (TRAINER.COOP.ANCHOR_W) sets LAB.ANCHOR.W and, on the command line, beats the override: another
    # value than the saved one is refused on resume, naming the canonical key.
    proc = python(MAIN, json.dumps(argv(data_root, out, *epochs, "TRAINER.COOP.ANCHOR_W", 3, module=False)))
    assert "exit 1" in proc.stdout
    assert "LAB.ANCHOR.W 0.5 (saved) vs 3.0 (now)" in proc.stderr, proc.stderr[-2000:]
    assert "AnchoredCoOp's override for OxfordPets, LAB.ANCHOR.W 0.5, is not applied" in proc.stdout
    proc = python(MAIN, json.dumps(argv(data_root, out, *epochs, module=False)))
    assert "resuming at epoch 2" in proc.stdout and "accuracy" in proc.stdout, proc.stdout[-2000:]
    assert record(out / "prompt_learner" / "model.pth.tar-2")["epoch"] == 2

    test = tmp_path / "test_new"
    flags = ("--eval-only", "--model-dir", out, "--load-epoch", 2)
    proc = python(MAIN, json.dumps(argv(data_root, test, "DATASET.SUBSAMPLE_CLASSES", "new", flags=flags,
                                        module=False)))
    assert "accuracy" in proc.stdout and 'model.pth.tar-2" (epoch = 2)' in proc.stdout, proc.stdout[-2000:]
    assert json.load(open(test / "run_info.json"))["config"]["METHOD_MODULES"] == ["lab_method"]

    # The original CoOp layout (its spec's export_layout), the module again from the run's record.
    exported = tmp_path / "exported"
    python("import sys; from restore.legacy import main; main(sys.argv[1:])",
           "--trainer", "AnchoredCoOp", "--model-dir", out, "--output-dir", exported)
    state = record(exported / "prompt_learner" / "model.pth.tar-2")["state_dict"]
    assert set(state) == {"ctx"} and state["ctx"].shape == (2, 48)


def _dassl_importable():
    from restore.logs import kept_enabled
    try:
        with kept_enabled():  # Dassl disables logging below ERROR when imported
            import dassl.engine  # noqa: F401
        return True
    except Exception:  # not installed, or without its import-time deps
        return False


@pytest.mark.skipif(not _dassl_importable(), reason="Dassl cannot be imported: its engine is checked where "
                                                    "it is installed (test_flag_help_and_dassl_trainer checks "
                                                    "the generated class without it)")
def test_the_dassl_engine_trains_and_evaluates_it(data_root, tmp_path):
    out, test = tmp_path / "train", tmp_path / "test_new"
    proc = python(MAIN, json.dumps(argv(data_root, out, "DATASET.SUBSAMPLE_CLASSES", "base", engine="dassl")))
    assert "Engine: dassl" in proc.stdout and "accuracy" in proc.stdout, proc.stdout[-2000:]
    state = record(out / "prompt_learner" / "model.pth.tar-1")
    assert state["trainer"] == "AnchoredCoOp" and state["method"]["LAB.ANCHOR.W"] == 0.5
    flags = ("--eval-only", "--model-dir", out, "--load-epoch", 1)
    proc = python(MAIN, json.dumps(argv(data_root, test, "DATASET.SUBSAMPLE_CLASSES", "new", flags=flags,
                                        module=False, engine="dassl")))
    assert 'model.pth.tar-1" (epoch = 1)' in proc.stdout and "accuracy" in proc.stdout, proc.stdout[-2000:]


def test_flag_help_and_dassl_trainer():
    proc = python("""
        import sys, types
        # A stand-in for Dassl's trainer registry and TrainerX (Dassl keys trainers on the class name).
        registered = {}
        class Registry:
            def register(self, cls, force=False):
                registered[cls.__name__] = cls
        dassl, engine = types.ModuleType("dassl"), types.ModuleType("dassl.engine")
        engine.TRAINER_REGISTRY, engine.TrainerX = Registry(), type("TrainerX", (), {})
        dassl.engine = engine
        sys.modules.update({"dassl": dassl, "dassl.engine": engine})
        import trainers, train
        assert "AnchoredCoOp" not in registered
        train.preparse_method_modules(["--method-module", "lab_method"])
        trainers.register_methods()
        cls = registered["AnchoredCoOp"]
        assert cls is trainers.AnchoredCoOp and issubclass(cls, registered["CoOp"]), cls.__mro__
        text = train.build_parser().format_help()
        assert "--anchor_w" in text and " AnchoredCoOp" in text
        args = train.build_parser().parse_args(["--trainer", "AnchoredCoOp", "--anchor_w", "4"])
        assert train.setup_cfg(args).LAB.ANCHOR.W == 4.0
        args = train.build_parser().parse_args(["--trainer", "CoOp", "--anchor_w", "4"])
        try:
            train.setup_cfg(args)
        except train.ConfigError as err:
            print(err)
    """)
    assert proc.stdout.strip() == ("--anchor_w is the flag of --trainer AnchoredCoOp (LAB.ANCHOR.W: the weight of "
                                   "the pull towards the initial context); remove it for CoOp.")


WORKER = """
import contextlib, io, sys


def print_config(argv):
    \"\"\"Run in a pool worker: train.py --print-config of a planned step.\"\"\"
    import train
    fresh = "lab_method" not in sys.modules
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        train.main(["--print-config"] + argv)
    return fresh, "lab_method" in sys.modules, text.getvalue()
"""


def test_the_sweep_plans_it_and_a_forkserver_worker_imports_it(tmp_path):
    (tmp_path / "plan_worker.py").write_text(WORKER)
    python("""
        import argparse, multiprocessing, sys
        from concurrent.futures import ProcessPoolExecutor
        from restore.methods import registry
        registry.import_modules(["lab_method"])
        from sweep.plan import job_cost, plan
        from plan_worker import print_config

        args = argparse.Namespace(protocols=["base2new"], methods=["AnchoredCoOp"], datasets=["shapes"],
                                  seeds=[1], output=sys.argv[1], data=sys.argv[1])
        (label, steps), = plan(args)
        argv = steps[0][1]
        assert argv[argv.index("--method-module") + 1] == "lab_method", argv
        config = argv[argv.index("--config-file") + 1]
        assert config.endswith("fixtures/lab_method/configs/testbed.yaml") and "--eval-only" in steps[1][1]
        assert steps[1][1][steps[1][1].index("--load-epoch") + 1] == "20"  # the fixture config's epochs
        assert job_cost((label, steps)) == 1.2 * 20 * 32  # its cost x epochs x the 32 base classes of shapes
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
            fresh, imported, text = pool.submit(print_config, argv).result()
        assert fresh and imported and "NAME: AnchoredCoOp" in text and "W: 2.0" in text, text[-500:]
    """, tmp_path, path=[str(tmp_path)])


def test_an_entry_point_registers_it_and_a_taken_name_is_refused(tmp_path):
    dist = tmp_path / "lab_method-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-method\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[restore.methods]\nanchored = lab_method\n")
    (tmp_path / "lab_clash.py").write_text(
        "from restore.methods.registry import register\nfrom restore.methods.spec import MethodSpec\n"
        "register(MethodSpec('MaPLe', model='lab_clash:MaPLe'))\n")
    proc = python("""
        import sys
        from restore.methods import registry
        assert "lab_method" not in sys.modules
        assert registry.names()[-1] == "AnchoredCoOp" and registry.module_of("AnchoredCoOp") == "lab_method"
        try:
            registry.import_modules(["lab_clash"])
        except registry.MethodSpecError as err:
            print(err)
        try:
            registry.import_modules(["colorsys"], "METHOD_MODULES in x.yaml")
        except ValueError as err:
            print(err)
    """, path=[str(tmp_path)])
    assert proc.stdout.splitlines() == [
        "lab_clash: the method name 'MaPLe' is taken by the built-in method of restore.methods.maple; choose "
        "another name.",
        "METHOD_MODULES in x.yaml: module colorsys registers no method (call "
        "restore.methods.registry.register(MethodSpec(...)) in it)."]


def test_a_script_of_its_own_runs_it(data_root, tmp_path):
    """A lab's own script (outside the repository) sources scripts/common.sh with its method's config
    folder; the yaml file names the module (METHOD_MODULES)."""
    script = tmp_path / "anchored_base2new_train.sh"
    script.write_text(f"TRAINER=AnchoredCoOp\nCFG=testbed\nCONFIG_DIR={FIXTURES}/lab_method/configs\n"
                      f"source {ROOT}/scripts/common.sh\nbase2new_train \"$@\"\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS")}
    paths = [ROOT, FIXTURES, os.environ.get("PYTHONPATH", "")]
    env.update(DATA=data_root, OUTPUT=str(tmp_path / "output"), SHOTS="2", ENGINE="native",
               PYTHONPATH=os.pathsep.join(filter(None, paths)))
    tiny = ["MODEL.BACKBONE.NAME", "tiny-random", "INPUT.SIZE", "(32,32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "USE_CUDA", "False"]
    proc = subprocess.run(["bash", str(script), "oxford_pets", "1", *tiny], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = tmp_path / "output" / "base2new" / "train_base" / "oxford_pets" / "shots_2" / "AnchoredCoOp" / "testbed"
    state = record(folder / "seed1" / "prompt_learner" / "model.pth.tar-1")
    assert state["config"]["METHOD_MODULES"] == ["lab_method"] and state["method"]["LAB.ANCHOR.W"] == 0.5
