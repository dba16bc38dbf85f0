"""ProGrad against independent computations: its template initialisation, zero-shot teacher and loss terms (the
frozen CLIP's modules, conftest's `ref`), the gradient projection (float64, by hand; no host sync), the update
through the engine's backward hook (one process, and two gloo processes against one), the authors' and the
release's configs and scripts. The random draws of the authors' order are pinned in tests/test_parity.py."""
import math
import shutil

import clip
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import restore
import train
from restore.errors import UserError
from restore.methods import build_model
from restore.methods.prograd.model import project, soft_kl
from test_engine_fakes import script_train_calls, trailing_pairs


def prograd(make_cfg, classnames, clip_model, *opts, dataset="OxfordPets"):
    return build_model(make_cfg("ProGrad", "DATASET.NAME", dataset, *opts), classnames, clip_model)


@pytest.mark.parametrize("dataset,words,tokens", [
    ("OxfordPets", "a type of pet, a photo of a", 9),  # 8 words, 9 tokens: the last word stays fixed
    ("DescribableTextures", "a texture of", 3),
    ("Caltech101", "a photo of a", 4),
])
def test_ctx_init_puts_the_templates_first_words_after_zeros(make_cfg, classnames, clip_model, dataset, words,
                                                             tokens):
    model = prograd(make_cfg, classnames, clip_model, "TRAINER.PROGRAD.N_CTX", 12, "TRAINER.PROGRAD.CTX_INIT", True,
                    dataset=dataset)
    k = len(words.split(" "))
    ctx = model.prompt_learner.ctx.detach()
    ids = clip.tokenize([words])[0]
    embedded = clip_model.token_embedding(ids)
    assert ctx.shape == (12, 48) and not ctx[:12 - k].any()
    assert torch.equal(ctx[12 - k:], embedded[1:1 + k])
    # Slot i of the class prompts is token i of "X ... X <words> <class>.": after the slots, the words the
    # k slots did not take (Pets: "a"), then the class name.
    name = classnames[1].replace("_", " ")
    prompt = clip.tokenize(["X " * (12 - k) + f"{words} {name}."])[0]
    assert torch.equal(model.token_embeds[1, 13:], clip_model.token_embedding(prompt)[13:])
    assert (prompt[13:13 + tokens - k] == ids[1 + k:1 + tokens]).all()


