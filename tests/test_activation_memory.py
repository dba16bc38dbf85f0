"""The activation-memory count (restore.analysis.activation_memory) and benchmarks/memory.py in its shrunken
form (the tests' tiny CLIP): exact counts on a hand-built graph, the count without keeping against a real
step for every registered method, the extrapolation along the class count against the direct count, the
benchmark's table and its data file of the originals' numbers."""
import argparse
import contextlib
import io
import json
import os
import re
import sys

import pytest
import torch
from torch import nn

import restore
from restore.analysis.activation_memory import SavedTensors, saved_bytes
from restore.methods import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import memory  # noqa: E402  (benchmarks/memory.py)


def test_counts_each_saved_storage_once_and_skips_the_excluded():
    w = nn.Parameter(torch.randn(10))
    a = torch.randn(10, requires_grad=True)

    def step():
        b = a.exp()  # saves its result b (40 bytes)
        c = b * b  # saves b twice: the same storage
        d = b[2:5] * b[2:5]  # views of b: still b's storage, at its full size
        e = a * w  # saves a (40 bytes) and w (excluded)
        return (c.sum() + d.sum() + e.sum())

    for keep in (True, False):
        with SavedTensors([w], keep=keep) as saved:
            step()
        assert (saved.nbytes, saved.count, saved.by_dtype) == (80, 2, {torch.float32: 80})
    assert saved_bytes(step) == 120 and saved_bytes(step, exclude=[w, a]) == 40  # w counted; a not


def test_keep_false_refuses_the_backward_pass():
    a = torch.randn(3, requires_grad=True)
    with SavedTensors(keep=False):
        loss = a.exp().sum()
    with pytest.raises(RuntimeError, match="keep=True"):
        loss.backward()


def test_a_freed_storage_is_not_confused_with_a_later_one():
    """Without keeping, the memory of a dropped saved tensor is reused by later ones; each is counted."""
    a = torch.randn(256, 256, requires_grad=True)
    with SavedTensors([a], keep=False) as saved:
        x = a
        for _ in range(5):
            x = x.exp()  # each result is saved, then dropped when the next one replaces it
    assert saved.count == 5 and saved.nbytes == 5 * 256 * 256 * 4


def tiny_cfg(name):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    tiny = registry.get(name).tiny
    cfg.merge_from_list([str(v) for v in tiny])
    return cfg


@pytest.mark.parametrize("name", registry.names())
def test_count_without_keeping_equals_a_real_step(name):
    clip_model = restore.tiny_clip(seed=0)
    torch.manual_seed(0)
    model = restore.build_model(tiny_cfg(name), ["cat", "dog", "sports car"], clip_model).train()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    counts = []
    for keep in (True, False):
        torch.manual_seed(1)
        with SavedTensors(model, keep=keep) as saved:
            loss, _ = model.loss({"img": images, "label": labels})
        if keep and loss.requires_grad:
            loss.backward()  # the kept tensors are what the backward pass reads
        counts.append((saved.nbytes, saved.count))
    assert counts[0] == counts[1]
    if model.trainable_parameters():
        assert counts[0][0] > 0
    else:  # ZeroshotCLIP: nothing to train, nothing saved
        assert counts[0] == (0, 0)


def test_base_to_novel_configs_are_the_scripts():
    folder = os.path.join(REPO, "configs", "trainers")
    assert memory.base_to_novel_config("CoOp") == os.path.join(folder, "CoOp", "vit_b16_ctxv1.yaml")
    assert memory.base_to_novel_config("RESTORE_m") == os.path.join(folder, "RESTORE_m",
                                                                     "vit_b16_c2_ep10_batch4_2ctx.yaml")
    # No script runs MaPLe_FSA: its shortest-named base-to-novel config (the release's base2new CFG).
    assert memory.base_to_novel_config("MaPLe_FSA") == os.path.join(folder, "MaPLe_FSA",
                                                                     "vit_b16_c2_ep5_batch4_2ctx.yaml")
    for name in registry.names():
        config = memory.base_to_novel_config(name)
        assert config is None or os.path.exists(config), (name, config)


