"""The benchmark's plan: the jobs of the protocols (methods x datasets x seeds; each job a train step then
its test steps), each step's train.py arguments and output folder, the "finished" rule on a folder, a job's
rough cost, and the checks that refuse a plan whose parts cannot belong together. Every way of running the
plan (sweep.runner: serially, a local process pool, torchrun, Slurm through submitit) and the tables
(sweep.table, sweep.report) read the same folders from here.

One plan for real data and the synthetic testbed; `--configs` says whose configs every method runs:

    authors   each method's own published config per protocol (MethodSpec.configs: MaPLe's 5-epoch
              vit_b16_c2_ep5_batch4_2ctx, RESTORE_m's 10-epoch vit_b16_c2_ep10_batch4_2ctx, ...)
    paper     the RESTORE paper's protocol (its Table 1: every method re-run for the same 10 epochs): the
              authors' config with OPTIM.MAX_EPOCH 10, in a folder "<config>_paper" (the authors' folder when
              the config already trains 10 epochs)
    testbed   configs/trainers/<method>/testbed.yaml on the testbed datasets (docs/TESTBED.md)

The methods come from the method registry (restore.methods.registry): a method declared with
`benchmark=True` is in the default plan, and one of another package (--method-module) is planned with its
module, so that every worker and Slurm task imports it again. Output layout (the scripts' and the original
CoOp-lineage repositories'; parse_test_res.py --table reads it):

    <output>/base2new/{train_base,test_new}/<dataset>/shots_16/<method>/<config>/seed<N>
    <output>/<source>/<method>/<config>_16shots/seed<N>                     cross-dataset / DG training
    <output>/evaluation/<method>/<config>_16shots/<target>/seed<N>          its tests
    <output>/fewshot/<dataset>/shots_<K>/<method>/<config>/seed<N>          CoOp's few-shot protocol

with --backbone NAME all of it under <output>/backbone_<NAME>/ (as the scripts' BACKBONE).
"""
import glob
import os
import re
import shlex
from dataclasses import dataclass
from typing import Tuple

from restore.errors import UserError
from restore.methods import registry


@dataclass(frozen=True)
class Datasets:
    """The datasets of one kind of data: the base-to-novel and few-shot ones (the cross-dataset targets are
    these less the source), the cross-dataset source, and the domain-generalisation targets."""
    base2new: Tuple[str, ...]
    source: str
    dg_targets: Tuple[str, ...]


# The papers' 11 datasets in their column order; cross-dataset: ImageNet -> the other 10; DG: its variants.
REAL = Datasets(("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                 "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"),
                "imagenet", ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"))
TESTBED = Datasets(("shapes", "patterns", "digits"), "objects",
                   ("objects_v2", "objects_sketch", "objects_noise", "objects_clutter"))
# Classes of the real datasets (a job's rough cost only; the testbed's come from its definitions).
REAL_CLASSES = {"imagenet": 1000, "caltech101": 100, "oxford_pets": 37, "stanford_cars": 196,
                "oxford_flowers": 102, "food101": 101, "fgvc_aircraft": 100, "sun397": 397, "dtd": 47,
                "eurosat": 10, "ucf101": 101}
BASE2NEW = list(TESTBED.base2new)
SOURCE = TESTBED.source
XD_TARGETS = list(TESTBED.base2new)
DG_TARGETS = list(TESTBED.dg_targets)

PROTOCOLS = ("base2new", "xd", "dg", "fewshot", "ablation", "fast")
CONFIGS = ("authors", "paper", "testbed")
PAPER_EPOCHS = 10  # the RESTORE paper's Table 1: every method re-run for 10 epochs
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)  # CoOp's few-shot protocol (all classes)
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
# Every training step saves a checkpoint each epoch, so that a run stopped by a signal (a preempted Slurm
# task, a killed pool) resumes from its last epoch; an operational key, not part of the run's settings.
RESUMABLE = ("TRAIN.CHECKPOINT_FREQ", "1")
TESTBED_CFG = "testbed"  # configs/trainers/<method>/testbed.yaml
XD_EPOCHS = 2  # testbed: as the release's cross-dataset runs; the source has 128 classes (8x the base-class steps)
RESULT = re.compile(r"\* accuracy: ([\.\deE+-]+)%")
# Every training step saves each epoch (a few KB: the prompts and optimiser state), so that a task that is
# preempted or runs past its time limit and is requeued continues (a signal saves mid-epoch too:
# restore/engine/stop.py). A rewrite of the plan must keep it.
RESUMABLE = ["TRAIN.CHECKPOINT_FREQ", "1"]


def finished(folder):
    """The accuracy (%) a finished run printed (a log.txt* of `folder` holds "=> result" and its accuracy),
    or None: a run stopped by a signal or an error never printed it. Whether it finished with the same
    settings is train.py --check-finished's answer (sweep.runner.finished_with), as in scripts/common.sh."""
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
    logs on 2 cores). Orders the jobs (heaviest first, so that no long job runs alone at the end) and
    gives the progress's estimate."""
    return registry.get(trainer).cost


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class RunConfig:
    """The config of a method's runs of one protocol: `name` names the output folder, `file` is given to
    train.py --config-file, `overrides` (KEY VALUE ...) follow it on the command line."""
    name: str
    file: str
    overrides: Tuple[str, ...] = ()


