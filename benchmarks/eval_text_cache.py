"""Evaluation speed: class texts encoded once per evaluation (`model.cached_text_features()`, what the
native engine does) vs. once per test batch (what the CoOp-lineage trainers do).

    python benchmarks/eval_text_cache.py [--classes 100] [--images 1000] [--batch 100] [--trainer MaPLe]

Tiny random CLIP (OpenAI architecture, 77-token context) on CPU; random images, so only model time is
measured. Prints both times, the ratio, and checks that the logits agree.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import restore  # noqa: E402

SMALL = {"MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", 2], "CoOp": ["TRAINER.COOP.N_CTX", 4],
         "IVLP": ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2],
         "PromptSRC": ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2],
         "RESTORE_m": ["TRAINER.MAPLE.PROMPT_DEPTH", 2]}


def evaluate(model, batches, cached):
    outputs = []
    start = time.perf_counter()
    with torch.no_grad():
        if cached:
            with model.cached_text_features():
                outputs = [model(x) for x in batches]
        else:
            outputs = [model(x) for x in batches]
    return time.perf_counter() - start, torch.cat(outputs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch", type=int, default=100, help="test batch size (the configs use 100)")
    p.add_argument("--trainer", default="MaPLe", choices=sorted(SMALL))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = args.trainer
    cfg.merge_from_list(SMALL[args.trainer])
    torch.manual_seed(0)
    classnames = [f"class number {i}" for i in range(args.classes)]
    model = restore.build_model(cfg, classnames, restore.tiny_clip(0)).eval()
    res = model.clip.visual.input_resolution
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, res, res, generator=g)
    batches = list(images.split(args.batch))

    evaluate(model, batches[:1], False)  # warm-up
    per_batch = min(evaluate(model, batches, False)[0] for _ in range(args.repeats))
    cached = min(evaluate(model, batches, True)[0] for _ in range(args.repeats))
    _, a = evaluate(model, batches, False)
    _, b = evaluate(model, batches, True)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    print(f"{args.trainer}, tiny CLIP on CPU ({torch.get_num_threads()} threads): {args.classes} classes, "
          f"{args.images} images in {len(batches)} batches of {args.batch}")
    print(f"text encoded per batch: {per_batch:.3f} s")
    print(f"text encoded once:      {cached:.3f} s")
    print(f"speed-up: {per_batch / cached:.2f}x (logits agree)")


if __name__ == "__main__":
    main()
