"""CoPrompt against independent computations: its loss and gradients (the frozen CLIP's modules, conftest's `ref`,
hand-written adapters), the description index drawn with Python's `random`, the draws of the authors' build order
(recorded from their code), the descriptions file's checks and cache, the authors' per-dataset table and spellings,
Dassl's RandAugment reproduced, and checkpoints in the authors' layout both ways."""
import json
import os
import random
import shutil
import subprocess

import clip
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import restore
import train
from restore.backbone import freeze, replay_openai_init
from restore.data.randaugment import OPS, RandAugment, solarize_add
from restore.engine.seed import set_random_seed
from restore.legacy import convert_state_dict, original_layout, to_original_state_dict
from restore.methods import build_model
from restore.methods.coprompt import descriptions as D
from test_engine_fakes import ROOT, script_train_calls, trailing_pairs

DESCRIPTIONS = {"cat": ["a small furry pet.", "an animal that meows on the sofa."],
                "golden retriever": ["a big friendly dog.", "a dog with golden fur."],
                "sports car": ["a fast car.", "a low red car with two doors."]}


def write(path, table):
    path.write_text(json.dumps(table))
    return str(path)


def coprompt(make_cfg, classnames, clip_model, *opts):
    cfg = make_cfg("CoPrompt", *opts)
    return build_model(cfg, classnames, clip_model)


def adapter(x, w1, w2):
    """ReLU(W2 ReLU(W1 x)), the authors' Adapter, by hand."""
    return torch.relu(torch.relu(x @ w1.t()) @ w2.t())


def test_loss_and_gradients_equal_an_independent_computation(make_cfg, classnames, clip_model, images, ref,
                                                              tmp_path):
    """CE + W * [(1 - mean cos(text, description k)) + (1 - mean cos(image, frozen CLIP on view 2))], the adapted
    features 0.9 f + 0.1 A(f) and 0.8 f + 0.2 A(f), k = random.randint(0, n - 1), one draw per step."""
    path = write(tmp_path / "d.json", DESCRIPTIONS)
    model = coprompt(make_cfg, classnames, clip_model, "TRAINER.COPROMPT.W", 2.5,
                     "TRAINER.COPROMPT.DESCRIPTIONS", path)
    ref.randomize_(model, std=0.05)
    view2 = images.flip(-1) * 0.7
    labels = torch.tensor([2, 0])
    random.seed(7)
    expected_k = random.Random(7).randint(0, 1)
    total, terms = model.loss({"img": [images, view2], "label": labels})
    after = random.getstate()
    total.backward()

    random.seed(7)
    random.randint(0, 1)
    assert random.getstate() == after  # exactly one randint drawn per step
    pl = model.prompt_learner
    ctx = pl.ctx.detach().clone().requires_grad_()
    deep = pl.compound_prompts_text[0].detach().clone().requires_grad_()
    w_img = [p.detach().clone().requires_grad_() for p in (model.adapter_image.fc[0].weight,
                                                           model.adapter_image.fc[2].weight)]
    w_txt = [p.detach().clone().requires_grad_() for p in (model.adapter_text.fc[0].weight,
                                                           model.adapter_text.fc[2].weight)]
    names = [c.replace("_", " ") for c in classnames]
    # MaPLe's prompts "a photo <class>." (N_CTX 2 of "a photo of a": "of a" stays in the text)
    tokens = clip.tokenize([f"a photo of a {c}." for c in names])
    text = ref.text_forward(clip_model, tokens, [ctx, deep], 2).features
    vision = [pl.proj(ctx), pl.compound_prompt_projections[0](deep)]
    image = ref.image_forward(clip_model, images, vision).features
    image = 0.1 * adapter(image, *w_img) + 0.9 * image
    text = 0.2 * adapter(text, *w_txt) + 0.8 * text
    ce = F.cross_entropy(ref.logits(clip_model, image, text), labels)
    with torch.no_grad():
        target = F.normalize(clip_model.encode_text(clip.tokenize([DESCRIPTIONS[c][expected_k] for c in names])),
                             dim=-1)
        frozen = F.normalize(clip_model.encode_image(view2), dim=-1)
    l_t = 1 - (F.normalize(text, dim=-1) * target).sum(-1).mean()
    l_v = 1 - (F.normalize(image, dim=-1) * frozen).sum(-1).mean()
    (ce + 2.5 * (l_t + l_v)).backward()

    assert 0.01 < l_t.item() < 1.9 and 0.01 < l_v.item() < 1.9
    assert float(terms["ce"]) == pytest.approx(ce.item(), rel=1e-5)
    assert float(terms["cons_text"]) == pytest.approx(l_t.item(), rel=1e-5)
    assert float(terms["cons_image"]) == pytest.approx(l_v.item(), rel=1e-5)
    assert float(terms["consistency"]) == pytest.approx(2.5 * (l_t + l_v).item(), rel=1e-5)
    assert float(total) == pytest.approx((ce + 2.5 * (l_t + l_v)).item(), rel=1e-5)
    for got, want in ((pl.ctx, ctx), (pl.compound_prompts_text[0], deep),
                      (model.adapter_image.fc[0].weight, w_img[0]), (model.adapter_image.fc[2].weight, w_img[1]),
                      (model.adapter_text.fc[0].weight, w_txt[0]), (model.adapter_text.fc[2].weight, w_txt[1])):
        torch.testing.assert_close(got.grad, want.grad, atol=1e-6, rtol=1e-4)
    # evaluation: the adapted logits, with or without the cached class texts
    model.eval()
    with torch.no_grad():
        want = ref.logits(clip_model, image, text)
        torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)
        with model.cached_text_features():
            torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)