def test_ctx_init_needs_room_for_the_templates_words(make_cfg, classnames, clip_model):
    with pytest.raises(UserError, match=r"TRAINER.PROGRAD.N_CTX is 4, fewer than the 8 words of "
                                        r"'a type of pet, a photo of a'.*set N_CTX 8 or more"):
        prograd(make_cfg, classnames, clip_model, "TRAINER.PROGRAD.N_CTX", 4, "TRAINER.PROGRAD.CTX_INIT", True)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_loss_terms_equal_an_independent_computation(make_cfg, classnames, clip_model, images, ref, t):
    """xe_loss and kl_loss against the frozen CLIP's encoders and its hand prompt (ProGrad's Pets template);
    kl_loss is T^2 (KL + H(teacher)): the authors' soft-target cross-entropy, with the KL's gradient."""
    model = prograd(make_cfg, classnames, clip_model, "TRAINER.PROGRAD.LOSS.T", t)
    ref.randomize_(model, std=0.05)
    labels = torch.tensor([2, 0])
    terms = {k: float(v.detach()) for k, v in model.loss({"img": images, "label": labels})[1].items()}
    names = [c.replace("_", " ") for c in classnames]
    ctx = model.prompt_learner.ctx.detach().clone().requires_grad_()
    tokens = clip.tokenize(["X X X " + f"{c}." for c in names])
    text = ref.text_forward(clip_model, tokens, [ctx], 3).features
    image = ref.image_forward(clip_model, images).features
    logits = ref.logits(clip_model, image, text)
    with torch.no_grad():
        hand = clip_model.encode_text(clip.tokenize([f"a type of pet, a photo of a {c}." for c in names]))
        zs = ref.logits(clip_model, clip_model.encode_image(images), hand)
    teacher = F.softmax(zs / t, dim=-1)
    kl = F.kl_div(F.log_softmax(logits / t, -1), teacher, reduction="batchmean") * t * t
    entropy = -(teacher * teacher.log()).sum(1).mean() * t * t
    assert terms["xe_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert terms["kl_loss"] == pytest.approx((kl + entropy).item(), rel=1e-5)
    # the gradient of kl_loss is the KL's
    model.zero_grad()
    soft_kl(model.logits(*model.encode(images)[:2]), zs, t).backward()
    kl.backward()
    torch.testing.assert_close(model.prompt_learner.ctx.grad, ctx.grad, atol=2e-6, rtol=1e-4)


class NoHostSync(TorchFunctionMode):
    """Fails on a tensor read on the host (bool, item, float, tolist): a CUDA sync."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__):
            raise AssertionError(f"host sync: {func.__name__}")
        return func(*args, **(kwargs or {}))


def test_projection_equals_the_rule_by_hand():
    g = torch.Generator().manual_seed(0)
    g_kl = torch.randn(4, 6, generator=g)
    g_ce = -0.7 * g_kl + 0.3 * torch.randn(4, 6, generator=g)  # conflicting: cos < 0
    with NoHostSync():
        out = project(g_ce, g_kl, 0.8)
    a, b = g_ce.double().flatten(), g_kl.double().flatten()
    assert a @ b < 0
    want = a - 0.8 * (a @ b) / (b @ b) * b
    torch.testing.assert_close(out.double().flatten(), want, atol=1e-6, rtol=1e-6)
    full = project(g_ce, g_kl, 1.0)  # LAMBDA 1: what is left is orthogonal to the KL gradient
    assert abs(full.flatten().double() @ b) < 1e-5 * a.norm() * b.norm()
    agreeing = g_kl + 0.1 * torch.randn(4, 6, generator=g)
    assert torch.equal(project(agreeing, g_kl, 1.0), agreeing)  # no conflict: the CE gradient alone
    assert torch.equal(project(g_ce, torch.zeros(4, 6), 1.0), g_ce)  # cos NaN: not a conflict
    assert torch.equal(project(torch.zeros(4, 6), g_kl, 1.0), torch.zeros(4, 6))


def engine_steps(n=4, scaler=None, **opts):
    """`n` optimiser steps of ProGrad through the engine core (SGD, LR 0.5, no momentum or weight decay) on
    fixed batches of the tiny CLIP -> (the context after each step, the gradient each step applied as
    project(G_d, G_g) by hand, the cosine each step)."""
    from restore.engine import EngineCore
    from restore.engine.optim import build_optimizer
    from restore.engine.precision import Precision
    from restore.engine.schedule import build_lr_scheduler
    from test_engine_fakes import make_cfg
    cfg = make_cfg("ProGrad", "", "", "OPTIM.NAME", "sgd", "OPTIM.LR", 0.5, "OPTIM.MOMENTUM", 0.0,
                   "OPTIM.WEIGHT_DECAY", 0.0, "OPTIM.WARMUP_EPOCH", 0, "TRAINER.PROGRAD.LOSS.LAMBDA", 0.7,
                   *[x for kv in opts.items() for x in kv])
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg, ["cat", "golden_retriever", "sports car", "tree"], restore.tiny_clip(0))
    precision = Precision("fp32", "cpu")
    precision.scaler = scaler
    optim = build_optimizer(model, model.trainable_parameters(), cfg.OPTIM)
    core = EngineCore(cfg, model.classnames, model, precision, optim, build_lr_scheduler(optim, cfg.OPTIM))
    g = torch.Generator().manual_seed(1)
    contexts, expected, cosines = [], [], []
    for i in range(n):
        batch = {"img": torch.randn(6, 3, 32, 32, generator=g), "label": torch.randint(0, 4, (6,), generator=g)}
        _, terms = model.loss(batch)
        ctx = model.prompt_learner.ctx
        g_kl, = torch.autograd.grad(terms["kl_loss"], [ctx], retain_graph=True)
        g_ce, = torch.autograd.grad(terms["xe_loss"], [ctx])
        a, b = g_ce.double().flatten(), g_kl.double().flatten()
        cosines.append((a @ b / (a.norm() * b.norm())).item())
        applied = a - 0.7 * (a @ b) / (b @ b) * b if cosines[-1] < 0 else a
        expected.append(ctx.detach().double() - 0.5 * applied.view_as(ctx))
        core.train_step(batch, 0, i, n)
        contexts.append(ctx.detach().clone())
    return contexts, expected, cosines


def test_the_engine_applies_the_projected_gradient():
    """Through the engine core's backward hook each step moves the context by -LR * project(G_d, G_g) (computed
    here in float64): on the steps where the gradients conflict and on those where they do not."""
    contexts, expected, cosines = engine_steps()
    assert any(c < 0 for c in cosines) and any(c > 0 for c in cosines)
    for got, want in zip(contexts, expected):
        torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-5)


def test_a_gradient_scaler_changes_no_update():
    """With a gradient scaler the hook's gradients are unscaled first (a power-of-two scale: exactly), so the
    steps equal those without one, bit for bit."""
    plain, _, _ = engine_steps(3)
    scaled, _, _ = engine_steps(3, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    for a, b in zip(plain, scaled):
        assert torch.equal(a, b)


def setup(config, *opts):
    argv = ["--trainer", "ProGrad", "--config-file", f"configs/trainers/ProGrad/{config}.yaml", *opts]
    return train.setup_cfg(train.build_parser().parse_args(argv))


def test_the_authors_and_the_release_configs_run_unchanged():
    """The authors' yaml (a top-level LOSS node, TRAINER.COOP.CTX_INIT: True) with their script's keys, and
    the release's, set TRAINER.PROGRAD; another LOSS.NAME is refused as the authors' code refuses it."""
    cfg = setup("rn50_ep100", "LOSS.LAMBDA", "0.8", "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
                "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "DATASET.NUM_SHOTS", "4")
    p = cfg.TRAINER.PROGRAD
    assert (p.CTX_INIT, p.N_CTX, p.LOSS.NAME, p.LOSS.T, p.LOSS.LAMBDA, p.TEMPLATES) == \
        (True, 16, "prograd", 1.0, 0.8, "authors")
    assert (cfg.MODEL.BACKBONE.NAME, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.MAX_EPOCH) == ("RN50", 32, 100)
    assert "LOSS" not in cfg  # the authors' node is read as ours
    cfg = setup("vit_b16_ep10_crossdataset", "LOSS.LAMBDA", "1.0", "TRAINER.COOP.N_CTX", "16")
    p = cfg.TRAINER.PROGRAD
    assert (p.CTX_INIT, p.TEMPLATES, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == \
        (False, "release", 2, 4)
    assert setup("rn50", "TRAINER.COOP.CTX_INIT", "a photo of a").TRAINER.PROGRAD.CTX_INIT is True  # truthy
    with pytest.raises(UserError, match="TRAINER.PROGRAD.LOSS.NAME is 'kd'.*must be one of prograd"):
        setup("rn50", "LOSS.NAME", "kd")


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def script_calls(tmp_path, script, *args, **env):
    """The train.py argument lists scripts/prograd/<script>.sh runs (test_engine_fakes.script_train_calls)."""
    return script_train_calls(tmp_path, f"prograd/{script}", *args, unset=("LAMBDA", "VARIANT"), **env)


@needs_bash
@pytest.mark.parametrize("env,config,shots,load", [({}, "rn50_ep100", "4", "100"),
                                                    ({"VARIANT": "release"}, "vit_b16_ep10", "16", "10")])
def test_base_to_novel_scripts_pass_the_authors_or_the_release_settings(tmp_path, env, config, shots, load):
    (argv,) = script_calls(tmp_path, "base2new_train", "dtd", "2", **env)
    assert argv[argv.index("--config-file") + 1] == f"configs/trainers/ProGrad/{config}.yaml"
    opts = trailing_pairs(argv)
    assert (opts["DATASET.NUM_SHOTS"], opts["TRAINER.PROGRAD.LOSS.LAMBDA"], opts["TRAINER.PROGRAD.N_CTX"]) == \
        (shots, "1.0", "16")
    (argv,) = script_calls(tmp_path, "base2new_test", "dtd", "2", **env)
    assert argv[argv.index("--load-epoch") + 1] == load


@needs_bash
@pytest.mark.parametrize("dataset,shots,lam", [("dtd", "16", "0.8"), ("dtd", "4", "1.0"),
                                               ("caltech101", "16", "1.0")])
def test_few_shot_script_takes_the_authors_lambda(tmp_path, dataset, shots, lam):
    """scripts/prograd/main.sh: CoOp's main.sh arguments; LAMBDA 0.8 for 8 and 16 shots of Flowers102, DTD and
    EuroSAT as the authors' README says, else 1.0; three seeds."""
    runs = script_calls(tmp_path, "main", dataset, "rn50", "end", "16", shots, "False")
    assert len(runs) == 3
    opts = trailing_pairs(runs[0])
    assert (opts["TRAINER.COOP.N_CTX"], opts["DATASET.NUM_SHOTS"], opts["TRAINER.PROGRAD.LOSS.LAMBDA"]) == \
        ("16", shots, lam)
    assert runs[0][runs[0].index("--output-dir") + 1].endswith(
        f"{dataset}/ProGrad/rn50_{shots}shots/nctx16_cscFalse_ctpend/seed1")
