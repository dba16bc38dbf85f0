"""Section 3 of the GPU check: one side of one method, the original trainer in the real Dassl or this code's
native engine, timed at each class count; it appends its rows to the check's report.

    python benchmarks/gpu_check_originals.py --side original --method MaPLe \\
        --repo .gpu_check/originals/multimodal-prompt-learning --clip FILE --jsonl-dir OUT ...
    python benchmarks/gpu_check_originals.py --side ours --method MaPLe --clip FILE --jsonl-dir OUT ...

The original side runs with PYTHONPATH = the carried Dassl.pytorch and the original repository, and without
this repository (whose `clip` and `train.py` would shadow the original's); benchmarks/gpu_check_prepare.py
exports and patches them (their `clip._download` returns $GPU_CHECK_CLIP; no network).

Both sides build their trainer from the same yaml file (CONFIGS: the originals' ViT-B/16 configs, which this
repository ships unchanged) and the same random CLIP file, with PREC as the config has it (fp16: on CUDA the
originals as shipped, the frozen CLIP in fp16) or fp32 on a CPU. The trainers' data loaders are replaced by
batches of random images already on the device (`build_data_loader` overridden); everything else is the
trainer's own: `forward_backward` (batch 4) for training, `test()` over batches of 100 for evaluation (the
original re-encodes every class prompt for each test batch; ours encodes them once per evaluation). Peak
memory: torch.cuda.max_memory_allocated over the timed steps, and over the timed evaluation.
"""
import argparse
import contextlib
import io
import os
import random
import sys
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CONFIGS = {"MaPLe": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
           "CoOp": "configs/trainers/CoOp/vit_b16_ep50.yaml"}
PRECISION_NODE = {"MaPLe": "MAPLE", "CoOp": "COOP"}
# The CPU rehearsal's CLIP (gpu_check_sections.CLIPS["tiny"]) as restore.backbone.OPENAI_SHAPES lists shapes:
# registered on our side so that restore.load_clip reads its plain state dict.
TINY_SHAPE = ("gpu-check-tiny", (512, 32, 2, 768, 16, 512, 2))

ADJECTIVES = ("red", "striped", "spotted", "giant", "little", "golden", "black", "white", "wild", "common",
              "great", "northern", "desert", "mountain", "sea", "river", "garden", "electric", "wooden", "stone",
              "iron", "paper", "glass", "silver", "green", "blue", "brown", "grey", "horned", "crested")
NOUNS = ("fox", "heron", "beetle", "shark", "owl", "lizard", "frog", "snake", "spider", "moth", "crab", "eagle",
         "finch", "turtle", "salamander", "retriever", "terrier", "spaniel", "hound", "mastiff", "guitar",
         "kettle", "lamp", "bridge", "tower", "chair", "bottle", "clock", "helmet", "drum", "violin", "canoe",
         "tractor", "bicycle", "umbrella", "lantern", "anchor", "barrel", "basket", "mushroom")


def class_names(n):
    """n distinct two-word class names (ImageNet-like: 2-4 tokens each), the same in every process; the
    first n of one fixed order (100 classes are the first 100 of the 1000)."""
    names = [f"{a} {b}" for a in ADJECTIVES for b in NOUNS]
    if n > len(names):
        raise ValueError(f"at most {len(names)} class names")
    random.Random(0).shuffle(names)
    return names[:n]


def loaders(names, test_batches):
    """The attributes a Dassl (or our) trainer's build_data_loader makes, with the given test batches (an
    empty training DataLoader: the check feeds its own batches, but our trainer wraps the loader's batch
    sampler to resume mid-epoch)."""
    from torch.utils.data import DataLoader
    return dict(train_loader_x=DataLoader([], batch_size=1), train_loader_u=None, val_loader=None, test_loader=test_batches,
                num_classes=len(names), num_source_domains=1, lab2cname=dict(enumerate(names)),
                dm=SimpleNamespace(dataset=SimpleNamespace(classnames=list(names)), num_classes=len(names),
                                   lab2cname=dict(enumerate(names))))


def common_cfg(cfg, args, precision):
    node = cfg.TRAINER[PRECISION_NODE[args.method]]
    node.PREC = precision
    if args.method == "MaPLe":
        node.PROMPT_DEPTH = args.depth
    cfg.TRAINER.NAME = args.method
    cfg.INPUT.SIZE = (args.resolution, args.resolution)
    cfg.USE_CUDA = args.device == "cuda"
    cfg.OUTPUT_DIR = os.path.join(args.work, f"{args.side}-{args.method}")
    cfg.SEED = 1


def original_trainer(args, names, test_batches, precision):
    import train as original  # the original's train.py: registers its datasets and trainers; extend_cfg
    from dassl.config import get_cfg_default
    from dassl.engine import TRAINER_REGISTRY
    cfg = get_cfg_default()
    original.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(args.repo, CONFIGS[args.method]))
    common_cfg(cfg, args, precision)
    cfg.freeze()
    attributes = loaders(names, test_batches)

    class Timed(TRAINER_REGISTRY.get(args.method)):
        def build_data_loader(self):
            self.__dict__.update(attributes)

    return Timed(cfg)