def test_one_view_and_mse(make_cfg, classnames, clip_model, images, tmp_path):
    """With K_TRANSFORMS 1 the frozen encoder sees the only view; DISTILL mse: mean squared errors of the
    normalised features."""
    path = write(tmp_path / "d.json", DESCRIPTIONS)
    model = coprompt(make_cfg, classnames, clip_model, "TRAINER.COPROMPT.DISTILL", "mse",
                     "TRAINER.COPROMPT.DESCRIPTIONS", path, "TRAINER.COPROMPT.W", 1.0)
    labels = torch.tensor([1, 0])
    random.seed(3)
    k = random.Random(3).randint(0, 1)
    _, terms = model.loss({"img": images, "label": labels})
    enc = model.encode(images)
    with torch.no_grad():
        frozen = F.normalize(clip_model.encode_image(images), dim=-1)
        target = model.description_features[k]
    assert float(terms["cons_image"]) == pytest.approx(F.mse_loss(F.normalize(enc.image, dim=-1), frozen).item(),
                                                       rel=1e-5)
    assert float(terms["cons_text"]) == pytest.approx(F.mse_loss(F.normalize(enc.text, dim=-1), target).item(),
                                                      rel=1e-5)


# The authors' build, recorded with /work/ref/harness/i28c/record_parity.py (their trainers/coprompt.py on upstream
# Dassl, torch 2.14.1, CPU fp32) on tests/test_parity.py's OpenAI-layout CLIP, N_CTX 2 "a photo of a", depth 2:
# {name: (first three values, float64 sum)}, the next two torch.rand values, a RandomSampler's first batch.
RECORDED = {
    "prompt_learner.ctx": ([0.015655517578125, 0.033721923828125, -0.0017223358154296875], -0.3220154643058777),
    "prompt_learner.proj.weight": ([-0.03579682111740112, 0.031824447214603424, 0.007978709414601326],
                                   -25.900157682620033),
    "prompt_learner.proj.bias": ([0.01937904767692089, 0.036902304738759995, -0.00044978063669987023],
                                 -0.22252876010315958),
    "prompt_learner.compound_prompts_text.0": ([-0.0779319778084755, 0.0214326623827219, 0.0133528932929039],
                                               0.3561627442250028),
    "prompt_learner.compound_prompt_projections.0.weight": ([0.015602805651724339, -0.02965829335153103,
                                                             0.023596955463290215], -11.500775991470956),
    "prompt_learner.compound_prompt_projections.0.bias": ([-0.00948392041027546, 0.0038452940061688423,
                                                           0.037293560802936554], 0.589594106725599),
    "adapter_image.fc.0.weight": ([-0.041082583367824554, 0.03190721943974495, 0.00670554768294096],
                                  2.114349321740974),
    "adapter_image.fc.2.weight": ([0.006903074216097593, 0.05957959592342377, 0.05361197143793106],
                                  4.2916852401588415),
    "adapter_text.fc.0.weight": ([0.005179979372769594, 0.04282311350107193, -0.03890575096011162],
                                 8.538610992731066),
    "adapter_text.fc.2.weight": ([0.004681640304625034, 0.07246133685112, 0.0449383370578289], 9.588408930542641),
}
RECORDED_NEXT, RECORDED_BATCH, RECORDED_DESCRIPTIONS_SUM = [0.3752403259277344, 0.6905745267868042], [1, 3, 19, 12], \
    4.59449349373017
