"""TCP against independent computations: its loss, gradients and logits (the frozen CLIP's modules, conftest's
`ref`: the class tokens written into the hidden state entering the insertion block), its two prompt tables per
dataset, the feature shift at the insertion block by hand, the class-token extension point, the insertion block
fitted to small CLIPs, the authors' config and command line, the optimizer's eps, the per-dataset epochs, and
checkpoints in the authors' layout both ways. The random draws of the authors' order are pinned in
tests/test_parity.py."""
import shutil

import clip
import pytest
import torch
import torch.nn.functional as F

import train
from restore.engine.optim import build_optimizer
from restore.errors import UserError
from restore.legacy import convert_state_dict, original_layout, to_original_state_dict
from restore.methods import build_model
from restore.methods.class_tokens import with_class_tokens
from restore.smoke import fit_cfg_to_backbone
from test_engine_fakes import script_train_calls, trailing_pairs


def tcp(make_cfg, classnames, clip_model, *opts, dataset="OxfordPets"):
    cfg = make_cfg("TCP", "DATASET.NAME", dataset, *opts)
    return build_model(cfg, classnames, clip_model)


def meta_net_by_hand(model, hand):
    """linear1 -> QuickGELU -> linear2 written out, reshaped to [C, n, W]."""
    net = model.prompt_learner.meta_net
    h = hand @ net.linear1.weight.t() + net.linear1.bias
    h = h * torch.sigmoid(1.702 * h)
    out = h @ net.linear2.weight.t() + net.linear2.bias
    return out.reshape(hand.shape[0], model.n_slots, -1)


def test_loss_gradients_and_logits_equal_an_independent_computation(make_cfg, classnames, clip_model, images,
                                                                     ref):
    """CE + 8 * (1 - mean_c cos(w_c, w_c^clip)), the context in slots 1..n of blocks 0..L-1 and the class tokens
    in the slots of the hidden state entering block L (the tiny CLIP's 3 blocks, L = 2), the gradients of the
    context and of every meta_net tensor, the evaluation logits."""
    model = tcp(make_cfg, classnames, clip_model)
    assert (model.insert_layer, model.n_slots, model.kg_weight) == (2, 3, 8.0)
    ref.randomize_(model, std=0.05)
    labels = torch.tensor([2, 0])
    total, terms = model.loss({"img": images, "label": labels})
    total.backward()
    summary = {k: float(v.detach()) for k, v in terms.items()}

    names = [c.replace("_", " ") for c in classnames]
    with torch.no_grad():
        hand = F.normalize(clip_model.encode_text(clip.tokenize([f"a photo of a {c}, a type of pet." for c in names])),
                           dim=-1)
    leaves = {k: p.detach().clone().requires_grad_() for k, p in model.prompt_learner.named_parameters()}
    h = hand @ leaves["meta_net.linear1.weight"].t() + leaves["meta_net.linear1.bias"]
    h = h * torch.sigmoid(1.702 * h)
    tokens = (h @ leaves["meta_net.linear2.weight"].t() + leaves["meta_net.linear2.bias"]).reshape(3, 3, -1)
    ids = clip.tokenize([f"X X X {c}, a type of pet." for c in names])
    text = ref.text_forward(clip_model, ids, [leaves["ctx"], None, tokens], 3).features
    image = ref.image_forward(clip_model, images).features
    logits = ref.logits(clip_model, image, text)
    ce = F.cross_entropy(logits, labels)
    kg = 1 - (F.normalize(text, dim=-1) * hand).sum(-1).mean()
    (ce + 8.0 * kg).backward()

    assert 0.05 < kg.item() < 1.5
    assert summary["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert summary["kg"] == pytest.approx(8.0 * kg.item(), rel=1e-5)
    for k, p in model.prompt_learner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, k
        torch.testing.assert_close(p.grad, leaves[k].grad, atol=1e-6, rtol=1e-4, msg=k)
    torch.testing.assert_close(model.hand_features, hand, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.class_tokens(), meta_net_by_hand(model, hand), atol=1e-6, rtol=1e-5)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), logits.detach(), atol=1e-5, rtol=1e-5)
        with model.cached_text_features():
            torch.testing.assert_close(model(images), logits.detach(), atol=1e-5, rtol=1e-5)
        # The class tokens act: other meta_net values give other logits.
        bias = model.prompt_learner.meta_net.linear2.bias
        bias.add_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(0)))
        assert (model(images) - logits).abs().max() > 1e-3


