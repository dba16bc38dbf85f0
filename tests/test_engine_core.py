"""The engine core's step contract and backward hook, and the library's logging.

- A method's loss receives the whole batch: every augmented view (DATALOADER.K_TRANSFORMS 2), the unaugmented
  image (RETURN_IMG0) and the per-sample extras, on the device; its terms come back as tensors.
- The backward hook (`backward_and_update`), with `ProjectingCoOp` below (ProGrad's rule in small: the
  cross-entropy gradient, projected off the anchor term's gradient where they conflict), in 2 gloo processes
  equals 1 process with the same global batches: the gradients the hook sees (all-reduced means) and the
  parameters it ends with, to ~1e-6 (another reduction order). A hook that steps with `grad(loss)` equals the
  engine's own update bit for bit, with a gradient scaler too (it unscales exactly). In the same processes,
  the run's flags (restore.engine.flags) reduce over the ranks: every rank reads the earliest bad step.
- Logging: records reach sys.stdout as it is when written (a test's capture, log.txt's tee); a Python-API
  user silences them with the logging module or hands them to their own handlers; under torchrun, ranks
  other than 0 keep ERROR records only, tagged with the rank.
"""
import logging
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import restore
import restore.logs
from restore.distributed import shard_bounds
from restore.engine import EngineCore, Trainer
from restore.engine.flags import RunFlags
from restore.engine.optim import build_optimizer
from restore.engine.precision import Precision
from restore.engine.schedule import build_lr_scheduler
from restore.engine.step import wrap_distributed
from restore.methods.coop.model import CoOp
from test_engine_fakes import make_cfg, make_oxford_pets

CLASSES = ["cat", "golden_retriever", "sports car", "tree"]


class ProjectingCoOp(CoOp):
    """CoOp with a second loss term (`anchor`: pulls the logits towards 0) and ProGrad's update rule: per
    parameter tensor, the cross-entropy gradient a, the anchor gradient b; where cos(a, b) < 0 the update is
    a - (a . b_hat) b_hat, else a. Records the gradients it sees and whether it projected."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)
        self.seen = []

    def loss_terms(self, batch, enc, logits):
        terms, logs = super().loss_terms(batch, enc, logits)
        terms["anchor"] = 0.05 * logits.pow(2).mean()
        return terms, logs

    def backward_and_update(self, loss, terms, update):
        ce = update.grad(terms["ce"], retain_graph=True)
        anchor = update.grad(terms["anchor"])
        out, projected = [], []
        for a, b in zip(ce, anchor):
            b_hat = b / torch.linalg.norm(b)
            conflict = torch.dot(a.flatten(), b_hat.flatten()) < 0
            out.append(torch.where(conflict, a - torch.dot(a.flatten(), b_hat.flatten()) * b_hat, a))
            projected.append(conflict)
        self.seen.append({"ce": [g.clone() for g in ce], "anchor": [g.clone() for g in anchor],
                          "projected": torch.stack(projected)})
        update.step(out)


class PlainHookCoOp(CoOp):
    """A hook that does what the engine does: steps with the loss's gradient."""

    def backward_and_update(self, loss, terms, update):
        update.step(update.grad(loss))


def steps_cfg():
    cfg = make_cfg("CoOp", "", "", "TRAINER.COOP.N_CTX", 2, "OPTIM.LR", 0.5, "OPTIM.WARMUP_EPOCH", 0)
    cfg.freeze()
    return cfg


def global_batches(n=3, size=8):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, len(CLASSES), (size,), generator=g))
            for _ in range(n)]


def run_steps(model_class, world=1, r=0, scaler=None):
    """Three optimiser steps of `model_class` through the engine core on this rank's slice of the global
    batches; -> (the learned tensors, the model)."""
    torch.manual_seed(0)
    cfg = steps_cfg()
    model = model_class(cfg, CLASSES, restore.tiny_clip(0))
    precision = Precision("fp32", "cpu")
    precision.scaler = scaler
    optim = build_optimizer(model, model.trainable_parameters(), cfg.OPTIM)
    core = EngineCore(cfg, CLASSES, model, precision, optim, build_lr_scheduler(optim, cfg.OPTIM))
    if world > 1:  # as restore.engine.parallel.distribute
        model.distributed = True
        core.module = wrap_distributed(core.module, torch.device("cpu"))
    batches = global_batches()
    for i, (images, labels) in enumerate(batches):
        lo, hi = shard_bounds(len(labels), world, r)
        terms = core.train_step({"img": images[lo:hi], "label": labels[lo:hi]}, 0, i, len(batches))
        assert all(torch.is_tensor(v) and not v.requires_grad for v in terms.values())
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}, model


def gloo_worker(r, world, store, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=world)
    try:
        learned, model = run_steps(ProjectingCoOp, world, r)
        if r == 0:
            torch.save({"learned": learned, "seen": model.seen}, out)
        # The run's flags over the ranks: rank 1 goes non-finite at step 2, rank 0 at step 4; only rank 0
        # is asked to stop. Every rank reads all of it, and the earliest bad step.
        flags = RunFlags("cpu")
        for step in range(5):
            flags.record(step, torch.tensor(step < (2 if r == 1 else 4)))
        if r == 0:
            flags.request_stop()
        torch.save(tuple(flags.read()), f"{out}.flags{r}")
    finally:
        dist.destroy_process_group()