def test_class_names_have_the_longest_imagenet_name_s_tokens():
    from clip.simple_tokenizer import SimpleTokenizer
    tokens = SimpleTokenizer().encode
    names = memory.class_names(30)
    assert len(set(names)) == 30
    assert {len(tokens(n)) for n in names} == {memory.NAME_TOKENS} == {
        len(tokens("Mexican hairless dog (xoloitzcuintli)"))}


def run_benchmark(*argv):
    """memory.main in this process; the PromptSRC template list it shortens (a module global) put back for
    the tests that follow."""
    out = io.StringIO()
    templates = memory.promptsrc_module.PROMPTSRC_TEMPLATES
    try:
        with contextlib.redirect_stdout(out):
            memory.main(list(argv))
    finally:
        memory.promptsrc_module.PROMPTSRC_TEMPLATES = templates
    return out.getvalue()


def table_rows(text):
    header = "| method | config | batch | precision | classes |"
    lines = text[text.index(header):].splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")]


def test_shrunken_benchmark_table():
    text = run_benchmark("--size", "tiny", "--classes", "3,5", "--fit", "", "--precisions", "fp32,fp16",
                         "--variants-at", "3", "--check", "2", "--methods", "ZeroshotCLIP,CoOp,CoCoOp,RESTORE_m")
    checks = re.findall(r"^check (.+?) at 2 classes: .*: (equal|DIFFERENT)$", text, re.M)
    names = ["CoOp", "CoCoOp", "RESTORE_m"] + [f"RESTORE_m {v}" for v in
                                                ("recompute", "no-grad", "subsets", "no-grad+subsets")]
    assert checks == [(n, "equal") for n in names]
    rows = table_rows(text)
    assert rows[0][0] == "ZeroshotCLIP" and "nothing to train" in rows[0][6]
    cells = {(r[0], r[3], int(r[4])): r for r in rows[1:]}
    assert set(cells) == {(n, p, c) for p in ("fp32", "fp16") for n in names for c in (3, 5)
                          if " " not in n or c == 3}
    mib = {k: float(r[6].replace(",", "")) for k, r in cells.items()}
    assert cells[("CoOp", "fp32", 3)][2] == "32" and cells[("CoCoOp", "fp32", 3)][2] == "1"  # the yaml's batch
    for n in ("CoOp", "CoCoOp", "RESTORE_m"):
        assert mib[(n, "fp32", 5)] > mib[(n, "fp32", 3)] > mib[(n, "fp16", 3)]  # text side grows with classes
        assert cells[(n, "fp32", 3)][5] == str(1 + 4 + memory.NAME_TOKENS + 2)  # SOS, "a photo of a", name, ". EOT"
    assert mib[("RESTORE_m recompute", "fp32", 3)] < mib[("RESTORE_m", "fp32", 3)]
    assert all(r[7] == "" for r in rows[1:])  # no original at the tiny size


def test_extrapolation_along_the_class_count_is_exact():
    """The benchmark's default (--fit): counts at 9, 10, 11 classes on the affine law give the count at 14 to the
    byte, for every registered method and RESTORE_m's subset trace (which traces 8 classes of more)."""
    args = argparse.Namespace(size="tiny", classnames="", fit=[9, 10, 11])
    clip_model = restore.tiny_clip(seed=0)
    cases = [(n, {}) for n in registry.names()] + [("RESTORE_m", {"VISION_IMAGES": 2, "TEXT_CLASSES": 8})]
    for name, fs in cases:
        config = memory.base_to_novel_config(name)
        fitted, _ = memory.measure(name, config, fs, "fp32", 14, clip_model, args, {})
        model, batch = memory.build(name, config, fs, "fp32", 14, clip_model, args)
        if not model.trainable_parameters():
            assert fitted is None
            continue
        direct = memory.Cell(model, batch, keep=False)
        assert (fitted.activations, fitted.weights, fitted.text_tokens) == \
            (direct.activations, direct.weights, direct.text_tokens), (name, fs)


