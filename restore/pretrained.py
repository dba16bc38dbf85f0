"""What a backbone's makers trained it with, and the one policy that fits a run's config to it.

Weights do not say everything a CLIP needs to run as it was trained:

- the activation: OpenAI's CLIPs, and some of open_clip's weights, were trained with QuickGELU
  (x * sigmoid(1.702 x)), the others with GELU; open_clip's issues 771 and 915 measured what
  OpenAI's weights lose under GELU. open_clip's model name decides which one is built (the names
  ending in "-quickgelu" build QuickGELU), so the name must be the one the weights were trained with;
- the images: size, mean, std, interpolation and resize of pretraining;
- the text: tokenizer and context length.

`pretraining(name, path)` reads these where they are recorded, without building the model: OpenAI's
loader (`clip.load`'s preprocessing, `clip.tokenize`), open_clip's model configs and its pretrained
configs (one per tag), the testbed's pretraining; a weights file's position embeddings give its image
size and text context. It refuses, in one line, a backbone that would not run as trained:

- an open_clip tag trained with one activation under a model name that builds the other
  (`open_clip:ViT-B-32/openai`: use `open_clip:ViT-B-32-quickgelu/openai`);
- a file (`MODEL.BACKBONE.PATH`) under an open_clip name without QuickGELU whose architecture has
  published weights trained with QuickGELU (OpenAI's among them), when no tag says which weights the
  file holds: the weights cannot tell, so the name must (`open_clip:MODEL-quickgelu`, or
  `open_clip:MODEL/TAG` with the file: the tag's activation and preprocessing);
- a file whose image grid or text context differs from the model's: open_clip would silently resize
  its position embeddings to fit;
- a model name whose published weights differ in preprocessing, loaded from a file without a tag.

`fit_inputs(name, path, cfg)` is the one policy for the config's `INPUT.*` keys. The image size,
mean, std and interpolation of pretraining are ADOPTED: a method config is written for one backbone
(the anchors' for OpenAI's ViT-B/16), and another backbone needs its own values, which are known; the
returned note says what changed. It runs in `train.py` before the config is frozen, so the run
record holds the adopted values and a resume or rerun accepts them. Resizing other than "shorter side,
then centre crop" (open_clip's `resize_mode` "squash", "longest") and an interpolation the transforms
do not have are REFUSED: the project cannot reproduce them. The tokenizer and context length are not
config keys: every method tokenizes with the backbone's own tokenizer at its own context length
(`restore.adapters`), so only a file that disagrees with its model is refused (above).

Backbones without a record (`tiny-random`, files saved with `restore.backbone.save_clip`) give None:
nothing is adopted; the engines still refuse an `INPUT.SIZE` the model cannot take.
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .adapters.openclip import is_open_clip_name, parse_name

# clip.load's preprocessing (the clip package's `_transform`): bicubic resize of the shorter side to the
# model's resolution, centre crop, these mean and std; `clip.tokenize` at 77 tokens.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
OPENAI_CONTEXT = 77
# The one resize the project's transforms do (restore.data.transforms: Resize(shorter side), CenterCrop).
SHORTEST = "shortest"


@dataclass(frozen=True)
class Pretraining:
    """How a backbone was trained. `interpolation` None: its images were never resized (the testbed
    renders them at the model's size); `image_size` None: not recorded."""

    label: str  # the backbone, for messages ("open_clip ViT-B-32-quickgelu/openai")
    source: str  # where these values are recorded
    image_size: Optional[int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    interpolation: Optional[str]
    resize_mode: str
    tokenizer: str
    context_length: int
    quick_gelu: bool


def _error(message):
    from .backbone import BackboneError
    return BackboneError(message)


# --------------------------------------------------------------------------------------- policy
def fit_inputs(name: str, path: str, cfg) -> str:
    """Fit cfg.INPUT to what backbone `name` (weights from `path` when given; MODEL.BACKBONE.NAME
    and .PATH) was trained with: adopt INPUT.SIZE, PIXEL_MEAN, PIXEL_STD and INTERPOLATION (cfg
    must not be frozen), refuse what the project cannot reproduce (BackboneError, one line). Reads
    configs and a file's tensor shapes; builds nothing. Returns the note saying what was adopted
    and why ("" when the config fits or the backbone records nothing). A plan that must refuse
    exactly what train.py refuses calls this on a clone of each run's resolved config."""
    from .data.transforms import INTERPOLATION_MODES
    pre = pretraining(name, path, trust=bool(cfg.get("TRUST_FILES", False)))
    if pre is None:
        return ""
    if pre.resize_mode != SHORTEST:
        raise _error(
            f"{pre.label} was trained on images resized by {pre.resize_mode!r} ({pre.source}); the "
            f"transforms here resize the shorter side and crop the centre ({SHORTEST!r}), so it "
            f"cannot be run as trained. Choose another MODEL.BACKBONE.NAME.")
    if pre.interpolation is not None and pre.interpolation not in INTERPOLATION_MODES:
        raise _error(
            f"{pre.label} was trained with {pre.interpolation!r} interpolation ({pre.source}), which "
            f"INPUT.INTERPOLATION cannot select ({', '.join(INTERPOLATION_MODES)}). Choose another "
            f"MODEL.BACKBONE.NAME.")
    wanted = {"SIZE": None if pre.image_size is None else (pre.image_size, pre.image_size),
              "PIXEL_MEAN": list(pre.mean), "PIXEL_STD": list(pre.std),
              "INTERPOLATION": pre.interpolation}
    changes = []
    for key, value in wanted.items():
        old = cfg.INPUT[key]
        if value is None or _same(old, value):
            continue
        cfg.INPUT[key] = tuple(value) if key == "SIZE" else value
        changes.append(f"INPUT.{key} {_show(old)} -> {_show(value)}")
    if not changes:
        return ""
    return f"{', '.join(changes)}: what {pre.label} was trained with ({pre.source})."


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= 1e-6 for x, y in zip(a, b))


def _show(value):
    return value if isinstance(value, str) else list(value) if isinstance(value, list) else tuple(value)


# ------------------------------------------------------------------------------------ pretraining
def pretraining(name: str, path: str = "", trust: bool = False) -> Optional[Pretraining]:
    """What backbone `name` (MODEL.BACKBONE.NAME), with weights from `path` when given
    (MODEL.BACKBONE.PATH), was trained with; None when nothing records it. Raises BackboneError
    (one line, naming the key or file and the fix) for a backbone that would not run as trained
    (module doc), and UntrustedFileError for a TorchScript file that is not OpenAI's, unless
    `trust`. A missing or unreadable file is left to the loader's message (None)."""
    import clip
    if is_open_clip_name(name):
        return _open_clip(name, path, trust)
    if path:
        return _openai_file(path, trust)
    if name in clip.clip._MODELS:
        from .backbone import OPENAI_SHAPES
        return _openai(name, OPENAI_SHAPES[name][1], "OpenAI's clip.load")
    if name == "testbed":
        from .testbed.model import DEFAULT_DIMS
        return Pretraining(
            label="the testbed CLIP", source="restore.testbed pretraining: images rendered at "
            "its size, CLIP's mean and std", image_size=DEFAULT_DIMS["image_resolution"],
            mean=OPENAI_MEAN, std=OPENAI_STD, interpolation=None, resize_mode=SHORTEST,
            tokenizer="clip.tokenize", context_length=DEFAULT_DIMS["context_length"],
            quick_gelu=True)
    return None


def _openai(label, image_size, source):
    return Pretraining(label=label, source=source, image_size=image_size, mean=OPENAI_MEAN,
                       std=OPENAI_STD, interpolation="bicubic", resize_mode=SHORTEST,
                       tokenizer="clip.tokenize", context_length=OPENAI_CONTEXT, quick_gelu=True)


def _openai_file(path, trust):
    """A file loaded into OpenAI's CLIP (restore.backbone): OpenAI's preprocessing at the file's size."""
    from .backbone import OPENAI_SHAPES, weight_shapes
    known = _openai_archive(path, trust)
    if known:
        return _openai(f"OpenAI {known} ({path})", OPENAI_SHAPES[known][1],
                       "OpenAI's clip.load; the file is OpenAI's by its SHA256")
    state = _read_state(path, trust)
    if not state or "text_projection" not in state:
        return None  # a small CLIP with its dims, or no CLIP: the loader decides
    try:
        shapes = weight_shapes(state)
    except (KeyError, IndexError, ValueError):
        return None
    if shapes not in OPENAI_SHAPES.values():
        return None
    return _openai(f"the OpenAI-architecture CLIP in {path}", shapes[1],
                   "OpenAI's clip.load, which builds that architecture")


# ------------------------------------------------------------------------------------- open_clip
def _open_clip(name, path, trust):
    try:
        import open_clip
    except ImportError:
        raise _error(f"MODEL.BACKBONE.NAME {name!r} needs open_clip: pip install open-clip-torch") from None
    model, tag = parse_name(name)
    if model not in open_clip.list_models():
        raise _error(f"Unknown open_clip model {model!r} in MODEL.BACKBONE.NAME {name!r}; see "
                     "open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if path and not os.path.isfile(path):
        raise _error(f"open_clip weights file not found: {path}. Check MODEL.BACKBONE.PATH.")
    if not path and not tag:
        raise _error(f"MODEL.BACKBONE.NAME {name!r} names no weights: use open_clip:{model}/TAG "
                     f"(tags: {', '.join(tags) or 'none'}) or set MODEL.BACKBONE.PATH to a local "
                     "checkpoint")
    if tag and not open_clip.get_pretrained_cfg(model, tag):
        twin = _twin(open_clip, model, not model.endswith("-quickgelu"))
        hint = (f": they are {twin}'s (the same architecture with the activation they were trained "
                f"with), use MODEL.BACKBONE.NAME open_clip:{twin}/{tag}"
                if twin and open_clip.get_pretrained_cfg(twin, tag) else "")
        raise _error(f"open_clip has no weights {tag!r} for {model}{hint}; tags: "
                     f"{', '.join(tags) or 'none'}")
    config = open_clip.get_model_config(model)
    builds_quick = bool(config.get("quick_gelu", False))
    published = {t: open_clip.get_pretrained_cfg(model, t) for t in ([tag] if tag else tags)}
    quick = [t for t, c in published.items() if c.get("quick_gelu", False)]
    if tag and bool(quick) != builds_quick:
        raise _error(_activation_mismatch(open_clip, model, tag, bool(quick)))
    if not tag and quick and not builds_quick:
        raise _error(_untagged_file(open_clip, model, path, quick, tags))
    defaults = open_clip.transform.PreprocessCfg()
    recipes = {t: _recipe(c, defaults) for t, c in published.items()}
    if len(set(recipes.values())) > 1:
        raise _error(f"{path} under MODEL.BACKBONE.NAME open_clip:{model}: {model}'s published "
                     f"weights were trained with different preprocessing ({_differing(recipes)}) "
                     f"and a file does not say which it holds. Name its tag: MODEL.BACKBONE.NAME "
                     f"open_clip:{model}/TAG with this MODEL.BACKBONE.PATH (tags: {', '.join(tags)}).")
    mean, std, interpolation, resize_mode = (next(iter(recipes.values())) if recipes
                                             else _recipe({}, defaults))
    if tag:
        source = f"open_clip's pretrained config of {model}/{tag}"
    elif published:
        source = f"open_clip's pretrained configs of {model}, all alike"
    else:
        source = f"open_clip's defaults ({model} has no published weights)"
    image_size = _square(config.get("vision_cfg", {}).get("image_size"))
    context = config.get("text_cfg", {}).get("context_length", OPENAI_CONTEXT)
    label = f"open_clip {model}/{tag}" if tag else f"open_clip {model}"
    if path:
        _check_file_geometry(open_clip, path, trust, model, image_size, context)
        label += f" ({path})"
    return Pretraining(label=label, source=source, image_size=image_size, mean=mean, std=std,
                       interpolation=interpolation, resize_mode=resize_mode,
                       tokenizer=f"open_clip.get_tokenizer({model!r})", context_length=context,
                       quick_gelu=builds_quick)


def _recipe(pretrained_cfg, defaults):
    """(mean, std, interpolation, resize_mode) of an open_clip pretrained config, open_clip's
    defaults (PreprocessCfg) where it says nothing, as open_clip's create_model merges them."""
    get = pretrained_cfg.get
    return (tuple(get("mean", defaults.mean)), tuple(get("std", defaults.std)),
            get("interpolation", defaults.interpolation), get("resize_mode", defaults.resize_mode))


def _differing(recipes):
    names = ("mean", "std", "interpolation", "resize_mode")
    return ", ".join(n for i, n in enumerate(names) if len({r[i] for r in recipes.values()}) > 1)


def _square(size):
    if isinstance(size, (list, tuple)):
        return size[0] if len(set(size)) == 1 else None  # non-square: the adapter refuses it
    return size


def _twin(open_clip, model, quick):
    """The open_clip model of the same architecture that builds QuickGELU (`quick`) or GELU."""
    base = model[:-len("-quickgelu")] if model.endswith("-quickgelu") else model
    twin = base + "-quickgelu" if quick else base
    return twin if twin in open_clip.list_models() else None


def _activation_mismatch(open_clip, model, tag, quick):
    trained, built = ("QuickGELU", "GELU") if quick else ("GELU", "QuickGELU")
    twin = _twin(open_clip, model, quick)
    fix = (f"use MODEL.BACKBONE.NAME open_clip:{twin}/{tag}, which builds {trained}"
           if twin and tag in open_clip.list_pretrained_tags_by_model(twin) else
           f"open_clip has no {trained} variant of {model} with these weights; choose another")
    return (f"open_clip weights {model}/{tag} were trained with {trained}, but the model name "
            f"{model} builds {built} (weights do not record their activation; open_clip's model "
            f"name decides it): {fix}.")


def _untagged_file(open_clip, model, path, quick, tags):
    twin = _twin(open_clip, model, True)
    example = "openai" if "openai" in quick else quick[0]
    gelu = [t for t in tags if t not in quick]
    fixes = []
    if twin:
        fixes.append(f"for weights trained with QuickGELU (OpenAI's among them) use "
                     f"MODEL.BACKBONE.NAME open_clip:{twin}/{example}, or open_clip:{twin}")
    if gelu:
        fixes.append(f"for weights trained with GELU name their tag, e.g. open_clip:{model}/{gelu[0]}")
    return (f"MODEL.BACKBONE.PATH {path} under MODEL.BACKBONE.NAME open_clip:{model}, which builds "
            f"GELU: weights do not record their activation, and {model}'s published weights "
            f"{', '.join(quick)} were trained with QuickGELU. Say which the file holds: "
            f"{'; '.join(fixes)}.")


def _check_file_geometry(open_clip, path, trust, model, image_size, context):
    """Refuse a file whose position embeddings are for another image grid or text context than the
    model's: open_clip's load_checkpoint would resize them to fit, silently."""
    found_size, found_context = _file_geometry(path, trust)
    if found_size is not None and image_size is not None and found_size != image_size:
        like = _models_like(open_clip, model, image_size=found_size)
        fix = (f"use MODEL.BACKBONE.NAME open_clip:{like}" if like else
               f"use the open_clip model made for {found_size} px images")
        raise _error(f"{path} holds weights for {found_size} px images, but open_clip:{model} takes "
                     f"{image_size} px (open_clip would resize the position embeddings to fit): "
                     f"{fix}.")
    if found_context is not None and found_context != context:
        raise _error(f"{path} holds a text context of {found_context} tokens, but open_clip:{model} "
                     f"has {context} (open_clip would resize the position embeddings to fit): use "
                     f"the open_clip model made for {found_context} tokens.")


def _models_like(open_clip, model, image_size):
    """An open_clip model whose config is `model`'s with another vision image_size, or None."""
    target = open_clip.get_model_config(model)
    target["vision_cfg"] = dict(target.get("vision_cfg", {}), image_size=image_size)
    for other in open_clip.list_models():
        if other != model and open_clip.get_model_config(other) == target:
            return other
    return None


# ----------------------------------------------------------------------------------------- files
def _openai_archive(path, trust):
    """The OpenAI model name of a TorchScript file that is one of OpenAI's (by SHA256), else None.
    Another TorchScript file raises UntrustedFileError unless `trust`."""
    from .torchscript import check_torchscript, file_sha256, openai_checksums
    if not os.path.isfile(path) or not check_torchscript(path, trust):
        return None
    return openai_checksums().get(file_sha256(path))


def _read_state(path, trust):
    """The tensors of a weights file as {key: tensor} (memory-mapped or shape-only: nothing is
    computed with them), unwrapped from {"state_dict"} and DataParallel's "module." prefix; None when
    the file cannot be read (the loader then says why)."""
    if not os.path.isfile(path):
        return None
    try:
        from .torchscript import torchscript_state_dict
        state = torchscript_state_dict(path, trust)
        if state is None and path.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, framework="pt") as f:
                state = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        if state is None:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # written in torch's legacy format, which cannot be mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        from .safe_pickle import UntrustedFileError
        if isinstance(err, UntrustedFileError):
            raise
        return None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        if "dims" in state:
            return None  # a small CLIP saved with its dimensions (restore.backbone.save_clip)
        state = state["state_dict"]
    if not isinstance(state, dict):
        return None
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()
            if hasattr(v, "shape")}


def _file_geometry(path, trust):
    """(image size, text context) that a CLIP weights file's position embeddings were made for;
    None where it has no such embedding (a timm image tower) or the file cannot be read."""
    from .backbone import OPENAI_SHAPES
    known = _openai_archive(path, trust)
    if known:
        return OPENAI_SHAPES[known][1], OPENAI_CONTEXT
    state = _read_state(path, trust) or {}
    size = None
    grid = lambda key: round((state[key].shape[0] - 1) ** 0.5)  # noqa: E731  (1 + grid^2 tokens)
    if "visual.positional_embedding" in state and "visual.conv1.weight" in state:  # ViT
        size = grid("visual.positional_embedding") * state["visual.conv1.weight"].shape[-1]
    elif "visual.attnpool.positional_embedding" in state:  # ModifiedResNet: stride 32
        size = grid("visual.attnpool.positional_embedding") * 32
    text = state.get("positional_embedding", state.get("text.positional_embedding"))
    return size, (None if text is None else text.shape[0])
