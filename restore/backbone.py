"""CLIP backbones: OpenAI checkpoints by name or path, and small CLIPs of the same architecture.

Every model returned here is an unmodified `clip.model.CLIP` in fp32, in eval mode, with all
parameters frozen; methods add prompts around it and never change it.
"""
import os
import urllib.error
import warnings

import clip
import torch
from clip.model import CLIP, build_model

from .suggest import did_you_mean

CACHE_DIR = os.path.expanduser("~/.cache/clip")

# Keys of `clip.model.CLIP.__init__`, stored beside the weights of small models, whose head counts
# cannot be inferred from a state dict (OpenAI's build_model assumes width // 64 heads).
CLIP_DIMS = ("embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size",
             "context_length", "vocab_size", "transformer_width", "transformer_heads",
             "transformer_layers")


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

    return {"tiny-random": tiny_clip, "testbed": testbed}


def available_backbones() -> list:
    return list(clip.clip._MODELS) + list(_small_backbones())


def load_clip(name_or_path: str) -> CLIP:
    """Load a CLIP by OpenAI name ("ViT-B/16"), small-backbone name ("tiny-random", "testbed")
    or path to a local file (OpenAI JIT archive, plain state dict, or {"dims", "state_dict"})."""
    small = _small_backbones()
    if name_or_path in small:
        return small[name_or_path]()
    if os.path.isfile(name_or_path):
        return _load_file(name_or_path)
    if name_or_path not in clip.clip._MODELS:
        # OpenAI names contain "/" too ("ViT-B/16"): a mistyped one is a name, not a path.
        if (name_or_path.endswith((".pt", ".pth")) or os.path.isabs(name_or_path)
                or name_or_path.startswith(("." + os.sep, ".." + os.sep, "~"))):
            raise BackboneError(f"CLIP weights file not found: {name_or_path}. "
                                "Check MODEL.BACKBONE.PATH.")
        hint = did_you_mean(name_or_path, available_backbones())
        raise BackboneError(f"Unknown CLIP backbone {name_or_path!r}.{hint} Valid names: "
                            f"{', '.join(available_backbones())}; or set MODEL.BACKBONE.PATH "
                            "to a local weights file.")
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
    return _load_file(path)


def build_backbone(cfg) -> CLIP:
    """The CLIP named by a config: MODEL.BACKBONE.PATH if set, else MODEL.BACKBONE.NAME."""
    path = cfg.MODEL.BACKBONE.get("PATH", "")
    return load_clip(path if path else cfg.MODEL.BACKBONE.NAME)


def save_clip(model: CLIP, path: str, dims: dict) -> None:
    """Save a small CLIP with its dimensions so that `load_clip(path)` rebuilds it exactly."""
    torch.save({"dims": dict(dims), "state_dict": model.state_dict()}, path)


def _load_file(path: str) -> CLIP:
    try:
        with warnings.catch_warnings():  # OpenAI ships TorchScript archives; torch deprecates jit
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:  # not a TorchScript archive: a pickled state dict
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise BackboneError(f"Cannot read CLIP weights from {path}: {err}") from None
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
    with torch.random.fork_rng(devices=[]):
        model = build_model(dict(state)).float()  # builds the architecture (and rounds to fp16)
    model.load_state_dict(state)  # reload so that fp32 files keep their precision
    return freeze(model)
