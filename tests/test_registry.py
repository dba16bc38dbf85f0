"""The method registry: every registered method is in every table the project derives from it, its declared
key ranges are enforced, it trains a step on each backbone family its spec names, and bad declarations are
refused naming their module. Walks restore.methods.registry, so a method added there is checked here
without editing this file; an assertion names the method and the place it is missing from."""
import os

import pytest
import torch

import restore
import sweep.plan as plan
import train
import trainers
from restore.adapters import methods_without_vision_prompts
from restore.checks import check_config, lookup
from restore.config import get_cfg_default, translate_aliases
from restore.engine.precision import Precision
from restore.engine.run_record import evaluation_keys, method_settings
from restore.errors import UserError
from restore.methods import registry
from restore.methods.registry import MethodSpecError
from restore.methods.coop import COOP
from restore.methods.spec import BACKBONE_FAMILIES, PREC, Alias, ConfigNode, Key, MethodSpec, OriginalLayout
from conftest import numbers  # tests/ is on sys.path

NAMES = registry.names()
SMOKE = {"vit": "tiny-random", "resnet": "tiny-random-resnet"}
CLASSNAMES = ["abyssinian", "beagle", "boxer"]


def test_the_builtin_methods_are_registered_in_listing_order():
    assert NAMES[:11] == ["ZeroshotCLIP", "CoOp", "CoCoOp", "LPT", "VPT", "IVLP", "MaPLe", "PromptSRC",
                          "RESTORE_m", "RESTORE_p", "MaPLe_FSA"]  # a new family's methods follow
    for name in ("RESTORE_m", "RESTORE_p", "MaPLe_FSA"):
        assert registry.module_of(name) == "restore.methods.restore" and registry.is_builtin(name)


@pytest.mark.parametrize("name", NAMES)
def test_every_table_has_the_method(name):
    spec = registry.get(name)
    cfg = get_cfg_default()
    own = {node.full(k): k for node in spec.nodes for k in node.keys}
    for key, declared in own.items():
        assert lookup(cfg, key) == declared.default, f"{name}: {key} missing from restore.config.get_cfg_default()"
    cfg.TRAINER.NAME = name
    assert set(own) <= set(method_settings(cfg)), f"{name}: nodes missing from run_record.method_settings"
    assert set(evaluation_keys(name)) == {k for k, d in own.items() if d.evaluation}, \
        f"{name}: run_record.evaluation_keys"
    if spec.nodes:  # the precision is the first node's PREC
        key = f"{spec.nodes[0].path}.PREC"
        cfg.merge_from_list([key, "amp"])
        assert Precision.from_cfg(cfg, "cpu").requested == "amp", f"{name}: engine.precision ignores {key}"
    assert registry.registered_name(name) == spec.registered_name and spec.registered_name, \
        f"{name}: checkpoint folder"
    assert f" {name} " in f" {' '.join(train.trainers_help())} ".replace("\n", " "), f"{name}: train.py --help"
    generated = trainers.register_methods().get(name)
    assert generated is not None and generated.__name__ == name, f"{name}: Dassl trainers (trainers.TRAINERS)"
    if spec.base:
        assert issubclass(generated, trainers.TRAINERS[spec.base]), f"{name}: Dassl trainer of its base"
    for family in BACKBONE_FAMILIES:
        assert (name in registry.supporting(family)) == (family in spec.backbones), f"{name}: {family} matrix"
    assert (name in methods_without_vision_prompts().split(", ")) == ("resnet" in spec.backbones), \
        f"{name}: the adapters' 'methods that can use it' message"
    assert registry.exportable().get(name) == spec.export_layout, f"{name}: restore.legacy export layouts"
    assert (name in plan.methods()) == spec.benchmark and plan.epoch_cost(name) == spec.cost > 0, \
        f"{name}: sweep.plan methods / epoch_cost"
    if spec.benchmark:
        path = registry.config_file(name, plan.TESTBED_CFG)
        assert os.path.isfile(path), f"{name}: benchmarked, but its testbed config {path} is missing"
        assert plan.max_epoch(name) >= 1
    assert registry.model_class(name).__name__ == name, f"{name}: model class {spec.model}"


@pytest.mark.parametrize("name", NAMES)
def test_the_sweep_plans_the_method_with_its_config(name, tmp_path):
    args = type("Args", (), dict(protocols=["base2new"], seeds=[1], methods=[name], datasets=["shapes"],
                                 output=str(tmp_path), data="data"))()
    if not os.path.isfile(registry.config_file(name, plan.TESTBED_CFG)):  # MaPLe_FSA: the release's configs only
        with pytest.raises(UserError, match=f"^{name} has no testbed config"):
            plan.plan(args)
        return
    (label, steps), = plan.plan(args)
    argv = steps[0][1]
    assert argv[argv.index("--trainer") + 1] == name
    assert argv[argv.index("--config-file") + 1] == plan.config_file(name)
    assert "--method-module" not in argv  # a built-in: nothing to import
    assert plan.job_cost((label, steps)) > 0


