"""RESTORE's extra training-step cost against its base method: FLOP floor, measured time, memory.

    python benchmarks/step_time.py                     # tiny, ViT-B/16 and ImageNet-shaped, CPU
    python benchmarks/step_time.py --cases tiny --steps 20
    python benchmarks/step_time.py --device cuda --cases vitb16,imagenet --bf16
    python benchmarks/step_time.py --cases "" --coop-models rn50    # CoOp on an RN50-shaped CLIP

For each case (a CLIP shape, a class count, batch 4, random weights: the cost does not depend on
them) it times one optimiser step (forward, loss, backward, SGD step) of MaPLe and PromptSRC and of
RESTORE_m / RESTORE_p with the exact trace (the default) and with each opt-in speed-up of the trace:

- exact: FS defaults; every block's prompt-free pass, with gradient, over every image and class.
- recompute: FS.PROMPT_FREE recompute (exact; the prompt-free pass's activations are recomputed in
  the backward pass instead of kept).
- no-grad: FS.PROMPT_FREE no_grad (the prompt-free pass without gradient).
- subsets: FS.VISION_IMAGES batch/2, FS.TEXT_CLASSES 8 (random subsets, variance-corrected).
- no-grad+subsets: both.

Columns:
- floor: FLOPs of the RESTORE step over FLOPs of the base step, both counted on the same inputs by
  torch.utils.flop_counter.FlopCounterMode (matrix products, convolutions and attention, forward
  and backward; element-wise work such as LayerNorm is not counted). The extra FLOPs are the
  prompt-free pass (and its backward) plus the two small surgery adapters: the arithmetic floor of
  the ratio when nothing else costs time.
- ratio: median step time of the RESTORE variant over the base method's, timed in interleaved
  rounds (base, variants, base, ...) in one process, so that drifts of the machine hit all alike.
- ratio / floor: how far the implementation is above its arithmetic floor.
- activation memory (--memory cases): bytes of the tensors autograd saves for the backward pass
  during one training forward, counted once per storage with torch.autograd.graph.saved_tensors_hooks,
  the model's parameters and buffers (the frozen CLIP) excluded; the peak of what a step holds on
  top of the weights, up to temporaries (restore.analysis.activation_memory; every method at
  ImageNet scale and the original code's: benchmarks/memory.py).

PromptSRC's frozen 60-template text targets are a one-off cost at build time, not part of a step,
so the benchmark builds them from one template to keep the CPU run short. `--coop-models` also
times a CoOp step (16 context vectors, class token at the end) on an RN50-shaped CLIP (its image
tower runs unmodified; CoOp's prompts are in the text encoder only).
"""
import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import restore
import restore.methods.promptsrc.model as promptsrc_module  # its PROMPTSRC_TEMPLATES
from restore.adapters import input_resolution
from restore.analysis.activation_memory import SavedTensors

VITB16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
              vision_patch_size=16, context_length=77, vocab_size=49408,
              transformer_width=512, transformer_heads=8, transformer_layers=12)
SIZES = {
    "tiny": dict(),  # restore.backbone.tiny_clip_dims()
    "vitb16": VITB16,
    "rn50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=512, transformer_heads=8, transformer_layers=12),
}
# case: (CLIP size, classes, prompt depth, steps, warm-up steps). ImageNet-shaped: the text side
# (1000 class prompts through 12 blocks) dominates the step.
CASES = {
    "tiny": ("tiny", 50, 3, 20, 3),
    "vitb16": ("vitb16", 50, 9, 3, 1),
    "imagenet": ("vitb16", 1000, 9, 2, 1),
}
PAIRS = [("MaPLe", "RESTORE_m"), ("PromptSRC", "RESTORE_p")]


def variants(batch):
    """name -> TRAINER.RESTORE.FS overrides of each trace variant."""
    subsets = {"VISION_IMAGES": batch // 2, "TEXT_CLASSES": 8}
    return {"exact": {}, "recompute": {"PROMPT_FREE": "recompute"},
            "no-grad": {"PROMPT_FREE": "no_grad"}, "subsets": subsets,
            "no-grad+subsets": {"PROMPT_FREE": "no_grad", **subsets}}


def make_cfg(name, depth, fs=None):
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = depth
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = depth
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = depth
    for key, value in (fs or {}).items():
        cfg.TRAINER.RESTORE.FS[key] = value
    return cfg


class Step:
    """One model's training step: forward, loss, backward, SGD step."""

    def __init__(self, model, images, labels, device, autocast_dtype):
        self.model, self.images, self.labels = model.to(device).train(), images, labels
        self.device, self.autocast_dtype = device, autocast_dtype
        self.opt = torch.optim.SGD(model.trainable_parameters(), lr=1e-3, momentum=0.9)
        self.times = []

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype,
                              enabled=self.autocast_dtype is not None)

    def run(self):
        with self._autocast():
            loss, _ = self.model.loss({"img": self.images, "label": self.labels})
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def timed(self):
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        self.run()
        sync()
        self.times.append(time.perf_counter() - start)

    def flops(self):
        with FlopCounterMode(display=False) as counter:
            self.run()
        return counter.get_total_flops()

    def activation_bytes(self):
        """Bytes of the tensors saved for backward in one training forward (weights excluded)."""
        with SavedTensors(self.model) as saved, self._autocast():
            loss, _ = self.model.loss({"img": self.images, "label": self.labels})
        del loss
        return saved.nbytes

    @property
    def median(self):
        return statistics.median(self.times)


