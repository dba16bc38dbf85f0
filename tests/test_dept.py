"""DePT (restore/methods/dept) against independent computations: the loss and its gradients (the frozen CLIP's
modules, conftest's `ref`), the fused evaluation logits, where the head is used (rows by name, the authors'
rule for their checkpoints, the testbed's shapes/objects), the staged learning rates in the authors' float
arithmetic, the draw order, the feature shift (the base method's), checkpoints both ways, configs and scripts."""
import os
import shutil
import subprocess

import clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import train
from restore.engine.optim import build_optimizer
from restore.errors import UserError
from restore.legacy import convert_state_dict, original_layout, to_original_state_dict
from restore.methods import build_model, registry
from restore.methods.base import CheckpointError
from restore.methods.dept.model import match_rows
from test_engine_fakes import ROOT, script_train_calls

DEPT = ["CoOp_DePT", "CoCoOp_DePT", "KgCoOp_DePT", "MaPLe_DePT"]


def build(make_cfg, name, classnames, clip_model, *opts):
    return build_model(make_cfg(name, *opts), classnames, clip_model)


def film(x, module):
    return x * module.scale.detach() + module.bias.detach()


def test_coop_dept_loss_and_gradients_equal_an_independent_computation(make_cfg, classnames, clip_model,
                                                                        images, ref):
    """(1 - 0.7) CE(s, y) + 0.7 CE(W [FiLM_t(t_y); FiLM_v(v)] + b, [y; y]), unnormalised features."""
    model = build(make_cfg, "CoOp_DePT", classnames, clip_model)
    ref.randomize_(model, std=0.2)
    labels = torch.tensor([2, 0])
    total, terms = model.loss({"img": images, "label": labels})
    total.backward()

    names = [c.replace("_", " ") for c in classnames]
    ctx = model.prompt_learner.ctx.detach().clone().requires_grad_()
    head_w = model.linear_probe_proj.weight.detach().clone().requires_grad_()
    scale_t = model.film_lp_text.scale.detach().clone().requires_grad_()
    text = ref.text_forward(clip_model, clip.tokenize([f"X X X {c}." for c in names]), [ctx], 3).features
    image = ref.image_forward(clip_model, images).features
    ce = F.cross_entropy(ref.logits(clip_model, image, text), labels)
    feats = torch.cat([text[labels] * scale_t + model.film_lp_text.bias.detach(), film(image, model.film_lp_img)])
    head = F.cross_entropy(feats @ head_w.t() + model.linear_probe_proj.bias.detach(), torch.cat([labels, labels]))
    want = 0.3 * ce + 0.7 * head
    want.backward()

    assert float(terms["ce"].detach()) == pytest.approx((1 - 0.7) * ce.item(), rel=1e-5)
    assert float(terms["head"].detach()) == pytest.approx(0.7 * head.item(), rel=1e-5)
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    assert list(terms)[:3] == ["loss", "ce", "head"]
    torch.testing.assert_close(model.prompt_learner.ctx.grad, ctx.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(model.linear_probe_proj.weight.grad, head_w.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(model.film_lp_text.scale.grad, scale_t.grad, atol=1e-6, rtol=1e-4)


def test_cocoop_dept_head_reads_each_images_own_text_features(make_cfg, classnames, clip_model, images, ref):
    model = build(make_cfg, "CoCoOp_DePT", classnames, clip_model)
    ref.randomize_(model, std=0.2)
    labels = torch.tensor([1, 2])
    terms = model.loss({"img": images, "label": labels})[1]
    with torch.no_grad():
        enc = model.encode(images)
        assert enc.text.shape == (2, 3, enc.image.shape[1])
        own = torch.stack([enc.text[b, labels[b]] for b in range(2)])  # per image, as the authors' loop
        h = model.linear_probe_proj(torch.cat([film(own, model.film_lp_text), film(enc.image, model.film_lp_img)]))
        head = F.cross_entropy(h, torch.cat([labels, labels]))
        s = torch.stack([model.logits(enc.image[b:b + 1], enc.text[b])[0] for b in range(2)])
    assert float(terms["head"].detach()) == pytest.approx(0.7 * head.item(), rel=1e-5)
    assert float(terms["ce"].detach()) == pytest.approx(0.3 * F.cross_entropy(s, labels).item(), rel=1e-5)


def test_kgcoop_dept_keeps_kgcoops_term_unscaled(make_cfg, classnames, clip_model, images, ref):
    opts = ("TRAINER.KGCOOP.CTX_INIT", "a photo of a", "TRAINER.KGCOOP.W", 2.0, "DATASET.NAME", "OxfordPets")
    model = build(make_cfg, "KgCoOp_DePT", classnames, clip_model, *opts)
    base = build(make_cfg, "KgCoOp", classnames, clip_model, *opts)
    ref.randomize_(model, std=0.2)
    base.prompt_learner.ctx.data.copy_(model.prompt_learner.ctx.data)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        total, terms = model.loss({"img": images, "label": labels})
        base_terms = base.loss({"img": images, "label": labels})[1]
    assert list(terms)[1:4] == ["ce", "head", "kg"]
    assert float(terms["kg"]) == pytest.approx(float(base_terms["kg"]), rel=1e-6)  # W * (1 - mean cos)
    assert float(terms["ce"]) == pytest.approx(0.3 * float(base_terms["ce"]), rel=1e-6)
    assert total.item() == pytest.approx(float(terms["ce"] + terms["head"] + terms["kg"]), rel=1e-6)


@pytest.mark.parametrize("name", DEPT)
def test_evaluation_fuses_the_head_on_its_classes_and_is_the_base_elsewhere(make_cfg, classnames,
                                                                           new_classnames, clip_model, images,
                                                                           ref, name):
    model = build(make_cfg, name, classnames, clip_model)
    ref.randomize_(model, std=0.2)
    model.eval()
    state = model.state_to_save()
    assert state["_extra_state"] == {"head_classnames": ["cat", "golden retriever", "sports car"]}
    with torch.no_grad():
        enc = model.encode(images)
        s = model.logits(enc.image, enc.text)
        h = F.linear(film(enc.image, model.film_lp_img), model.linear_probe_proj.weight,
                     model.linear_probe_proj.bias)
        torch.testing.assert_close(model(images), 0.3 * s + 0.7 * h, atol=1e-5, rtol=1e-5)
        if name != "CoCoOp_DePT":
            with model.cached_text_features():
                torch.testing.assert_close(model(images), 0.3 * s + 0.7 * h, atol=1e-5, rtol=1e-5)
        # the head alone without fusion
        alone = build(make_cfg, name, classnames, clip_model, "TRAINER.DEPT.TEST_TIME_FUSION", False)
        alone.load_state(state)
        torch.testing.assert_close(alone.eval()(images), h, atol=1e-5, rtol=1e-5)
        # a subset in another order: the head's rows picked by name
        sub = build(make_cfg, name, ["sports_car", "cat"], clip_model)
        sub.load_state(state)
        assert sub.head_active and sub.head_rows.tolist() == [2, 0]
        enc_sub = sub.eval().encode(images)
        torch.testing.assert_close(sub(images), 0.3 * sub.logits(enc_sub.image, enc_sub.text) + 0.7 * h[:, [2, 0]],
                                   atol=1e-5, rtol=1e-5)
        # new classes: the base method's logits, the head unused (its trained rows kept in the state)
        new = build(make_cfg, name, new_classnames, clip_model)
        new.load_state(state)
        assert not new.head_active
        enc_new = new.eval().encode(images)
        torch.testing.assert_close(new(images), new.logits(enc_new.image, enc_new.text))
        assert torch.equal(new.state_to_save()["linear_probe_proj.weight"], state["linear_probe_proj.weight"])
        assert new.state_to_save()["_extra_state"] == state["_extra_state"]
        for other in (sub, new):  # its head's columns are not these classes: no training on them
            with pytest.raises(UserError, match="train from a fresh model"):
                other.loss({"img": images, "label": torch.tensor([0, 1])})


def test_head_rows_by_name_with_repeated_names():
    assert match_rows(["a", "b", "c"], ["a", "b", "c"]).tolist() == [0, 1, 2]
    assert match_rows(["a", "b", "c"], ["c", "a"]).tolist() == [2, 0]
    # ImageNet lists a name twice ("crane": the bird and the machine): occurrences matched in order
    assert match_rows(["crane", "x", "crane"], ["crane", "crane"]).tolist() == [0, 2]
    assert match_rows(["crane", "x"], ["crane", "crane"]) is None
    assert match_rows(["a", "b"], ["a", "z"]) is None


def test_testbed_shapes_classes_are_the_first_of_objects_so_the_head_is_used():
    """docs/METHOD.md: the cross-dataset target `shapes` uses a head trained on `objects` (its 64 classes are
    objects' first 64, in order); `patterns` and `digits` do not."""
    from restore.testbed import datasets
    names = {n: [c.replace("_", " ") for c in datasets.get(n).classnames] for n in ("objects", "shapes", "patterns",
                                                                                "digits")}
    assert len(names["objects"]) == 128 and len(names["shapes"]) == 64
    assert match_rows(names["objects"], names["shapes"]).tolist() == list(range(64))
    assert match_rows(names["objects"], names["patterns"]) is None
    assert match_rows(names["objects"], names["digits"]) is None


@pytest.mark.parametrize("subsample,dataset,active", [
    ("base", "Caltech101", True), ("new", "Caltech101", False), ("all", "Caltech101", False),
    ("all", "ImageNetV2", True), ("all", "ImageNet", True)])
def test_the_authors_checkpoints_follow_their_rule_and_load(make_cfg, classnames, clip_model, subsample, dataset,
                                                            active):
    """Their whole-model checkpoint (frozen CLIP, class buffers) has no class names: head by DATASET.NAME and
    SUBSAMPLE_CLASSES, as ExtrasLinearProbe*'s build_model decides."""
    opts = ("DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.NAME", dataset)
    ours = build(make_cfg, "CoOp_DePT", classnames, clip_model, *opts)
    theirs = {k: v.half() for k, v in ours.state_to_save().items() if torch.is_tensor(v)}
    theirs.update({"prompt_learner.token_prefix": torch.zeros(3, 1, 48), "logit_scale": torch.tensor(4.6),
                   "image_encoder.conv1.weight": torch.zeros(1), "text_encoder.positional_embedding": torch.zeros(1)})
    assert original_layout({"state_dict": theirs}) == "DePT"
    assert original_layout(ours.state_to_save()) is None  # ours share the learned names, not the frozen CLIP
    converted = convert_state_dict("CoOp_DePT", theirs)
    assert set(converted) == {"prompt_learner.ctx", "film_lp_img.scale", "film_lp_img.bias", "film_lp_text.scale",
                              "film_lp_text.bias", "linear_probe_proj.weight", "linear_probe_proj.bias"}
    model = build(make_cfg, "CoOp_DePT", classnames, clip_model, *opts)
    model.load_state(converted)
    assert model.head_active == active
    assert torch.equal(model.linear_probe_proj.weight, theirs["linear_probe_proj.weight"].float())
    if active:  # rows cannot be matched by count alone
        fewer = build(make_cfg, "CoOp_DePT", classnames[:2], clip_model, *opts)
        with pytest.raises(CheckpointError, match="holds no class names"):
            fewer.load_state(converted)


def test_kgcoop_dept_checkpoints_both_ways(make_cfg, classnames, clip_model):
    opts = ("TRAINER.KGCOOP.CTX_INIT", "a photo of a")
    model = build(make_cfg, "KgCoOp_DePT", classnames, clip_model, *opts)
    exported = to_original_state_dict("KgCoOp_DePT", model.state_to_save())
    assert "_extra_state" not in exported and "prompt_learner.ctx" in exported
    theirs = dict(exported, **{"prompt_learner.bias_vectors": torch.zeros(1, 512),
                               "prompt_learner.meta_net.linear1.weight": torch.zeros(512, 512),
                               "meta_net.linear1.weight": torch.zeros(512, 512),
                               "adapter.fc.0.weight": torch.zeros(128, 512), "adapter.fc.2.weight": torch.zeros(512, 128),
                               "logit_scale": torch.tensor(4.6)})
    assert original_layout(theirs) == "KgCoOp_DePT"  # more marks than the generic DePT layout
    back = build(make_cfg, "KgCoOp_DePT", classnames, clip_model, *opts)
    back.load_state(convert_state_dict("KgCoOp_DePT", theirs))
    for k, v in model.state_to_save().items():
        if torch.is_tensor(v):
            assert torch.equal(back.state_to_save()[k], v), k


# What the authors' ExtrasLinearProbe<Base> trains (read from their checkpoints, which hold the whole CustomCLIP;
# MaPLe at prompt depth 2), beside the head's six tensors.
THEIR_HEAD = ("film_lp_img.scale", "film_lp_img.bias", "film_lp_text.scale", "film_lp_text.bias",
              "linear_probe_proj.weight", "linear_probe_proj.bias")
THEIR_BASE = {
    "CoOp_DePT": ("prompt_learner.ctx",),
    "CoCoOp_DePT": ("prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight",
                    "prompt_learner.meta_net.linear1.bias", "prompt_learner.meta_net.linear2.weight",
                    "prompt_learner.meta_net.linear2.bias"),
    "MaPLe_DePT": ("prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias",
                   "prompt_learner.compound_prompts_text.0", "prompt_learner.compound_prompt_projections.0.weight",
                   "prompt_learner.compound_prompt_projections.0.bias"),
}


@pytest.mark.parametrize("name", sorted(THEIR_BASE))
def test_checkpoints_both_ways(make_cfg, classnames, clip_model, ref, name):
    """Ours exported holds exactly what their trainer trains, under its names; their whole-model file (frozen
    CLIP, class buffers, fp16 values) is recognised and loads back into the same model."""
    model = ref.randomize_(build(make_cfg, name, classnames, clip_model), std=0.2)
    exported = to_original_state_dict(name, model.state_to_save())
    assert set(exported) == set(THEIR_BASE[name]) | set(THEIR_HEAD)
    theirs = {k: v.half() for k, v in exported.items()}
    theirs.update({"logit_scale": torch.tensor(4.6), "prompt_learner.token_prefix": torch.zeros(3, 1, 48),
                   "image_encoder.conv1.weight": torch.zeros(1), "text_encoder.positional_embedding": torch.zeros(1)})
    assert original_layout({"state_dict": theirs}) == "DePT"
    back = build(make_cfg, name, classnames, clip_model)
    back.load_state(convert_state_dict(name, theirs))
    loaded = back.state_to_save()
    for k, v in exported.items():
        assert torch.equal(loaded[k], v.half().float()), k


def test_staged_learning_rates_are_the_authors_floats(make_cfg, classnames, clip_model):
    """trainers/optim.py: lr = LR * LR_EXP for the new layers (substring 'linear_probe' / 'film'), the rest at
    lr * (BASE_LR_MULT / LR_EXP), computed in that order."""
    cfg = make_cfg("CoCoOp_DePT", "OPTIM.LR", 0.002, "OPTIM.STAGED_LR", True, "OPTIM.BASE_LR_MULT", 1.0)
    model = build_model(cfg, classnames, clip_model)
    optim = build_optimizer(model, model.trainable_parameters(), cfg.OPTIM)
    lr, mult = 0.002, 1.0
    lr *= 6.5
    mult /= 6.5
    assert [g["lr"] for g in optim.param_groups] == [lr * mult, lr] == [0.0020000000000000005, 0.013000000000000001]
    new = {id(p) for n, p in model.named_parameters() if "linear_probe" in n or "film" in n}
    assert {id(p) for p in optim.param_groups[1]["params"]} == new and len(new) == 6
    assert {id(p) for p in optim.param_groups[0]["params"]} == \
        {id(p) for p in model.trainable_parameters()} - new
    cfg = make_cfg("CoCoOp_DePT", "OPTIM.LR", 0.002)  # OPTIM.STAGED_LR False: one group at LR, as theirs
    assert [g["lr"] for g in build_optimizer(model, model.trainable_parameters(), cfg.OPTIM).param_groups] == [0.002]


@pytest.mark.parametrize("name,base", [("CoOp_DePT", "CoOp"), ("MaPLe_DePT", "MaPLe"),
                                       ("KgCoOp_DePT", "KgCoOp")])
def test_draws_are_the_base_methods_then_the_heads(make_cfg, classnames, clip_model, name, base):
    torch.manual_seed(7)
    model = build(make_cfg, name, classnames, clip_model)
    after = torch.rand(1)
    torch.manual_seed(7)
    plain = build(make_cfg, base, classnames, clip_model)
    head = nn.Linear(model.image_encoder.output_dim, len(classnames))
    assert torch.equal(torch.rand(1), after)
    for k, v in plain.state_to_save().items():
        assert torch.equal(model.state_to_save()[k], v), k
    assert torch.equal(model.linear_probe_proj.weight, head.weight)
    assert torch.equal(model.linear_probe_proj.bias, head.bias)
    assert torch.equal(model.film_lp_img.scale, torch.ones(model.image_encoder.output_dim))


@pytest.mark.parametrize("name,base", [("CoOp_DePT", "CoOp"), ("MaPLe_DePT", "MaPLe")])
def test_feature_shift_is_the_base_methods(make_cfg, classnames, clip_model, images, ref, name, base):
    """The head acts after the encoders: no block sees it, so N_l is the base method's on the same prompts."""
    model = build(make_cfg, name, classnames, clip_model)
    ref.randomize_(model, std=0.2)
    plain = build(make_cfg, base, classnames, clip_model)
    plain.load_state({k: v for k, v in model.state_to_save().items() if k in plain.state_to_save()})
    a, b = model.feature_shift(images), plain.feature_shift(images)
    assert (a.text > 0).all()
    torch.testing.assert_close(a.text, b.text, rtol=0, atol=0)
    torch.testing.assert_close(a.vision, b.vision, rtol=0, atol=0)


@pytest.mark.parametrize("base,config", [("CoOp", "vit_b16_ep10_bs4_lr35"), ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"),
                                         ("KgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35"),
                                         ("MaPLe", "vit_b16_c2_ep10_batch4_2ctx")])
def test_the_authors_configs_and_keys(base, config):
    argv = ["--trainer", f"{base}_DePT", "--config-file", f"configs/trainers/{base}_DePT/{config}.yaml",
            "TRAINER.LINEAR_PROBE.WEIGHT", "0.5", "TRAINER.FILM.LINEAR_PROBE", "False", "OPTIM.LR_EXP", "4.0",
            "TRAINER.LINEAR_PROBE.TEST_TIME_FUSION", "False", "TRAINER.LINEAR_PROBE.TYPE", "similarity"]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    d = cfg.TRAINER.DEPT
    assert (d.WEIGHT, d.CWT, d.LR_EXP, d.TEST_TIME_FUSION, d.HEAD) == (0.5, False, 4.0, False, "similarity")
    o = cfg.OPTIM
    assert (o.NAME, o.STAGED_LR, o.BASE_LR_MULT, o.MAX_EPOCH, o.LR) == \
        ("sgd", True, 1.0, 10, 0.002 if base == "CoCoOp" else 0.0035)
    if base == "KgCoOp":
        k = cfg.TRAINER.KGCOOP
        assert (k.CTX_INIT, k.N_CTX, k.W, k.TEMPLATES) == ("a photo of a", 4, 2.0, "authors")
    if base == "MaPLe":
        assert (cfg.TRAINER.MAPLE.PROMPT_DEPTH, cfg.TRAINER.MAPLE.N_CTX) == (9, 2)


def test_similarity_head_without_transforms(make_cfg, classnames, clip_model, images, ref):
    model = build(make_cfg, "CoOp_DePT", classnames, clip_model, "TRAINER.DEPT.HEAD", "similarity",
                  "TRAINER.DEPT.CWT", False)
    ref.randomize_(model, std=0.2)
    assert not any("film" in n or "linear_probe" in n for n, _ in model.named_parameters())
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        terms = model.loss({"img": images, "label": labels})[1]
    assert float(terms["head"]) == pytest.approx(0.7 / 0.3 * float(terms["ce"]), rel=1e-5)  # the same logits


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@needs_bash
@pytest.mark.parametrize("base,config", [("CoOp", "vit_b16_ep10_bs4_lr35"), ("KgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35")])
def test_scripts_run_the_base_methods_dept_with_its_authors_config(tmp_path, base, config):
    runs = [argv for script in ("base2new_train", "base2new_test", "xd_test")
            for argv in script_train_calls(tmp_path, f"dept/{script}", "oxford_pets", "1", unset=("BASE", "LOADEP"),
                                           BASE=base)]
    assert len(runs) == 3
    for argv in runs:
        assert argv[argv.index("--trainer") + 1] == f"{base}_DePT"
        assert argv[argv.index("--config-file") + 1] == f"configs/trainers/{base}_DePT/{config}.yaml"
    assert runs[1][runs[1].index("--load-epoch") + 1] == "10"
    env = {k: v for k, v in os.environ.items() if k != "DATA"}
    proc = subprocess.run(["bash", "scripts/dept/base2new_train.sh", "oxford_pets", "1"], cwd=ROOT,
                          env=dict(env, BASE="VPT", DATA=str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "BASE=VPT" in proc.stderr


def test_registered_as_the_authors_rows():
    for name in DEPT:
        spec = registry.get(name)
        assert spec.base == name[:-5] and spec.nodes[-1].path == "TRAINER.DEPT"
        assert spec.registered_name == ("MultiModalPromptLearner" if name == "MaPLe_DePT" else "PromptLearner")
        assert os.path.exists(registry.config_file(name, "testbed"))
