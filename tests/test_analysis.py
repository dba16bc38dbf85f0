"""Analysis tools: feature-shift study and t-SNE on a tiny model."""
import torch

import restore
from restore.analysis.feature_shift_study import (average_feature_shift, plot_per_layer,
                                                  plot_shift_vs_accuracy, summarize)
from restore.analysis.tsne import collect_features, plot_tsne

CLASSES = ["red circle", "blue square", "green triangle"]


def model(name="IVLP"):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 2
    torch.manual_seed(0)
    return restore.build_model(cfg, CLASSES, restore.tiny_clip(seed=1))


def batches():
    g = torch.Generator().manual_seed(0)
    return [{"img": torch.randn(n, 3, 32, 32, generator=g), "label": torch.arange(n) % 3}
            for n in (3, 5)]


def test_average_feature_shift_is_the_image_weighted_mean():
    m, data = model(), batches()
    got = average_feature_shift(m, data)
    per = [m.feature_shift(b["img"]) for b in data]
    vision = (per[0].vision * 3 + per[1].vision * 5) / 8
    torch.testing.assert_close(got.vision, vision)
    torch.testing.assert_close(got.text, per[0].text)  # text shift does not depend on images
    s = summarize(got)
    assert abs(s["discrepancy"] - (got.vision - got.text).abs().sum().item()) < 1e-6
    assert abs(s["shift_text"] - got.text.mean().item()) < 1e-6


def test_image_conditioned_text_shift_is_averaged_over_images():
    m, data = model("CoCoOp"), batches()
    got = average_feature_shift(m, data)
    per = [m.feature_shift(b["img"]) for b in data]
    assert not torch.allclose(per[0].text, per[1].text)  # CoCoOp's text depends on the images
    torch.testing.assert_close(got.text, (per[0].text * 3 + per[1].text * 5) / 8)


def test_baseline_without_vision_prompts_has_zero_vision_shift():
    got = average_feature_shift(model("CoOp"), batches())
    assert torch.count_nonzero(got.vision) == 0 and torch.count_nonzero(got.text) > 0


def test_plots_are_written(tmp_path):
    m, data = model(), batches()
    shift = average_feature_shift(m, data)
    plot_per_layer({"IVLP": shift, "CoOp": average_feature_shift(model("CoOp"), data)},
                   tmp_path / "layers.png")
    plot_shift_vs_accuracy([{"method": "IVLP", "discrepancy": 0.3, "novel": 70.0},
                            {"method": "CoOp", "discrepancy": 0.9, "novel": 60.0}],
                           tmp_path / "scatter.png")
    img, labels, text = collect_features(m, data)
    assert img.shape == (8, 32) and text.shape == (3, 32) and labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert abs((img ** 2).sum(1) - 1).max() < 1e-5
    plot_tsne({"base": (img, labels, text), "novel": (img[:4], labels[:4], text[:2])},
              tmp_path / "tsne.png")
    for name in ("layers.png", "scatter.png", "tsne.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