PARITY_CLASSES = ["airplane", "butterfly", "camera", "dolphin", "elephant"]


@pytest.mark.skipif(torch.__version__.split("+")[0] != "2.14.1", reason="values recorded with torch 2.14.1")
def test_build_draws_equal_the_authors(tmp_path):
    """Seed 1, the CLIP's build, the frozen copy's build, MaPLe's prompts, then the image and the text adapter:
    every tensor and the next draws as the authors' code made them; description features to float order."""
    from test_parity import openai_state
    state = openai_state.__wrapped__()
    table = {c: [f"a photo of a {c}.", f"a {c} seen from afar."] for c in PARITY_CLASSES}
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME, cfg.DATASET.NAME = "CoPrompt", "Caltech101"
    cfg.merge_from_list(["INPUT.SIZE", (32, 32), "TRAINER.COPROMPT.PROMPT_DEPTH", 2, "TRAINER.COPROMPT.PREC", "fp32",
                         "TRAINER.COPROMPT.DESCRIPTIONS", write(tmp_path / "d.json", table)])
    for _ in range(2):
        set_random_seed(1)
        clip_model = replay_openai_init(state)
        clip_model.load_state_dict(state)
        model = build_model(cfg, PARITY_CLASSES, freeze(clip_model))
        if _ == 0:
            saved = model.state_to_save()
            for name, (first, total) in RECORDED.items():
                assert saved[name].flatten()[:3].tolist() == first, name
                assert saved[name].double().sum().item() == pytest.approx(total, rel=1e-12, abs=1e-12), name
            assert torch.rand(2).tolist() == RECORDED_NEXT
            assert model.description_features.shape == (2, 5, 512)
            assert model.description_features.double().sum().item() == pytest.approx(RECORDED_DESCRIPTIONS_SUM,
                                                                                      abs=1e-5)
    assert list(iter(torch.utils.data.RandomSampler(range(20))))[:4] == RECORDED_BATCH


# ------------------------------------------------------------------------------ descriptions
@pytest.mark.parametrize("table,message", [
    ({"cat": ["a."], "golden retriever": ["b."]}, r"d\.json has no descriptions for class 'sports car'\.$"),
    ({"cat": ["a.", "b."], "golden retriever": ["c."], "sports car": ["d.", "e."]},
     r"d\.json: class 'golden retriever' has 1 descriptions, class 'cat' 2: every class needs the same number"),
    ({"Cat": ["a."], "golden retriever": ["b."], "sports car": ["c."]},
     r"no descriptions for class 'cat' \(the file has 'Cat': names are matched exactly\)"),
    ({"cat": "a cat.", "golden retriever": ["b."], "sports car": ["c."]}, r"class 'cat' must map to a list of"),
    ({"cat": [], "golden retriever": ["b."], "sports car": ["c."]}, r"class 'cat' has no descriptions"),
    ({"cat": ["a."], "golden retriever": [" ".join(["dog"] * 80)], "sports car": ["c."]},
     r"a description of class 'golden retriever' takes 82 tokens, more than the text encoder's 77"),
    (["cat", "dog"], r"holds a JSON list, not an object"),
])
def test_descriptions_file_checks(tmp_path, classnames, table, message):
    path = write(tmp_path / "d.json", table)
    with pytest.raises(D.DescriptionsError, match=message) as err:
        D.check_descriptions(path, classnames)
    assert "\n" not in str(err.value) and str(tmp_path / "d.json") in str(err.value)


