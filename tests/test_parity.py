"""Same seed, same run: the random-order contract with the original CoOp, CoCoOp, MaPLe, MaPLe_FSA, KgCoOp,
ProGrad, MMA (ZjjConan/Multi-Modal-Adapter, on upstream Dassl), TCP and DePT (Koorye/DePT, on upstream Dassl).

The recorded values were produced by the ORIGINAL trainers' own code (KaiyangZhou/CoOp, muzairkhattak/
multimodal-prompt-learning, the official RESTORE release; htyao89/KgCoOp and BeierZhu/Prompt-align on their Dassl
fork; htyao89/Textual-based_Class-aware_prompt_tuning on upstream Dassl, its second CLIP in fp32; Koorye/DePT's
ExtrasLinearProbe* CustomCLIPs on upstream Dassl), run on CPU in fp32 with torch 2.14.1: Dassl's
`set_random_seed(1)`, their `load_clip_to_cpu` on the OpenAI-layout state dict built below, `clip_model.float()`,
their `CustomCLIP(cfg, classnames, clip_model)` (ProGrad: its zero-shot `CLIP(cfg, classnames)` first, as its
build_model does); then the next two `torch.rand` values, and the first four indices of a `RandomSampler` over 20
items after the same steps (the first batch of a 20-image few-shot set with batch size 4). Random streams can change between torch versions, so the test runs only on the version
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
# MMA (ZjjConan/Multi-Modal-Adapter, trainers/mmadapter.py): its CustomCLIP's adapters of blocks 1-2 (1-based),
# text, vision, shared; with ADAPTER_START 0 also the embeddings' adapters (index 0). Scale 0.1, bottleneck 32.
_MMA_KEYS = ("text_adapter.{s}.down.0.weight", "text_adapter.2.up.weight", "visual_adapter.{s}.down.0.weight",
             "visual_adapter.2.up.weight", "shared_adapter.{s}.0.weight", "shared_adapter.2.0.weight")
_MMA_VALUES = {
    1: ([([-0.032300323247909546, 0.533837080001831, -0.18783965706825256], -28.118458202807233),
         ([0.02418886497616768, -0.08011216670274734, -0.030184844508767128], 5.846957547626516),
         ([0.040157247334718704, -0.054975032806396484, -0.028820810839533806], -38.98561007671924),
         ([-0.060905639082193375, -0.03282616287469864, 0.024788444861769676], 8.538576870276735),
         ([0.07032089680433273, 0.2200256884098053, 0.049418117851018906], 1.0461150130722672),
         ([-0.032112967222929, 0.10600292682647705, 0.2481769174337387], -2.1392505736730527)],
        [0.4784535765647888, 0.26893842220306396], [2, 19, 4, 16]),
    0: ([([-0.4531034231185913, 0.15218354761600494, 0.2829184830188751], -15.475518791678041),
         ([0.015582459978759289, -0.20996437966823578, -0.022070229053497314], -2.5689690665968214),
         ([-0.19034622609615326, -0.0008969955379143357, -0.2287607640028], 9.687684368964256),
         ([-0.03108399361371994, -0.04838087037205696, 0.07311525195837021], -0.4739666452780966),
         ([-0.057948678731918335, -0.06377105414867401, -0.039465583860874176], -7.824178871975164),
         ([-0.10663444548845291, 0.4067697823047638, -0.17204242944717407], -9.02022886951454)],
        [0.906649649143219, 0.05865681171417236], [2, 18, 7, 17]),
}
for _start, (_values, _next, _batch) in _MMA_VALUES.items():
    RECORDED[f"MultiModalAdapter start{_start}"] = (
        {k.format(s=_start): v for k, v in zip(_MMA_KEYS, _values)}, _next, _batch)
# TCP (htyao89/Textual-based_Class-aware_prompt_tuning): its context, its second CLIP build (the hand prompts'
# copy), its meta_net. "ctx_init": the authors' CTX_INIT True ("a photo of a"). Their block 8 needs no
# draw; ours is the recording CLIP's block 1.
RECORDED["TCP"] = ({
    "prompt_learner.ctx": RECORDED["CoOp"][0]["prompt_learner.ctx"],
    "prompt_learner.meta_net.linear1.weight": ([-0.02312009036540985, 0.004373615141957998, 0.01959756761789322],
                                               -17.007103429342237),
    "prompt_learner.meta_net.linear1.bias": ([-0.011696756817400455, -0.021200306713581085, -0.016762802377343178],
                                             -0.09025991277303547),
    "prompt_learner.meta_net.linear2.weight": ([-0.021171584725379944, -0.05924215540289879, 0.0034355581738054752],
                                               1.2613167891377088),
    "prompt_learner.meta_net.linear2.bias": ([-0.06237924098968506, 0.034998584538698196, 0.0067322636023163795],
                                             -0.18913169748338987)},
    [0.4884859323501587, 0.76056307554245], [18, 4, 7, 13])
RECORDED["TCP ctx_init"] = ({
    "prompt_learner.ctx": RECORDED["CoCoOp"][0]["prompt_learner.ctx"],
    "prompt_learner.meta_net.linear1.weight": ([-0.03579682111740112, 0.031824447214603424, 0.007978709414601326],
                                               -17.257947418709477),
    "prompt_learner.meta_net.linear1.bias": ([0.029470782727003098, -0.022561702877283096, 0.004251052159816027],
                                             0.06588685866154265),
    "prompt_learner.meta_net.linear2.weight": ([-0.010121291503310204, -0.010372213087975979, -0.03960800543427467],
                                               -1.6512290567770833),
    "prompt_learner.meta_net.linear2.bias": ([-0.03288903087377548, -0.07981962710618973, -0.0635673999786377],
                                             -0.23099125374210416)},
    [0.14712971448898315, 0.6979818940162659], [19, 11, 14, 7])
# DePT (Koorye/DePT trainers/elp_*.py, upstream Dassl): the base method's draws (its own recorded values), then
# the head's Linear (weight, bias); the channel-wise transforms draw nothing. KgCoOp's: after its never-used modules.
_HEAD = ("linear_probe_proj.weight", "linear_probe_proj.bias")
for _base, _head, _next, _batch in (
        ("CoOp", [([-0.029881667345762253, -0.027103310450911522, 0.03270149230957031], -3.0266541136497835),
                  ([0.011440498754382133, 0.008758710697293282, -0.030866602435708046], 0.011512017343193293)],
         [0.7082701325416565, 0.674250602722168], [0, 19, 3, 9]),
        ("CoCoOp", [([-0.017673205584287643, 0.020551130175590515, 0.02376318909227848], 0.4264171774884744),
                    ([0.03181517869234085, 0.026954421773552895, 0.021780142560601234], 0.14884011261165142)],
         [0.5150638222694397, 0.5020283460617065], [15, 19, 4, 12]),
        ("MaPLe", [([0.02837522327899933, -0.033773571252822876, -0.03427260369062424], -2.71716465865029),
                   ([0.034925561398267746, 0.025069408118724823, -0.0402972586452961], 0.0652048671618104)],
         [0.24330729246139526, 0.14306074380874634], [18, 11, 2, 7]),
        ("KgCoOp", [([-0.03578982874751091, -0.0005042501725256443, -0.0346318818628788], 1.3862450484302826),
                    ([0.02020261250436306, 0.0007235402008518577, -0.03108268417418003], -0.019078244105912745)],
         [0.5951799154281616, 0.10530716180801392], [14, 10, 17, 4])):
    RECORDED[f"{_base}_DePT"] = ({**RECORDED[_base][0], **dict(zip(_HEAD, _head))}, _next, _batch)
OPTIONS = {
    "CoOp": ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.PREC", "fp32"],
    "CoCoOp": ["TRAINER.COCOOP.N_CTX", 4, "TRAINER.COCOOP.CTX_INIT", "a photo of a", "TRAINER.COCOOP.PREC", "fp32"],
    "MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"],
    "MaPLe_FSA": ["TRAINER.MAPLE_FSA.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"],
    "KgCoOp": ["TRAINER.KGCOOP.N_CTX", 4, "TRAINER.KGCOOP.CTX_INIT", "", "TRAINER.KGCOOP.PREC", "fp32"],
    "KgCoOp ctx_init": ["TRAINER.KGCOOP.N_CTX", 4, "TRAINER.KGCOOP.CTX_INIT", "a photo of a",
                        "TRAINER.KGCOOP.PREC", "fp32"],
    "ProGrad": ["TRAINER.PROGRAD.N_CTX", 4, "TRAINER.PROGRAD.PREC", "fp32"],
    **{f"MultiModalAdapter start{s}": ["TRAINER.MMADAPTER.ADAPTER_START", s, "TRAINER.MMADAPTER.ADAPTER_END", 2,
                                        "TRAINER.MMADAPTER.ADAPTER_SCALE", 0.1, "TRAINER.MMADAPTER.TEXT_CTX_INIT",
                                        "a photo of a", "TRAINER.MMADAPTER.PREC", "fp32"] for s in (0, 1)},
    **{f"ProGrad ctx_init {d}": ["TRAINER.PROGRAD.N_CTX", 16, "TRAINER.PROGRAD.CTX_INIT", True, "DATASET.NAME", d,
                                 "TRAINER.PROGRAD.PREC", "fp32"] for d in ("OxfordPets", "DescribableTextures")},
    "TCP": ["TRAINER.TCP.N_CTX", 4, "TRAINER.TCP.INSERT_LAYER", 1, "TRAINER.TCP.PREC", "fp32"],
    "TCP ctx_init": ["TRAINER.TCP.CTX_INIT", "a photo of a", "TRAINER.TCP.INSERT_LAYER", 1, "TRAINER.TCP.PREC", "fp32"],
}
OPTIONS.update({f"{base}_DePT": OPTIONS[base] for base in ("CoOp", "CoCoOp", "MaPLe", "KgCoOp")})


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