def _invalid(declared: Key):
    """A value the declaration refuses, or None when it refuses nothing of its type."""
    if declared.choices is not None:
        return "not-a-choice"
    low = [b for b in (declared.min, declared.above) if b is not None]
    if low and declared.type in (int, float):
        value = min(low) - 1
        while value in declared.special:
            value -= 1
        return declared.type(value)
    if declared.max is not None:
        return declared.type(declared.max + 1)
    return None


KEYS = sorted(registry.keys().items())


@pytest.mark.parametrize("key,declared", KEYS, ids=[k for k, _ in KEYS])
def test_declared_types_and_ranges_are_checked(key, declared):
    cfg = get_cfg_default()
    check_config(cfg)  # the defaults pass
    node, _, leaf = key.rpartition(".")
    bad = _invalid(declared)
    if bad is not None:  # a choice or a bound
        lookup(cfg, node)[leaf] = bad
        with pytest.raises(UserError) as err:
            check_config(cfg)
        assert str(err.value).startswith(f"{key} is "), str(err.value)
        assert declared.help in str(err.value) or "one of" in str(err.value)
    lookup(cfg, node)[leaf] = "text" if declared.type is not str else 3  # the wrong type
    with pytest.raises(UserError, match=f"^{key} is .* must be of type {declared.type.__name__}"):
        check_config(cfg)


def test_a_count_may_be_zero_only_without_its_layers():
    cfg = get_cfg_default()
    cfg.TRAINER.IVLP.N_CTX_VISION = 0
    with pytest.raises(UserError, match="TRAINER.IVLP.N_CTX_VISION is 0; it must be at least 1"):
        check_config(cfg)
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 0  # no vision prompts: their length is unused
    check_config(cfg)


def _smoke_cfg(name, backbone):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = name
    cfg.DATASET.NAME = "OxfordPets"
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.merge_from_list(list(registry.get(name).tiny))
    if registry.get(name).derive_cfg:
        registry.get(name).derive_cfg(cfg)
    return cfg


STEPS = [(name, family) for name in NAMES for family in registry.get(name).backbones]


@pytest.mark.parametrize("name,family", STEPS, ids=[f"{n}-{f}" for n, f in STEPS])
def test_one_training_step_per_method_and_backbone_family(name, family):
    cfg = _smoke_cfg(name, SMOKE[family])
    clip_model = restore.load_clip(SMOKE[family])
    restore.fit_cfg_to_backbone(cfg, clip_model)
    check_config(cfg)
    torch.manual_seed(0)
    model = restore.build_model(cfg, CLASSNAMES, clip_model)
    assert type(model).__name__ == name
    size = cfg.INPUT.SIZE[0]
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(3, 3, size, size, generator=g), torch.tensor([0, 1, 2])
    model.train()
    loss, summary = numbers(model.loss({"img": images, "label": labels}))
    assert torch.isfinite(loss) and summary["loss"] == pytest.approx(loss.item())
    params = model.trainable_parameters()
    if params:
        before = [p.detach().clone() for p in params]
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in params)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), f"{name}: no gradient"
        torch.optim.SGD(params, lr=0.1).step()
        assert any(not torch.equal(b, p) for b, p in zip(before, params)), f"{name}: nothing trained"
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (3, len(CLASSNAMES))


def test_smoke_fitting_lowers_every_declared_depth():
    cfg = get_cfg_default()
    changes = restore.fit_cfg_to_backbone(cfg, restore.load_clip("tiny-random"))
    # A depth fits up to the 3 layers, a block index (TCP's INSERT_LAYER) up to the last block, 2.
    fit = {k: 3 - d.block for k, d in registry.keys().items() if d.layers and d.default > 3 - d.block}
    assert sorted(c.split(":")[0] for c in changes if c.startswith("TRAINER")) == sorted(fit)
    assert all(lookup(cfg, k) == v for k, v in fit.items()) and fit["TRAINER.TCP.INSERT_LAYER"] == 2


# ------------------------------------------------------------------------------ declarations refused
def _node(path, *keys, **kw):
    return ConfigNode(path, keys or (PREC,), **kw)


