"""Pretrain the testbed CLIP contrastively on captions of ALL testbed classes (images rendered on the fly).

    python -m restore.testbed.pretrain --seed 0 --out restore/assets/testbed_clip.pt

Writes the compact checkpoint (see ``restore.testbed.model``) and, next to it, ``<out stem>.json``:
seed, command, dims, steps, wall time, device, and the zero-shot accuracies with each dataset's hand prompt
(base / new / all halves of every testbed dataset's test split, data seed 0).
Deterministic by seed: batch ``s`` is rendered from ``numpy.random.default_rng([seed, 7, s])``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..cli import ArgumentParser
from . import captions as C
from . import datasets as D
from .model import DEFAULT_DIMS, build_clip, caption_token_ids, save_checkpoint
from .zeroshot import to_tensor, zeroshot_accuracy

log = logging.getLogger(__name__)


class CaptionStream(torch.utils.data.IterableDataset):
    def __init__(self, seed, steps, batch, start=0):
        self.seed, self.steps, self.batch, self.start = seed, steps, batch, start

    def __iter__(self):
        import clip
        from .render import render
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for s in range(self.start + wid, self.steps, nw):  # DataLoader interleaves workers in step order
            rng = np.random.default_rng([self.seed, 7, s])
            imgs, caps = [], []
            for _ in range(self.batch):
                spec = C.sample_concept(rng)
                imgs.append(render(spec, rng))
                caps.append(C.caption(spec, rng))
            yield to_tensor(np.stack(imgs)), clip.tokenize(caps, context_length=DEFAULT_DIMS["context_length"])


def param_groups(model, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if n == "token_embedding.weight":
            continue  # optimised without weight decay: unused rows then stay at their seeded init
        (decay if p.ndim >= 2 and "embedding" not in n else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd},
            {"params": no_decay + [model.token_embedding.weight], "weight_decay": 0.0}]


def evaluate_all(model, seed=0, per_class=None, processes=1) -> dict:
    model.eval()
    res = {}
    for key, ds in D.DATASETS.items():
        images = D.render_split(ds, "test", seed=seed, per_class=per_class, processes=processes)
        acc = zeroshot_accuracy(model, key, images=images)
        res[ds.registry_name] = {"key": key, "template": ds.template, "classes": len(ds.classes),
                                 "num_base": ds.num_base, **{k: round(v, 4) for k, v in acc.items()}}
    return res


def summarise(res: dict) -> str:
    return "  ".join(f"{v['key']}: b{100 * v['base']:.1f} n{100 * v['new']:.1f} a{100 * v['all']:.1f}"
                     for v in res.values())


def main(argv=None):
    p = ArgumentParser(prog="python -m restore.testbed.pretrain", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="restore/assets/testbed_clip.pt")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=0, help="quick zero-shot check every N steps (0: off)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--workers", type=int, default=1, help="rendering worker processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 (default: bf16 autocast)")
    p.add_argument("--eval-per-class", type=int, default=None,
                   help="test images per class for the final zero-shot record (default: the full test splits)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    dims = dict(DEFAULT_DIMS)
    model = build_clip(dims, seed=a.seed).to(dev)
    opt = torch.optim.AdamW(param_groups(model, a.wd), lr=a.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / a.warmup if s < a.warmup
        else 0.5 * (1 + math.cos(math.pi * (s - a.warmup) / max(1, a.steps - a.warmup))))
    loader = torch.utils.data.DataLoader(CaptionStream(a.seed, a.steps, a.batch), batch_size=None,
                                         num_workers=a.workers, prefetch_factor=4 if a.workers else None)
    t0 = time.time()
    model.train()
    labels = torch.arange(a.batch, device=dev)
    for step, (img, tok) in enumerate(loader):
        img, tok = img.to(dev, non_blocking=True), tok.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=not a.no_bf16):
            li, lt = model(img, tok)
        li = li.float()
        loss = 0.5 * (torch.nn.functional.cross_entropy(li, labels) +
                      torch.nn.functional.cross_entropy(li.t(), labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == a.steps - 1:
            log.info(f"step {step:5d} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                     f"lr {sched.get_last_lr()[0]:.2e} [{time.time() - t0:.0f}s]")
        if a.eval_every and step and step % a.eval_every == 0:
            log.info(f"  zero-shot (10/class): {summarise(evaluate_all(model, per_class=10))}")
            model.train()
    train_s = time.time() - t0
    model = model.float().cpu().eval()
    res = evaluate_all(model, per_class=a.eval_per_class, processes=max(1, a.workers))
    log.info(f"zero-shot (test): {summarise(res)}")
    rows = caption_token_ids(C.all_words())
    out = Path(a.out)
    record = {
        "seed": a.seed,
        "command": (f"python -m restore.testbed.pretrain --seed {a.seed} --steps {a.steps} --batch {a.batch} "
                    f"--lr {a.lr} --wd {a.wd} --warmup {a.warmup} --device {a.device} --workers {a.workers} "
                    f"--out restore/assets/testbed_clip.pt"),
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "dims": dims, "steps": a.steps, "batch": a.batch, "lr": a.lr, "weight_decay": a.wd, "warmup": a.warmup,
        "optimizer": "AdamW(betas=(0.9, 0.98), eps=1e-6), linear warm-up then cosine; bf16 autocast"
                     + (" off" if a.no_bf16 else ""),
        "train_seconds": round(train_s, 1), "device": str(dev) + (
            f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads)"),
        "torch": torch.__version__,
        "token_rows_stored": int(len(rows)),
        "pretraining_data": {"radius": list(D.R.PRETRAIN_RADIUS), "style_probs": C.STYLE_PROBS,
                             "digit_prob": C.DIGIT_PROB, "pattern_probs": C.PATTERN_PROBS,
                             "templates": C.TEMPLATES},
        "zero_shot": res,
        "zero_shot_note": ("test split of each dataset" + (f" (first {a.eval_per_class} per class)" if a.eval_per_class
                           else "") + " (data seed 0), hand prompt = template; base/new: "
                          "accuracy among that half's classes only (CoOp base-to-novel); all: among all classes"),
    }
    save_checkpoint(model, out, dims, a.seed, rows, extra={"steps": a.steps})
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out.with_suffix(".json"))
    log.info(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