def test_descriptions_inputs(tmp_path, classnames, make_cfg, clip_model):
    bad = tmp_path / "bad.json"
    bad.write_text("{'cat': ['a.']}")
    with pytest.raises(D.DescriptionsError, match=r"bad\.json is not JSON"):
        D.check_descriptions(str(bad), classnames)
    with pytest.raises(D.DescriptionsError, match="TRAINER.COPROMPT.DESCRIPTIONS is empty"):
        D.check_descriptions("", classnames, "OxfordPets")
    with pytest.raises(D.DescriptionsError, match="is 'captions'"):  # the real-data plan refuses it too
        D.check_descriptions("captions", classnames, "OxfordPets")
    with pytest.raises(D.DescriptionsError, match=r"missing\.json \(TRAINER.COPROMPT.DESCRIPTIONS\) does not exist"):
        D.check_descriptions(str(tmp_path / "missing.json"), classnames)
    # a folder of the authors' files: <folder>/<their name>_prompt.json
    write(tmp_path / "oxford_pets_prompt.json", DESCRIPTIONS)
    assert D.check_descriptions(str(tmp_path), classnames, "OxfordPets") == 2
    with pytest.raises(D.DescriptionsError, match="no descriptions file for TestbedShapes"):
        D.check_descriptions(str(tmp_path), classnames, "TestbedShapes")
    # the model: the same checks at build; without descriptions it evaluates but refuses to train
    with pytest.raises(D.DescriptionsError, match=r"bad\.json is not JSON"):
        coprompt(make_cfg, classnames, clip_model, "TRAINER.COPROMPT.DESCRIPTIONS", str(bad))
    model = coprompt(make_cfg, classnames, clip_model, "TRAINER.COPROMPT.DESCRIPTIONS", "")
    images = torch.zeros(1, 3, 32, 32)
    assert model(images).shape == (1, 3)
    with pytest.raises(restore.errors.UserError, match="set TRAINER.COPROMPT.DESCRIPTIONS"):
        model.loss({"img": images, "label": torch.tensor([0])})