@pytest.mark.parametrize("spec,says", [
    (MethodSpec("CoOp", model="my_lab.x:CoOp"),
     "my_lab.x: the method name 'CoOp' is taken by the built-in method of restore.methods.coop; choose another"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("TRAINER.COOP"),)),
     "node TRAINER.COOP is already declared by restore.methods.coop: import that node"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("OPTIM.LR"),)),
     "node path OPTIM.LR is a value of the general config"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("OPTIM", PREC, Key("LR", 0.1, "x")),)),
     "key OPTIM.LR is a general config key"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("TRAINER.MINE", Key("W", 1.0, "w")),)),
     "its first node TRAINER.MINE has no PREC key"),
    (MethodSpec("Mine", model="my_lab.x:Mine", base="NoSuch"), "base 'NoSuch' is not a registered method"),
    (MethodSpec("Mine", model="my_lab.x:Mine", vision_prompts=True, backbones=("vit", "resnet")),
     "cannot run on 'resnet' towers"),
    (MethodSpec("Mine", model="my_lab.x:Mine", export_layout="NoSuchLayout"), "unknown original checkpoint layout"),
    (MethodSpec("Mine", model="my_lab.x:Mine", original_layouts=(OriginalLayout("Mine", "Nope", ("x",)),)),
     "original layout 'Mine': its base 'Nope' must be one of"),
    (MethodSpec("Mine", model="my_lab.x:Mine", original_layouts=(OriginalLayout("Mine", "CoOp", ("bias_vectors",)),)),
     "original layout 'Mine' shares marks with 'KgCoOp' (KgCoOp)"),
    (MethodSpec("Mine", model="my_lab.x:Mine", original_layouts=(OriginalLayout("KgCoOp", "CoOp", ("x",)),)),
     "original layout 'KgCoOp' is already declared (KgCoOp)"),
    (MethodSpec("Mine", model="no colon"), "must be 'package.module:Class'"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("TRAINER.MINE", PREC, Key("W", -1.0, "w", min=0)),)),
     "key TRAINER.MINE.W: its default -1.0 must be at least 0"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("TRAINER.MINE", PREC, Key("W", 1.0, "w")),),
                dataset_overrides={"DescribableTextures": {"TRAINER.MINE.W": "high"}}),
     "dataset_overrides['DescribableTextures']['TRAINER.MINE.W'] = 'high' must be a float"),
    (MethodSpec("Mine", model="my_lab.x:Mine", nodes=(_node("TRAINER.MINE", PREC, Key("W", 1.0, "w", min=0)),),
                dataset_overrides={"DescribableTextures": {"TRAINER.MINE.W": -2.0}}),
     "dataset_overrides['DescribableTextures']['TRAINER.MINE.W'] = -2.0 must be at least 0 (w)"),
    (MethodSpec("Mine", model="my_lab.x:Mine", context_keys=("TRAINER.COOP.N_CTX",)),
     "context key 'TRAINER.COOP.N_CTX' is not a key of its nodes"),
    (MethodSpec("Mine", model="my_lab.x:Mine",
                nodes=(_node("TRAINER.MINE", PREC, aliases={"OPTIM.LR": "TRAINER.MINE.PREC"}),)),
     "alias OPTIM.LR is a key of the config"),
    (MethodSpec("Mine", model="my_lab.x:Mine",
                nodes=(_node("TRAINER.MINE", PREC, aliases={"TRAINER.COOP.N_CTX": "TRAINER.MINE.PREC"}), COOP)),
     "alias TRAINER.COOP.N_CTX (of TRAINER.MINE) is a key of TRAINER.COOP, which it reads too"),
    (MethodSpec("Mine", model="my_lab.x:Mine",
                nodes=(_node("TRAINER.MINE", PREC, aliases={"TRAINER.COOP.X": Alias("TRAINER.MINE.PREC", 3)}),)),
     "alias TRAINER.COOP.X: its values must be a dict or a function of the value"),
    (MethodSpec("Mine", model="my_lab.x:Mine", flags={"anchor": "TRAINER.COOP.N_CTX"}),
     "flag --anchor must set a key of its nodes"),
])
def test_bad_declarations_are_refused_naming_the_module(spec, says):
    before = registry.names(), [n.path for n in registry.nodes()]
    with pytest.raises(MethodSpecError) as err:
        registry.register(spec, module="my_lab.x")
    assert str(err.value).startswith("my_lab.x: ") and says in str(err.value), str(err.value)
    assert (registry.names(), [n.path for n in registry.nodes()]) == before  # nothing half-registered


def test_unknown_trainer_names_the_registered_ones():
    with pytest.raises(UserError) as err:
        registry.get("CoOP")
    assert str(err.value).startswith("Unknown trainer 'CoOP'. Did you mean CoOp? Valid trainers: ZeroshotCLIP,")
    assert "--method-module" in str(err.value) and "MaPLe_FSA" in str(err.value)


