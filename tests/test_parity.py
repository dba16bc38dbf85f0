"""Same seed, same run: the random-order contract with the original CoOp, CoCoOp, MaPLe, MaPLe_FSA, KgCoOp and
ProGrad.

The recorded values were produced by the ORIGINAL trainers' own code (KaiyangZhou/CoOp, muzairkhattak/
multimodal-prompt-learning, the official RESTORE release; htyao89/KgCoOp and BeierZhu/Prompt-align on their Dassl
fork), run on CPU in fp32 with torch 2.14.1: Dassl's `set_random_seed(1)`, their `load_clip_to_cpu` on the
OpenAI-layout state dict built below, `clip_model.float()`, their `CustomCLIP(cfg, classnames, clip_model)`
(ProGrad: its zero-shot `CLIP(cfg, classnames)` first, as its build_model does); then the next two `torch.rand` values, and the first four
indices of a `RandomSampler` over 20 items after the same steps (the first batch of a 20-image few-shot set
with batch size 4). Random streams can change between torch versions, so the test runs only on the version
the values were taken with.
"""
import pytest
import torch
from clip.model import CLIP

import restore
from restore.backbone import freeze, replay_openai_init
from restore.engine.seed import set_random_seed
from restore.methods import build_model, registry

RECORDED_WITH = "2.14.1"
pytestmark = pytest.mark.skipif(
    torch.__version__.split("+")[0] != RECORDED_WITH,
    reason=f"values recorded with torch {RECORDED_WITH}; torch {torch.__version__}'s random streams may differ")

CLASSES = ["airplane", "butterfly", "camera", "dolphin", "elephant"]

# name: (first three values, float64 sum), next two torch.rand values, first batch.
# MaPLe_FSA's Feature_Calibrator names are given in ours (post_ln -> ln, FFN.0 -> fc1, FFN.2 -> fc2).
_MAPLE = {
    "prompt_learner.ctx": ([0.015655517578125, 0.033721923828125, -0.0017223358154296875], -0.3220154643058777),
    "prompt_learner.proj.weight": ([-0.017423590645194054, -0.036595508456230164, -0.0007823719643056393],
                                   -38.85007017598802),
    "prompt_learner.proj.bias": ([0.03716464713215828, 0.012379872612655163, 0.009653488174080849],
                                 0.6626140341177233),
    "prompt_learner.compound_prompts_text.0": ([-0.020643118768930435, -0.007491566240787506,
                                                0.009314590133726597], 0.3806379643865512),
    "prompt_learner.compound_prompt_projections.0.weight": ([0.01089511252939701, 0.016233116388320923,
                                                             0.02316524088382721], 9.011762512004495),
    "prompt_learner.compound_prompt_projections.0.bias": ([0.028083546087145805, 0.012961678206920624,
                                                           0.031213391572237015], -0.057514803200319875),
}
RECORDED = {
    "CoOp": ({"prompt_learner.ctx": ([-0.0165623240172863, -0.008408213965594769, -0.00936172716319561],
                                     1.3537141505912587)},
             [0.16192752122879028, 0.1933610439300537], [17, 14, 8, 5]),
    "CoCoOp": ({"prompt_learner.ctx": ([0.015655517578125, 0.033721923828125, -0.0017223358154296875],
                                       -0.30794936418533325),
                "prompt_learner.meta_net.linear1.weight": ([-0.017423590645194054, -0.036595508456230164,
                                                            -0.0007823719643056393], -7.32035102273278),
                "prompt_learner.meta_net.linear1.bias": ([-0.014244838617742062, 0.020027218386530876,
                                                          -0.012445284985005856], -0.03572171996347606),
                "prompt_learner.meta_net.linear2.weight": ([-0.0687495768070221, 0.008227212354540825,
                                                            0.02137848362326622], -6.280140895610202),
                "prompt_learner.meta_net.linear2.bias": ([-0.15783709287643433, 0.16568250954151154,
                                                          -0.09222768992185593], 1.280781871988438)},
               [0.3000504970550537, 0.7325094938278198], [12, 3, 2, 1]),
    "MaPLe": (_MAPLE, [0.821029007434845, 0.11789566278457642], [5, 10, 16, 19]),
    "MaPLe_FSA": ({**_MAPLE,
                   "text_adapter.fc1.weight": ([0.02837522327899933, -0.033773571252822876, -0.03427260369062424],
                                               19.48158730189111),
                   "text_adapter.fc1.bias": ([-0.010987667366862297, 0.015100973658263683,
                                              -0.0024800363462418318], -0.842225052213962),
                   "text_adapter.fc2.weight": ([-0.009910917840898037, 0.01269301027059555, -0.011521518230438232],
                                               18.212697643603207),
                   "text_adapter.fc2.bias": ([0.016494985669851303, 0.012230214662849903, 0.010849333368241787],
                                             0.12715308271981485),
                   "visual_adapter.fc1.weight": ([0.0011775196762755513, 0.02678620256483555,
                                                  -0.04134134203195572], 53.81712061440489),
                   "visual_adapter.fc1.bias": ([-0.029478484764695168, 0.025508088991045952,
                                                -0.02661239355802536], -1.5742027343876543),
                   "visual_adapter.fc2.weight": ([-0.018771810457110405, -0.004655809607356787,
                                                  -0.011018800549209118], 8.242667860399752),
                   "visual_adapter.fc2.bias": ([-0.00999816507101059, -0.00683471979573369, 0.0008636784623377025],
                                               -0.20912768701782625)},
                  [0.9720023274421692, 0.5617880821228027], [2, 10, 7, 0]),
}
# KgCoOp (htyao89/KgCoOp): after its context, the draws of the modules it builds and never uses (bias_vectors,
# its hand prompts' second CLIP build, meta_net, the adapter). "ctx_init": the authors' CTX_INIT True.
RECORDED["KgCoOp"] = (RECORDED["CoOp"][0], [0.0950843095779419, 0.49429506063461304], [7, 15, 19, 13])
RECORDED["KgCoOp ctx_init"] = ({"prompt_learner.ctx": RECORDED["CoCoOp"][0]["prompt_learner.ctx"]},
                               [0.14435744285583496, 0.3221181631088257], [10, 11, 19, 1])
