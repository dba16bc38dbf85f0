"""The five sections of the GPU check (benchmarks/gpu_check.py says what each measures and why).

Each section is a function of the run's Context, run in a forked child with a deadline (ctx.deadline);
it appends every measurement to the report the moment it is made (ctx.add) and keeps to its deadline
itself where it can (the parent kills it at its cap otherwise).
"""
import contextlib
import copy
import dataclasses
import glob
import importlib.util
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, TimeoutError, as_completed
from multiprocessing import get_context

import torch

import restore
from gpu_check_originals import TINY_SHAPE, class_names
from restore.methods import registry

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# The check's random CLIP in OpenAI's layout: ViT-B/16 on the GPU; for the CPU rehearsal a 2 + 2-layer, 32 px one
# of ViT-B/16's widths (the original MaPLe hard-codes the vision width 768 in its prompt projection).
CLIPS = {
    "vitb16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                   context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                   transformer_layers=12),
    "tiny": dict(embed_dim=512, image_resolution=32, vision_layers=2, vision_width=768, vision_patch_size=16,
                 context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                 transformer_layers=2),
}

# Sizes on the GPU, and the CPU rehearsal's (--quick).
FULL = dict(clip="vitb16", depth=9, shots=16, testbed_images=(16, 4, 25), precision_steps=200, precision_test=1024,
            classes=(1000, 100), batch=4, train_steps=20, train_warmup=3, eval_batch=100, eval_batches=5,
            restore_classes=(100, 1000), restore_rounds=10, restore_warmup=2,
            jpegs=128, loader_seconds=4.0, loader_workers=None, loader_test_batch=None)
QUICK = dict(clip="tiny", depth=2, shots=2, testbed_images=(2, 1, 2), precision_steps=4, precision_test=64,
             classes=(20,), batch=4, train_steps=2, train_warmup=1, eval_batch=8, eval_batches=1,
             restore_classes=(10,), restore_rounds=1, restore_warmup=1,
             jpegs=4, loader_seconds=0.5, loader_workers=1, loader_test_batch=8)
MODES = ("fp32", "fp16", "amp", "bf16")


class Context:
    """What every section reads: arguments, sizes, paths, the report. Built in the parent (no CUDA)."""

    def __init__(self, args, report):
        self.args, self.report = args, report
        self.device = torch.device(args.device)
        self.cuda = args.device == "cuda"
        self.sizes = QUICK if args.quick else FULL
        self.work = os.path.abspath(args.work)
        self.data = os.path.join(self.work, "data_quick" if args.quick else "data")  # sizes differ
        self.clip_file = os.path.join(self.work, f"clip_{self.sizes['clip']}.pt")
        self.originals = os.path.join(os.path.abspath(args.carried), "originals")
        carried_dassl = os.path.join(self.originals, "Dassl.pytorch")
        self.dassl_path = carried_dassl if os.path.isdir(carried_dassl) else None
        self.has_dassl = self.dassl_path is not None or importlib.util.find_spec("dassl") is not None
        self.methods = [m for m in args.methods.split(",") if m] or registry.names()
        for name in self.methods:
            registry.get(name)  # UserError naming the registered methods
        self.deadline = float("inf")

    def add(self, section, kind, **row):
        self.report.add(section, kind, **row)

    def left(self):
        return self.deadline - time.time()

    def env(self, dassl=False, **extra):
        """The environment of a subprocess: PYTHONPATH (carried wheels, repository) plus Dassl if asked."""
        env = dict(os.environ, **extra)
        if dassl and self.dassl_path:
            env["PYTHONPATH"] = os.pathsep.join([self.dassl_path, env.get("PYTHONPATH", "")])
        env.setdefault("RESTORE_NUM_THREADS", "2")
        env["TQDM_DISABLE"] = "1"
        return env


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def register_tiny_shape():
    """The CPU rehearsal's CLIP shape, so that restore.load_clip reads its plain state dict."""
    import restore.backbone as rb
    rb.OPENAI_SHAPES.setdefault(*TINY_SHAPE)


