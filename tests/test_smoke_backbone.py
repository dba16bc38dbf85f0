"""Runs without weights: any real config on the small random CLIP (fitted to it), the README's
Python API snippet as written, and the one-command smoke test of a lab script."""
import re
import shutil
import subprocess

import pytest
import torch

import restore
from restore.smoke import fit_cfg_to_backbone

from test_engine_fakes import ROOT, make_oxford_pets


def test_fit_cfg_to_backbone_caps_depths_and_sets_size():
    cfg = restore.get_cfg_default()
    cfg.merge_from_list(["INPUT.SIZE", (224, 224), "TRAINER.MAPLE.PROMPT_DEPTH", 9,
                         "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 9,
                         "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2])
    vision4 = restore.tiny_clip(0, vision_layers=4)  # 4 vision, 3 text layers
    changes = fit_cfg_to_backbone(cfg, vision4)
    assert tuple(cfg.INPUT.SIZE) == (32, 32)
    assert cfg.TRAINER.MAPLE.PROMPT_DEPTH == 3  # the smaller encoder
    assert cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT == 3
    assert cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION == 2  # fits: unchanged
    assert "INPUT.SIZE: (224, 224) -> (32, 32)" in changes
    assert "TRAINER.MAPLE.PROMPT_DEPTH: 9 -> 3" in changes
    assert not any("PROMPTSRC.PROMPT_DEPTH_VISION" in c for c in changes)
    assert "TRAINER.IVLP.PROMPT_DEPTH_VISION: 9 -> 4" in changes  # default 9, 4 vision layers
    assert fit_cfg_to_backbone(cfg, vision4) == []  # a fitted config stays as it is


def readme_snippet():
    text = open(f"{ROOT}/README.md").read()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("backbone", ["testbed", "tiny-random"])
def test_readme_python_api_snippet_runs_as_written(backbone):
    code = readme_snippet()
    assert 'restore.load_clip("ViT-B/16")' in code
    code = code.replace('restore.load_clip("ViT-B/16")', f'restore.load_clip("{backbone}")')
    g = torch.Generator().manual_seed(0)
    names = dict(classnames=["cat", "golden retriever", "sports car"],
                 images=torch.randn(2, 3, 32, 32, generator=g), labels=torch.tensor([0, 2]),
                 epoch=0, max_epoch=2)
    exec(compile(code, "README.md", "exec"), names)
    assert names["logits"].shape == (2, 3) and torch.isfinite(names["logits"]).all()
    assert set(names["terms"]) >= {"loss", "ce", "fs", "alpha_v", "alpha_t"}
    assert names["shift"].text.numel() == names["model"].text_encoder.num_layers


def readme_smoke_commands():
    """The commands of README's "Smoke test without weights", as word lists."""
    text = open(f"{ROOT}/README.md").read()
    section = text[text.index("## Smoke test without weights"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].split() for line in block.strip().splitlines()]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_one_command_smoke_test_of_a_lab_script(tmp_path):
    """README's smoke test as written (on a fake OxfordPets, CPU, no DataLoader workers): BACKBONE=tiny-random
    runs RESTORE_m's real ViT-B/16 config (224 px, depth 9), fitted to the random CLIP, for one epoch
    (OPTIM.MAX_EPOCH 1, not the config's 10), into an output folder of its own; the test step loads that
    epoch."""
    import os
    train_cmd, test_cmd = readme_smoke_commands()
    assert train_cmd[:5] == ["BACKBONE=tiny-random", "bash", "scripts/restore/base2new_train.sh", "oxford_pets",
                             "1"] and train_cmd[5:] == ["OPTIM.MAX_EPOCH", "1"]
    assert test_cmd[:3] == ["BACKBONE=tiny-random", "bash", "scripts/restore/base2new_test.sh"]
    assert test_cmd[3:] == train_cmd[3:]
    make_oxford_pets(str(tmp_path / "data"))
    env = {k: v for k, v in os.environ.items() if k not in ("OUTPUT", "SHOTS", "LOADEP")}
    env.update(DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"), SHOTS="4",
               ENGINE="native", BACKBONE="tiny-random")
    here = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8", "USE_CUDA", "False"]
    proc = subprocess.run(train_cmd[1:] + here, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'tiny-random' is a small RANDOM CLIP for smoke tests: its accuracies mean nothing" \
        in proc.stdout
    assert "fitted to it: INPUT.SIZE: (224, 224) -> (32, 32)" in proc.stdout
    assert "fitted to it: TRAINER.MAPLE.PROMPT_DEPTH: 9 -> 3" in proc.stdout
    run = (tmp_path / "out" / "backbone_tiny-random" / "base2new" / "train_base" / "oxford_pets"
           / "shots_4" / "RESTORE_m" / "vit_b16_c2_ep10_batch4_2ctx" / "seed1")
    assert sorted(os.listdir(run / "MultiModalPromptLearner")) == ["checkpoint", "model.pth.tar-1"]  # 1 epoch
    assert "* accuracy:" in (run / "log.txt").read_text()
    proc = subprocess.run(test_cmd[1:] + here, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tested = str(run).replace("train_base", "test_new")
    assert "(epoch = 1)" in open(os.path.join(tested, "log.txt")).read()
    assert sorted(os.listdir(tmp_path / "out")) == ["backbone_tiny-random"]
