"""MMA (MultiModalAdapter) against independent computations: its logits, loss and gradients (the adapters' gradients
1/s times the true ones, the inputs' the true ones), the embeddings' adapters (ADAPTER_START 0), the feature shift
of an adapter method (the block with and without its adapter), the evaluation's text features after more training
(fresh, not the authors' stale cache), the config checks, the authors' configs and scripts, and checkpoints in the
authors' layout both ways. The authors' draw order is pinned in tests/test_parity.py."""
import shutil

import clip
import pytest
import torch
import torch.nn.functional as F

import train
from restore.errors import UserError
from restore.legacy import convert_state_dict, original_layout, to_original_state_dict
from restore.methods import build_model
from test_engine_fakes import script_train_calls

S = 0.1


def close(actual, expected, rel=1e-4):
    """Equal up to float32 rounding, relative to the tensor's largest entry (a gradient scaled by 10 or 1000, or
    missing, is off by most of it)."""
    assert (actual - expected).abs().max() <= rel * expected.abs().max(), (actual - expected).abs().max()


def mma(make_cfg, classnames, clip_model, start=2, end=3, *opts):
    torch.manual_seed(0)  # the adapters' initialisation
    cfg = make_cfg("MultiModalAdapter", "TRAINER.MMADAPTER.ADAPTER_START", start, "TRAINER.MMADAPTER.ADAPTER_END",
                   end, "TRAINER.MMADAPTER.ADAPTER_SCALE", S, "TRAINER.MMADAPTER.TEXT_CTX_INIT", "a photo of a",
                   *opts)
    return build_model(cfg, classnames, clip_model)


def adapter(x, seq, shared):
    """up(shared(down(x))) written out from the modules' weights (ReLU after down and after shared)."""
    down, up, sh = seq.down[0], seq.up, shared[0]
    h = F.relu(F.linear(x, down.weight, down.bias))
    h = F.relu(F.linear(h, sh.weight, sh.bias))
    return F.linear(h, up.weight, up.bias)


def reference(model, clip_model, images, tokens):
    """The authors' forward (clip/model.py, trainers/mmadapter.py) without the gradient-scaling op, the text over
    the whole 77-token context: (logits, per block (input, output without adapter, adapter term) of each tower)."""
    def tower(x, blocks, adapters):
        trace = []
        for i, block in enumerate(blocks):
            k = str(i + 1)
            plain = block(x)
            term = S * adapter(block.ln_1(x), adapters[k], model.shared_adapter[k]) if k in adapters else None
            trace.append((x, plain, term))
            x = plain + term if term is not None else plain
        return x, trace

    v, ta, va = clip_model.visual, model.text_adapter, model.visual_adapter
    x = v.conv1(images).flatten(2).permute(0, 2, 1)
    x = torch.cat([v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], 1) + v.positional_embedding
    x = v.ln_pre(x)
    if "0" in va:
        x = x + S * adapter(x, va["0"], model.shared_adapter["0"])
    x, vtrace = tower(x.permute(1, 0, 2), v.transformer.resblocks, va)
    image = v.ln_post(x[0]) @ v.proj

    t = clip_model.token_embedding(tokens)
    if "0" in ta:
        t = t + S * adapter(t, ta["0"], model.shared_adapter["0"])
    t, ttrace = tower((t + clip_model.positional_embedding).permute(1, 0, 2), clip_model.transformer.resblocks, ta)
    t = clip_model.ln_final(t.permute(1, 0, 2))
    text = t[torch.arange(t.shape[0]), tokens.argmax(-1)] @ clip_model.text_projection
    logits = clip_model.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
    return logits, vtrace, ttrace