# ------------------------------------------------------------------------------------------------ setup
def setup(ctx):
    """The machine's facts, the testbed data and the check's random CLIP file (fp16, OpenAI's layout)."""
    if ctx.cuda and not torch.cuda.is_available():
        ctx.add(0, "error", error="CUDA is not available to torch here (--device cpu runs the CPU rehearsal)")
        raise SystemExit(1)
    facts = dict(python=platform.python_version(), torch=torch.__version__, device=ctx.args.device,
                 cpus=os.cpu_count(), dassl=ctx.dassl_path or ("installed" if ctx.has_dassl else "absent"),
                 originals=",".join(sorted(os.listdir(ctx.originals))) if os.path.isdir(ctx.originals) else "absent")
    if ctx.cuda:
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                     capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version())
    try:
        facts["commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        facts["commit"] = "unknown"
    facts["methods"] = ",".join(ctx.methods)
    ctx.add(0, "env", **facts)
    from restore.testbed import datasets as testbed
    from restore.testbed.generate import ensure
    if ctx.sizes["testbed_images"]:  # the same classes and renderer, a few images per class and split
        n_train, n_val, n_test = ctx.sizes["testbed_images"]
        testbed.DATASETS["shapes"] = dataclasses.replace(testbed.DATASETS["shapes"], n_train=n_train,
                                                         n_val=n_val, n_test=n_test)
    ensure(ctx.data, "shapes", seed=0)
    if not os.path.exists(ctx.clip_file):
        from clip.model import convert_weights
        model = restore.tiny_clip(seed=0, **CLIPS[ctx.sizes["clip"]])
        convert_weights(model)  # fp16, as OpenAI's files
        torch.save(model.state_dict(), ctx.clip_file + ".tmp")
        os.replace(ctx.clip_file + ".tmp", ctx.clip_file)


# ---------------------------------------------------------------------------------- 1. tests and smoke runs
def method_args(ctx, name, engine, out_dir):
    """train.py's arguments for a 1-epoch run of `name` on the testbed's `shapes` (base classes): its testbed
    config, or (a method without one) its first config on the small random CLIP, fitted to it."""
    config = registry.config_file(name, "testbed")
    backbone = []
    if not os.path.isfile(config):
        configs = sorted(glob.glob(os.path.join(os.path.dirname(config), "*.yaml")))
        if not configs:
            return None
        config, backbone = configs[0], ["--backbone", "tiny-random"]
    module = [] if registry.is_builtin(name) else ["--method-module", registry.module_of(name)]
    return ["--root", ctx.data, "--seed", "1", "--trainer", name, "--engine", engine, *module,
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "shapes.yaml"),
            "--config-file", config, *backbone, "--output-dir", out_dir,
            "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", str(ctx.sizes["shots"]),
            "DATASET.SUBSAMPLE_CLASSES", "base", "USE_CUDA", str(ctx.cuda)]


# train.py run as a script, then the peak CUDA memory it allocated (the proof that it ran on the GPU).
SMOKE_LAUNCHER = """import runpy, sys, torch
sys.argv = ["train.py"] + sys.argv[1:]
try:
    runpy.run_path("train.py", run_name="__main__")
finally:
    if torch.cuda.is_available():
        print(f"GPU_CHECK cuda peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB", flush=True)
"""


