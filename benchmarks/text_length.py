"""Training-step time with the text encoder cut at the last EOT, relative to the full context.

    python benchmarks/text_length.py                      # testbed CLIP and ViT-B/16-sized, CPU
    python benchmarks/text_length.py --device cuda --models vitb16 --steps 20

CLIP's text blocks are causal, so the tokens after the last EOT of a batch of prompts can never
reach a feature: `PromptedTextEncoder` runs positions 0..max(EOT) only. This script times one
optimiser step (forward, loss, backward, SGD step) of each method both ways, in the same run
(`text_encoder.causal = False` forces the full context), and checks that the logits agree.
Class names are real ones (the testbed's digits, or ImageNet-style names for ViT-B/16, whose
context is 77 tokens); weights are random for ViT-B/16 (the cost does not depend on them).
"""
import argparse

import torch

import restore
import restore.methods.promptsrc.model as promptsrc_module
from step_time import time_steps  # benchmarks/ is the script's directory

METHODS = ["CoOp", "CoCoOp", "MaPLe", "PromptSRC", "RESTORE_m", "RESTORE_p"]
VITB16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
              vision_patch_size=16, context_length=77, vocab_size=49408, transformer_width=512,
              transformer_heads=8, transformer_layers=12)
IMAGENET_STYLE = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark",
                  "electric ray", "stingray", "rooster", "hen", "ostrich", "brambling",
                  "goldfinch", "house finch", "junco", "indigo bunting", "American robin",
                  "bulbul", "jay", "magpie", "chickadee", "American dipper", "kite (bird of prey)",
                  "bald eagle", "vulture", "great grey owl", "fire salamander", "smooth newt",
                  "newt", "spotted salamander", "axolotl", "American bullfrog", "tree frog"]


def make_cfg(name, size):
    cfg = restore.get_cfg_default()
    if size == "testbed":
        from restore.config import merge_from_file
        merge_from_file(cfg, f"configs/trainers/{name}/testbed.yaml")
    else:
        cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9
        cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9
        cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9
    cfg.TRAINER.NAME = name
    return cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="testbed,vitb16")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    device = torch.device(args.device)
    promptsrc_module.PROMPTSRC_TEMPLATES = ["a photo of a {}."]  # build-time cost only
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch}, median of {args.steps} steps after {args.warmup} warm-up")
    print("| model | method | text length | full (s) | cut at EOT (s) | speed-up | max logit diff |")
    print("|---|---|---|---|---|---|---|")
    for size in args.models.split(","):
        if size == "testbed":
            from restore.testbed import load_testbed_clip
            from restore.testbed.datasets import get
            clip_model, classnames = load_testbed_clip(), get("digits").classnames[:40]
        else:
            clip_model, classnames = restore.tiny_clip(seed=0, **VITB16), IMAGENET_STYLE
        clip_model = clip_model.to(device)
        res = clip_model.visual.input_resolution
        g = torch.Generator().manual_seed(0)
        images = torch.randn(args.batch, 3, res, res, generator=g).to(device)
        labels = torch.randint(0, len(classnames), (args.batch,), generator=g).to(device)
        for name in args.methods.split(","):
            torch.manual_seed(0)
            model = restore.build_model(make_cfg(name, size), classnames, clip_model).to(device)
            model.eval()
            with torch.no_grad():
                cut = model(images)
                model.text_encoder.causal = False
                full = model(images)
            t_full = time_steps(model, images, labels, args.steps, args.warmup, device, None)
            model.text_encoder.causal = True
            t_cut = time_steps(model, images, labels, args.steps, args.warmup, device, None)
            length = int(model.eot.max()) + 1
            print(f"| {size} | {name} | {length} of {clip_model.context_length} | {t_full:.4f} | "
                  f"{t_cut:.4f} | {t_full / t_cut:.2f}x | {(cut - full).abs().max().item():.1e} |",
                  flush=True)
            del model


if __name__ == "__main__":
    main()
