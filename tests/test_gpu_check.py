"""benchmarks/gpu_check.py, the prepared GPU check: its CPU form end to end (every section, shrunken sizes),
a section cut at its cap still reporting what it measured, the preparation's patches, and the coverage
of every registered method."""
import json
import os
import re
import subprocess
import sys
import time
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)

import gpu_check  # noqa: E402
import gpu_check_prepare as prepare  # noqa: E402
from gpu_check_originals import class_names  # noqa: E402
from gpu_check_report import Report, render  # noqa: E402


def rows_of(out, section, kind):
    with open(os.path.join(out, "gpu_check.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if r["section"] == section and r["kind"] == kind]


def test_cpu_form_runs_every_section(tmp_path):
    """The CPU rehearsal as CI runs it: every section done; on a CPU every precision mode runs fp32, so
    each must equal fp32 exactly (the same weights, the same batches); every measurement is a number."""
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(BENCH, "gpu_check.py"), "--device", "cpu", "--quick", "--out", str(out),
           "--work", str(tmp_path / "work"), "--site", str(tmp_path / "site"), "--carried", str(tmp_path / "none"),
           "--methods", "CoOp", "--engines", "native", "--tests", "", "--compare", "MaPLe", "--pairs", "MaPLe",
           "--cap-scale", "20", "--budget", "1200"]
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    states = {r["section"]: r["state"] for n in range(6) for r in rows_of(out, n, "status")}
    assert states == {n: "done" for n in range(6)}, states

    smoke = rows_of(out, 1, "smoke")
    assert [(r["method"], r["engine"], r["rc"]) for r in smoke] == [("CoOp", "native", 0)]
    assert 0 <= smoke[0]["accuracy"] <= 100 and smoke[0]["cuda_peak_mib"] is None

    logits = rows_of(out, 2, "logits")
    assert [r["mode"] for r in logits] == ["fp16", "amp", "bf16"]
    for r in logits:
        assert r["runs_as"].startswith("fp32") and r["max_logit_diff"] == 0 and r["argmax_agree"] == 100
        assert r["accuracy"] == r["ref_accuracy"]
    train = rows_of(out, 2, "train")
    assert [r["mode"] for r in train] == ["fp32", "fp16", "amp", "bf16"]
    assert all(r["finite"] and r["steps"] == 4 for r in train)
    assert len({r["final_loss"] for r in train}) == 1 and len({r["accuracy"] for r in train}) == 1

    speed = rows_of(out, 3, "speed")
    assert [(r["side"], r["method"], r["classes"], r["precision"]) for r in speed] == [("ours", "MaPLe", 20, "fp32")]
    assert speed[0]["train_ips"] > 0 and speed[0]["eval_ips"] > 0
    assert 0 < speed[0]["first_loss"] < 10  # about ln(20) = 3.0 for random prompts
    assert "originals are not in" in rows_of(out, 3, "note")[0]["note"]

    steps = rows_of(out, 4, "step")
    assert [(r["method"], r["variant"]) for r in steps] == [
        ("MaPLe", "base"), ("RESTORE_m", "exact"), ("RESTORE_m", "recompute"), ("RESTORE_m", "no-grad"),
        ("RESTORE_m", "subsets"), ("RESTORE_m", "no-grad+subsets")]
    base = steps[0]["step_ms"]
    for r in steps[1:]:
        assert r["ratio"] == pytest.approx(r["step_ms"] / base)

    loaders = rows_of(out, 5, "loader")
    assert [(r["split"], r["batch"], r["workers"]) for r in loaders] == [("train", 4, 1), ("test", 8, 1)]
    assert all(r["ips"] > 0 and r["images"] > 0 for r in loaders)
    assert loaders[0]["gpu_ips"] == pytest.approx(speed[0]["train_ips"])  # ours MaPLe, section 3

    report = (out / "gpu_check.md").read_text()
    for n in range(6):
        assert f"## {n}. " in report
    assert "| ours | MaPLe | 20 | fp32 |" in report


def test_a_section_cut_at_its_cap_keeps_what_it_measured(tmp_path):
    report = Report(str(tmp_path))

    def slow(ctx):
        ctx.report.add(4, "step", classes=10, method="MaPLe", variant="base", step_ms=12.5)
        time.sleep(30)  # past the cap: killed with its process group

    ctx = types.SimpleNamespace(report=report)
    with open(tmp_path / "log", "a") as log:
        start = time.time()
        state, seconds, _ = gpu_check.run_section(slow, ctx, 1.0, log)
    assert state == "cut at its cap of 1 s" and seconds < 10 and time.time() - start < 10
    assert [r["step_ms"] for r in report.rows()] == [12.5]
    assert "| 10 | MaPLe | base | 12.5 |" in (tmp_path / "gpu_check.md").read_text()


def test_ratios_and_goals_in_the_report():
    rows = [{"section": 3, "kind": "speed", "side": side, "method": "MaPLe", "classes": 1000, "precision": "fp16",
             "train_ips": t, "eval_ips": e, "train_peak_mib": m, "eval_peak_mib": m}
            for side, t, e, m in (("original", 40.0, 100.0, 2000.0), ("ours", 50.0, 200.0, 1000.0))]
    rows += [{"section": 4, "kind": "step", "classes": 100, "method": "RESTORE_m", "variant": "exact",
              "step_ms": 30.0, "ratio": 1.5}]
    text = render(rows)
    assert "| MaPLe | 1000 | 1.25x | 2.00x | 0.50 | training faster; evaluation BELOW 2.5x |" in text
    assert "ABOVE 1.3x" in text
    assert "## 1. CUDA tests and a smoke run of every method (not reached)" in text


def test_every_registered_method_gets_a_smoke_run_and_a_precision_row(tmp_path):
    """Sections 1-2 cover the registry (new methods included) with train.py arguments that parse; a method
    without a testbed config runs its first config on the small random CLIP."""
    import train
    from restore.methods import registry
    import gpu_check_sections as sections
    args = gpu_check.parse_args(["--device", "cpu", "--quick", "--work", str(tmp_path)])
    ctx = sections.Context(args, Report(str(tmp_path)))
    assert ctx.methods == registry.names()
    for name in registry.names():
        argv = sections.method_args(ctx, name, "native", str(tmp_path / name))
        assert argv is not None, name
        parsed = train.build_parser().parse_args(argv)
        assert parsed.trainer == name and parsed.opts[:2] == ["OPTIM.MAX_EPOCH", "1"]
        has_testbed = os.path.isfile(registry.config_file(name, "testbed"))
        assert (parsed.backbone == "tiny-random") != has_testbed, name


def test_unknown_method_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # main() prepends to it
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--device", "cpu", "--methods", "MaPle", "--out", str(tmp_path / "o"), "--work",
                        str(tmp_path / "w"), "--carried", str(tmp_path / "none"), "--sections", ""])
    message = str(exit_.value.code)
    assert message.startswith("Error: Unknown trainer 'MaPle'.") and "MaPLe" in message
    assert len(message.splitlines()) == 1