def test_class_tokens_replace_the_slots_of_the_insertion_block_only(make_cfg, classnames, clip_model, ref):
    """The hidden state entering block L holds the class tokens at positions 1..n, block 0 the context (plus
    the positional embedding); the other positions are CoOp's."""
    model = tcp(make_cfg, classnames, clip_model)
    ref.randomize_(model, std=0.05)
    with ref.BlockInputs(clip_model.transformer.resblocks) as seen, torch.no_grad():
        model.encode_text()
    x2 = seen.inputs[2][0]  # LND, up to the last EOT
    torch.testing.assert_close(x2[1:4].permute(1, 0, 2), model.class_tokens())
    x0 = seen.inputs[0][0]
    pos = clip_model.positional_embedding[1:4]
    torch.testing.assert_close(x0[1:4].permute(1, 0, 2), (model.prompt_learner.ctx + pos).expand(3, -1, -1))
    assert not torch.allclose(seen.inputs[1][0][1:4].permute(1, 0, 2), model.class_tokens())


def test_with_class_tokens_is_one_more_prompt_entry():
    ctx, tokens = torch.zeros(2, 8), torch.ones(5, 2, 8)
    out = with_class_tokens([ctx], 3, tokens)
    assert len(out) == 4 and out[0] is ctx and out[1] is None and out[2] is None and out[3] is tokens
    deep = [ctx, torch.zeros(2, 8), torch.zeros(2, 8)]
    assert with_class_tokens(deep, 1, tokens)[1] is tokens and deep[1] is not tokens  # replaced, a new list
    with pytest.raises(ValueError, match=r"\[C, n, W\]"):
        with_class_tokens([ctx], 2, torch.ones(2, 8))
    with pytest.raises(ValueError, match="layer must be >= 1"):
        with_class_tokens([ctx], 0, tokens)


def test_feature_shift_at_the_insertion_block_by_hand(make_cfg, classnames, clip_model, images, ref):
    """The trace drops the slots in every block: blocks 0..L-1 measure the context, block L on measures the
    class tokens (block L on the slot-free input vs the prompted output at the non-slot positions); no
    vision prompts, no vision shift."""
    model = tcp(make_cfg, classnames, clip_model)
    ref.randomize_(model, std=0.05)
    names = [c.replace("_", " ") for c in classnames]
    ids = clip.tokenize([f"X X X {c}, a type of pet." for c in names])
    with torch.no_grad():
        fwd = ref.text_forward(clip_model, ids, [model.prompt_learner.ctx, None, model.class_tokens()], 3)
        want = ref.text_shift(clip_model, fwd, 3).float()
        shift = model.feature_shift(images)
        x, keep = fwd.inputs[2], [0] + list(range(4, fwd.inputs[2].shape[0]))
        block = clip_model.transformer.resblocks[2]
        y, plain = block(x)[keep], ref.causal_block(block, len(keep))(x[keep])
        by_hand = torch.stack([ref.magnitude(y[:int(fwd.eot[i]) - 2, i] - plain[:int(fwd.eot[i]) - 2, i],
                                             plain[:int(fwd.eot[i]) - 2, i], "relative")
                               for i in range(3)]).mean()
    torch.testing.assert_close(shift.text, want, atol=1e-5, rtol=1e-4)
    assert shift.text[2].item() == pytest.approx(by_hand.item(), rel=1e-4)
    assert torch.equal(shift.vision, torch.zeros(3))


@pytest.mark.parametrize("dataset,hand,learned", [
    ("OxfordPets", "a photo of a {}, a type of pet.", "X X X {}, a type of pet."),
    ("FGVCAircraft", "a photo of an aircraft {}.", "X X X {}, a type of aircraft."),  # not KgCoOp's
    ("Food101", "a photo of a {}, a type of food.", "X X X {}, a type of food."),
    ("DescribableTextures", "a photo of a {}, a type of texture.", "X X X {} texture."),
    ("StanfordCars", "a photo of a {}.", "X X X {}, a type of car"),  # no period, as theirs
    ("UCF101", "a photo of a person doing {}.", "X X X person doing {}."),  # its slots: "a photo of a"
    ("ImageNetR", "a photo of a {}.", "X X X {}."),
    ("NoSuchDataset", "a photo of a {}.", "X X X {}."),  # the authors: KeyError
])
def test_hand_and_learnable_prompts_per_dataset(make_cfg, classnames, clip_model, dataset, hand, learned):
    model = tcp(make_cfg, classnames, clip_model, dataset=dataset)
    names = [c.replace("_", " ") for c in classnames]
    assert model.hand_template == hand
    ids = clip.tokenize([learned.format(c) for c in names])
    with torch.no_grad():
        want = F.normalize(clip_model.encode_text(clip.tokenize([hand.format(c) for c in names])), dim=-1)
        assert torch.equal(model.token_embeds, clip_model.token_embedding(ids))
    assert torch.equal(model.eot, ids.argmax(-1))
    torch.testing.assert_close(model.hand_features, want, atol=1e-6, rtol=1e-5)
    assert set(model.state_to_save()) == {"prompt_learner.ctx", *(f"prompt_learner.meta_net.linear{i}.{t}"
                                                                 for i in (1, 2) for t in ("weight", "bias"))}