def our_trainer(args, names, test_batches, precision):
    import restore
    from restore.config import merge_from_file
    from restore.engine.trainer import Trainer
    if args.tiny_shape:
        import restore.backbone as rb
        rb.OPENAI_SHAPES.setdefault(*TINY_SHAPE)
    cfg = restore.get_cfg_default()
    merge_from_file(cfg, os.path.join(REPO, CONFIGS[args.method]))
    common_cfg(cfg, args, precision)
    cfg.MODEL.BACKBONE.PATH = args.clip
    cfg.freeze()
    attributes = loaders(names, test_batches)
    return Trainer(cfg, data_manager=SimpleNamespace(dataset=attributes["dm"].dataset, **{
        k: attributes[k] for k in ("train_loader_x", "val_loader", "test_loader", "num_classes", "lab2cname")}))


def measure(trainer, x, y, args, device):
    """(first loss, training seconds per step, train peak MiB, evaluation seconds per image, eval peak MiB)."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def reset():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def peak():
        return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    trainer.set_model_mode("train")
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, 1 << 30  # no LR step inside the timing
    batch = {"img": x, "label": y, "domain": torch.zeros_like(y)}
    first_loss = float(trainer.forward_backward(batch)["loss"])  # ours: a tensor; the originals: a float
    for _ in range(args.warmup - 1):
        trainer.forward_backward(batch)
    sync()
    reset()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.forward_backward(batch)
    sync()
    train_s, train_peak = (time.perf_counter() - start) / args.steps, peak()
    batches = trainer.test_loader
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.test_loader = batches[:1]
        trainer.test()  # warm-up
        trainer.test_loader = batches
        sync()
        reset()
        start = time.perf_counter()
        trainer.test()
        sync()
    eval_s = (time.perf_counter() - start) / sum(len(b["label"]) for b in batches)
    return first_loss, train_s, train_peak, eval_s, peak()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", required=True, choices=["original", "ours"])
    p.add_argument("--method", required=True, choices=sorted(CONFIGS))
    p.add_argument("--repo", help="the original repository (--side original)")
    p.add_argument("--clip", required=True, help="the random CLIP's state dict (OpenAI layout)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--classes", default="1000,100")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--eval-batch", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=5)
    p.add_argument("--depth", type=int, default=9, help="MaPLe's prompt depth")
    p.add_argument("--tiny-shape", action="store_true", help="the CLIP file is the CPU rehearsal's small CLIP")
    p.add_argument("--jsonl-dir", required=True, help="the report folder (gpu_check_report)")
    p.add_argument("--work", default="/tmp/gpu_check/originals")
    args = p.parse_args(argv)
    sys.path.insert(0, HERE)
    from gpu_check_report import Report
    report = Report(args.jsonl_dir)
    device_type = args.device
    precision = "fp16" if device_type == "cuda" else "fp32"
    os.environ["GPU_CHECK_CLIP"] = os.path.abspath(args.clip)
    if precision == "fp32":  # the patched forced half casts of MaPLe follow the run's precision on a CPU
        os.environ["GPU_CHECK_HALF"] = "float32"
    if args.side == "original":
        sys.path.insert(0, args.repo)
    import torch
    from torch.backends import cudnn
    if os.environ.get("RESTORE_NUM_THREADS"):  # the check's thread count, on both sides
        torch.set_num_threads(int(os.environ["RESTORE_NUM_THREADS"]))
    device = torch.device(device_type)
    cudnn.benchmark = True  # as every train.py of the lineage
    state = torch.load(args.clip, map_location="cpu", weights_only=True)
    args.resolution = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5) * \
        state["visual.conv1.weight"].shape[-1]
    del state
    build = original_trainer if args.side == "original" else our_trainer
    for n in (int(c) for c in args.classes.split(",")):
        names = class_names(n)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g).to(device)
        y = torch.randint(0, n, (args.batch,), generator=g).to(device)
        xe = torch.randn(args.eval_batch, 3, args.resolution, args.resolution, generator=g).to(device)
        ye = torch.randint(0, n, (args.eval_batch,), generator=g).to(device)
        tests = [{"img": xe, "label": ye, "domain": torch.zeros_like(ye)}] * args.eval_batches
        start = time.time()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                torch.manual_seed(1)
                trainer = build(args, names, tests, precision)
            build_s = time.time() - start
            first_loss, train_s, train_peak, eval_s, eval_peak = measure(trainer, x, y, args, device)
        except Exception as err:
            import traceback
            traceback.print_exc()
            report.add(3, "error", side=args.side, method=args.method, error=f"{n} classes: "
                       f"{type(err).__name__}: {str(err)[:300]}")
            continue
        report.add(3, "speed", side=args.side, method=args.method, classes=n, precision=precision,
                   train_ips=args.batch / train_s, eval_ips=1 / eval_s, train_peak_mib=train_peak,
                   eval_peak_mib=eval_peak, first_loss=first_loss, build_s=build_s)
        print(f"{args.side} {args.method} {n} classes: train {args.batch / train_s:.1f} images/s, eval "
              f"{1 / eval_s:.1f} images/s, peak {train_peak} / {eval_peak} MiB", flush=True)
        del trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
