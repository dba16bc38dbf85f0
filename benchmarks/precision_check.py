"""On a CUDA machine: one epoch of training + evaluation per precision (fp16, fp32, amp, bf16) for several
trainers with the native engine on a tiny fake dataset; prints loss, accuracy and the dtypes in play.

    python benchmarks/precision_check.py [--trainers MaPLe PromptSRC RESTORE_m CoCoOp]
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [HERE, os.path.join(HERE, "tests")]

from test_engine_fakes import make_cfg, make_oxford_pets  # noqa: E402

from restore.engine import Trainer, set_random_seed  # noqa: E402
from restore.methods import registry  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trainers", nargs="+",
                   default=["CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "RESTORE_m", "RESTORE_p"])
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs CUDA")
    tmp = tempfile.mkdtemp()
    make_oxford_pets(os.path.join(tmp, "data"))
    failures = 0
    for trainer in args.trainers:
        for prec in ("fp16", "fp32", "amp", "bf16"):
            cfg = make_cfg(trainer, os.path.join(tmp, "data"), os.path.join(tmp, f"{trainer}_{prec}"),
                           "USE_CUDA", True, registry.precision_key(trainer), prec, "OPTIM.MAX_EPOCH", 2,
                           "OPTIM.WARMUP_EPOCH", 0, "DATASET.NUM_SHOTS", 4, "SEED", 1)
            set_random_seed(1)
            out = io.StringIO()
            t0 = time.time()
            try:
                with contextlib.redirect_stdout(out):
                    t = Trainer(cfg)
                    acc = t.train()
                clip_dtype = t.model.clip.visual.conv1.weight.dtype
                prompt_dtypes = sorted({str(p.dtype) for p in t.model.trainable_parameters()})
                losses = [ln.split(" loss ")[1].split(" ")[0] for ln in out.getvalue().splitlines()
                          if " loss " in ln]
                print(f"{trainer:10s} {prec:5s} ok   acc {acc:5.1f}  losses {losses}  clip {clip_dtype}  "
                      f"trainable {prompt_dtypes}  {time.time() - t0:.1f}s", flush=True)
            except Exception as err:  # report and go on
                failures += 1
                print(f"{trainer:10s} {prec:5s} FAIL {type(err).__name__}: {str(err)[:300]}", flush=True)
    print(f"{failures} failures")


if __name__ == "__main__":
    main()