def test_new_classes_get_their_own_class_tokens(make_cfg, classnames, new_classnames, clip_model, images):
    """Nothing learned is class-specific: a base-class state evaluates on new classes, each with tokens made
    from its own name."""
    base = tcp(make_cfg, classnames, clip_model)
    new = tcp(make_cfg, new_classnames, clip_model)
    new.load_state(base.state_to_save())
    assert new.class_tokens().shape[0] == 4 and new(images).shape == (2, 4)


def test_insertion_block_fits_small_clips_as_prompt_depths_do(make_cfg, classnames, clip_model):
    """The authors' block 8 is lowered to the last block of a smaller CLIP by the smoke fitting (printed by
    train.py), and refused in one line when a model is built with it."""
    cfg = make_cfg("TCP", "INPUT.SIZE", (224, 224), "TRAINER.TCP.INSERT_LAYER", 8)
    changes = fit_cfg_to_backbone(cfg, clip_model)
    assert "TRAINER.TCP.INSERT_LAYER: 8 -> 2" in changes and "TRAINER.MAPLE.PROMPT_DEPTH: 9 -> 3" in changes
    assert cfg.TRAINER.TCP.INSERT_LAYER == 2 and fit_cfg_to_backbone(cfg, clip_model) == []
    cfg = make_cfg("TCP", "TRAINER.TCP.INSERT_LAYER", 3)
    with pytest.raises(UserError, match=r"TRAINER.TCP.INSERT_LAYER=3 must be a text block between 1 and 2"):
        build_model(cfg, classnames, clip_model)


def setup(*argv):
    return train.setup_cfg(train.build_parser().parse_args(["--trainer", "TCP", *argv]))


def test_the_authors_config_and_command_line_run_unchanged():
    """Their yaml (CoOp's node, `CTX_INIT: False`) with their script's keys and the harness's CoCoOp PREC; Adam's
    eps 1e-3 reaches the optimizer; ImageNet and SUN397 train 25 epochs unless the command line says otherwise."""
    config = ("--config-file", "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml")
    cfg = setup(*config, "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0",
                "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COCOOP.PREC", "fp32")
    t = cfg.TRAINER.TCP
    assert (t.CTX_INIT, t.N_CTX, t.CSC, t.W, t.PREC, t.INSERT_LAYER, t.KG_WEIGHT) == ("", 4, False, 1.0, "fp32", 8, 8.0)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == \
        (32, "adam", 0.002, 50)
    def adam(optim_cfg):
        return build_optimizer(None, [torch.nn.Parameter(torch.zeros(2))], optim_cfg).defaults
    assert adam(cfg.OPTIM)["eps"] == 1e-3 and adam(cfg.OPTIM)["weight_decay"] == 5e-4
    assert adam(train.default_cfg("native").OPTIM)["eps"] == 1e-8  # torch's and Dassl's, for every other config
    assert setup(*config, "TRAINER.COOP.CTX_INIT", "True").TRAINER.TCP.CTX_INIT == "a photo of a"
    for name in ("ImageNet", "SUN397"):
        cfg = setup(*config, "DATASET.NAME", name)
        assert cfg.OPTIM.MAX_EPOCH == 25 and list(cfg.DATASET_OVERRIDES) == ["OPTIM.MAX_EPOCH 25"]
        assert setup(*config, "DATASET.NAME", name, "OPTIM.MAX_EPOCH", "2").OPTIM.MAX_EPOCH == 2  # ours: the CLI wins
    assert setup(*config, "DATASET.NAME", "Caltech101").OPTIM.MAX_EPOCH == 50
    with pytest.raises(UserError, match=r"OPTIM.ADAM_EPS is 0.0; it must be greater than 0"):
        setup(*config, "OPTIM.ADAM_EPS", "0.0")
    cfg = setup("--config-file", "configs/trainers/TCP/testbed.yaml")
    assert (cfg.TRAINER.TCP.INSERT_LAYER, cfg.OPTIM.ADAM_EPS) == (3, 1e-3)