@pytest.mark.parametrize("start", [2, 0])
def test_logits_loss_and_gradients_equal_an_independent_computation(make_cfg, classnames, clip_model, images, start):
    model = mma(make_cfg, classnames, clip_model, start)
    tokens = clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in classnames])
    labels = torch.tensor([2, 0])
    pixels = images.clone().requires_grad_()
    total, terms = model.loss({"img": pixels, "label": labels})
    total.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(ours) == {n for n, _ in model.state_to_save().items()}  # the adapters, nothing else
    assert len(ours) == 4 * (4 - start) * 2 + 2 * (4 - start)

    model.zero_grad()
    ref_pixels = images.clone().requires_grad_()
    logits, _, _ = reference(model, clip_model, ref_pixels, tokens)
    ce = F.cross_entropy(logits, labels)
    ce.backward()
    assert terms["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    torch.testing.assert_close(model(images), logits.detach(), atol=1e-5, rtol=1e-5)
    # The gradient-scaling op: the blocks' adapters get 1/s times the true gradient, the inputs the true one; the
    # embeddings' adapters (index 0) have no such op.
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad.abs().sum() > 0, name
            factor = 1.0 if name.split(".")[1] == "0" else 1 / S
            close(ours[name], p.grad * factor)
    close(pixels.grad, ref_pixels.grad)
    assert ours["text_adapter.3.up.bias"].abs().sum() > 0 and ours["visual_adapter.3.down.0.weight"].abs().sum() > 0


def test_feature_shift_is_the_adapter_term_relative_to_the_block(make_cfg, classnames, clip_model, images):
    """"Prompt-free" for an adapter method: the block without its adapter, on the same input. Omega_l = the adapter
    term, over every vision token and the text positions up to EOT; normalised by the block's own output."""
    model = mma(make_cfg, classnames, clip_model, 2, 3)
    tokens = clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in classnames])
    with torch.no_grad():
        shift = model.feature_shift(images)
        _, vtrace, ttrace = reference(model, clip_model, images, tokens)
    eot = tokens.argmax(-1)
    valid = (torch.arange(tokens.shape[1])[:, None] <= eot[None, :]).unsqueeze(-1).float()  # [T, C, 1]
    vision = [0.0 if term is None else (term.norm(dim=(0, 2)) / plain.norm(dim=(0, 2))).mean().item()
              for _, plain, term in vtrace]
    text = [0.0 if term is None else ((term * valid).norm(dim=(0, 2)) / (plain * valid).norm(dim=(0, 2))).mean().item()
            for _, plain, term in ttrace]
    assert vision[0] == text[0] == 0.0 and min(vision[1:] + text[1:]) > 1e-3  # blocks 2-3 (1-based) adapted
    torch.testing.assert_close(shift.vision, torch.tensor(vision), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(shift.text, torch.tensor(text), atol=1e-6, rtol=1e-4)


def test_evaluation_encodes_the_class_texts_with_the_current_adapters(make_cfg, classnames, clip_model, images):
    """The authors' CustomCLIP keeps the text features of its first evaluation for good; after more training
    (or a load) its next evaluation is stale. Ours encodes them again for each evaluation."""
    model = mma(make_cfg, classnames, clip_model)
    optim = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    model.eval()
    with model.cached_text_features():
        first = model(images)
        stale_text = model._text_cache[0].clone()
    model.train()
    optim.zero_grad()
    model.loss({"img": images, "label": torch.tensor([1, 2])})[0].backward()
    optim.step()
    model.eval()
    with torch.no_grad():
        image = model.encode_image(images)[0]
        fresh = model.logits(image, model.encode_text()[0])
        stale = model.logits(image, stale_text)
    with model.cached_text_features():
        second = model(images)
    torch.testing.assert_close(second, fresh, atol=1e-6, rtol=1e-6)
    assert (second - stale).abs().max() > 1e-3 and (second - first).abs().max() > 1e-3


@pytest.mark.parametrize("opts,message", [
    (("TRAINER.MMADAPTER.ADAPTER_END", 4), "ADAPTER_START=2 and ADAPTER_END=4 must satisfy START <= END <= 3"),
    (("TRAINER.MMADAPTER.ADAPTER_START", 3, "TRAINER.MMADAPTER.ADAPTER_END", 2),
     "ADAPTER_START=3 and ADAPTER_END=2 must satisfy START <= END <= 3"),
    (("TRAINER.MMADAPTER.ADAPTER_DIM", 48), "ADAPTER_DIM=48 equals the text encoder's width"),
    (("TRAINER.MMADAPTER.ADAPTER_DIM", 64), "ADAPTER_DIM=64 equals the vision encoder's width"),
])
def test_adapters_that_do_not_fit_the_backbone_are_refused_in_one_line(make_cfg, classnames, clip_model, opts, message):
    with pytest.raises(UserError) as err:
        mma(make_cfg, classnames, clip_model, 2, 3, *opts)
    assert message in str(err.value) and "\n" not in str(err.value)


def setup(config, *opts):
    argv = ["--trainer", "MultiModalAdapter", "--config-file", f"configs/trainers/MultiModalAdapter/{config}.yaml",
            *opts]
    return train.setup_cfg(train.build_parser().parse_args(argv))


def test_the_authors_configs_and_a_non_positive_scale():
    cfg = setup("vit_b16_ep5")
    m = cfg.TRAINER.MMADAPTER
    assert (m.TEXT_CTX_INIT, m.ADAPTER_START, m.ADAPTER_END, m.ADAPTER_DIM, m.ADAPTER_SCALE, m.PREC) == \
        ("a photo of a", 5, 12, 32, 0.001, "amp")
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.WARMUP_EPOCH) == \
        (16, 0.0015, 5, 0)
    assert setup("vit_b16_ep5_imnet").DATALOADER.TRAIN_X.BATCH_SIZE == 128
    with pytest.raises(UserError, match="TRAINER.MMADAPTER.ADAPTER_SCALE is 0.0; it must be greater than 0"):
        setup("vit_b16_ep5", "TRAINER.MMADAPTER.ADAPTER_SCALE", "0.0")


