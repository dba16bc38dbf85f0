#!/usr/bin/env python
"""Fingerprints of every method, to prove that a refactor changed no number.

    python tools/fingerprint.py --out /tmp/before.json       # on the old commit
    python tools/fingerprint.py --out /tmp/after.json        # on the new one
    python tools/fingerprint.py --compare /tmp/before.json /tmp/after.json [--ignore-record KEY ...]

Per method (default: every trainer train.py knows) it records SHA-256 hashes of raw tensor bytes:

- library: the initial learned state right after building (the random draws of the build), then,
  with every learned tensor set to fixed random values, the training loss and each logged term, every
  gradient, the evaluation logits, the logits with cached class texts, and both feature shifts;
- engine: a 2-epoch run of `train.py` (tiny random CLIP, a 6-class fake OxfordPets, 2 shots of the
  base classes): the TENSORS of the last checkpoint (state_dict, optimizer, scheduler, RNG states) and
  its run record (trainer, method settings, class names, config) as canonical JSON, and the accuracy
  of the final test.

Hashes of float tensors are exact: equal hashes mean bit-identical numbers on this machine and torch.
`--compare` prints every entry that differs and exits 1 when any does; record keys a change adds on
purpose are listed with `--ignore-record` (dotted, e.g. `config.METHOD_MODULES`).
"""
import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def tensor_hash(t) -> str:
    import torch
    shape = tuple(t.shape)
    t = t.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype}{shape}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def hash_tree(obj):
    """Tensors -> hashes, everything else kept (dicts, lists, numbers, strings)."""
    import torch
    if torch.is_tensor(obj):
        return tensor_hash(obj)
    if isinstance(obj, dict):
        return {str(k): hash_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [hash_tree(v) for v in obj]
    if isinstance(obj, float):
        return repr(obj)
    if hasattr(obj, "tobytes"):  # numpy arrays in RNG states
        return hashlib.sha256(obj.tobytes()).hexdigest()[:16]
    return obj


def trainer_names():
    import train  # noqa: F401
    from restore.methods import registry
    return list(registry.names())


def config_file(trainer):
    folder = os.path.join(ROOT, "configs", "trainers", trainer)
    testbed = os.path.join(folder, "testbed.yaml")
    if os.path.exists(testbed):
        return testbed
    files = sorted(f for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
    return os.path.join(folder, files[0]) if files else ""


def resolved_cfg(trainer, extra=()):
    import train
    argv = ["--trainer", trainer, "--engine", "native", "--seed", "1"]
    if config_file(trainer):
        argv += ["--config-file", config_file(trainer)]
    argv += ["MODEL.BACKBONE.NAME", "tiny-random", "USE_CUDA", "False", *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        return train.setup_cfg(train.build_parser().parse_args(argv))


def library_fingerprint(trainer):
    import torch
    import restore
    from restore.engine import set_random_seed

    cfg = resolved_cfg(trainer)
    classnames = ["cat", "golden_retriever", "sports car", "tree"]
    set_random_seed(0)
    clip_model = restore.load_clip("tiny-random")
    model = restore.build_model(cfg, classnames, clip_model)
    out = {"init": hash_tree(model.state_to_save())}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    size = cfg.INPUT.SIZE[0]
    images = torch.randn(4, 3, size, size, generator=g)
    labels = torch.tensor([0, 1, 2, 3])
    model.train()
    set_random_seed(1)
    loss, summary = model.loss({"img": images, "label": labels})
    out["loss"] = tensor_hash(loss)
    out["summary"] = hash_tree({k: float(v.detach()) for k, v in summary.items()})  # the logged numbers
    if loss.requires_grad:
        loss.backward()
    out["grads"] = {n: tensor_hash(p.grad) for n, p in sorted(model.named_parameters())
                    if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.eval()
    set_random_seed(2)
    with torch.no_grad():
        out["logits"] = tensor_hash(model(images))
        with model.cached_text_features():
            out["cached_logits"] = tensor_hash(model(images))
    set_random_seed(3)
    shift = model.feature_shift(images)
    out["shift"] = hash_tree({"vision": shift.vision, "text": shift.text})
    return out


# Settings a method's testbed config needs on the fake OxfordPets: ProGrad's CTX_INIT True puts OxfordPets'
# hand prompt ("a type of pet, a photo of a {}.", 8 words) into the context, more than its testbed's 5 tokens.
ENGINE_OPTS = {"ProGrad": ["TRAINER.PROGRAD.N_CTX", "8"]}


def engine_fingerprint(trainer, engine, work, data_root, epochs):
    import torch
    import train
    from restore.engine import registered_name
    from test_engine_fakes import BASE_OPTS

    out_dir = os.path.join(work, "runs", engine, trainer)
    shutil.rmtree(out_dir, ignore_errors=True)
    argv = ["--root", data_root, "--seed", "1", "--trainer", trainer, "--engine", engine,
            "--dataset-config-file", os.path.join(ROOT, "configs/datasets/oxford_pets.yaml"),
            "--output-dir", out_dir]
    if config_file(trainer):
        argv += ["--config-file", config_file(trainer)]
    argv += [str(x) for x in BASE_OPTS] + [
        "OPTIM.MAX_EPOCH", str(epochs), "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
        *ENGINE_OPTS.get(trainer, [])]
    with contextlib.redirect_stdout(io.StringIO()):
        accuracy = train.main(argv)
    result = {"accuracy": repr(accuracy)}
    path = os.path.join(out_dir, registered_name(trainer), f"model.pth.tar-{epochs}")
    if trainer != "ZeroshotCLIP" and os.path.exists(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        tensors = {k: state.get(k) for k in ("state_dict", "optimizer", "scheduler", "rng",
                                               "rng_ranks", "scaler", "epoch")}
        record = {k: v for k, v in state.items() if k not in tensors and k != "val_result"}
        result["tensors"] = hash_tree(tensors)
        text = json.dumps(record, sort_keys=True, default=str).replace(work, "<work>")
        result["record"] = json.loads(text)  # paths relative to the work folder
    return result


def run(args):
    import torch
    torch.set_num_threads(1)
    from test_engine_fakes import make_oxford_pets
    names = args.methods or trainer_names()
    work = args.work or tempfile.mkdtemp(prefix="fingerprint-")
    data_root = os.path.join(work, "data")
    if not os.path.isdir(os.path.join(data_root, "oxford_pets")):
        make_oxford_pets(data_root)
    result = {"methods": {}}
    for name in names:
        entry = {}
        if not args.skip_library:
            entry["library"] = library_fingerprint(name)
        for engine in args.engines:
            entry[engine] = engine_fingerprint(name, engine, work, data_root, args.epochs)
        result["methods"][name] = entry
        print(f"{name}: done", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"wrote {args.out} ({len(names)} methods)")


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: tree}


def compare(a_path, b_path, ignore):
    with open(a_path) as f:
        a = _flat(json.load(f))
    with open(b_path) as f:
        b = _flat(json.load(f))

    def ignored(key):
        return any(f".record.{i}" in key + "." and (key + ".").split(".record.", 1)[1].startswith(i + ".")
                   for i in ignore)
    bad = []
    for key in sorted(set(a) | set(b)):
        if ignored(key):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            bad.append(f"{key}: {a.get(key, '<absent>')} -> {b.get(key, '<absent>')}")
    methods_a = {k.split(".")[1] for k in a if k.startswith("methods.")}
    methods_b = {k.split(".")[1] for k in b if k.startswith("methods.")}
    print(f"compared {len(methods_a & methods_b)} methods, {len(a)} / {len(b)} entries; "
          f"{len(bad)} differ")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the fingerprints to this JSON file")
    p.add_argument("--methods", nargs="+", help="trainer names (default: all)")
    p.add_argument("--engines", nargs="*", default=["native"], help="native and/or dassl")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--skip-library", action="store_true")
    p.add_argument("--work", help="work folder (data and runs); default: a new temporary folder")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    p.add_argument("--ignore-record", nargs="*", default=[],
                   help="run-record keys added on purpose, dotted (e.g. config.METHOD_MODULES)")
    args = p.parse_args(argv)
    if args.compare:
        sys.exit(compare(*args.compare, args.ignore_record))
    if not args.out:
        p.error("--out or --compare is required")
    run(args)


if __name__ == "__main__":
    main()
