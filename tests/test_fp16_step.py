"""PREC fp16 (the frozen CLIP's weights in fp16, as on a GPU) for every registered method: one training step
runs on the CPU with the same casts, and every trainable parameter gets a finite gradient of its own dtype.
The GPU check (benchmarks/gpu_check.py) confirms the same on CUDA when a GPU is lent; this catches a method whose
own module meets fp16 features with fp32 weights (DePT's linear head did) without one."""
import pytest
import torch

import restore
from restore.engine.precision import frozen_weights_to_fp16
from restore.methods import registry


def tiny_cfg(name):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.merge_from_list([str(v) for v in registry.get(name).tiny])
    return cfg


@pytest.mark.parametrize("name", [n for n in registry.names() if n != "ZeroshotCLIP"])
def test_a_training_step_under_fp16_casts(name):
    torch.manual_seed(0)
    model = restore.build_model(tiny_cfg(name), ["cat", "dog", "sports car"], restore.tiny_clip(seed=0)).train()
    frozen_weights_to_fp16(model)
    assert model.clip.visual.conv1.weight.dtype == torch.float16
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    loss, _ = model.loss({"img": images, "label": labels})
    loss.backward()
    assert torch.isfinite(loss)
    trainable = list(model.trainable_parameters())
    assert trainable
    for p in trainable:
        assert p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all()
    with torch.no_grad():
        logits = model.eval()(images)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