def authors_state(n_cls=3, n_ctx=3, width=48, dim=32, suffix=72):
    """A state dict as the authors' TCP saves its prompt learner (fp16 under PREC fp16)."""
    g = torch.Generator().manual_seed(0)
    return {"ctx": torch.randn(n_ctx, width, generator=g).half(),
            "meta_net.linear1.weight": torch.randn(dim // 4, dim, generator=g).half(),
            "meta_net.linear1.bias": torch.randn(dim // 4, generator=g).half(),
            "meta_net.linear2.weight": torch.randn(n_ctx * width, dim // 4, generator=g).half(),
            "meta_net.linear2.bias": torch.randn(n_ctx * width, generator=g).half(),
            "token_prefix": torch.randn(n_cls, 1, width, generator=g).half(),
            "token_suffix": torch.randn(n_cls, suffix, width, generator=g).half()}


def test_the_authors_checkpoints_load_and_ours_export_to_their_layout(make_cfg, classnames, clip_model):
    state = authors_state()
    assert original_layout({"state_dict": state, "epoch": 50}) == "CoOp"
    model = tcp(make_cfg, classnames, clip_model)
    model.load_state(convert_state_dict("TCP", state))
    for k, v in state.items():
        if not k.startswith("token_"):
            assert torch.equal(model.state_to_save()[f"prompt_learner.{k}"], v.float()), k
    exported = to_original_state_dict("TCP", model.state_to_save())
    assert set(exported) == {k for k in state if not k.startswith("token_")}
    other = tcp(make_cfg, classnames, clip_model)
    other.load_state(convert_state_dict("TCP", exported))
    for k, v in other.state_to_save().items():
        assert torch.equal(v, model.state_to_save()[k]), k


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def script_calls(tmp_path, script, *args):
    """The train.py argument lists scripts/tcp/<script>.sh runs (test_engine_fakes.script_train_calls)."""
    return script_train_calls(tmp_path, f"tcp/{script}", *args, unset=("LOADEP",))


@needs_bash
def test_scripts_pass_the_authors_settings(tmp_path):
    (argv,) = script_calls(tmp_path, "base2new_train", "oxford_pets", "1", "OPTIM.MAX_EPOCH", "3")
    assert argv[argv.index("--config-file") + 1] == "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml"
    assert argv[argv.index("--output-dir") + 1].endswith(
        "train_base/oxford_pets/shots_16/TCP/vit_b16_ep100_ctxv1/seed1")
    opts = trailing_pairs(argv)
    assert {k: opts[k] for k in ("TRAINER.TCP.N_CTX", "TRAINER.TCP.CSC", "TRAINER.TCP.W",
                                 "TRAINER.TCP.CLASS_TOKEN_POSITION", "DATASET.SUBSAMPLE_CLASSES")} == \
        {"TRAINER.TCP.N_CTX": "4", "TRAINER.TCP.CSC": "False", "TRAINER.TCP.W": "1.0",
         "TRAINER.TCP.CLASS_TOKEN_POSITION": "end", "DATASET.SUBSAMPLE_CLASSES": "base"}
    assert list(opts)[-1] == "OPTIM.MAX_EPOCH"
    (argv,) = script_calls(tmp_path, "base2new_test", "oxford_pets", "1")
    assert argv[argv.index("--load-epoch") + 1] == "50"
    (argv,) = script_calls(tmp_path, "xd_train", "imagenet", "1")
    assert argv[argv.index("--config-file") + 1] == "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml"
    # ImageNet and SUN397 models train 25 epochs (the spec's override): the test scripts load that epoch.
    for script, dataset, epoch in (("base2new_test", "sun397", "25"), ("base2new_test", "imagenet", "25"),
                                   ("xd_test", "dtd", "25"), ("xd_test", "imagenet_a", "25")):
        (argv,) = script_calls(tmp_path, script, dataset, "1")
        assert argv[argv.index("--load-epoch") + 1] == epoch, (script, dataset)
    (argv,) = script_calls(tmp_path, "base2new_test", "sun397", "1", "OPTIM.MAX_EPOCH", "7")
    assert argv[argv.index("--load-epoch") + 1] == "7"
    (argv,) = script_calls(tmp_path, "xd_test", "shapes", "1")  # source: the testbed's objects
    assert argv[argv.index("--load-epoch") + 1] == "30"
