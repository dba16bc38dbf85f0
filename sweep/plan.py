"""The testbed benchmark's plan: the jobs of a protocol (methods x datasets x seeds; each job a train step
then its test steps), each step's train.py arguments and output folder, the "finished" rule on a folder,
and a job's rough cost. Every way of running the plan (sweep.runner: serially, a local process pool, Slurm)
and the report (sweep.report) read the same folders from here. The methods, their configs and costs come
from the method registry (restore.methods.registry): a method declared with `benchmark=True` is in the
default plan, and one of another package (--method-module) is planned with its module, so that every
worker and Slurm task imports it again."""
import glob
import os
import re

from restore.methods import registry

BASE2NEW = ["shapes", "patterns", "digits"]
SOURCE = "objects"
XD_TARGETS = ["shapes", "patterns", "digits"]
DG_TARGETS = ["objects_v2", "objects_sketch", "objects_noise", "objects_clutter"]
ABLATIONS = {  # name -> overrides of RESTORE_m
    "fs0_fsguided": ["TRAINER.RESTORE.FS.WEIGHT", "0.0"],
    "fs0.5_fsguided": ["TRAINER.RESTORE.FS.WEIGHT", "0.5"],
    "fs1_fsguided": [],  # the default: the RESTORE_m row of the main table
    "fs2_fsguided": ["TRAINER.RESTORE.FS.WEIGHT", "2.0"],
    "fs1_off": ["TRAINER.RESTORE.SURGERY.MODE", "off"],
    "fs1_fixed": ["TRAINER.RESTORE.SURGERY.MODE", "fixed"],
    "fs0_off": ["TRAINER.RESTORE.FS.WEIGHT", "0.0", "TRAINER.RESTORE.SURGERY.MODE", "off"],
}
# RESTORE_m's opt-in speed-ups of the feature-shift trace (docs/METHOD.md section 3), against the exact
# default on the same seeds. The subset sizes are half the testbed batch (32) and 8 classes: the
# fractions benchmarks/step_time.py times (batch 4: 2 images).
FAST_TRACE = {  # name -> overrides of RESTORE_m
    "exact": [],  # the default: the RESTORE_m runs of the main base-to-novel table
    "nograd": ["TRAINER.RESTORE.FS.PROMPT_FREE", "no_grad"],
    "nograd_subsets": ["TRAINER.RESTORE.FS.PROMPT_FREE", "no_grad",
                       "TRAINER.RESTORE.FS.VISION_IMAGES", "16", "TRAINER.RESTORE.FS.TEXT_CLASSES", "8"],
}
SHOTS = 16
CFG = "testbed"
XD_EPOCHS = 2  # as the release's cross-dataset runs; the source has 128 classes (8x the base-class steps per epoch)
RESULT = re.compile(r"\* accuracy: ([\.\deE+-]+)%")
# Every training step saves each epoch (a few KB: the prompts and optimiser state), so that a task that is
# preempted or runs past its time limit and is requeued continues (a signal saves mid-epoch too:
# restore/engine/stop.py). A rewrite of the plan must keep it.
RESUMABLE = ["TRAIN.CHECKPOINT_FREQ", "1"]


def finished(folder):
    """The accuracy (%) a finished run printed (a log.txt* of `folder` holds "=> result" and its accuracy),
    or None. Whether it finished with the same settings is train.py --check-finished's answer
    (sweep.runner.finished_with), as in scripts/common.sh."""
    for path in sorted(glob.glob(os.path.join(folder, "log.txt*"))):
        with open(path, encoding="utf-8", errors="replace") as f:  # a damaged log is read as far as it goes
            text = f.read()
        if "=> result" in text:
            found = RESULT.findall(text.split("=> result")[-1])
            if found:
                return float(found[0])
    return None


def methods():
    """The methods the benchmark runs by default (MethodSpec.benchmark), in the registry's order."""
    return registry.benchmark_methods()


def epoch_cost(trainer):
    """Rough cost of one epoch per training class, relative to CoOp (MethodSpec.cost, from the testbed
    logs on 2 cores). Only used to start the heaviest jobs first, so that no long job runs alone at the end."""
    return registry.get(trainer).cost


def config_file(trainer):
    """The trainer's testbed config: relative to the repository (where the sweep runs) for the built-in
    configs, as the scripts write it. UserError when the method has none."""
    path = registry.config_file(trainer, CFG)
    if not os.path.isfile(path):
        from restore.errors import UserError
        raise UserError(f"{trainer} has no testbed config ({path}): the benchmark runs each method with its "
                        f"'{CFG}' config; write one there (see configs/trainers/CoOp/{CFG}.yaml).")
    inside = os.path.relpath(path, registry.REPOSITORY)
    return path if inside.startswith(os.pardir) else inside


def check_args(args):
    """The command line of testbed_benchmark.py and cluster.py, checked as every entry point checks its
    names (restore.cli) before anything runs: other packages' methods imported (--method-module), each
    of --methods a registered method with a testbed config (default: the benchmark's methods), each of
    --datasets a testbed dataset, --data a folder that may hold data. --data, --output, --folder and
    --previous are made absolute from the caller's folder (the runs start in the repository). UserError
    naming the argument."""
    from restore.cli import check_data_root, check_dataset, check_trainer
    from restore.testbed.datasets import DATASETS as TESTBED
    registry.import_modules(args.method_module)
    args.methods = args.methods or methods()
    for name in args.methods:
        config_file(check_trainer(name, source="--methods"))
    testbed = {key: d.registry_name for key, d in TESTBED.items()}
    for name in args.datasets:
        check_dataset(name, accept="config", source="--datasets", configs=testbed,
                      fix="The benchmark runs on the testbed datasets.")
    check_data_root(args.data, "--data")
    for flag in ("data", "output", "folder", "previous"):
        if getattr(args, flag, None):
            setattr(args, flag, os.path.abspath(os.path.expanduser(getattr(args, flag))))