def config_file(trainer, config=TESTBED_CFG):
    """The path of the trainer's config `config`: relative to the repository (where the runs start) for
    the built-in configs, as the scripts write it. UserError when the method has none."""
    path = registry.config_file(trainer, config)
    if not os.path.isfile(path):
        fix = (f"write one there (see configs/trainers/CoOp/{config}.yaml)" if config == TESTBED_CFG else
               "its spec's configs name a file that is missing (restore.methods.spec.MethodSpec.configs)")
        raise UserError(f"{trainer} has no {config} config ({path}): {fix}.")
    inside = os.path.relpath(path, registry.REPOSITORY)
    return path if inside.startswith(os.pardir) else inside


def run_config(trainer, protocol, configs):
    """The RunConfig of `trainer`'s runs of `protocol` under `configs` (CONFIGS; see the module docstring).
    UserError when the method declares no published config for it."""
    if configs == TESTBED_CFG:
        over = ("OPTIM.MAX_EPOCH", str(XD_EPOCHS)) if protocol in ("xd", "dg") else ()
        return RunConfig(TESTBED_CFG, config_file(trainer), over)
    name = registry.get(trainer).config(protocol)
    if name is None:
        raise UserError(f"{trainer} declares no published configs (MethodSpec.configs), which --configs "
                        f"{configs} runs: name its authors' configs in its spec (docs/ADDING_A_METHOD.md), or "
                        f"leave it out of --methods.")
    file = config_file(trainer, name)
    if configs == "paper" and max_epoch(file) != PAPER_EPOCHS:
        return RunConfig(f"{name}_paper", file, ("OPTIM.MAX_EPOCH", str(PAPER_EPOCHS)))
    return RunConfig(name, file)


def max_epoch(file, overrides=()):
    """OPTIM.MAX_EPOCH of the config `file` (or of a trainer's testbed config, given its name), or the last
    one in `overrides` (KEY VALUE ...): the epoch the test steps load."""
    given = [overrides[i + 1] for i in range(0, len(overrides) - 1, 2) if overrides[i] == "OPTIM.MAX_EPOCH"]
    if given:
        return int(given[-1])
    if not file.endswith(".yaml"):
        file = config_file(file)
    # The yaml's own value (read safely, no merge: a method's yaml may spell keys as aliases of its own
    # trainer), else the default.
    from restore.config import get_cfg_default, read_yaml
    path = os.path.join(registry.REPOSITORY, file)
    value = ((read_yaml(path, "Config file") or {}).get("OPTIM") or {}).get("MAX_EPOCH")
    return int(value) if value is not None else get_cfg_default().OPTIM.MAX_EPOCH


