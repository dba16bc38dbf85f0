"""KgCoOp against independent computations: its loss and gradient (the frozen CLIP's modules, conftest's `ref`),
its hand prompts per dataset, the authors' and the release's configs and scripts, and checkpoints in the
authors' layout both ways. The random draws of the authors' order are pinned in tests/test_parity.py."""
import shutil

import clip
import pytest
import torch
import torch.nn.functional as F

import train
from restore.legacy import convert_state_dict, describe_mismatch, original_layout, to_original_state_dict
from restore.methods import build_model
from restore.templates import KGCOOP_TEMPLATES, RELEASE_TEMPLATES
from test_engine_fakes import script_train_calls, trailing_pairs


def kgcoop(make_cfg, classnames, clip_model, *opts, dataset="DescribableTextures"):
    cfg = make_cfg("KgCoOp", "DATASET.NAME", dataset, *opts)
    return build_model(cfg, classnames, clip_model)


def test_loss_and_gradient_equal_an_independent_computation(make_cfg, classnames, clip_model, images, ref):
    """CE + W * (1 - mean_c cos(w_c, w_c^clip)) with the authors' DescribableTextures prompt, and its gradient."""
    model = kgcoop(make_cfg, classnames, clip_model, "TRAINER.KGCOOP.CTX_INIT", "a photo of a",
                   "TRAINER.KGCOOP.W", 8.0)
    ref.randomize_(model, std=0.05)  # away from the hand prompt: the cosines are well below 1
    labels = torch.tensor([2, 0])
    total, terms = model.loss({"img": images, "label": labels})
    total.backward()
    summary = {k: float(v.detach()) for k, v in terms.items()}

    names = [c.replace("_", " ") for c in classnames]
    ctx = model.prompt_learner.ctx.detach().clone().requires_grad_()
    text = ref.text_forward(clip_model, clip.tokenize([f"a photo of a {c}." for c in names]), [ctx], 4).features
    image = ref.image_forward(clip_model, images).features
    ce = F.cross_entropy(ref.logits(clip_model, image, text), labels)
    with torch.no_grad():
        hand = clip_model.encode_text(clip.tokenize([f"a photo of a {c}, a type of texture." for c in names]))
    cos = (F.normalize(text, dim=-1) * F.normalize(hand, dim=-1)).sum(-1)
    kg = 1 - cos.mean()
    (ce + 8.0 * kg).backward()

    assert 0.05 < kg.item() < 1.5
    assert summary["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert summary["kg"] == pytest.approx(8.0 * kg.item(), rel=1e-5)
    assert total.item() == pytest.approx((ce + 8.0 * kg).item(), rel=1e-5)
    torch.testing.assert_close(model.prompt_learner.ctx.grad, ctx.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(model.hand_features, F.normalize(hand, dim=-1), atol=1e-6, rtol=1e-5)
    # W scales the term only; the logits are CoOp's
    zero = kgcoop(make_cfg, classnames, clip_model, "TRAINER.KGCOOP.CTX_INIT", "a photo of a",
                  "TRAINER.KGCOOP.W", 0.0)
    zero.load_state(model.state_to_save())
    s0 = {k: float(v.detach()) for k, v in zero.loss({"img": images, "label": labels})[1].items()}
    assert s0["kg"] == 0 and s0["ce"] == pytest.approx(summary["ce"], rel=1e-6)
    torch.testing.assert_close(zero(images), model(images))


@pytest.mark.parametrize("dataset,table,template", [
    ("DescribableTextures", "authors", "a photo of a {}, a type of texture."),  # not CoOp's "{} texture."
    ("OxfordPets", "authors", "a photo of a {}, a type of pet."),
    ("DescribableTextures", "release", "a photo of {}."),
    ("OxfordPets", "release", "a photo of a {}."),
    ("NoSuchDataset", "authors", "a photo of a {}."),  # not in the table: CoOp's (the authors: KeyError)
])
def test_hand_prompts_per_dataset_and_table(make_cfg, classnames, clip_model, dataset, table, template):
    model = kgcoop(make_cfg, classnames, clip_model, "TRAINER.KGCOOP.TEMPLATES", table, dataset=dataset)
    assert model.template == template
    names = [c.replace("_", " ") for c in classnames]
    with torch.no_grad():
        want = F.normalize(clip_model.encode_text(clip.tokenize([template.format(c) for c in names])), dim=-1)
    torch.testing.assert_close(model.hand_features, want, atol=1e-6, rtol=1e-5)
    assert "hand_features" not in model.state_to_save()  # rebuilt for each run's classes
    assert len(KGCOOP_TEMPLATES) == len(RELEASE_TEMPLATES) == 15


def test_the_authors_and_the_release_configs_run_unchanged():
    """The authors' yaml (TRAINER.COOP.CTX_INIT: True) with their script's keys, and the release's."""
    def setup(config, *opts):
        argv = ["--trainer", "KgCoOp", "--config-file", f"configs/trainers/KgCoOp/{config}.yaml", *opts]
        return train.setup_cfg(train.build_parser().parse_args(argv))

    cfg = setup("vit_b16_ep100_ctxv1", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False",
                "TRAINER.COOP.W", "8.0", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end")
    k = cfg.TRAINER.KGCOOP
    assert (k.CTX_INIT, k.N_CTX, k.CSC, k.W, k.TEMPLATES, k.PREC) == ("a photo of a", 4, False, 8.0, "authors", "fp16")
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR) == (128, 100, 0.002)
    cfg = setup("vit_b16_ep10_ctxv1", "TRAINER.KGCOOP.W", "1.0")
    k = cfg.TRAINER.KGCOOP
    assert (k.CTX_INIT, k.W, k.TEMPLATES, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.MAX_EPOCH) == \
        ("a photo of a", 1.0, "release", 4, 10)
    assert setup("vit_b16_ep2_ctxv1_crossdataset").OPTIM.MAX_EPOCH == 2


def authors_state(n_cls=3, n_ctx=4, width=48, suffix=72):
    """A state dict as the authors' KgCoOp saves its prompt learner (fp16 under PREC fp16)."""
    g = torch.Generator().manual_seed(0)
    return {"ctx": torch.randn(n_ctx, width, generator=g).half(),
            "bias_vectors": torch.randn(1, 512, generator=g).half(),
            "token_prefix": torch.randn(n_cls, 1, width, generator=g).half(),
            "token_suffix": torch.randn(n_cls, suffix, width, generator=g).half(),
            "meta_net.linear1.weight": torch.randn(512, 512, generator=g).half(),
            "meta_net.linear1.bias": torch.randn(512, generator=g).half()}


def test_the_authors_checkpoints_load_and_ours_export_to_their_layout(make_cfg, classnames, clip_model):
    state = authors_state()
    assert original_layout({"state_dict": state, "epoch": 100}) == "KgCoOp"
    converted = convert_state_dict("KgCoOp", state)
    assert set(converted) == {"prompt_learner.ctx"}  # bias_vectors, meta_net, class buffers dropped
    model = kgcoop(make_cfg, classnames, clip_model, "TRAINER.KGCOOP.CTX_INIT", "a photo of a")
    model.load_state(converted)
    assert model.prompt_learner.ctx.dtype == torch.float32
    assert torch.equal(model.prompt_learner.ctx.detach(), state["ctx"].float())
    exported = to_original_state_dict("KgCoOp", model.state_to_save())
    assert set(exported) == {"ctx"} and torch.equal(exported["ctx"], state["ctx"].float())
    assert original_layout(exported) == "CoOp"  # ctx only: the authors load it with strict=False
    other = kgcoop(make_cfg, classnames, clip_model, "TRAINER.KGCOOP.CTX_INIT", "a photo of a")
    other.load_state(convert_state_dict("KgCoOp", exported))
    assert torch.equal(other.prompt_learner.ctx, model.prompt_learner.ctx)
    # CoCoOp's prompt learner (linear1 and linear2, no bias_vectors) is not taken for KgCoOp's
    cocoop = {"ctx": state["ctx"], "meta_net.linear1.weight": torch.zeros(3, 48),
              "meta_net.linear1.bias": torch.zeros(3), "meta_net.linear2.weight": torch.zeros(48, 3)}
    assert original_layout(cocoop) == "CoOp"
    assert "original KgCoOp trainer" in describe_mismatch("MaPLe", state)
    assert describe_mismatch("KgCoOp", state) == ""


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def script_calls(tmp_path, script, *args, **env):
    """The train.py argument lists scripts/kgcoop/<script>.sh runs (test_engine_fakes.script_train_calls)."""
    return script_train_calls(tmp_path, f"kgcoop/{script}", *args, unset=("W", "VARIANT"), **env)


@needs_bash
@pytest.mark.parametrize("env,weight,config,xd_config", [
    ({}, "8.0", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1"),
    ({"VARIANT": "release"}, "1.0", "vit_b16_ep10_ctxv1", "vit_b16_ep2_ctxv1_crossdataset"),
    ({"W": "2.5"}, "2.5", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1")])
def test_scripts_pass_the_authors_or_the_release_settings(tmp_path, env, weight, config, xd_config):
    (argv,) = script_calls(tmp_path, "base2new_train", "oxford_pets", "1", "OPTIM.MAX_EPOCH", "3", **env)
    assert argv[argv.index("--config-file") + 1] == f"configs/trainers/KgCoOp/{config}.yaml"
    assert argv[argv.index("--output-dir") + 1].endswith(f"train_base/oxford_pets/shots_16/KgCoOp/{config}/seed1")
    opts = trailing_pairs(argv)
    assert {k: opts[k] for k in ("TRAINER.KGCOOP.N_CTX", "TRAINER.KGCOOP.CSC", "TRAINER.KGCOOP.W",
                                 "TRAINER.KGCOOP.CLASS_TOKEN_POSITION", "DATASET.SUBSAMPLE_CLASSES")} == \
        {"TRAINER.KGCOOP.N_CTX": "4", "TRAINER.KGCOOP.CSC": "False", "TRAINER.KGCOOP.W": weight,
         "TRAINER.KGCOOP.CLASS_TOKEN_POSITION": "end", "DATASET.SUBSAMPLE_CLASSES": "base"}
    assert list(opts)[-1] == "OPTIM.MAX_EPOCH"  # the user's overrides come last
    (argv,) = script_calls(tmp_path, "base2new_test", "oxford_pets", "1", **env)
    assert argv[argv.index("--load-epoch") + 1] == ("10" if env.get("VARIANT") else "100")
    (argv,) = script_calls(tmp_path, "xd_test", "dtd", "1", **env)
    assert argv[argv.index("--config-file") + 1] == f"configs/trainers/KgCoOp/{xd_config}.yaml"
    assert trailing_pairs(argv)["TRAINER.KGCOOP.W"] == weight
