"""CLIP backbones: OpenAI checkpoints by name or path, and small CLIPs of the same architecture.

Every model returned here is an unmodified `clip.model.CLIP` in fp32, in eval mode, with all
parameters frozen; methods add prompts around it and never change it.
"""
import os
import urllib.error

import clip
import torch
from clip.model import CLIP, build_model

from .adapters.openclip import is_open_clip_name, load_open_clip
from .safe_pickle import UntrustedFileError, torch_load
from .suggest import did_you_mean
from .torchscript import check_torchscript, torchscript_state_dict

CACHE_DIR = os.path.expanduser("~/.cache/clip")

# Keys of `clip.model.CLIP.__init__`, stored beside the weights of small models, whose head counts
# cannot be inferred from a state dict (OpenAI's build_model assumes width // 64 heads).
CLIP_DIMS = ("embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size",
             "context_length", "vocab_size", "transformer_width", "transformer_heads",
             "transformer_layers")


# The shapes of OpenAI's released CLIPs, as read from a state dict by `weight_shapes`:
# (embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, transformer_width,
# transformer_layers). Only for these does OpenAI's build_model infer the right head counts.
OPENAI_SHAPES = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512, 12),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512, 12),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 640, 12),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 768, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 1024, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 512, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768, 12),
}


class BackboneError(RuntimeError):
    """A backbone cannot be found or read; the message names the file and the fix."""


def tiny_clip_dims(**overrides) -> dict:
    """Dimensions of the random test CLIP. Vision and text widths differ on purpose, so that
    nothing can silently assume they are equal."""
    dims = dict(embed_dim=32, image_resolution=32, vision_layers=3, vision_width=64,
                vision_patch_size=8, context_length=77, vocab_size=49408, transformer_width=48,
                transformer_heads=2, transformer_layers=3)
    unknown = set(overrides) - set(dims)
    if unknown:
        raise TypeError(f"tiny_clip: unknown dimension(s) {sorted(unknown)}; valid: {list(dims)}")
    dims.update(overrides)
    return dims


def tiny_clip(seed: int = 0, **dims) -> CLIP:
    """A small randomly initialised `clip.model.CLIP` (OpenAI architecture, real tokenizer
    vocabulary), deterministic by seed and independent of the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**tiny_clip_dims(**dims))
    return freeze(model)


def tiny_resnet_clip(seed: int = 0, **dims) -> CLIP:
    """`tiny_clip` with a small ResNet image tower (ModifiedResNet, one block per stage, 64 px)."""
    return tiny_clip(seed, **{**dict(vision_layers=(1, 1, 1, 1), vision_width=8,
                                     image_resolution=64), **dims})


def freeze(model: CLIP) -> CLIP:
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def openai_cache_path(name: str) -> str:
    """Where OpenAI's loader keeps the weights of `name` (e.g. ~/.cache/clip/ViT-B-16.pt)."""
    return os.path.join(CACHE_DIR, os.path.basename(clip.clip._MODELS[name]))


def _small_backbones():
    # Imported lazily: the testbed package is only needed when its backbone is asked for.
    def testbed():
        from .testbed import load_testbed_clip
        return load_testbed_clip()

    return {"tiny-random": tiny_clip, "tiny-random-resnet": tiny_resnet_clip, "testbed": testbed}


def available_backbones() -> list:
    return list(clip.clip._MODELS) + list(_small_backbones())


def load_clip(name_or_path: str, trust: bool = False) -> CLIP:
    """Load a CLIP by OpenAI name ("ViT-B/16"), small-backbone name ("tiny-random", "testbed"),
    open_clip name ("open_clip:ViT-B-16/laion2b_s34b_b88k") or path to a local file (OpenAI JIT
    archive, plain state dict, or {"dims", "state_dict"}). A TorchScript archive other than OpenAI's
    published files raises UntrustedFileError unless `trust` (restore.torchscript)."""
    if is_open_clip_name(name_or_path):
        return load_open_clip(name_or_path)
    small = _small_backbones()
    if name_or_path in small:
        return small[name_or_path]()
    if os.path.isfile(name_or_path):
        return _load_file(name_or_path, trust)
    if name_or_path not in clip.clip._MODELS:
        # OpenAI names contain "/" too ("ViT-B/16"): a mistyped one is a name, not a path.
        if (name_or_path.endswith((".pt", ".pth")) or os.path.isabs(name_or_path)
                or name_or_path.startswith(("." + os.sep, ".." + os.sep, "~"))):
            raise BackboneError(f"CLIP weights file not found: {name_or_path}. "
                                "Check MODEL.BACKBONE.PATH.")
        hint = did_you_mean(name_or_path, available_backbones())
        raise BackboneError(f"Unknown CLIP backbone {name_or_path!r}.{hint} Valid names: "
                            f"{', '.join(available_backbones())}, open_clip:MODEL/TAG (open_clip's "
                            "models); or set MODEL.BACKBONE.PATH to a local weights file.")
    path = openai_cache_path(name_or_path)
    if not os.path.isfile(path):
        try:
            path = clip.clip._download(clip.clip._MODELS[name_or_path], CACHE_DIR)
        except (urllib.error.URLError, OSError) as err:
            if os.path.exists(path):  # a partial download must not pass for weights later
                os.remove(path)
            raise BackboneError(
                f"CLIP weights for {name_or_path} are not at {path} and could not be downloaded "
                f"({err}). Copy the file there, or set MODEL.BACKBONE.PATH to a local copy."
            ) from None
    return _load_file(path, trust)