# --------------------------------------------------------------------------------------- arguments
def add_arguments(parser, configs=TESTBED_CFG):
    """The plan's command-line arguments (benchmark.py, testbed_benchmark.py, cluster.py); `configs`: the
    default of --configs. The default datasets follow --configs (check_args)."""
    parser.add_argument("--protocols", nargs="+", default=["base2new"], choices=PROTOCOLS,
                        help="base2new, xd (cross-dataset), dg (domain generalisation), fewshot (CoOp's "
                             "1-16 shots, all classes); on the testbed also ablation and fast")
    parser.add_argument("--configs", default=configs, choices=CONFIGS,
                        help=f"authors: each method's published configs; paper: those at the RESTORE paper's "
                             f"{PAPER_EPOCHS} epochs; testbed: the testbed's (default {configs})")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="trainers (default: the benchmark's methods, MethodSpec.benchmark)")
    parser.add_argument("--method-module", action="append", default=[], metavar="MODULE",
                        help="import MODULE first: a method of another package (then name it in --methods)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help=f"datasets of the base-to-novel and few-shot runs (default: the papers' 11, "
                             f"{' '.join(REAL.base2new)}; with --configs testbed {' '.join(TESTBED.base2new)}); "
                             f"the cross-dataset targets are these less the source")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", nargs="+", type=int, default=list(FEWSHOT_SHOTS),
                        help=f"shots of the few-shot protocol (default {' '.join(map(str, FEWSHOT_SHOTS))})")
    parser.add_argument("--backbone", default=None,
                        help="MODEL.BACKBONE.NAME of every run (default: the configs' own, ViT-B/16 for the "
                             "published ones); tiny-random: a smoke test of the plan on any data (its "
                             "accuracies mean nothing)")
    parser.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    parser.add_argument("--fast-trace", nargs="+", default=list(FAST_TRACE), choices=list(FAST_TRACE))
    parser.add_argument("--data", default=os.environ.get("DATA", None),
                        help="folder of the datasets (DATASETS.md; default: $DATA); testbed datasets are "
                             "generated there on first use (default ./data)")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides for every run, after each method's config (as train.py's; e.g. "
                             "DATALOADER.NUM_WORKERS 4); they are part of the runs' settings")
    parser.add_argument("--output", default=None,
                        help="root of the runs' output folders and the tables (default: output/benchmark; "
                             "with --configs testbed output/testbed)")


def check_args(args):
    """The command line of benchmark.py, testbed_benchmark.py and cluster.py, checked as every entry point
    checks its names (restore.cli) before anything runs: other packages' methods imported
    (--method-module), each of --methods a registered method with a config for each protocol (default: the
    benchmark's methods), each of --datasets a dataset config of the kind --configs runs on, --data a
    folder that may hold data, the overrides in pairs. The default --datasets, --data and --output follow
    --configs. --data, --output and --folder are made absolute from the caller's folder (the runs start in
    the repository). UserError naming the argument."""
    from restore.cli import check_data_root, check_dataset, check_overrides, check_trainer, dataset_configs
    from restore.testbed.datasets import DATASETS as TESTBED_DATASETS
    registry.import_modules(args.method_module)
    check_overrides(getattr(args, "overrides", None) or [])
    args.configs = getattr(args, "configs", TESTBED_CFG)
    testbed = args.configs == TESTBED_CFG
    args.methods = args.methods or methods()
    args.datasets = args.datasets or list((TESTBED if testbed else REAL).base2new)
    for name in args.methods:
        check_trainer(name, source="--methods")
        for protocol in getattr(args, "protocols", ()):
            if protocol in ("base2new", "xd", "dg", "fewshot"):
                run_config(name, protocol, args.configs)
    if testbed:
        kind = {key: d.registry_name for key, d in TESTBED_DATASETS.items()}
        fix = "The benchmark runs on the testbed datasets."
    else:
        kind = {c: n for c, n in dataset_configs().items() if not n.startswith("Testbed")}
        fix = f"--configs {args.configs} runs on real data (the testbed: --configs testbed)."
    for name in args.datasets:
        if name in dataset_configs() and name not in kind:
            raise UserError(mixed(name, args.configs))
        check_dataset(name, accept="config", source="--datasets", configs=kind, fix=fix)
    if args.data is None:
        if not testbed:
            raise UserError("--data is not set: give the folder that holds the datasets (DATASETS.md), or set "
                            "DATA.")
        args.data = "./data"
    check_data_root(args.data, "--data")
    args.output = args.output or ("output/testbed" if testbed else "output/benchmark")
    for flag in ("data", "output", "folder", "previous"):
        if getattr(args, flag, None):
            setattr(args, flag, os.path.abspath(os.path.expanduser(getattr(args, flag))))