def test_descriptions_cache_under_the_output_folder(tmp_path, classnames, make_cfg, clip_model, monkeypatch):
    """The features are cached in OUTPUT_DIR (never the current directory), keyed by the file, classes and
    backbone; a changed file is re-encoded."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    path = write(tmp_path / "d.json", DESCRIPTIONS)
    out = tmp_path / "run"
    opts = ("TRAINER.COPROMPT.DESCRIPTIONS", path, "OUTPUT_DIR", str(out))
    coprompt(make_cfg, classnames, clip_model, *opts)  # outside a run (no such folder): nothing written
    assert not out.exists() and os.listdir(cwd) == []
    out.mkdir()
    first = coprompt(make_cfg, classnames, clip_model, *opts).description_features
    assert os.listdir(out) == ["coprompt_descriptions.pt"] and os.listdir(cwd) == []
    with torch.no_grad():
        want = F.normalize(clip_model.encode_text(clip.tokenize([DESCRIPTIONS[c.replace("_", " ")][1]
                                                                 for c in classnames])), dim=-1)
    torch.testing.assert_close(first[1], want, atol=1e-6, rtol=1e-5)

    def fail(*_):
        raise AssertionError("encoded again")
    monkeypatch.setattr(D, "encode_descriptions", fail)
    assert torch.equal(coprompt(make_cfg, classnames, clip_model, *opts).description_features, first)
    write(tmp_path / "d.json", {**DESCRIPTIONS, "cat": ["a tabby.", "a kitten."]})
    with pytest.raises(AssertionError, match="encoded again"):
        coprompt(make_cfg, classnames, clip_model, *opts)


def test_testbed_descriptions_need_no_file(make_cfg, clip_model):
    """On a testbed dataset the descriptions are the caption generator's templates (18 per class)."""
    from restore.testbed.captions import TEMPLATES
    names = ["red circle", "blue star"]
    model = coprompt(make_cfg, names, clip_model, "DATASET.NAME", "TestbedShapes",
                     "TRAINER.COPROMPT.DESCRIPTIONS", "")
    texts = [t.format("blue star") for ts in TEMPLATES.values() for t in ts]
    assert model.description_features.shape[:2] == (len(texts), 2) == (18, 2)
    with torch.no_grad():
        want = F.normalize(clip_model.encode_text(clip.tokenize(texts)), dim=-1)
    torch.testing.assert_close(model.description_features[:, 1], want, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------- config and checkpoints
def setup(*argv):
    args = train.build_parser().parse_args(["--trainer", "CoPrompt", "--config-file",
                                            f"{ROOT}/configs/trainers/CoPrompt/coprompt.yaml", *argv])
    return train.setup_cfg(args)


@pytest.mark.parametrize("dataset,depth,n_ctx,weight,epochs", [
    ("dtd", 12, 2, 8.0, 8), ("oxford_pets", 12, 2, 0.1, 8), ("food101", 9, 4, 0.5, 5),
    ("imagenet_sketch", 9, 2, 1.0, 8),  # no row (the authors' code crashes): the yaml's values
])
def test_the_authors_config_and_per_dataset_table(dataset, depth, n_ctx, weight, epochs):
    cfg = setup("--dataset-config-file", f"{ROOT}/configs/datasets/{dataset}.yaml")
    c = cfg.TRAINER.COPROMPT
    assert (c.PROMPT_DEPTH, c.N_CTX, c.W, cfg.OPTIM.MAX_EPOCH) == (depth, n_ctx, weight, epochs)
    assert (c.CTX_INIT, c.PREC, c.DISTILL, cfg.DATALOADER.K_TRANSFORMS) == ("a photo of a", "fp16", "cosine", 2)
    assert list(cfg.INPUT.TRANSFORMS) == ["randaugment", "normalize"] and cfg.OPTIM.LR == 0.0035


def test_the_command_line_beats_the_table_in_the_authors_spelling():
    """Ours: yaml < table < command line (the authors' table beats their command line)."""
    cfg = setup("--dataset-config-file", f"{ROOT}/configs/datasets/dtd.yaml", "TRAINER.W", "2.0",
                "TRAINER.CoPrompt.PROMPT_DEPTH", "3", "TRAINER.DISTILL", "mse")
    c = cfg.TRAINER.COPROMPT
    assert (c.W, c.PROMPT_DEPTH, c.N_CTX, c.DISTILL) == (2.0, 3, 2, "mse")
    assert list(cfg.DATASET_OVERRIDES) == ["TRAINER.COPROMPT.N_CTX 2"]


def test_checkpoints_in_the_authors_layout_both_ways(make_cfg, classnames, new_classnames, clip_model, ref, images,
                                                     tmp_path):
    """Theirs -> ours: the whole CustomCLIP (the frozen CLIP twice, fp16 prompts and adapters, class buffers);
    ours -> theirs: the learned tensors under the same names."""
    opts = ("TRAINER.COPROMPT.DESCRIPTIONS", "captions")
    model = ref.randomize_(coprompt(make_cfg, classnames, clip_model, *opts), std=0.05)
    ours = model.state_to_save()
    assert set(ours) == {k for k, p in model.named_parameters() if p.requires_grad}
    frozen = {k: v.half() for k, v in clip_model.state_dict().items()}
    theirs = {**{k: v.half() for k, v in ours.items()},
              "prompt_learner.token_prefix": torch.zeros(3, 1, 48), "prompt_learner.token_suffix": torch.zeros(3, 74, 48),
              **{f"image_encoder.{k[len('visual.'):]}": v for k, v in frozen.items() if k.startswith("visual.")},
              "text_encoder.positional_embedding": frozen["positional_embedding"], "logit_scale": frozen["logit_scale"],
              **{f"model_distill.{k}": v for k, v in frozen.items()}}
    assert original_layout(theirs) == "CoPrompt" and original_layout(ours) is None
    converted = convert_state_dict("CoPrompt", {"state_dict": theirs, "epoch": 2})
    assert set(converted) == set(ours)
    loaded = coprompt(make_cfg, new_classnames, clip_model, *opts)
    loaded.load_state(converted, source="CoPrompt")
    for k in ours:
        torch.testing.assert_close(loaded.state_to_save()[k], ours[k].half().float())
    exported = to_original_state_dict("CoPrompt", ours)
    assert set(exported) == set(ours) and all(torch.equal(exported[k], ours[k]) for k in ours)


# ------------------------------------------------------------------------------------ RandAugment
def pil_images(n, size=24, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_randaugment_draws_and_ops():
    """The op choice is random.choices(16 ops, k=n); SolarizeAdd truncates after a float addition; CutoutAbs
    draws twice from numpy's global generator; the sign draws come from Python's random."""
    assert [op.__name__ for op, _, _ in OPS] == [
        "auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color",
        "contrast", "brightness", "sharpness", "shear_x", "shear_y", "cutout_abs", "translate_x_abs",
        "translate_y_abs"]
    pixels = np.array([[[250, 10, 100]]], dtype=np.uint8)
    # 250 + 36.67 -> 255 -> solarized (>= 128) to 0; 10 + 36.67 -> 46; 100 + 36.67 -> 136 -> 119
    assert np.array(solarize_add(Image.fromarray(pixels), 110 / 3)).tolist() == [[[0, 46, 119]]]
    img = pil_images(1)[0]
    random.seed(5)
    np.random.seed(5)
    out = RandAugment(2, 10)(img)
    random.seed(5)
    np.random.seed(5)
    ops = random.choices(range(16), k=2)
    expected = img
    for i in ops:
        op, low, high = OPS[i]
        expected = op(expected, 10 / 30 * (high - low) + low)
    assert np.array_equal(np.array(out), np.array(expected))
    # translate by +v px with the sign draw kept (> 0.5 negates): the image moves by -v
    random.seed(0)
    assert random.random() > 0.5
    random.seed(0)
    moved = np.array(OPS[14][0](Image.fromarray(np.arange(24 * 24 * 3, dtype=np.uint8).reshape(24, 24, 3)), 5))
    assert np.array_equal(moved[:, 5:], np.arange(24 * 24 * 3, dtype=np.uint8).reshape(24, 24, 3)[:, :-5])


def test_randaugment_equals_dassls(monkeypatch):
    """Same images and the same Python and numpy streams afterwards as Dassl's RandAugment (where installed).
    Dassl's SolarizeAdd calls `astype(np.int)`, which numpy >= 1.24 removed: given back its meaning, int."""
    from restore.logs import kept_enabled
    with kept_enabled():
        dassl = pytest.importorskip("dassl.data.transforms.randaugment", reason="Dassl is not installed")
    monkeypatch.setattr(np, "int", int, raising=False)
    images = pil_images(60, size=32, seed=1)
    streams = []
    for make in (RandAugment, dassl.RandAugment):
        random.seed(11)
        np.random.seed(11)
        tfm = make(2, 10)
        outs = [np.array(tfm(im)) for im in images for _ in range(2)]
        streams.append((outs, random.getstate(), np.random.get_state()[1].tolist()))
    (a, ra, na), (b, rb, nb) = streams
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and ra == rb and na == nb


# ------------------------------------------------------------------------------------------ scripts
def script_calls(tmp_path, script, *args, **env):
    """The train.py argument lists scripts/coprompt/<script>.sh runs (test_engine_fakes.script_train_calls)."""
    return script_train_calls(tmp_path, f"coprompt/{script}", *args, unset=("LOADEP", "DESCRIPTIONS"), **env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_scripts(tmp_path):
    """The authors' config, DESCRIPTIONS required to train on a real dataset (not on the testbed, not to
    evaluate), Food101's epoch 5, and the source's row of the table on cross-dataset evaluations."""
    env = {k: v for k, v in os.environ.items() if k != "DESCRIPTIONS"}
    proc = subprocess.run(["bash", "scripts/coprompt/base2new_train.sh", "oxford_pets", "1"], cwd=ROOT,
                          env={**env, "DATA": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "set DESCRIPTIONS to the descriptions file of oxford_pets" in proc.stderr
    (argv,) = script_calls(tmp_path, "base2new_train", "oxford_pets", "1", DESCRIPTIONS="/d/gpt_file")
    assert argv[argv.index("--config-file") + 1].endswith("configs/trainers/CoPrompt/coprompt.yaml")
    assert trailing_pairs(argv)["TRAINER.COPROMPT.DESCRIPTIONS"] == "/d/gpt_file"
    (argv,) = script_calls(tmp_path, "xd_train", "imagenet", "1", DESCRIPTIONS="gpt_file")  # from the caller's folder
    assert trailing_pairs(argv)["TRAINER.COPROMPT.DESCRIPTIONS"] == os.path.join(ROOT, "gpt_file")
    (argv,) = script_calls(tmp_path, "base2new_train", "shapes", "1")
    assert argv[argv.index("--config-file") + 1].endswith("configs/trainers/CoPrompt/testbed.yaml")
    (argv,) = script_calls(tmp_path, "base2new_test", "food101", "1")
    assert argv[argv.index("--load-epoch") + 1] == "5"
    (argv,) = script_calls(tmp_path, "base2new_test", "dtd", "1")
    assert argv[argv.index("--load-epoch") + 1] == "8" and "TRAINER.COPROMPT.PROMPT_DEPTH" not in argv
    (argv,) = script_calls(tmp_path, "xd_test", "oxford_pets", "1")
    assert {k: v for k, v in trailing_pairs(argv).items() if k.startswith("TRAINER.")} == {
        "TRAINER.COPROMPT.PROMPT_DEPTH": "12", "TRAINER.COPROMPT.N_CTX": "4", "TRAINER.COPROMPT.W": "8.0"}


def test_feature_shift_is_the_prompts_alone(make_cfg, classnames, clip_model, images, ref):
    """docs/METHOD.md section 2: CoPrompt's adapters act after the encoders, so its per-block shift is that of a
    MaPLe model holding the same prompts (the adapters, however large, change nothing)."""
    model = ref.randomize_(coprompt(make_cfg, classnames, clip_model, "TRAINER.COPROMPT.DESCRIPTIONS", "captions"))
    maple = build_model(make_cfg("MaPLe", "TRAINER.MAPLE.N_CTX", 2, "TRAINER.MAPLE.PROMPT_DEPTH", 2), classnames,
                        clip_model)
    maple.load_state({k: v for k, v in model.state_to_save().items() if k.startswith("prompt_learner.")})
    got, want = model.feature_shift(images), maple.feature_shift(images)
    assert (got.vision > 0).all() and (got.text > 0).all()
    torch.testing.assert_close(got.vision, want.vision, rtol=0, atol=0)
    torch.testing.assert_close(got.text, want.text, rtol=0, atol=0)
    assert not torch.allclose(model(images), maple(images))  # the adapters do change the logits


def test_both_engines_make_the_same_run(tmp_path, monkeypatch):
    """The authors' config (two RandAugment views, the per-dataset table) through train.py on the native engine and
    on Dassl (where installed): the same images, description indices and updates, so the same learned tensors."""
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    from restore.logs import kept_enabled
    with kept_enabled():
        pytest.importorskip("dassl.engine", exc_type=ImportError)
    monkeypatch.setattr(np, "int", int, raising=False)  # Dassl's SolarizeAdd on numpy >= 1.24
    from test_engine_fakes import make_oxford_pets
    states = []
    for engine in ("native", "dassl"):
        out = tmp_path / engine
        # A data folder each: both draw their few-shot samples with Python's random, which the augmentations and
        # description indices then continue (a shared cached sample would shift the second run's stream).
        make_oxford_pets(str(tmp_path / engine / "data"))
        train.main(["--root", str(tmp_path / engine / "data"), "--seed", "1", "--trainer", "CoPrompt", "--engine", engine,
                    "--dataset-config-file", "configs/datasets/oxford_pets.yaml", "--config-file",
                    "configs/trainers/CoPrompt/coprompt.yaml", "--output-dir", str(out),
                    "MODEL.BACKBONE.NAME", "tiny-random", "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
                    "TRAINER.COPROMPT.PREC", "fp32", "TRAINER.COPROMPT.DESCRIPTIONS", "captions",
                    "TRAINER.COPROMPT.PROMPT_DEPTH", "2", "OPTIM.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "2",
                    "DATASET.SUBSAMPLE_CLASSES", "base"])
        log = (out / "log.txt").read_text()
        assert "+ randaugment (n=2, m=10)" in log and "cons_image" in log
        states.append(torch.load(out / "MultiModalPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"])
    assert set(states[0]) == set(states[1])
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=1e-7)