def test_hook_over_two_processes_equals_one(tmp_path):
    out = tmp_path / "two.pt"
    mp.start_processes(gloo_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, start_method="spawn")
    two = torch.load(out, weights_only=True)
    for r in range(2):
        assert torch.load(f"{out}.flags{r}") == (True, True, 2)
    learned, model = run_steps(ProjectingCoOp)
    projected = torch.stack([s["projected"] for s in model.seen])
    assert projected.any() and not projected.all()  # both branches of the rule ran
    for one_step, two_step in zip(model.seen, two["seen"]):
        assert torch.equal(one_step["projected"], two_step["projected"])
        for key in ("ce", "anchor"):  # the all-reduced mean of each term's gradient
            for a, b in zip(one_step[key], two_step[key]):
                torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for k in learned:
        assert not torch.equal(learned[k], run_steps(CoOp)[0][k])  # the hook changed the update
        torch.testing.assert_close(two["learned"][k], learned[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scaled", [False, True])
def test_a_hook_stepping_with_the_loss_gradient_is_the_default_update(scaled):
    def scaler():  # a power-of-two scale: unscaling is exact
        return torch.amp.GradScaler("cpu", init_scale=2.0 ** 12) if scaled else None

    default, _ = run_steps(CoOp, scaler=scaler())
    hooked, _ = run_steps(PlainHookCoOp, scaler=scaler())
    for k in default:
        assert torch.equal(default[k], hooked[k]), k
    if scaled:  # the scaler really scaled: the same steps as without one
        unscaled, _ = run_steps(CoOp)
        for k in default:
            torch.testing.assert_close(default[k], unscaled[k], rtol=1e-6, atol=1e-7)


def test_the_loss_receives_every_view_and_the_extras(tmp_path, monkeypatch):
    """DATALOADER.K_TRANSFORMS 2 and RETURN_IMG0: the method sees two different augmented views, the
    unaugmented image and the items' indices; the default loss trains on the first view."""
    make_oxford_pets(str(tmp_path / "data"))
    cfg = make_cfg("CoOp", tmp_path / "data", tmp_path / "out", "DATASET.NUM_SHOTS", 2,
                   "DATALOADER.K_TRANSFORMS", 2, "DATALOADER.RETURN_IMG0", True, "TRAINER.COOP.N_CTX", 2)
    cfg.freeze()
    seen = []
    original = CoOp.loss_terms

    def loss_terms(self, batch, enc, logits):
        seen.append(batch)
        return original(self, batch, enc, logits)

    monkeypatch.setattr(CoOp, "loss_terms", loss_terms)
    trainer = Trainer(cfg)
    trainer.before_train()
    trainer.run_epoch()
    trainer.close_writer()
    assert len(seen) == len(trainer.train_loader_x) == 3
    for batch in seen:
        views = batch.views()
        assert len(views) == 2 and views[0].shape == views[1].shape == (4, 3, 32, 32)
        assert not torch.equal(views[0], views[1])  # two draws of random_resized_crop / flip
        assert batch.images is views[0] and batch["img0"].shape == (4, 3, 32, 32)
        assert batch.labels.shape == (4,) and sorted(batch["index"].tolist()) == sorted(set(batch["index"].tolist()))
        assert len(batch["impath"]) == 4 and batch["label"].device == trainer.device
    indices = torch.cat([b["index"] for b in seen])
    assert sorted(indices.tolist()) == list(range(12))  # one epoch: every training item once


# ------------------------------------------------------------------------------------------- logging
def test_records_reach_stdout_as_it_is_when_written(capsys):
    log = logging.getLogger("restore.engine.core")
    log.info("one line")
    log.warning("Note: a note")
    out = capsys.readouterr()
    assert out.out == "one line\nNote: a note\n" and out.err == ""


def test_a_python_api_user_silences_or_redirects_it(capsys):
    library = logging.getLogger("restore")
    level = library.level
    try:
        library.setLevel(logging.WARNING)
        logging.getLogger("restore.data.base").info("Creating a 2-shot dataset")
        logging.getLogger("restore.data.base").warning("Note: kept")
        assert capsys.readouterr().out == "Note: kept\n"
        library.setLevel(logging.CRITICAL + 1)
        logging.getLogger("restore.data.base").error("Error: not even this")
        assert capsys.readouterr() == ("", "")
    finally:
        library.setLevel(level)

    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append((record.name, record.levelname, record.getMessage()))

    root, handler = logging.getLogger(), Collect()
    root.addHandler(handler)
    try:
        restore.logs.use_logging_config()
        logging.getLogger("restore.engine.trainer").info("Finish training")
        assert records == [("restore.engine.trainer", "INFO", "Finish training")]
        assert capsys.readouterr().out == ""  # not printed by the project's handler any more
    finally:
        root.removeHandler(handler)
        restore.logs.install()
    logging.getLogger("restore.engine.trainer").info("back")
    assert capsys.readouterr().out == "back\n"


def test_other_ranks_keep_errors_only_tagged_with_the_rank(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    log = logging.getLogger("train")
    monkeypatch.setenv("RANK", "1")
    log.info("epoch [1/1] ...")
    log.warning("Note: a note")
    log.error("Error: the dataset is incomplete")
    out = capsys.readouterr()
    assert out.out == "" and out.err == "[rank 1] Error: the dataset is incomplete\n"
    monkeypatch.setenv("RANK", "0")
    log.info("epoch [1/1] ...")
    log.error("Error: x")
    out = capsys.readouterr()
    assert out.out == "epoch [1/1] ...\n" and out.err == "[rank 0] Error: x\n"


def test_errors_go_to_stderr_and_the_log_file(tmp_path, capsys):
    from restore.engine.logger import close_logger, setup_logger
    path = setup_logger(str(tmp_path))
    try:
        logging.getLogger("train").info("a line")
        logging.getLogger("train").error("Error: one line naming the file")
    finally:
        close_logger()
    assert open(path).read() == "a line\nError: one line naming the file\n"
    out = capsys.readouterr()
    assert out.out == "a line\n" and out.err == "Error: one line naming the file\n"
    assert os.path.basename(path) == "log.txt"