# ------------------------------------------------------------------------------------------- jobs
def common_args(dataset, trainer, seed, data, config):
    """The train.py arguments every step of `trainer` on `dataset` shares (`config`: a RunConfig)."""
    module = [] if registry.is_builtin(trainer) else ["--method-module", registry.module_of(trainer)]
    return ["--root", data, "--seed", str(seed), "--trainer", trainer, "--engine", "native", *module,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml", "--config-file", config.file]


def base2new_job(out, trainer, dataset, seed, data, extra=(), config=None):
    """[(train folder, train.py argv), (test folder, argv)]: train on the base classes, test the last
    epoch on the new ones; the config's overrides, then `extra` (KEY VALUE ...), go to both."""
    config = config or run_config(trainer, "base2new", TESTBED_CFG)
    extra = [*config.overrides, *extra]
    common = f"{dataset}/shots_{SHOTS}/{trainer}/{config.name}/seed{seed}"
    train_dir, test_dir = f"{out}/base2new/train_base/{common}", f"{out}/base2new/test_new/{common}"
    epoch = max_epoch(config.file, extra)
    return [
        (train_dir, common_args(dataset, trainer, seed, data, config) + [
            "--output-dir", train_dir, "DATASET.NUM_SHOTS", str(SHOTS),
            "DATASET.SUBSAMPLE_CLASSES", "base", *RESUMABLE, *extra]),
        (test_dir, common_args(dataset, trainer, seed, data, config) + [
            "--output-dir", test_dir, "--model-dir", train_dir, "--load-epoch", str(epoch),
            "--eval-only", "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", "new",
            *extra]),
    ]


def transfer_job(out, trainer, seed, data, source, targets, extra=(), config=None):
    """[(source train folder, argv), (target test folder, argv) per target]: train on all classes of the
    source, test its last epoch on each target; the config's overrides, then `extra`, go to every step."""
    config = config or run_config(trainer, "xd", TESTBED_CFG)
    extra = [*config.overrides, *extra]
    train_dir = f"{out}/{source}/{trainer}/{config.name}_{SHOTS}shots/seed{seed}"
    steps = [(train_dir, common_args(source, trainer, seed, data, config) + [
        "--output-dir", train_dir, "DATASET.NUM_SHOTS", str(SHOTS), *RESUMABLE, *extra])]
    for target in targets:
        test_dir = f"{out}/evaluation/{trainer}/{config.name}_{SHOTS}shots/{target}/seed{seed}"
        steps.append((test_dir, common_args(target, trainer, seed, data, config) + [
            "--output-dir", test_dir, "--model-dir", train_dir,
            "--load-epoch", str(max_epoch(config.file, extra)), "--eval-only", *extra]))
    return steps


def fewshot_job(out, trainer, dataset, shots, seed, data, config, extra=()):
    """[(folder, argv)]: CoOp's few-shot protocol: train on `shots` images of every class, and the run's
    own test of its last epoch on all classes is the result."""
    extra = [*config.overrides, *extra]
    folder = f"{out}/fewshot/{dataset}/shots_{shots}/{trainer}/{config.name}/seed{seed}"
    return [(folder, common_args(dataset, trainer, seed, data, config) + [
        "--output-dir", folder, "DATASET.NUM_SHOTS", str(shots), *RESUMABLE, *extra])]


def output_root(args):
    """Where the runs go: --output, or its backbone_<name>/ with --backbone (as the scripts' BACKBONE)."""
    if not getattr(args, "backbone", None):
        return args.output
    return os.path.join(args.output, "backbone_" + re.sub(r"[^A-Za-z0-9._-]", "_", args.backbone))


def plan(args):
    """[(label, steps)] of args.protocols x seeds x methods (x datasets); `steps` as base2new_job /
    transfer_job / fewshot_job. --backbone and args.overrides (optional, KEY VALUE ...) go to every run,
    after the job's own. Nothing is checked here (check_args, check_plan)."""
    configs = getattr(args, "configs", TESTBED_CFG)
    kind = TESTBED if configs == TESTBED_CFG else REAL
    jobs = []  # (label, steps)
    out, data = output_root(args), args.data
    more = list(getattr(args, "overrides", None) or [])
    if getattr(args, "backbone", None):
        more = ["MODEL.BACKBONE.NAME", args.backbone, *more]
    transfer = [t for p in args.protocols if p in ("xd", "dg")
                for t in ([d for d in args.datasets if d != kind.source] if p == "xd" else kind.dg_targets)]
    for protocol in args.protocols:
        for seed in args.seeds:
            for trainer in args.methods:
                if protocol == "base2new":
                    config = run_config(trainer, protocol, configs)
                    for dataset in args.datasets:
                        jobs.append((f"b2n {trainer} {dataset} s{seed}",
                                     base2new_job(out, trainer, dataset, seed, data, more, config)))
                elif protocol in ("xd", "dg") and not any(
                        j[0] == f"transfer {trainer} s{seed}" for j in jobs):
                    config = run_config(trainer, protocol, configs)
                    jobs.append((f"transfer {trainer} s{seed}", transfer_job(
                        out, trainer, seed, data, kind.source, list(dict.fromkeys(transfer)), more, config)))
                elif protocol == "fewshot":
                    config = run_config(trainer, protocol, configs)
                    for dataset in args.datasets:
                        for shots in getattr(args, "shots", FEWSHOT_SHOTS):
                            jobs.append((f"fewshot {trainer} {dataset} {shots}shots s{seed}",
                                         fewshot_job(out, trainer, dataset, shots, seed, data, config, more)))
            if protocol == "ablation":
                config = run_config("RESTORE_m", "base2new", configs)
                for name in args.ablations:
                    if name == "fs1_fsguided":
                        continue  # read from the main base-to-novel runs
                    for dataset in args.datasets:
                        jobs.append((f"ablation {name} {dataset} s{seed}", base2new_job(
                            f"{out}/ablation/{name}", "RESTORE_m", dataset, seed, data,
                            ABLATIONS[name] + more, config)))
            if protocol == "fast":
                config = run_config("RESTORE_m", "base2new", configs)
                for name in args.fast_trace:
                    if name == "exact":
                        continue  # read from the main base-to-novel runs
                    for dataset in args.datasets:
                        jobs.append((f"fast {name} {dataset} s{seed}", base2new_job(
                            f"{out}/fast/{name}", "RESTORE_m", dataset, seed, data,
                            FAST_TRACE[name] + more, config)))
    return jobs


def job_cost(job):
    """Rough cost of a job (label, steps) from its training step: epoch cost x epochs x training classes
    x shots / 16."""
    _, steps = job
    argv = steps[0][1]
    trainer, file = option(argv, "--trainer"), option(argv, "--config-file")
    dataset = option(argv, "--dataset-config-file").rsplit("/", 1)[-1][:-len(".yaml")]
    epochs = int(option(argv, "OPTIM.MAX_EPOCH") or max_epoch(file))
    shots = int(option(argv, "DATASET.NUM_SHOTS") or SHOTS) / SHOTS
    return epoch_cost(trainer) * epochs * classes(dataset, option(argv, "DATASET.SUBSAMPLE_CLASSES")) * shots


def option(argv, key):
    """The value after the last `key` in `argv`, or None."""
    at = [i for i, word in enumerate(argv[:-1]) if word == key]
    return argv[at[-1] + 1] if at else None


def classes(dataset, subsample=None):
    """The number of training classes of a testbed or real dataset (`subsample` "base": its base half;
    100 classes for a dataset this module does not know)."""
    from restore.testbed.datasets import DATASETS
    if dataset in DATASETS:
        d = DATASETS[dataset]
        return d.num_base if subsample == "base" else len(d.classes)
    n = REAL_CLASSES.get(dataset, 100)
    return (n + 1) // 2 if subsample == "base" else n


# ------------------------------------------------------------------------------------------ checks
def is_testbed(dataset):
    """Whether configs/datasets/<dataset>.yaml names a synthetic testbed dataset."""
    from restore.cli import dataset_configs
    return dataset_configs().get(dataset, "").startswith("Testbed")


def mixed(dataset, configs):
    """The one line refusing a dataset of the other kind than the configs."""
    if configs == TESTBED_CFG:
        return (f"the testbed's configs (32 px, the testbed CLIP) on the real dataset {dataset}: run real data "
                f"with --configs authors or paper (benchmark.py, docs/BENCHMARK.md).")
    return (f"--configs {configs} (published configs for real data) on the testbed dataset {dataset}: the "
            f"testbed runs --configs testbed (testbed_benchmark.py).")


def check_plan(jobs, configs):
    """Refuse, with one line (UserError), a plan whose parts cannot belong together, before anything runs
    or is submitted: testbed configs on real data, published configs on the testbed, and every run whose
    resolved config train.py would refuse (a backbone whose preprocessing restore.pretrained.fit_inputs
    refuses, a prompt that does not fit, ...) or whose method's `check_plan` (MethodSpec) names a missing
    input. Each distinct run is resolved once (the seed and folders aside)."""
    seen = set()
    for label, steps in jobs:
        for _, argv in steps:
            dataset = argv[argv.index("--dataset-config-file") + 1].rsplit("/", 1)[-1][:-len(".yaml")]
            if (configs == TESTBED_CFG) != is_testbed(dataset):
                raise UserError(f"{label}: {mixed(dataset, configs)}")
            key = tuple(run_identity(argv))
            if key not in seen:
                seen.add(key)
                check_run(label, argv)


def run_identity(argv):
    """`argv` less what differs between the seeds and steps of one run's settings (seed, folders, epoch)."""
    out, skip = [], {"--seed", "--output-dir", "--model-dir", "--load-epoch"}
    it = iter(argv)
    for word in it:
        if word in skip:
            next(it, None)
        elif word != "--eval-only":
            out.append(word)
    return out


def check_run(label, argv):
    """Resolve the config of one run as train.py does (train.setup_cfg, which fits the backbone's inputs
    and checks every value), then ask its method's check_plan; UserError "<label>: <reason>"."""
    import logging

    import train
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the notes train.py prints for a run (a smoke backbone's, ...)
    try:
        cfg = train.setup_cfg(train.build_parser().parse_args(argv), "native")
    except train.user_errors() as err:
        raise UserError(f"{label}: {train.error_message(err)}") from None
    finally:
        logging.disable(previous)
    check = registry.get(cfg.TRAINER.NAME).check_plan
    reason = check(cfg) if check else None
    if reason:
        raise UserError(f"{label}: {reason}")


def command(argv, nproc=1):
    """The shell command of one step, as the runners start it (torchrun with `nproc` > 1)."""
    start = ["python"] if nproc == 1 else ["torchrun", "--standalone", f"--nproc_per_node={nproc}"]
    return shlex.join([*start, "train.py", *argv])
