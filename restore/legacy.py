"""Checkpoints written by the original CoOp-lineage code, read into our methods, and ours written
in the originals' layout (`to_original_state_dict`, `export_checkpoint`, `python -m restore.legacy`).

`convert_state_dict(trainer_name, state_dict)` maps the `state_dict` of a checkpoint saved by the
public CoOp / CoCoOp (KaiyangZhou/CoOp), IVLP / VPT / MaPLe
(muzairkhattak/multimodal-prompt-learning), PromptSRC (muzairkhattak/PromptSRC), KgCoOp (htyao89/KgCoOp),
ProGrad (BeierZhu/Prompt-align), TCP (htyao89/Textual-based_Class-aware_prompt_tuning: CoOp's layout)
or MaPLe_FSA (the official RESTORE release, Yaphabates/RESTORE_)
trainers onto the keys of our model's `state_to_save()`. Our own states pass through unchanged, so callers need not know
which kind they hold. Original layouts (docs/REPRODUCING.md section 8):

    CoOp, CoCoOp,  only the prompt learner is registered: ctx, meta_net.linear{1,2}.*,
    ProGrad        token_prefix, token_suffix                    -> prompt_learner.<key>
    MaPLe          the whole CustomCLIP: prompt_learner.{ctx, proj.*, compound_prompts_text.i,
                   compound_prompt_projections.i.*}            -> same names
    IVLP, VPT,     prompt_learner.ctx (text layer 0), image_encoder.VPT (vision layer 0), and per
    PromptSRC      block i >= 1 image_encoder.transformer.resblocks.i.VPT_shallow and
                   text_encoder.transformer.resblocks.i.VPT_shallow
                   -> prompt_learner.{ctx, vision_ctx, vision_deep.(i-1), text_deep.(i-1)}
    MaPLe_FSA      MaPLe + {text,visual}_adapter.{post_ln, FFN.0, FFN.2}.*, {text,vis}_cali_ratio
                   -> RESTORE_m with TRAINER.RESTORE.SURGERY.MODE / FS.DEFINITION "release"
    declared       a layout a method declares (restore.methods.spec.OriginalLayout): its base's names,
                   its unused keys dropped. KgCoOp: CoOp's plus bias_vectors, meta_net.linear1.*; MMA
                   (MultiModalAdapter): our key names plus token_embedding, tokenized_prompts

Dropped: the class-dependent token_prefix/token_suffix buffers (so base -> new and cross-dataset
loads work), the frozen CLIP weights (image_encoder.*, text_encoder.*, logit_scale, and our own
`clip.*`), and PromptSRC's frozen ZS_image_encoder. Floating tensors become fp32 (the originals keep
some prompts in fp16). Nothing here imports Dassl; torch is imported where tensors are made, so that
`python -m restore.legacy --help` and its argument checks answer at once.
"""
import logging
import os
import re

log = logging.getLogger(__name__)