def common_args(dataset, trainer, seed, data):
    module = [] if registry.is_builtin(trainer) else ["--method-module", registry.module_of(trainer)]
    return ["--root", data, "--seed", str(seed), "--trainer", trainer, "--engine", "native", *module,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml", "--config-file", config_file(trainer)]


def base2new_job(out, trainer, dataset, seed, data, extra=()):
    """[(train folder, train.py argv), (test folder, argv)]: train on the base classes, test the last
    epoch on the new ones; `extra` (config overrides KEY VALUE ...) goes to both."""
    common = f"{dataset}/shots_{SHOTS}/{trainer}/{CFG}/seed{seed}"
    train_dir, test_dir = f"{out}/base2new/train_base/{common}", f"{out}/base2new/test_new/{common}"
    epoch = max_epoch(trainer, extra)
    return [
        (train_dir, common_args(dataset, trainer, seed, data) + [
            "--output-dir", train_dir, "DATASET.NUM_SHOTS", str(SHOTS),
            "DATASET.SUBSAMPLE_CLASSES", "base", *RESUMABLE, *extra]),
        (test_dir, common_args(dataset, trainer, seed, data) + [
            "--output-dir", test_dir, "--model-dir", train_dir, "--load-epoch", str(epoch),
            "--eval-only", "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", "new",
            *extra]),
    ]


def transfer_job(out, trainer, seed, data, targets, extra=()):
    """[(source train folder, argv), (target test folder, argv) per target]: train on all classes of the
    source for XD_EPOCHS epochs, test its last epoch on each target; `extra` goes to every step."""
    train_dir = f"{out}/{SOURCE}/{trainer}/{CFG}_{SHOTS}shots/seed{seed}"
    epochs = ["OPTIM.MAX_EPOCH", str(XD_EPOCHS), *extra]
    steps = [(train_dir, common_args(SOURCE, trainer, seed, data) + [
        "--output-dir", train_dir, "DATASET.NUM_SHOTS", str(SHOTS), *RESUMABLE, *epochs])]
    for target in targets:
        test_dir = f"{out}/evaluation/{trainer}/{CFG}_{SHOTS}shots/{target}/seed{seed}"
        steps.append((test_dir, common_args(target, trainer, seed, data) + [
            "--output-dir", test_dir, "--model-dir", train_dir,
            "--load-epoch", str(max_epoch(trainer, epochs)), "--eval-only", *epochs]))
    return steps


def max_epoch(trainer, overrides=()):
    """OPTIM.MAX_EPOCH of the trainer's testbed config, or the last one in `overrides` (KEY VALUE ...):
    the epoch the test steps load."""
    given = [overrides[i + 1] for i in range(0, len(overrides) - 1, 2) if overrides[i] == "OPTIM.MAX_EPOCH"]
    if given:
        return int(given[-1])
    from restore.config import get_cfg_default, merge_from_file
    cfg = get_cfg_default()
    merge_from_file(cfg, os.path.join(registry.REPOSITORY, config_file(trainer)))
    return cfg.OPTIM.MAX_EPOCH


def plan(args):
    """[(label, steps)] of args.protocols x seeds x methods (x datasets); `steps` as base2new_job /
    transfer_job. args.overrides (optional, KEY VALUE ...) goes to every run, after the job's own."""
    jobs = []  # (label, steps)
    out, data, more = args.output, args.data, list(getattr(args, "overrides", None) or [])
    for protocol in args.protocols:
        for seed in args.seeds:
            for trainer in args.methods:
                if protocol == "base2new":
                    for dataset in args.datasets:
                        jobs.append((f"b2n {trainer} {dataset} s{seed}",
                                     base2new_job(out, trainer, dataset, seed, data, more)))
                elif protocol in ("xd", "dg") and not any(
                        j[0] == f"transfer {trainer} s{seed}" for j in jobs):
                    targets = [t for p in args.protocols if p in ("xd", "dg")
                               for t in (XD_TARGETS if p == "xd" else DG_TARGETS)]
                    jobs.append((f"transfer {trainer} s{seed}",
                                 transfer_job(out, trainer, seed, data, targets, more)))
            if protocol == "ablation":
                for name in args.ablations:
                    extra = ABLATIONS[name]
                    if name == "fs1_fsguided":
                        continue  # read from the main base-to-novel runs
                    for dataset in args.datasets:
                        jobs.append((f"ablation {name} {dataset} s{seed}", base2new_job(
                            f"{out}/ablation/{name}", "RESTORE_m", dataset, seed, data, extra + more)))
            if protocol == "fast":
                for name in args.fast_trace:
                    if name == "exact":
                        continue  # read from the main base-to-novel runs
                    for dataset in args.datasets:
                        jobs.append((f"fast {name} {dataset} s{seed}", base2new_job(
                            f"{out}/fast/{name}", "RESTORE_m", dataset, seed, data,
                            FAST_TRACE[name] + more)))
    return jobs


def job_cost(label):
    """Rough cost of a job from its label: epoch cost x epochs x training classes."""
    from restore.testbed.datasets import get
    words = label.split()
    trainer = "RESTORE_m" if words[0] in ("ablation", "fast") else words[1]
    if words[0] == "transfer":
        epochs, n_classes = XD_EPOCHS, len(get(SOURCE).classes)
    else:
        epochs, n_classes = max_epoch(trainer), get(words[-2]).num_base
    return epoch_cost(trainer) * epochs * n_classes


