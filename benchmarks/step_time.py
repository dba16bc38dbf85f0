"""Training-step time of RESTORE relative to its base method, measured in the same run.

    python benchmarks/step_time.py                       # tiny CLIP and ViT-B/16-sized, CPU
    python benchmarks/step_time.py --device cuda --models vitb16 --steps 20
    python benchmarks/step_time.py --models "" --coop-models rn50    # CoOp on an RN50-shaped CLIP

For each model size it times one optimiser step (forward, loss, backward, SGD step) of MaPLe,
RESTORE_m, PromptSRC and RESTORE_p on a batch of 4 random images and 50 classes, with
FS.TEXT_CLASSES 0 (text shift over all classes) and 8, and prints each RESTORE time as a ratio
of its base method's. Weights are random (the cost does not depend on them). PromptSRC's frozen
60-template text targets are a one-off cost at build time, not part of a step, so the benchmark
builds them from one template to keep the CPU run short. `--coop-models` also times a CoOp step
(16 context vectors, class token at the end) on those sizes, by default an RN50-shaped CLIP (its
image tower runs unmodified; CoOp's prompts are in the text encoder only).
"""
import argparse
import statistics
import time

import torch

import restore
import restore.methods.promptsrc as promptsrc_module
from restore.adapters import input_resolution

SIZES = {
    "tiny": dict(),  # restore.backbone.tiny_clip_dims()
    "vitb16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                   vision_patch_size=16, context_length=77, vocab_size=49408,
                   transformer_width=512, transformer_heads=8, transformer_layers=12),
    "rn50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=512, transformer_heads=8, transformer_layers=12),
}
PAIRS = [("MaPLe", "RESTORE_m"), ("PromptSRC", "RESTORE_p")]


def make_cfg(name, depth, text_classes):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = depth
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = depth
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = depth
    cfg.TRAINER.RESTORE.FS.TEXT_CLASSES = text_classes
    return cfg


def time_steps(model, images, labels, steps, warmup, device, autocast_dtype):
    opt = torch.optim.SGD(model.trainable_parameters(), lr=1e-3, momentum=0.9)
    model.train()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss, _ = model.loss(images, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,vitb16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--coop-models", default="rn50", help="sizes to time CoOp on ('' for none)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    args = parser.parse_args()

    device = torch.device(args.device)
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    promptsrc_module.PROMPTSRC_TEMPLATES = ["a photo of a {}."]
    classnames = [f"class {i}" for i in range(args.classes)]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"classes {args.classes}, median of {args.steps} steps after {args.warmup} warm-up"
          f"{', bf16 autocast' if args.bf16 else ''}")
    print("| model | base | base step (s) | RESTORE | FS.TEXT_CLASSES | step (s) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for size in filter(None, args.models.split(",")):
        clip_model = restore.tiny_clip(seed=0, **SIZES[size]).to(device)
        res = clip_model.visual.input_resolution
        depth = 9 if size == "vitb16" else 3
        g = torch.Generator().manual_seed(0)
        images = torch.randn(args.batch, 3, res, res, generator=g).to(device)
        labels = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
        for base, ours in PAIRS:
            torch.manual_seed(0)
            base_model = restore.build_model(make_cfg(base, depth, 0), classnames, clip_model)
            t_base = time_steps(base_model.to(device), images, labels, args.steps, args.warmup,
                                device, autocast_dtype)
            del base_model
            for k in (0, 8):
                torch.manual_seed(0)
                model = restore.build_model(make_cfg(ours, depth, k), classnames, clip_model)
                t = time_steps(model.to(device), images, labels, args.steps, args.warmup,
                               device, autocast_dtype)
                print(f"| {size} | {base} | {t_base:.4f} | {ours} | {k} | {t:.4f} | "
                      f"{t / t_base:.2f} |", flush=True)
                del model
    coop_models = list(filter(None, args.coop_models.split(",")))
    if coop_models:
        print("\n| model | method | step (s) |\n|---|---|---|")
    for size in coop_models:
        clip_model = restore.tiny_clip(seed=0, **SIZES[size]).to(device)
        res = input_resolution(clip_model)
        g = torch.Generator().manual_seed(0)
        images = torch.randn(args.batch, 3, res, res, generator=g).to(device)
        labels = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
        torch.manual_seed(0)
        model = restore.build_model(make_cfg("CoOp", 1, 0), classnames, clip_model)
        t = time_steps(model.to(device), images, labels, args.steps, args.warmup, device,
                       autocast_dtype)
        print(f"| {size} | CoOp | {t:.4f} |", flush=True)


if __name__ == "__main__":
    main()