_VISION_DEEP = re.compile(r"^image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
_TEXT_DEEP = re.compile(r"^text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
# MaPLe_FSA's Feature_Calibrator: post_ln -> FFN = (Linear, QuickGELU, Linear).
_CALIBRATOR = re.compile(r"^(text_adapter|visual_adapter)\.(post_ln|FFN\.0|FFN\.2)\.(weight|bias)$")
_CALIB_RATIOS = ("vis_cali_ratio", "text_cali_ratio")

# One table for both directions: (original name, our name). In a deep prompt's name {layer} is the
# transformer block (>= 1) and {deep} = layer - 1 its index in our prompt list.
RENAMES = (
    ("image_encoder.VPT", "prompt_learner.vision_ctx"),
    ("image_encoder.transformer.resblocks.{layer}.VPT_shallow", "prompt_learner.vision_deep.{deep}"),
    ("text_encoder.transformer.resblocks.{layer}.VPT_shallow", "prompt_learner.text_deep.{deep}"),
    ("{branch}_adapter.post_ln.{param}", "{branch}_adapter.ln.{param}"),
    ("{branch}_adapter.FFN.0.{param}", "{branch}_adapter.fc1.{param}"),
    ("{branch}_adapter.FFN.2.{param}", "{branch}_adapter.fc2.{param}"),
)
_FIELDS = {"layer": r"(?P<layer>\d+)", "deep": r"(?P<deep>\d+)", "branch": r"(?P<branch>text|visual)",
           "param": r"(?P<param>weight|bias)"}


def _pattern(template: str):
    regex = re.escape(template)
    for name, group in _FIELDS.items():
        regex = regex.replace(re.escape("{" + name + "}"), group)
    return re.compile(f"^{regex}$")


_COMPILED = tuple((_pattern(orig), _pattern(ours), orig, ours) for orig, ours in RENAMES)


def _translate(key: str, to_ours: bool):
    """`key` renamed through RENAMES (original -> ours, or back), or None when no row matches."""
    for orig_re, ours_re, orig, ours in _COMPILED:
        m = (orig_re if to_ours else ours_re).match(key)
        if m:
            fields = m.groupdict()
            if "layer" in fields:
                fields["deep"] = int(fields["layer"]) - 1
            elif "deep" in fields:
                fields["layer"] = int(fields["deep"]) + 1
            return (ours if to_ours else orig).format(**fields)
    return None


_CLASS_BUFFERS = ("token_prefix", "token_suffix")
_FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "clip.", "prompt_learner.ZS_image_encoder.")


def unwrap(checkpoint) -> dict:
    """The model state inside a checkpoint dict (Dassl's {"state_dict": ...}), without the
    `module.` prefix of DataParallel."""
    state = checkpoint
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _declared():
    """{name: OriginalLayout} the registered methods declare beside the built-in layouts (KgCoOp's)."""
    from .methods import registry
    return registry.declared_layouts()


def base_layout(layout):
    """The built-in layout whose renaming `layout` (a name, or None) uses: itself, or a declared layout's base."""
    declared = _declared().get(layout)
    return declared.base if declared is not None else layout


def original_layout(state_dict: dict):
    """Which original trainer family wrote `state_dict`: a layout a method declares (restore.methods.spec.
    OriginalLayout, recognised by its marks: "KgCoOp"), "CoOp" (prompt learner only), "IVLP"
    (IVLP / VPT / PromptSRC), "MaPLe_FSA", "MaPLe", or None (ours, or unrecognised)."""
    keys = set(unwrap(state_dict))
    frozen = "logit_scale" in keys or any(k.startswith(_FROZEN_PREFIXES) for k in keys)
    found = [(len(keys & set(layout.marks)), name) for name, layout in _declared().items()
             if keys & set(layout.marks) and (frozen or not layout.whole_model)]
    if found:  # the most marks matched, the first declared on a tie
        return max(found, key=lambda x: x[0])[1]
    if any(k in keys for k in ("ctx", "token_prefix", "token_suffix")) or any(
            k.startswith("meta_net.") for k in keys):
        return "CoOp"
    if any(k in keys for k in _CALIB_RATIOS) or any(_CALIBRATOR.match(k) for k in keys):
        return "MaPLe_FSA"
    if "image_encoder.VPT" in keys or any(_VISION_DEEP.match(k) or _TEXT_DEEP.match(k)
                                          for k in keys):
        return "IVLP"
    if any(k.startswith(("image_encoder.", "text_encoder.", "prompt_learner.token_"))
           for k in keys) or "logit_scale" in keys:
        # A full CustomCLIP state without IVLP prompts: MaPLe (or an IVLP run with no prompts).
        if any(k.startswith("prompt_learner.compound_prompt") for k in keys) \
                or "prompt_learner.proj.weight" in keys:
            return "MaPLe"
        return "IVLP"
    return None


def _fp32(value):
    import torch
    if torch.is_tensor(value) and value.is_floating_point():
        return value.detach().to(torch.float32)
    return value


def _rename(key: str, prompt_learner_only: bool):
    """Our name for an original key, or None to drop it."""
    if prompt_learner_only and not key.startswith("prompt_learner."):
        if key in _CLASS_BUFFERS:
            return None
        return "prompt_learner." + key
    if key.startswith("prompt_learner.") and key.split(".", 1)[1] in _CLASS_BUFFERS:
        return None
    renamed = _translate(key, to_ours=True)
    if renamed is not None:
        return renamed
    if key.startswith(_FROZEN_PREFIXES) or key == "logit_scale":
        return None
    return key


def convert_state_dict(trainer_name: str, state_dict: dict) -> dict:
    """Map a state dict written by the original trainers (or by us) onto the keys of our
    `trainer_name` model's `state_to_save()`. Also accepts a whole Dassl checkpoint dict.
    The original layouts do not overlap, so the keys decide the mapping; whether the result fits
    `trainer_name`'s model (depths, prompt lengths) is checked by the model's `load_state`, and
    `describe_mismatch` explains a misfit."""
    state = unwrap(state_dict)
    layout = original_layout(state)
    if layout is None:  # ours: unchanged
        return state
    declared = _declared().get(layout)
    layout = base_layout(layout)
    prompt_learner_only = layout == "CoOp"
    out = {}
    for key, value in state.items():
        if key in _CALIB_RATIOS or (declared is not None and declared.holds(key)):
            continue
        new = _rename(key, prompt_learner_only)
        if new is not None:
            out[new] = _fp32(value)

    if layout == "MaPLe_FSA":
        out.update(_release_bookkeeping(state, out))
    return out


def _release_bookkeeping(original: dict, converted: dict) -> dict:
    """RESTORE_m's release-mode buffers from a MaPLe_FSA state: the two calibration ratios
    (vision, text; already updated once, as at the end of any run past epoch MAX_EPOCH // 3), and
    fresh lazily-captured normalisers and surgery EMA (the release saves neither)."""
    import torch

    def scalar(key, default):
        v = original.get(key)
        return float(v) if v is not None else default

    n_deep = sum(1 for k in converted if k.startswith("prompt_learner.compound_prompts_text."))
    return {
        "calib_ratio": torch.tensor([scalar("vis_cali_ratio", 0.1), scalar("text_cali_ratio", 0.1)],
                                    dtype=torch.float32),
        "calib_updated": torch.tensor(True),
        "release_init": torch.zeros(2, n_deep),
        "release_init_ready": torch.tensor(False),
        "alpha_ema": torch.zeros(2),
        "alpha_ema_ready": torch.tensor(False),
    }


def describe_mismatch(trainer_name: str, state_dict: dict) -> str:
    """A hint for a state that does not fit `trainer_name`: which original trainer wrote it (when its
    layout is none of the method's `original_layouts`)."""
    from .methods import registry
    layout = original_layout(state_dict)
    loads = registry.get(trainer_name).layout_names if trainer_name in registry.names() else ()
    if layout is None or layout in loads:
        return ""
    declared = _declared().get(layout)
    if declared is not None:
        family = declared.writers or layout
    elif layout == "CoOp":  # the methods whose checkpoints go out in it: their original trainers write it
        names = [n for n, out in registry.exportable().items() if out == "CoOp"] or ["CoOp"]
        family = " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
    else:
        family = {"IVLP": "IVLP, VPT or PromptSRC", "MaPLe": "MaPLe",
                  "MaPLe_FSA": "MaPLe_FSA (official RESTORE)"}[layout]
    return f" The checkpoint looks like one written by the original {family} trainer."


# ------------------------------------------------------------------------ the other direction
# The original layout each trainer exports to is its spec's `export_layout` (registry.exportable()): LPT
# is IVLP with text prompts only; RESTORE_m exports only as its release variant (the original MaPLe_FSA).
# Our bookkeeping that no original keeps (the release recomputes its normalisers, PromptSRC's GPA
# running sum lives in the trainer there).
_OURS_ONLY = ("calib_updated", "release_init", "release_init_ready", "alpha_ema", "alpha_ema_ready")


def export_layout(trainer_name: str) -> str:
    """The original layout `trainer_name`'s checkpoints are written in (its spec's export_layout);
    ValueError for a trainer no original has (RESTORE_p, ZeroshotCLIP)."""
    from .methods import registry
    exportable = registry.exportable()
    if trainer_name not in exportable:
        raise ValueError(f"No original trainer holds {trainer_name} checkpoints; exportable: "
                         f"{', '.join(exportable)}.")
    return exportable[trainer_name]


def to_original_state_dict(trainer_name: str, state_dict: dict) -> dict:
    """Our `state_to_save()` (or a checkpoint of ours) in the original trainer's layout: the inverse
    of `convert_state_dict` through the same RENAMES table. Holds the learned tensors only (fp32);
    the originals load with strict=False and rebuild the frozen CLIP and class buffers themselves.
    ValueError for a trainer no original has (RESTORE_p, ZeroshotCLIP, RESTORE_m outside its
    release variant)."""
    layout = export_layout(trainer_name)
    state = unwrap(state_dict)
    if original_layout(state) is not None:
        raise ValueError("This state is already in an original trainer's layout.")
    layout = base_layout(layout)  # a declared layout: its base's names (its unused keys are not written)
    if layout == "MaPLe_FSA" and "calib_ratio" not in state:
        raise ValueError(f"{trainer_name} exports only as its release variant (MaPLe_FSA): this "
                         "checkpoint was trained with another TRAINER.RESTORE.SURGERY.MODE.")
    out = {}
    for key, value in state.items():
        if key in _OURS_ONLY or key.endswith("_extra_state"):
            continue
        if key == "calib_ratio":  # [vision, text]
            out["vis_cali_ratio"], out["text_cali_ratio"] = _fp32(value[0]), _fp32(value[1])
            continue
        if layout == "CoOp":  # only the prompt learner is registered there
            out[key[len("prompt_learner."):]] = _fp32(value)
            continue
        out[_translate(key, to_ours=False) or key] = _fp32(value)
    return out


def export_checkpoint(trainer_name: str, model_dir: str, output_dir: str, epoch=None, trust: bool = False) -> str:
    """Write our checkpoint `model_dir/<registered name>/model.pth.tar-<epoch>` (latest when epoch is
    None) as `output_dir/<registered name>/model.pth.tar-<epoch>` in the original layout, for the
    original code's `--model-dir output_dir --load-epoch <epoch> --eval-only`. Returns the path.
    ValueError (one line naming the file) for a checkpoint whose record says another trainer trained it;
    `trust`: read the checkpoint without restriction (--trust-files)."""
    from .engine.checkpoint import load_checkpoint, model_file, save_checkpoint
    from .engine.run_record import has_record
    from .methods.registry import registered_name
    name = registered_name(trainer_name)
    source = model_file(model_dir, name, epoch)
    checkpoint = load_checkpoint(source, trust=trust)
    if not has_record(checkpoint):
        log.warning(f"Note: {source} records no trainer: that it holds {trainer_name} prompts is not checked.")
    elif checkpoint["trainer"] != trainer_name:
        raise ValueError(f"{source} was trained with {checkpoint['trainer']}, not {trainer_name}: pass --trainer "
                         f"{checkpoint['trainer']}.")
    state = to_original_state_dict(trainer_name, checkpoint)
    return save_checkpoint({"state_dict": state, "epoch": checkpoint.get("epoch", epoch),
                            "optimizer": None, "scheduler": None, "val_result": None},
                           os.path.join(output_dir, name))


def main(argv=None):
    from .cli import ArgumentParser, check_trainer
    from .methods import registry
    p = ArgumentParser(
        prog="python -m restore.legacy",
        description="Export a checkpoint of ours into the original trainer's layout.")
    p.add_argument("--trainer", required=True,
                   help=f"one of {', '.join(registry.exportable())} (or a method of --method-module)")
    p.add_argument("--model-dir", required=True, help="our --output-dir of the training run")
    p.add_argument("--load-epoch", type=int, default=None, help="epoch to export (default: latest)")
    p.add_argument("--output-dir", required=True, help="where the original code reads --model-dir")
    p.add_argument("--method-module", action="append", default=[],
                   help="a module registering a method of another package (the modules the training run "
                        "recorded in its run_info.json are imported too)")
    p.add_argument("--trust-files", action="store_true",
                   help="read the checkpoint without restriction, which can run code stored in it (as train.py "
                        "--trust-files); without it only tensors and plain data are read")
    args = p.parse_args(argv)
    from .files import describe_os_error
    try:
        registry.import_modules(args.method_module)
        registry.import_modules(registry.recorded_modules(args.model_dir),
                                f"METHOD_MODULES of {os.path.join(args.model_dir, 'run_info.json')}")
        export_layout(check_trainer(args.trainer))  # before torch: the message every entry point gives
        export_checkpoint(args.trainer, args.model_dir, args.output_dir, args.load_epoch, trust=args.trust_files)
    except OSError as err:
        text = describe_os_error(err) if err.strerror and not isinstance(err, ValueError) else str(err)
        raise SystemExit(f"Error: {text}") from None
    except (ValueError, KeyError) as err:
        raise SystemExit(f"Error: {err}") from None


if __name__ == "__main__":
    main()