def smoke_run(ctx, name, engine):
    out_dir = os.path.join(ctx.work, "smoke", f"{name}-{engine}")
    args = method_args(ctx, name, engine, out_dir)
    row = dict(method=name, engine=engine, config="", rc=None, seconds=0.0)
    if args is None:
        return dict(row, error="no yaml config")
    row["config"] = os.path.basename(args[args.index("--config-file") + 1]) + \
        (" on tiny-random" if "--backbone" in args else "")
    log = out_dir + ".log"
    shutil.rmtree(out_dir, ignore_errors=True)  # a run left by an earlier check would be resumed, not run
    os.makedirs(os.path.dirname(log), exist_ok=True)
    start = time.time()
    with open(log, "w") as f:
        try:
            proc = subprocess.run([sys.executable, "-c", SMOKE_LAUNCHER, *args], cwd=REPO, stdout=f,
                                  stderr=subprocess.STDOUT, env=ctx.env(dassl=engine == "dassl"),
                                  timeout=max(1.0, ctx.left() - 2))
            row["rc"] = proc.returncode
        except subprocess.TimeoutExpired:
            row.update(rc="killed", error="out of the section's time")
    row["seconds"] = time.time() - start
    text = open(log, errors="replace").read()
    acc = re.findall(r"\* accuracy: ([\d.]+)%", text)
    peak = re.findall(r"GPU_CHECK cuda peak ([\d.]+) MiB", text)
    row.update(accuracy=float(acc[-1]) if acc else None, cuda_peak_mib=float(peak[-1]) if peak else None)
    if row["rc"] not in (0, "killed"):
        errors = [ln for ln in text.splitlines() if ln.startswith(("Error", "Traceback")) or "Error:" in ln]
        row["error"] = (errors[-1] if errors else text.strip().splitlines()[-1:] or [""])[0][:200]
        print(f"--- {log} (failed) ---\n{text[-3000:]}", flush=True)
    return row


def pytest_summary(text):
    """(summary line, failed test ids) of pytest -q output."""
    counts = re.compile(r"\d+ (passed|failed|skipped|error|deselected)")
    lines = [ln.strip("= ") for ln in text.splitlines() if counts.search(ln)]
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    return (lines[-1] if lines else "no summary (cut or crashed; see gpu_check.log)"), failed


def tests(ctx):
    paths = [p for p in ctx.args.tests.split(",") if p]
    runs = []
    if paths:  # the CUDA tests (by name), and the Dassl engine's tests (CUDA when it is there)
        keyword = "cuda or dassl_trainers" if ctx.has_dassl else "cuda"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "-k", keyword, *paths]
        log = open(os.path.join(ctx.work, "pytest.log"), "w")
        runs.append((cmd, log, subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                                env=ctx.env(dassl=True)), time.time()))
    engines = [e for e in ctx.args.engines.split(",") if e and (e != "dassl" or ctx.has_dassl)]
    if "dassl" in ctx.args.engines and not ctx.has_dassl:
        ctx.add(1, "note", note="Dassl is not importable (no .gpu_check/originals): Dassl-engine smoke runs left out")
    jobs = [(m, e) for m in ctx.methods for e in engines]
    with ThreadPoolExecutor(ctx.args.jobs) as pool:
        for future in as_completed([pool.submit(smoke_run, ctx, *job) for job in jobs]):
            ctx.add(1, "smoke", **future.result())  # as each ends: a cut section keeps the finished ones
    for cmd, log, proc, start in runs:
        try:
            proc.wait(timeout=max(1.0, ctx.left() - 2))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        text = open(log.name, errors="replace").read()
        print(f"--- pytest ---\n{text[-6000:]}", flush=True)
        summary, failed = pytest_summary(text)
        ctx.add(1, "pytest", selection=" ".join(cmd[cmd.index("-k"):]), summary=summary, failed=failed,
                rc=proc.returncode, seconds=time.time() - start)


# -------------------------------------------------------------------------------------------- 2. precision
def method_cfg(ctx, name, testbed_clip):
    """The config of `name`'s smoke run (train.py's own setup), with the testbed CLIP as its backbone."""
    import train
    from restore.smoke import fit_cfg_to_backbone
    args = method_args(ctx, name, "native", os.path.join(ctx.work, "precision", name))
    if args is None:
        raise ValueError(f"{name} has no yaml config in {os.path.dirname(registry.config_file(name, 'testbed'))}")
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = train.setup_cfg(train.build_parser().parse_args(args), "native")
    cfg.defrost()
    cfg.MODEL.BACKBONE.NAME = "testbed"
    fit_cfg_to_backbone(cfg, testbed_clip)
    return cfg