# ProGrad (BeierZhu/Prompt-align): its zero-shot CLIP's build before the context; with CTX_INIT (N_CTX 16)
# zeros then the template's words (8 on OxfordPets, 3 on DescribableTextures), which draw nothing.
RECORDED["ProGrad"] = ({"prompt_learner.ctx": ([-0.003969064448028803, -0.03714900091290474, -0.01575126126408577],
                                               0.6286086817999603)},
                       [0.23842602968215942, 0.5494818091392517], [1, 19, 2, 11])
RECORDED["ProGrad ctx_init OxfordPets"] = ({"prompt_learner.ctx": ([0.0, 0.0, 0.0], -0.2688770890235901)},
                                           [0.09500521421432495, 0.8600525259971619], [8, 15, 19, 0])
RECORDED["ProGrad ctx_init DescribableTextures"] = (
    {"prompt_learner.ctx": ([0.0, 0.0, 0.0], -0.2437206506729126)}, *RECORDED["ProGrad ctx_init OxfordPets"][1:])
OPTIONS = {
    "CoOp": ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.PREC", "fp32"],
    "CoCoOp": ["TRAINER.COCOOP.N_CTX", 4, "TRAINER.COCOOP.CTX_INIT", "a photo of a", "TRAINER.COCOOP.PREC", "fp32"],
    "MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"],
    "MaPLe_FSA": ["TRAINER.MAPLE_FSA.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"],
    "KgCoOp": ["TRAINER.KGCOOP.N_CTX", 4, "TRAINER.KGCOOP.CTX_INIT", "", "TRAINER.KGCOOP.PREC", "fp32"],
    "KgCoOp ctx_init": ["TRAINER.KGCOOP.N_CTX", 4, "TRAINER.KGCOOP.CTX_INIT", "a photo of a",
                        "TRAINER.KGCOOP.PREC", "fp32"],
    "ProGrad": ["TRAINER.PROGRAD.N_CTX", 4, "TRAINER.PROGRAD.PREC", "fp32"],
    **{f"ProGrad ctx_init {d}": ["TRAINER.PROGRAD.N_CTX", 16, "TRAINER.PROGRAD.CTX_INIT", True, "DATASET.NAME", d,
                                 "TRAINER.PROGRAD.PREC", "fp32"] for d in ("OxfordPets", "DescribableTextures")},
}


@pytest.fixture(scope="module")
def openai_state():
    """The recording's CLIP: OpenAI's architecture (embed 512, vision 768 x 2 layers, text 512 x 2 layers,
    32 px, patch 16) from seed 0, values rounded to fp16 as OpenAI's files are."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIP(512, 32, 2, 768, 16, 77, 49408, 512, 8, 2)
    return {k: v.half().float() for k, v in model.state_dict().items()}


def build_seeded(case, state):
    """The model of a recorded case ("<trainer>[ <variant>]") built as the engines build it, after seed 1."""
    trainer = case.split()[0]
    cfg = restore.get_cfg_default()
    cfg.TRAINER.NAME = trainer
    cfg.DATASET.NAME = "Caltech101"
    cfg.merge_from_list(["INPUT.SIZE", (32, 32)] + OPTIONS[case])
    derive = registry.get(trainer).derive_cfg  # MaPLe_FSA: its release node onto RESTORE_m's keys
    if derive:
        derive(cfg)
    set_random_seed(1)
    clip_model = replay_openai_init(state)  # what the engines run for an OpenAI checkpoint
    clip_model.load_state_dict(state)
    return build_model(cfg, CLASSES, freeze(clip_model))


@pytest.mark.parametrize("trainer", list(RECORDED))
def test_initial_prompts_and_next_draws_equal_the_original(trainer, openai_state):
    tensors, next_draw, _ = RECORDED[trainer]
    model = build_seeded(trainer, openai_state)
    state = model.state_to_save()
    for name, (first, total) in tensors.items():
        assert state[name].flatten()[:3].tolist() == first, name
        assert state[name].double().sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9), name
    assert torch.rand(2).tolist() == next_draw  # nothing more, nothing less was drawn


@pytest.mark.parametrize("trainer", list(RECORDED))
def test_first_batch_equals_the_original(trainer, openai_state):
    build_seeded(trainer, openai_state)
    sampler = torch.utils.data.RandomSampler(range(20))
    assert list(iter(sampler))[:4] == RECORDED[trainer][2]


def test_small_backbones_leave_the_generator_alone(openai_state):
    """The replay is for OpenAI checkpoints only: the tiny random CLIP and the bundled testbed CLIP
    (no original to match) draw nothing from the caller's generator."""
    for load in (restore.tiny_clip, lambda: restore.load_clip("testbed")):
        torch.manual_seed(1)
        expected = torch.rand(2)
        torch.manual_seed(1)
        load()
        assert torch.equal(torch.rand(2), expected)
    torch.manual_seed(1)
    replay_openai_init(openai_state)
    assert not torch.equal(torch.rand(2), expected)  # the replay does draw