def test_affine_law_refuses_unequal_steps():
    assert memory.affine({9: 100, 10: 130, 11: 160}, "x") == (-170, 30)
    with pytest.raises(SystemExit, match="x: not affine"):
        memory.affine({9: 100, 10: 130, 11: 161}, "x")
    with pytest.raises(SystemExit, match="not affine"):
        memory.affine({9: 100, 10: 130}, "x")  # two counts check nothing


def test_originals_data_file():
    with open(memory.ORIGINALS) as f:
        data = json.load(f)
    about = data.pop("_about")
    assert "memory_originals.py" in about["harness"]
    assert data, "no original measured"
    assert {"CoOp", "CoCoOp", "MaPLe", "PromptSRC", "KgCoOp", "ProGrad", "TCP", "MultiModalAdapter", "CoOp_DePT",
            "CoPrompt", "CoCoOp_DePT", "KgCoOp_DePT", "MaPLe_DePT"} <= set(data)
    unmatched = set(data) - set(registry.names())  # the benchmark matches them by method name
    assert not unmatched, f"originals under no registered method's name: {unmatched}"
    for method, entry in data.items():
        assert entry["cells"] and entry["repository"] and entry["config"].endswith(".yaml"), method
        # Like with like: the original ran at the batch size of the config the benchmark runs ours with (MMA's
        # was counted at vit_b16_ep5's 16 before its ImageNet runs took the authors' 128: shown, not compared).
        ours = memory.run_cfg(method, memory.base_to_novel_config(method), (), "vitb16").DATALOADER.TRAIN_X.BATCH_SIZE
        for key, cell in entry["cells"].items():
            if method == "MultiModalAdapter":
                assert (cell["batch"], ours) == (16, 128)
                assert memory.original_cell(cell, ours) == (None, "(batch 16: not compared)")
            else:
                assert cell["batch"] == ours, (method, key, cell["batch"], ours)
                assert memory.original_cell(cell, ours)[0] == cell["activation_bytes"]
            classes, precision = key.split("/")
            classes = int(classes)
            assert classes > 0 and precision in ("fp32", "fp16"), key
            assert isinstance(cell["activation_bytes"], int) and cell["activation_bytes"] > 0, (method, key)
            assert re.search(rf"memory_originals\.py measure {method} [\d,]+ {precision}", cell["command"])
            if cell["how"] == "measured":
                assert f"measure {method} {classes} {precision}" in cell["command"], (method, key)
                continue
            # Extrapolated: the fitted counts lie on one line, and the cell is that line at `classes`.
            assert cell["how"].startswith("affine"), (method, key)
            points = sorted((int(c), b) for c, b in cell["fitted"].items())
            (c0, b0), (c1, b1) = points[:2]
            step = (b1 - b0) // (c1 - c0)
            assert all(b == b0 + step * (c - c0) for c, b in points), (method, key, points)
            assert cell["activation_bytes"] == b0 + step * (classes - c0), (method, key)


def test_user_supplied_inputs_are_stood_in_at_imagenet_scale():
    """The ViT-B/16 rows run without the files a real run needs (CoPrompt's descriptions refuse a step)."""
    coprompt = memory.run_cfg("CoPrompt", memory.base_to_novel_config("CoPrompt"), (), "vitb16")
    assert coprompt.TRAINER.COPROMPT.DESCRIPTIONS == "captions"
    coop = memory.run_cfg("CoOp", memory.base_to_novel_config("CoOp"), (), "vitb16")
    assert coop.TRAINER.COPROMPT.DESCRIPTIONS == ""  # only the method that reads the key gets the stand-in
