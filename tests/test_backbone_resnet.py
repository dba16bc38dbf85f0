"""ResNet CLIPs (OpenAI ModifiedResNet): the text-prompt methods run, the vision-prompt methods
refuse, and CoOp's class-token positions, against clip's own encode_image / encode_text."""
import shutil
import subprocess

import clip
import pytest
import torch
import torch.nn.functional as F

import restore
from restore.adapters import UnsupportedBackbone
from restore.methods import registry
from restore.analysis.feature_shift_study import summarize
from restore.backbone import tiny_resnet_clip
from restore.templates import template_for

from test_engine_fakes import ROOT, make_oxford_pets

CLASSNAMES = ["cat", "golden_retriever", "sports car"]
TEXT_ONLY_METHODS = registry.supporting("resnet")
VISION_PROMPT_METHODS = [m for m in registry.names() if m not in TEXT_ONLY_METHODS]


@pytest.fixture(scope="module")
def rn():
    return tiny_resnet_clip(0)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))


def cfg_for(name, *opts):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.MODEL.BACKBONE.NAME = "RN50"
    cfg.merge_from_list(["TRAINER.LPT.PROMPT_DEPTH_TEXT", 2, "TRAINER.TCP.INSERT_LAYER", 2, *opts])
    return cfg


def clip_logits(model, images, texts):
    """Logits from the CLIP's own encode_image / encode_text (the reference)."""
    with torch.no_grad():
        image = F.normalize(model.encode_image(images), dim=-1)
        text = F.normalize(model.encode_text(clip.tokenize(texts)), dim=-1)
    return model.logit_scale.exp() * image @ text.t()


def test_tiny_resnet_is_a_modified_resnet(rn):
    assert isinstance(rn.visual, clip.model.ModifiedResNet)
    assert rn.visual.input_resolution == 64 and not rn.training


def test_zeroshot_logits_equal_encode_image_and_encode_text(rn, images):
    cfg = cfg_for("ZeroshotCLIP")
    model = restore.build_model(cfg, CLASSNAMES, rn).eval()
    with torch.no_grad():
        ours = model(images)
    texts = [template_for(cfg.DATASET.NAME).format(c.replace("_", " ")) for c in CLASSNAMES]
    torch.testing.assert_close(ours, clip_logits(rn, images, texts), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("position,layout", [("end", "a photo of a {}."),
                                             ("middle", "a photo {} of a."),
                                             ("front", "{} a photo of a.")])
def test_coop_class_token_positions(rn, images, position, layout):
    """Context initialised from "a photo of a" is those words' embeddings, so CoOp's prompt
    with the class at `position` must equal the plain text with the name at that place."""
    cfg = cfg_for("CoOp", "TRAINER.COOP.CTX_INIT", "a photo of a",
                  "TRAINER.COOP.CLASS_TOKEN_POSITION", position)
    model = restore.build_model(cfg, CLASSNAMES, rn).eval()
    with torch.no_grad():
        ours = model(images)
    texts = [layout.format(c.replace("_", " ")) for c in CLASSNAMES]
    torch.testing.assert_close(ours, clip_logits(rn, images, texts), atol=1e-4, rtol=1e-5)
    other = [("a photo of a {}." if position != "end" else "{} a photo of a.").format(c)
             for c in ("cat", "golden retriever", "sports car")]
    assert not torch.allclose(ours, clip_logits(rn, images, other), atol=1e-3)


def test_coop_rejects_unknown_class_token_position(rn):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION must be one of"):
        restore.build_model(cfg_for("CoOp", "TRAINER.COOP.CLASS_TOKEN_POSITION", "back"),
                            CLASSNAMES, rn)


@pytest.mark.parametrize("name", TEXT_ONLY_METHODS)
def test_text_prompt_methods_train_and_trace(rn, images, name):
    torch.manual_seed(0)
    model = restore.build_model(cfg_for(name), CLASSNAMES, rn)
    if name == "CoCoOp":  # the tiny meta-net has 32 // 16 = 2 hidden ReLUs: keep them alive
        with torch.no_grad():
            model.prompt_learner.meta_net.linear1.bias.fill_(1.0)
    model.train()
    assert not model.clip.training  # BatchNorm of the ResNet stays in eval mode
    loss, _ = model.loss({"img": images, "label": torch.tensor([0, 1, 2])})
    if name != "ZeroshotCLIP":
        loss.backward()
        grads = [p.grad for p in model.trainable_parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    shift = model.feature_shift(images)
    assert shift.vision.shape == (0,) and shift.text.shape == (3,)
    assert (shift.text > 0).any() == (name != "ZeroshotCLIP")
    assert summarize(shift)["shift_vision"] == 0.0


@pytest.mark.parametrize("name", VISION_PROMPT_METHODS)
def test_vision_prompt_methods_refuse_with_one_line(rn, name):
    with pytest.raises(UnsupportedBackbone) as err:
        restore.build_model(cfg_for(name), CLASSNAMES, rn)
    msg = str(err.value)
    uses = "adapts the blocks of" if name == "MultiModalAdapter" else "puts prompts into"
    assert msg == (f"{name} {uses} the image encoder, which backbone 'RN50' (OpenAI "
                   "ResNet) cannot take: a ResNet image encoder (ModifiedResNet) has no token "
                   "blocks to take vision prompts; methods that can use it: "
                   + ", ".join(registry.supporting("resnet")))
    assert registry.supporting("resnet")[:4] == ["ZeroshotCLIP", "CoOp", "CoCoOp", "LPT"]


def test_ivlp_without_vision_prompts_runs_on_a_resnet(rn, images):
    model = restore.build_model(cfg_for("IVLP", "TRAINER.IVLP.PROMPT_DEPTH_VISION", 0,
                                        "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2), CLASSNAMES, rn)
    assert model(images).shape == (3, 3)


# ------------------------------------------------------------------------------ scripts
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def bash(script, *args, **env):
    import os
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUTPUT", "SHOTS")}
    full_env.update(env)
    return subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


FAST = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "1",
        "USE_CUDA", "False"]


@needs_bash
def test_coop_main_script_on_a_resnet(tmp_path):
    """CoOp's few-shot protocol with its rn50 config on the small ResNet CLIP, class token in the
    middle: CoOp's output layout, a checkpoint, and a test accuracy."""
    make_oxford_pets(str(tmp_path / "data"))
    env = dict(DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"), ENGINE="native",
               SEEDS="1", BACKBONE="tiny-random-resnet")
    proc = bash("coop/main.sh", "oxford_pets", "rn50", "middle", "4", "2", "False", *FAST, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracies mean nothing" in proc.stdout
    assert "INPUT.SIZE: (224, 224) -> (64, 64)" in proc.stdout
    run = (tmp_path / "out" / "backbone_tiny-random-resnet" / "oxford_pets" / "CoOp" /
           "rn50_2shots" / "nctx4_cscFalse_ctpmiddle" / "seed1")
    assert (run / "prompt_learner" / "model.pth.tar-1").is_file()
    log = (run / "log.txt").read_text()
    assert "Loading CLIP (backbone: tiny-random-resnet)" in log and "* accuracy:" in log
    assert "=> result" in log