def fake_originals(root):
    """The lines the patches change, in files laid out as the originals'."""
    texts = {
        "Dassl.pytorch/dassl/optim/lr_scheduler.py": "        super().__init__(optimizer, last_epoch, verbose)\n",
        "multimodal-prompt-learning/clip/model.py": "from collections import OrderedDict\n"
                                                    "x = x.permute(1, 0, 2).half()\n",
        "multimodal-prompt-learning/trainers/maple.py": "proj = self.proj.half()\n",
    }
    download = ("import os\n\ndef _download(url, root='~'):\n" + prepare.DOWNLOAD_OLD + "\n    return filename\n")
    texts["CoOp/clip/clip.py"] = texts["multimodal-prompt-learning/clip/clip.py"] = download
    for rel, text in texts.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)


def test_patches_keep_the_originals_behaviour_unless_asked(tmp_path, monkeypatch):
    fake_originals(str(tmp_path))
    done = prepare.apply_patches(str(tmp_path))
    assert len(done) == len(prepare.PATCHES)
    clip_py = (tmp_path / "CoOp" / "clip" / "clip.py").read_text()
    namespace = {}
    exec(compile(clip_py, "clip.py", "exec"), namespace)
    monkeypatch.delenv(prepare.CLIP_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert namespace["_download"]("https://x/ViT-B-16.pt", str(tmp_path / "cache")) == "ViT-B-16.pt"  # as shipped
    monkeypatch.setenv(prepare.CLIP_ENV, "/data/random_clip.pt")
    assert namespace["_download"]("https://x/ViT-B-16.pt") == "/data/random_clip.pt"
    model_py = (tmp_path / "multimodal-prompt-learning" / "clip" / "model.py").read_text()
    assert "x = x.permute(1, 0, 2).to(_GPU_CHECK_HALF)" in model_py and ".half()" not in model_py
    import torch
    for value, dtype in ((None, torch.float16), ("float32", torch.float32)):
        if value is None:
            monkeypatch.delenv(prepare.HALF_ENV, raising=False)
        else:
            monkeypatch.setenv(prepare.HALF_ENV, value)
        header = {}
        exec(prepare.HALF_HEADER, header)
        assert header["_GPU_CHECK_HALF"] is dtype


def test_a_patch_that_finds_nothing_names_the_file(tmp_path):
    fake_originals(str(tmp_path))
    (tmp_path / "CoOp" / "clip" / "clip.py").write_text("def _download(url, root):\n    pass\n")
    with pytest.raises(prepare.PrepareError, match=r"^CoOp/clip/clip.py: expected 1 occurrence"):
        prepare.apply_patches(str(tmp_path))


def test_prepared_commits_are_the_documented_ones():
    text = open(os.path.join(ROOT, "docs", "REPRODUCING.md")).read()
    for name, (repo, commit) in prepare.ORIGINALS.items():
        row = re.search(rf"^\| {re.escape(repo)}\b[^|]*\| ([0-9a-f]{{7,40}}) \|", text, re.M)
        assert row and commit.startswith(row.group(1)), repo


def test_the_rehearsal_clip_is_registered_with_its_own_shape():
    import restore
    from restore.backbone import weight_shapes
    import gpu_check_sections as sections
    assert weight_shapes(restore.tiny_clip(0, **sections.CLIPS["tiny"]).state_dict()) == sections.TINY_SHAPE[1]


def test_class_names_are_distinct_and_the_same_everywhere():
    names = class_names(1000)
    assert len(set(names)) == 1000 and names == class_names(1000) and class_names(100) == names[:100]
    assert all(re.fullmatch(r"[a-z]+ [a-z]+", n) for n in names)
