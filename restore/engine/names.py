"""The checkpoint sub-folder ("registered model name") of each trainer, as the CoOp-lineage trainers
register their models in Dassl (shared/reference/ANCHORS.md 1.4, 3.x). One table for both engines:
checkpoints live at `<OUTPUT_DIR>/<registered name>/model.pth.tar-<epoch>`.
"""

REGISTERED_NAMES = {
    "CoOp": "prompt_learner",
    "CoCoOp": "prompt_learner",
    "VPT": "prompt_learner",
    "LPT": "VLPromptLearner",
    "IVLP": "VLPromptLearner",
    "PromptSRC": "VLPromptLearner",
    "RESTORE_p": "VLPromptLearner",
    "MaPLe": "MultiModalPromptLearner",
    "RESTORE_m": "MultiModalPromptLearner",
    "MaPLe_FSA": "MultiModalPromptLearner",  # the release's name for RESTORE_m's release variant
    # Nothing to save: zero-shot CLIP has no trainable parameters. Listed so that every trainer has
    # an entry; its folder name is never written.
    "ZeroshotCLIP": "prompt_learner",
}


def registered_name(trainer: str) -> str:
    """The checkpoint sub-folder of `trainer` (a TRAINER.NAME)."""
    try:
        return REGISTERED_NAMES[trainer]
    except KeyError:
        raise KeyError(f"No registered model name for trainer {trainer!r}; known trainers: "
                       f"{', '.join(REGISTERED_NAMES)}") from None