# ------------------------------------------------------------------------------------------ aliases
def test_aliases_name_their_canonical_key_before_merging(monkeypatch):
    import restore.config as config
    monkeypatch.setattr(config, "_aliases", lambda trainer=None: {"TRAINER.COOP.W": Alias("TRAINER.COCOOP.N_CTX"),
                                                                  "LOSS.LAMBDA": Alias("TRAINER.COOP.N_CTX")})
    cfg = get_cfg_default()
    tree = cfg.load_cfg("TRAINER:\n  COOP:\n    W: 7\n    CSC: True\nLOSS:\n  LAMBDA: 3\n")
    translate_aliases(tree, "x.yaml")
    assert tree == {"TRAINER": {"COOP": {"CSC": True, "N_CTX": 3}, "COCOOP": {"N_CTX": 7}}}  # LOSS removed
    cfg.merge_from_other_cfg(tree)
    config.merge_from_list(cfg, ["TRAINER.COOP.W", "9"])
    assert (cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COOP.N_CTX) == (9, 3)
    both = cfg.load_cfg("TRAINER:\n  COOP:\n    W: 7\n  COCOOP:\n    N_CTX: 5\n")
    with pytest.raises(UserError, match="x.yaml sets both TRAINER.COOP.W and TRAINER.COCOOP.N_CTX"):
        translate_aliases(both, "x.yaml")


def test_an_alias_of_another_methods_key_applies_to_the_runs_that_read_its_node(tmp_path):
    """KgCoOp's authors write CoOp's keys (TRAINER.COOP.N_CTX ...) and `CTX_INIT: True`: in a KgCoOp run they
    set TRAINER.KGCOOP's keys, the value translated; in a CoOp run they stay CoOp's; without a trainer
    only the aliases that spell no key and only one node declares apply (TRAINER.COOP.ALPHA: TCP's;
    TRAINER.COOP.W is KgCoOp's loss weight and TCP's unused W)."""
    assert registry.aliases("KgCoOp")["TRAINER.COOP.N_CTX"].key == "TRAINER.KGCOOP.N_CTX"
    assert "TRAINER.COOP.N_CTX" not in registry.aliases("CoOp") and "TRAINER.COOP.N_CTX" not in registry.aliases()
    assert registry.aliases()["TRAINER.COOP.ALPHA"].key == "TRAINER.TCP.ALPHA"  # spells no key: always
    assert "TRAINER.COOP.W" not in registry.aliases()  # two methods spell it: only with the trainer
    assert (registry.aliases("KgCoOp")["TRAINER.COOP.W"].key, registry.aliases("TCP")["TRAINER.COOP.W"].key) == \
        ("TRAINER.KGCOOP.W", "TRAINER.TCP.W")
    path = tmp_path / "authors.yaml"
    path.write_text("TRAINER:\n  COOP:\n    CTX_INIT: True\n    N_CTX: 8\n")

    def setup(trainer, *opts):
        argv = ["--config-file", str(path), *opts] if trainer is None else \
            ["--trainer", trainer, "--config-file", str(path), *opts]
        return train.setup_cfg(train.build_parser().parse_args(argv))

    cfg = setup("KgCoOp", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8")
    assert (cfg.TRAINER.KGCOOP.CTX_INIT, cfg.TRAINER.KGCOOP.N_CTX, cfg.TRAINER.KGCOOP.W) == ("a photo of a", 8, 8.0)
    assert (cfg.TRAINER.COOP.CTX_INIT, cfg.TRAINER.COOP.N_CTX) == ("", 16)  # CoOp's keys untouched
    assert setup("KgCoOp", "TRAINER.COOP.CTX_INIT", "False").TRAINER.KGCOOP.CTX_INIT == ""  # the command line
    cfg = setup(None, "TRAINER.NAME", "KgCoOp")  # the trainer named by a KEY VALUE pair
    assert cfg.TRAINER.KGCOOP.N_CTX == 8
    with pytest.raises(train.ConfigError, match="Config key TRAINER.COOP.CTX_INIT in .*authors.yaml must be a str"):
        setup("CoOp")  # CoOp's own key: no KgCoOp alias, and yacs's type check names the file


# ------------------------------------------------------------------------------------------ --help
def test_method_listing_imports_no_torch():
    import subprocess
    import sys
    code = ("import sys, train; lines = train.trainers_help(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]; "
            "print(' '.join(lines[1:]))")  # the names, wrapped over as many lines as they need
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == NAMES