def testbed_tensors(ctx, testbed_clip):
    """(train images, labels, test images, labels, classnames) of `shapes`' base classes, preprocessed as
    the testbed configs do, on the CPU."""
    from restore.data import DataManager
    cfg = method_cfg(ctx, "CoOp", testbed_clip)
    cfg.DATALOADER.NUM_WORKERS = 0
    with contextlib.redirect_stdout(io.StringIO()):
        dm = DataManager(cfg)
    train = [(b["img"], b["label"]) for b in dm.train_loader_x]
    test, n = [], 0
    for b in dm.test_loader:
        test.append((b["img"], b["label"]))
        n += len(b["label"])
        if n >= ctx.sizes["precision_test"]:
            break
    cat = lambda parts, i: torch.cat([p[i] for p in parts])  # noqa: E731
    limit = ctx.sizes["precision_test"]
    return cat(train, 0), cat(train, 1), cat(test, 0)[:limit], cat(test, 1)[:limit], list(dm.dataset.classnames)


def precision_method(ctx, name, data, testbed_clip):
    """Yields the rows of one method as they are measured: logits per mode against fp32, then the training
    steps per mode (the engine's Precision, TrainStep and optimizer; same state, same batches)."""
    from restore.engine.optim import build_optimizer
    from restore.engine.precision import Precision
    from restore.engine.step import TrainStep
    x_train, y_train, x_test, y_test, classnames = data
    device = ctx.device
    cfg = method_cfg(ctx, name, testbed_clip)
    batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    labels = y_test.to(device)

    def build(mode, state=None):
        torch.manual_seed(0)
        model = restore.build_model(cfg, classnames, copy.deepcopy(testbed_clip))  # fp16 converts in place
        if state is not None:
            model.load_state(state)
        precision = Precision(mode, device)
        precision.prepare(model)
        return model, precision

    @torch.no_grad()
    def logits(model, precision):
        model.eval()
        with precision.autocast(), model.cached_text_features():
            return torch.cat([model(x_test[i:i + 256].to(device)).float() for i in range(0, len(x_test), 256)])

    def accuracy(out):
        return (out.argmax(1) == labels).float().mean().item() * 100

    ref_model, ref_precision = build("fp32")
    state = ref_model.state_to_save()
    ref = logits(ref_model, ref_precision)
    scale = ref_model.clip.logit_scale.exp().item()
    for mode in MODES[1:]:
        model, precision = build(mode, state)
        got = logits(model, precision)
        diff = (got - ref).abs().max().item()
        yield "logits", dict(method=name, mode=mode,
                             runs_as=f"{precision.mode}, CLIP {next(model.clip.parameters()).dtype}",
                             max_logit_diff=diff, max_cos_diff=diff / scale,
                             argmax_agree=(got.argmax(1) == ref.argmax(1)).float().mean().item() * 100,
                             accuracy=accuracy(got), ref_accuracy=accuracy(ref))
        del model
    if not ref_model.trainable_parameters():
        return
    steps = ctx.sizes["precision_steps"]
    g = torch.Generator().manual_seed(1)
    order = torch.cat([torch.randperm(len(y_train), generator=g) for _ in range(steps * batch // len(y_train) + 1)])
    for mode in MODES:
        start = time.time()
        model, precision = build(mode, state)
        optim = build_optimizer(model, model.trainable_parameters(), cfg.OPTIM)
        step = TrainStep(model, precision)
        model.train()
        model.clip.eval()
        model.on_epoch_start(0, 1)
        losses, nonfinite = [], None
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            loss, _ = step({"img": x_train[idx].to(device), "label": y_train[idx].to(device)})
            if not torch.isfinite(loss).all():
                nonfinite = i + 1
                break
            precision.backward_and_step(loss, optim)
            losses.append(loss.item())
        model.on_epoch_end(0, 1)
        yield "train", dict(method=name, mode=mode, steps=len(losses), finite=nonfinite is None,
                            nonfinite_at=nonfinite, final_loss=statistics.mean(losses[-10:]) if losses else None,
                            accuracy=accuracy(logits(model, precision)) if nonfinite is None else None,
                            seconds=time.time() - start)
        del model, optim, step


def _precision_worker(ctx, name):
    from restore.testbed import load_testbed_clip
    try:
        testbed_clip = load_testbed_clip()
        for kind, row in precision_method(ctx, name, testbed_tensors(ctx, testbed_clip), testbed_clip):
            ctx.add(2, kind, **row)
    except Exception as err:  # report and go on with the other methods
        import traceback
        traceback.print_exc()
        ctx.add(2, "error", method=name, error=f"{type(err).__name__}: {str(err)[:300]}")


def precision(ctx):
    """One forked worker per method at a time, each loading the data itself: this process computes nothing
    with torch, so that its forks start without a thread pool (OpenMP's does not survive a fork)."""
    methods = sorted(ctx.methods, key=lambda m: -registry.get(m).cost)  # the longest first
    with ProcessPoolExecutor(min(ctx.args.jobs, len(methods)), mp_context=get_context("fork")) as pool:
        futures = {name: pool.submit(_precision_worker, ctx, name) for name in methods}
        for name, future in futures.items():
            try:
                future.result(timeout=max(1.0, ctx.left() - 1))
            except TimeoutError:
                ctx.add(2, "note", note=f"not finished in the section's time: "
                                        f"{', '.join(n for n, f in futures.items() if not f.done())}")
                return


# ------------------------------------------------------------------------------------------- 3. originals
def originals(ctx):
    """Each side of each method in a process of its own (the originals bring their own `clip` package and
    Dassl registries); the driver appends its rows to the report. Without the originals, ours alone."""
    have = [name for name in ("Dassl.pytorch", "CoOp", "multimodal-prompt-learning")
            if os.path.isdir(os.path.join(ctx.originals, name))]
    sides = ("original", "ours") if len(have) == 3 else ("ours",)
    if len(have) < 3:
        ctx.add(3, "note", note=f"the originals are not in {ctx.originals} (have: {', '.join(have) or 'none'}): "
                                "ours alone; run benchmarks/gpu_check_prepare.py and carry .gpu_check")
    sizes = ctx.sizes
    repos = {"MaPLe": "multimodal-prompt-learning", "CoOp": "CoOp"}
    for method in [m for m in ctx.args.compare.split(",") if m]:
        repo = repos[method]
        for side in sides:
            cmd = [sys.executable, os.path.join(HERE, "gpu_check_originals.py"), "--side", side, "--method", method,
                   "--clip", ctx.clip_file, "--device", ctx.args.device, "--jsonl-dir", ctx.report.out_dir,
                   "--classes", ",".join(map(str, sizes["classes"])), "--batch", str(sizes["batch"]),
                   "--steps", str(sizes["train_steps"]), "--warmup", str(sizes["train_warmup"]),
                   "--eval-batch", str(sizes["eval_batch"]), "--eval-batches", str(sizes["eval_batches"]),
                   "--depth", str(sizes["depth"]), "--work", os.path.join(ctx.work, "originals")]
            if ctx.args.quick:
                cmd.append("--tiny-shape")
            # CPU threads for the build (a random ViT-B/16 per trainer) on both sides alike
            env = ctx.env(RESTORE_NUM_THREADS=os.environ.get("RESTORE_NUM_THREADS") or
                          str(max(2, (os.cpu_count() or 2) // 2)))
            if side == "original":  # the original's Dassl and repository first; not this repository
                env["PYTHONPATH"] = os.pathsep.join(
                    [os.path.join(ctx.originals, "Dassl.pytorch"), os.path.join(ctx.originals, repo)] +
                    [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != REPO])
                cmd += ["--repo", os.path.join(ctx.originals, repo)]
            print(f"--- {side} {method} ---", flush=True)
            try:
                proc = subprocess.run(cmd, cwd=ctx.work, env=env, timeout=max(1.0, ctx.left() - 1))
            except subprocess.TimeoutExpired:
                ctx.add(3, "note", note=f"{side} {method} stopped: out of the section's time")
                return
            if proc.returncode != 0:
                ctx.add(3, "error", side=side, method=method, error=f"exit {proc.returncode} (see gpu_check.log)")


# ---------------------------------------------------------------------------------------------- 4. restore
def step_rounds(runs, device, rounds, warmup):
    """{name: (median step seconds, peak step memory MiB)} of `runs` {name: (step, precision, optim, x, y)},
    timed in interleaved rounds after `warmup` rounds."""
    def one(run):
        step, precision, optim, x, y = run
        loss, _ = step({"img": x, "label": y})
        precision.backward_and_step(loss, optim)

    for _ in range(warmup):
        for run in runs.values():
            one(run)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            sync(device)
            start = time.perf_counter()
            one(run)
            sync(device)
            times[name].append(time.perf_counter() - start)
    memory = {name: None for name in runs}  # no allocator statistics on a CPU
    if device.type == "cuda":
        for name, run in runs.items():
            sync(device)
            reset_peak(device)
            before = torch.cuda.memory_allocated(device)
            one(run)
            sync(device)
            memory[name] = peak_mib(device) - before / 2**20
    return {name: (statistics.median(times[name]), memory[name]) for name in runs}


def restore_steps(ctx):
    """step_time.py's pairs and trace variants on the check's CLIP (ViT-B/16's shapes on the GPU), batch 4,
    in the methods' default precision (PREC fp16: fp16 on CUDA), the engine's TrainStep and
    Precision.backward_and_step with SGD; step memory = peak allocated during one step above what was
    allocated before it (activations and temporaries)."""
    import step_time
    import restore.methods.promptsrc.model as promptsrc_module  # the module whose PROMPTSRC_TEMPLATES it reads
    from restore.engine.precision import Precision
    from restore.engine.step import TrainStep
    register_tiny_shape()
    promptsrc_module.PROMPTSRC_TEMPLATES = ["a photo of a {}."]  # a build-time cost only (as step_time.py)
    device, sizes, batch = ctx.device, ctx.sizes, ctx.sizes["batch"]
    res = CLIPS[sizes["clip"]]["image_resolution"]
    pairs = [p for p in step_time.PAIRS if p[0] in ctx.args.pairs.split(",")]
    for n_classes in sizes["restore_classes"]:
        clip_model = restore.load_clip(ctx.clip_file).to(device)  # models are built on the device
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, res, res, generator=g).to(device)
        y = torch.randint(0, n_classes, (batch,), generator=g).to(device)
        names = class_names(n_classes)
        for base, ours in pairs:
            if ctx.left() < 5:
                ctx.add(4, "note", note=f"{ours} at {n_classes} classes left out: the section's time was spent")
                continue
            clip_model.float()  # as loaded (fp16 values in fp32): the last pair's prepare made it fp16
            models = {}
            for label, fs in [(base, None)] + [(f"{ours} {v}", o) for v, o in step_time.variants(batch).items()]:
                torch.manual_seed(0)
                models[label] = restore.build_model(step_time.make_cfg(label.split()[0], sizes["depth"], fs),
                                                    names, clip_model)
            runs = {}
            for label, model in models.items():  # all built on the fp32 CLIP, then prepared (as the engine)
                precision = Precision("fp16", device)
                precision.prepare(model).train()
                model.clip.eval()
                optim = torch.optim.SGD(model.trainable_parameters(), lr=1e-3, momentum=0.9)
                runs[label] = (TrainStep(model, precision), precision, optim, x, y)
            result = step_rounds(runs, device, sizes["restore_rounds"], sizes["restore_warmup"])
            base_s, base_mem = result[base]
            for label, (seconds, mem) in result.items():
                method, _, variant = label.partition(" ")
                ctx.add(4, "step", classes=n_classes, method=method, variant=variant or "base",
                        precision=runs[label][1].mode, step_ms=seconds * 1e3,
                        ratio=None if label == base else seconds / base_s, step_mem_mib=mem,
                        mem_ratio=None if label == base or not base_mem else mem / base_mem)
            del models, runs, result
            if device.type == "cuda":
                torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------- 5. data
def write_jpegs(folder, count, size=(500, 375)):
    """`count` JPEG photos-alike (smooth colour fields, shapes, sensor noise; ImageNet's typical 500 x 375,
    quality 90), deterministic; returns their paths."""
    import numpy as np
    from PIL import Image, ImageDraw
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"img_{i:04d}.jpg")
        paths.append(path)
        if os.path.exists(path):
            continue
        a, b, c = rng.uniform(0, 255, 3), rng.uniform(-0.5, 0.5, 3), rng.uniform(-0.5, 0.5, 3)
        field = a + b * xx[..., None] + c * yy[..., None] + rng.normal(0, 12, (h, w, 3))
        img = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.integers(0, w - 60), rng.integers(0, h - 60)
            draw.ellipse([x0, y0, x0 + rng.integers(20, 200), y0 + rng.integers(20, 200)],
                         fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img.save(path + ".tmp.jpg", quality=90)
        os.replace(path + ".tmp.jpg", path)
    return paths


def gpu_rate(ctx, split):
    """(images/s the GPU consumes, what) from sections 3-4 of this run: ours MaPLe at the fewest classes
    (training or evaluation), or RESTORE_m's exact step."""
    rows = ctx.report.rows()
    speed = [r for r in rows if r["kind"] == "speed" and r["side"] == "ours" and r["method"] == "MaPLe"]
    if speed:
        r = min(speed, key=lambda r: r["classes"])
        return r["train_ips" if split == "train" else "eval_ips"], f"ours MaPLe, {r['classes']} classes"
    steps = [r for r in rows if r["kind"] == "step" and r["method"] == "MaPLe"]
    if split == "train" and steps:
        r = min(steps, key=lambda r: r["classes"])
        return ctx.sizes["batch"] / (r["step_ms"] / 1e3), f"MaPLe step, {r['classes']} classes"
    return None, "not measured in this run"


def data(ctx):
    """The loaders as MaPLe's ViT-B/16 config builds them (restore.data.loader: its batch sizes, workers,
    224 px transforms), over JPEG files (decoded and transformed in the workers), moved to the device."""
    from restore.config import merge_from_file
    from restore.data.datum import Datum
    from restore.data.loader import build_data_loader
    from restore.data.transforms import build_transform
    sizes = ctx.sizes
    paths = write_jpegs(os.path.join(ctx.work, "jpeg"), sizes["jpegs"])
    cfg = restore.get_cfg_default()
    config = os.path.join(REPO, "configs", "trainers", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx.yaml")
    merge_from_file(cfg, config)
    cfg.USE_CUDA = ctx.cuda
    if sizes["loader_workers"] is not None:
        cfg.DATALOADER.NUM_WORKERS = min(cfg.DATALOADER.NUM_WORKERS, sizes["loader_workers"])
    if sizes["loader_test_batch"] is not None:
        cfg.DATALOADER.TEST.BATCH_SIZE = sizes["loader_test_batch"]
    items = [Datum(impath=paths[i % len(paths)], label=i % 10, classname=f"class {i % 10}") for i in range(100_000)]
    for split, batch in (("train", cfg.DATALOADER.TRAIN_X.BATCH_SIZE), ("test", cfg.DATALOADER.TEST.BATCH_SIZE)):
        is_train = split == "train"
        with contextlib.redirect_stdout(io.StringIO()):
            transform = build_transform(cfg, is_train=is_train)
        loader = build_data_loader(cfg, items, batch, transform, is_train,
                                   "RandomSampler" if is_train else "SequentialSampler")
        start = time.time()
        it = iter(loader)
        next(it)["img"].to(ctx.device, non_blocking=True)
        first = time.time() - start
        count, t0 = 0, time.time()
        while time.time() - t0 < sizes["loader_seconds"] and ctx.left() > 3:
            count += len(next(it)["img"].to(ctx.device, non_blocking=True))
        sync(ctx.device)
        ips = count / (time.time() - t0)
        del it
        gpu, what = gpu_rate(ctx, split)
        ctx.add(5, "loader", split=split, batch=batch, workers=cfg.DATALOADER.NUM_WORKERS, ips=ips,
                first_batch_s=first, images=count, gpu_ips=gpu, gpu_what=what,
                ratio=ips / gpu if gpu else None)