def build_backbone(cfg) -> CLIP:
    """The CLIP named by a config: MODEL.BACKBONE.PATH if set, else MODEL.BACKBONE.NAME. An
    open_clip name ("open_clip:ViT-B-16-quickgelu", or "open_clip:ViT-B-16/TAG" naming the weights)
    with a PATH loads that file into its architecture. The config's INPUT.* must already fit what
    the backbone was trained with (restore.pretrained.fit_inputs; train.py applies it)."""
    path = cfg.MODEL.BACKBONE.get("PATH", "")
    trust = cfg.get("TRUST_FILES", False)
    if is_open_clip_name(cfg.MODEL.BACKBONE.NAME):
        if path:  # a TorchScript file is run by open_clip's loader too: only OpenAI's, or trusted
            check_torchscript(path, trust)
        return load_open_clip(cfg.MODEL.BACKBONE.NAME, path, trust)
    return load_clip(path if path else cfg.MODEL.BACKBONE.NAME, trust=trust)


def save_clip(model: CLIP, path: str, dims: dict) -> None:
    """Save a small CLIP with its dimensions so that `load_clip(path)` rebuilds it exactly."""
    from .files import save_torch
    save_torch({"dims": dict(dims), "state_dict": model.state_dict()}, path)


def weight_shapes(state: dict) -> tuple:
    """The architecture of a CLIP state dict as OpenAI's build_model reads it (without the head
    counts, which weights do not show); the tuple layout of OPENAI_SHAPES."""
    def count(prefix):
        return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})

    if "visual.proj" in state:  # ViT
        width, _, patch, _ = state["visual.conv1.weight"].shape
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = (patch * grid, count("visual.transformer.resblocks."), width, patch)
    else:  # ResNet
        layers = tuple(count(f"visual.layer{b}.") for b in (1, 2, 3, 4))
        grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = (grid * 32, layers, state["visual.layer1.0.conv1.weight"].shape[0], None)
    return (state["text_projection"].shape[1], *vision, state["ln_final.weight"].shape[0],
            count("transformer.resblocks."))


def _load_file(path: str, trust: bool = False) -> CLIP:
    try:
        # OpenAI ships TorchScript archives (accepted by checksum); others are pickled state dicts, read
        # without running code (restore.safe_pickle; --trust-files: without restriction).
        state = torchscript_state_dict(path, trust)
        if state is None:
            state = torch_load(path, trust=trust)
    except UntrustedFileError:
        raise
    except Exception as err:  # one line, never torch's advice to turn its safe loader off
        reason = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
        raise BackboneError(f"Cannot read CLIP weights from {path} ({type(err).__name__}: {reason}): the file "
                            "is damaged, incomplete or no PyTorch checkpoint. Check MODEL.BACKBONE.PATH.") from None
    if isinstance(state, dict) and "dims" in state and "state_dict" in state:
        with torch.random.fork_rng(devices=[]):
            model = CLIP(**{k: state["dims"][k] for k in CLIP_DIMS})
        model.load_state_dict(state["state_dict"])
        return freeze(model)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "text_projection" not in state:
        raise BackboneError(f"{path} does not hold CLIP weights (no 'text_projection' key).")
    state = {k: v for k, v in state.items()
             if k not in ("input_resolution", "context_length", "vocab_size")}
    shapes = weight_shapes(state)
    if shapes not in OPENAI_SHAPES.values():
        raise BackboneError(
            f"{path} holds the weights of a CLIP that is not one of OpenAI's (embed_dim, "
            f"image_resolution, vision_layers, vision_width, vision_patch_size, transformer_width, "
            f"transformer_layers = {shapes}); its head counts cannot be read from weights. Save "
            f"it with its dimensions: restore.backbone.save_clip(model, {path!r}, dims), dims "
            f"being the keyword arguments of clip.model.CLIP(...) it was built with.")
    # Built under the caller's global RNG on purpose: see `replay_openai_init`.
    model = replay_openai_init(state)
    model.load_state_dict(state)  # reload so that fp32 files keep their precision
    return freeze(model)


def replay_openai_init(state: dict) -> CLIP:
    """The OpenAI-architecture CLIP of a state dict, built by OpenAI's `build_model` under the
    caller's global torch RNG (returns fp32; the weights are then loaded again at full precision).

    Random-order contract, kept for "same seed, same run" with the original CoOp, CoCoOp, MaPLe
    and MaPLe_FSA code: those trainers build CLIP with `clip.build_model`, which draws CLIP's whole
    random initialisation from the global generator before the weights overwrite it, and only
    then draw their prompts. Drawing the same numbers here (same dimensions, same construction
    order) leaves the generator where the originals leave it, so the prompts, batch order and
    augmentations that follow are the originals' for the same seed. The engines keep the
    originals' order around it: seed -> data (few-shot sampling) -> CLIP (this) -> method
    (prompts, then the release's adapters, text first) -> per-epoch sampler seed and augmentations.
    Only OpenAI checkpoints (by name, or a JIT archive / plain state dict on MODEL.BACKBONE.PATH)
    are built here; the bundled testbed CLIP, the tiny random CLIP and {"dims", "state_dict"}
    files have no original to match and leave the caller's generator untouched."""
    model = build_model(dict(state)).float()  # builds the architecture (and rounds to fp16)
    model.replayed_openai_init = True  # read by replay_second_build
    return model


def replay_second_build(clip_model) -> None:
    """Draw from the global generator what one more `clip.build_model` of `clip_model`'s checkpoint draws,
    when building it drew OpenAI's init (`replay_openai_init`); nothing otherwise. For the originals that
    build CLIP twice: KgCoOp's hand-prompt CLIP (after its context) and ProGrad's zero-shot CLIP (before its
    context); the copy itself is not kept (the frozen CLIP serves both purposes here)."""
    if getattr(clip_model, "replayed_openai_init", False):
        build_model({k: v.detach().cpu() for k, v in clip_model.state_dict().items()})
