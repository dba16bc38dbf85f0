"""The official RESTORE release's own commands: trainer MaPLe_FSA, its TRAINER.MAPLE_FSA node and its
--vis_calib_r / --text_calib_r / --fs_loss_r flags (declared with the node in restore.methods.restore),
read as RESTORE_m's release variant.

Mapping (one line): MAPLE_FSA.{N_CTX, CTX_INIT, PROMPT_DEPTH} -> TRAINER.MAPLE.*; VIS_CALIB_R,
TEXT_CALIB_R -> TRAINER.RESTORE.SURGERY.RELEASE_VIS_R, RELEASE_TEXT_R; FS_LOSS_R -> TRAINER.RESTORE.FS.WEIGHT;
FS.DEFINITION and SURGERY.MODE -> "release". Precision stays TRAINER.MAPLE.PREC, the key the release's
trainer reads (its MAPLE_FSA.PREC is accepted and, as there, unused).

The release's quirk is not kept: its train.py always writes its flags' defaults (0.1, 0.1, 1) over the
yaml. Here a flag overrides only when given, and the node's defaults are those effective values (the
release's declared VIS_CALIB_R = 0.01 is never used by its own commands), so the release's commands
give the same config while a yaml value is honoured instead of silently replaced.
"""
# The release's train.py flags -> keys of TRAINER.MAPLE_FSA.
FLAGS = {"vis_calib_r": "VIS_CALIB_R", "text_calib_r": "TEXT_CALIB_R", "fs_loss_r": "FS_LOSS_R"}
_PROMPT_KEYS = ("N_CTX", "CTX_INIT", "PROMPT_DEPTH")


def map_node(cfg) -> None:
    """Copy TRAINER.MAPLE_FSA onto the keys RESTORE_m reads (see the module docstring): MaPLe_FSA's
    `derive_cfg`, run on the merged config of a MaPLe_FSA run before it is checked and frozen."""
    node, restore = cfg.TRAINER.MAPLE_FSA, cfg.TRAINER.RESTORE
    for key in _PROMPT_KEYS:
        cfg.TRAINER.MAPLE[key] = node[key]
    restore.SURGERY.RELEASE_VIS_R = float(node.VIS_CALIB_R)
    restore.SURGERY.RELEASE_TEXT_R = float(node.TEXT_CALIB_R)
    restore.FS.WEIGHT = float(node.FS_LOSS_R)
    restore.FS.DEFINITION = "release"
    restore.SURGERY.MODE = "release"


def release_variant(cfg):
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
