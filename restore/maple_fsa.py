"""The official RESTORE release's own commands: trainer MaPLe_FSA, its TRAINER.MAPLE_FSA node and its
--vis_calib_r / --text_calib_r / --fs_loss_r flags, read as RESTORE_m's release variant.

Mapping (one line): MAPLE_FSA.{N_CTX, CTX_INIT, PROMPT_DEPTH} -> TRAINER.MAPLE.*; VIS_CALIB_R,
TEXT_CALIB_R -> TRAINER.RESTORE.SURGERY.RELEASE_VIS_R, RELEASE_TEXT_R; FS_LOSS_R -> TRAINER.RESTORE.FS.WEIGHT;
FS.DEFINITION and SURGERY.MODE -> "release". Precision stays TRAINER.MAPLE.PREC, the key the release's
trainer reads (its MAPLE_FSA.PREC is accepted and, as there, unused).

The release's quirk is not kept: its train.py always writes its flags' defaults (0.1, 0.1, 1) over the
yaml. Here a flag overrides only when given, and the node's defaults are those effective values (the
release's declared VIS_CALIB_R = 0.01 is never used by its own commands), so the release's commands
give the same config while a yaml value is honoured instead of silently replaced.
"""
from yacs.config import CfgNode as CN

TRAINER_NAME = "MaPLe_FSA"
NODE = "MAPLE_FSA"
# flag -> key under TRAINER.MAPLE_FSA
FLAGS = {"vis_calib_r": "VIS_CALIB_R", "text_calib_r": "TEXT_CALIB_R", "fs_loss_r": "FS_LOSS_R"}
_FLAG_HELP = {"vis_calib_r": "calibration ratio of the vision branch (release default 0.1)",
              "text_calib_r": "calibration ratio of the text branch (release default 0.1)",
              "fs_loss_r": "feature-shift loss ratio (release default 1)"}
_PROMPT_KEYS = ("N_CTX", "CTX_INIT", "PROMPT_DEPTH")


def add_node(trainer_cfg: CN) -> None:
    """TRAINER.MAPLE_FSA with the release's keys (the calibration defaults its commands use)."""
    n = trainer_cfg[NODE] = CN()
    n.N_CTX = 2
    n.CTX_INIT = "a photo of a"
    n.PREC = "fp16"
    n.PROMPT_DEPTH = 9
    n.VIS_CALIB_R = 0.1
    n.TEXT_CALIB_R = 0.1
    n.FS_LOSS_R = 1.0


def add_flags(parser) -> None:
    """The release's train.py flags; default None = keep the config's value."""
    for flag, text in _FLAG_HELP.items():
        parser.add_argument(f"--{flag}", type=float, default=None, help=f"MaPLe_FSA: {text}")


def apply_flags(cfg: CN, args) -> None:
    """Write the given release flags into TRAINER.MAPLE_FSA; ValueError when given for another trainer."""
    given = {f: getattr(args, f, None) for f in FLAGS if getattr(args, f, None) is not None}
    if given and cfg.TRAINER.NAME != TRAINER_NAME:
        flag = next(iter(given))
        raise ValueError(f"--{flag} is the release's flag for --trainer {TRAINER_NAME}; for "
                         f"{cfg.TRAINER.NAME or 'this trainer'} set TRAINER.RESTORE.SURGERY.RELEASE_VIS_R, "
                         "RELEASE_TEXT_R or TRAINER.RESTORE.FS.WEIGHT instead.")
    for flag, value in given.items():
        cfg.TRAINER[NODE][FLAGS[flag]] = float(value)


def map_node(cfg: CN) -> None:
    """For TRAINER.NAME MaPLe_FSA, copy TRAINER.MAPLE_FSA onto the keys RESTORE_m reads (see the module
    docstring); other trainers are left unchanged. Call after every merge, before freezing."""
    if cfg.TRAINER.NAME != TRAINER_NAME:
        return
    node, restore = cfg.TRAINER[NODE], cfg.TRAINER.RESTORE
    for key in _PROMPT_KEYS:
        cfg.TRAINER.MAPLE[key] = node[key]
    restore.SURGERY.RELEASE_VIS_R = float(node.VIS_CALIB_R)
    restore.SURGERY.RELEASE_TEXT_R = float(node.TEXT_CALIB_R)
    restore.FS.WEIGHT = float(node.FS_LOSS_R)
    restore.FS.DEFINITION = "release"
    restore.SURGERY.MODE = "release"


def release_variant(cfg: CN) -> CN:
    """`cfg` with TRAINER.RESTORE.FS.DEFINITION and SURGERY.MODE "release" (a copy when they differ)."""
    restore = cfg.TRAINER.RESTORE
    if (restore.FS.DEFINITION, restore.SURGERY.MODE) == ("release", "release"):
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TRAINER.RESTORE.FS.DEFINITION = "release"
    cfg.TRAINER.RESTORE.SURGERY.MODE = "release"
    cfg.freeze()
    return cfg