def case_settings(case, args):
    """(CLIP size, classes, prompt depth, timed rounds, warm-up rounds) with --steps / --warmup."""
    size, n_classes, depth, steps, warmup = CASES[case]
    return size, n_classes, depth, args.steps or steps, args.warmup if args.warmup is not None else warmup


def run_case(case, args, device, autocast_dtype):
    size, n_classes, depth, steps, warmup = case_settings(case, args)
    clip_model = restore.tiny_clip(seed=0, **SIZES[size]).to(device)
    res = input_resolution(clip_model)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, res, res, generator=g).to(device)
    labels = torch.randint(0, n_classes, (args.batch,), generator=g).to(device)
    classnames = [f"class {i}" for i in range(n_classes)]
    memory = case in args.memory.split(",")
    for base, ours in [p for p in PAIRS if p[0] in args.pairs.split(",")]:
        runs = {}
        for name, fs in [(base, None)] + [(f"{ours} {v}", o) for v, o in variants(args.batch).items()]:
            torch.manual_seed(0)
            model = restore.build_model(make_cfg(name.split()[0], depth, fs), classnames, clip_model)
            runs[name] = Step(model, images, labels, device, autocast_dtype)
        flops = {name: step.flops() for name, step in runs.items()}  # also the first warm-up
        mem = {name: step.activation_bytes() for name, step in runs.items()} if memory else {}
        for _ in range(warmup - 1):
            for step in runs.values():
                step.run()
        for _ in range(steps):  # interleaved rounds
            for step in runs.values():
                step.timed()
        b = runs[base]
        print(f"| {case} | {base} | {b.median:.4f} | {flops[base] / 1e9:.2f} | | | | "
              + (f"{mem[base] / 2**20:.0f} MiB |" if memory else "|"), flush=True)
        for name, step in runs.items():
            if name == base:
                continue
            floor, ratio = flops[name] / flops[base], step.median / b.median
            mem_cell = f"{mem[name] / 2**20:.0f} MiB ({mem[name] / mem[base]:.2f}x) |" if memory else "|"
            print(f"| {case} | {name} | {step.median:.4f} | {flops[name] / 1e9:.2f} | {floor:.2f} | "
                  f"{ratio:.2f} | {ratio / floor:.2f} | {mem_cell}", flush=True)
        del runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="tiny,vitb16,imagenet",
                        help=f"comma-separated, of {', '.join(CASES)} ('' for none)")
    parser.add_argument("--memory", default="vitb16",
                        help="cases whose activation memory is measured")
    parser.add_argument("--pairs", default=",".join(b for b, _ in PAIRS),
                        help="base methods to time with their RESTORE variant (comma-separated)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed rounds (default: per case)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up rounds, >= 1 (default: per case)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--coop-models", default="rn50", help="sizes to time CoOp on ('' for none)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    args = parser.parse_args()
    for flag, given, valid in (("--cases", args.cases, CASES), ("--memory", args.memory, CASES),
                               ("--pairs", args.pairs, [b for b, _ in PAIRS]),
                               ("--coop-models", args.coop_models, SIZES)):
        unknown = [v for v in filter(None, given.split(",")) if v not in valid]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(valid)}")

    device = torch.device(args.device)
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    promptsrc_module.PROMPTSRC_TEMPLATES = ["a photo of a {}."]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}"
          f"{', bf16 autocast' if args.bf16 else ''}; cases (CLIP, classes, prompt depth, timed "
          f"rounds, warm-up): " + "; ".join(f"{c} {case_settings(c, args)}"
                                            for c in filter(None, args.cases.split(","))))
    print("| case | method | step (s) | GFLOP | floor | ratio | ratio / floor | activation memory |")
    print("|---|---|---|---|---|---|---|---|")
    for case in filter(None, args.cases.split(",")):
        run_case(case, args, device, autocast_dtype)

    coop_models = list(filter(None, args.coop_models.split(",")))
    if coop_models:
        print("\n| model | method | step (s) |\n|---|---|---|")
    for size in coop_models:
        clip_model = restore.tiny_clip(seed=0, **SIZES[size]).to(device)
        res = input_resolution(clip_model)
        g = torch.Generator().manual_seed(0)
        images = torch.randn(args.batch, 3, res, res, generator=g).to(device)
        labels = torch.randint(0, 50, (args.batch,), generator=g).to(device)
        torch.manual_seed(0)
        model = restore.build_model(make_cfg("CoOp", 1), [f"class {i}" for i in range(50)], clip_model)
        step = Step(model, images, labels, device, autocast_dtype)
        for _ in range(args.warmup if args.warmup is not None else 1):
            step.run()
        for _ in range(args.steps or 3):
            step.timed()
        print(f"| {size} | CoOp | {step.median:.4f} |", flush=True)


if __name__ == "__main__":
    main()