def test_imagenet_runs_take_the_authors_imagenet_batch_from_any_config():
    """Their ImageNet config differs from vit_b16_ep5 in the batch only (128 vs 16): the dataset override gives it to
    every ImageNet run (the benchmark runs vit_b16_ep5 on every dataset), the command line still wins."""
    imagenet = ("--dataset-config-file", "configs/datasets/imagenet.yaml")
    pets = ("--dataset-config-file", "configs/datasets/oxford_pets.yaml")
    assert setup("vit_b16_ep5", *imagenet).DATALOADER.TRAIN_X.BATCH_SIZE == 128
    assert setup("vit_b16_ep5", *pets).DATALOADER.TRAIN_X.BATCH_SIZE == 16
    assert setup("vit_b16_ep5", *imagenet, "DATALOADER.TRAIN_X.BATCH_SIZE", "8").DATALOADER.TRAIN_X.BATCH_SIZE == 8
    ours, theirs = (flatten_yaml(f"configs/trainers/MultiModalAdapter/{c}.yaml") for c in ("vit_b16_ep5",
                                                                                          "vit_b16_ep5_imnet"))
    assert {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} == {"DATALOADER.TRAIN_X.BATCH_SIZE"}


def flatten_yaml(path):
    from restore.config import flatten, read_yaml
    return flatten(read_yaml(path, "Config file"))


def authors_state(model):
    """A state dict as the authors' trainer saves its adapter_learner: our keys plus the class buffers."""
    state = {k: v.detach().clone() + 0.25 for k, v in model.state_to_save().items()}
    return {"token_embedding": torch.randn(3, 77, 48), "tokenized_prompts": torch.zeros(3, 77, dtype=torch.long),
            **state}


def test_the_authors_checkpoints_load_and_ours_export_to_their_layout(make_cfg, classnames, clip_model):
    model = mma(make_cfg, classnames, clip_model)
    state = authors_state(model)
    assert original_layout({"state_dict": state, "epoch": 5}) == "MMA"
    converted = convert_state_dict("MultiModalAdapter", state)
    assert set(converted) == set(model.state_to_save())  # the class buffers dropped, every name kept
    model.load_state(converted)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in converted)
    exported = to_original_state_dict("MultiModalAdapter", model.state_to_save())
    assert set(exported) == set(state) - {"token_embedding", "tokenized_prompts"}
    assert original_layout(exported) is None  # the authors load it with strict=False, rebuilding the buffers


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@needs_bash
@pytest.mark.parametrize("script,dataset,config", [
    ("base2new_train", "oxford_pets", "vit_b16_ep5"), ("base2new_train", "imagenet", "vit_b16_ep5_imnet"),
    ("xd_train", "imagenet", "vit_b16_ep5_imnet"), ("xd_test", "dtd", "vit_b16_ep5_imnet")])
def test_scripts_use_the_authors_configs(tmp_path, script, dataset, config):
    (argv,) = script_train_calls(tmp_path, f"mma/{script}", dataset, "1")
    assert argv[argv.index("--trainer") + 1] == "MultiModalAdapter"
    assert argv[argv.index("--config-file") + 1] == f"configs/trainers/MultiModalAdapter/{config}.yaml"
    if script == "xd_test":
        assert argv[argv.index("--load-epoch") + 1] == "5"
