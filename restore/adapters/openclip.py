"""open_clip models (PyPI `open-clip-torch`, optional): `CLIP` and `CustomTextCLIP`.

Differences from OpenAI's `clip` handled here (open_clip 2.26 - 3.x):
- blocks run batch-first (`Transformer.batch_first`); the encoders work sequence-first, so each
  block call transposes. Blocks are called through their own forward (LayerScale `ls_1/ls_2`,
  custom blocks), with the causal mask passed in: open_clip keeps it on the model (`CLIP.attn_mask`)
  or on the text tower (`TextTransformer.attn_mask`), None for bidirectional towers.
- text pooling by `text_pool_type` (argmax, eos with `text_eos_id`, last; see `eot_index`), and
  `text_projection` as a Parameter, a Linear or None.
- vision: `_embeds` (conv, class token, positions, patch dropout, `ln_pre`, possibly Identity) and
  `_pool` (`pool_type` tok/avg/none, attention pooling, `final_ln_after_pool`), `proj` or None.
  Appended vision prompts need the class-token pooling the anchors use (`pool_type` "tok", no
  attention pooling). ResNet (ModifiedResNet) and timm image towers have no token blocks: they
  run unmodified and take no vision prompts.
- the model's own tokenizer and context length (77, 64, 32...); text prompts need a start token
  at position 0 and one token per "X" placeholder.

Loading (`load_open_clip`) goes through `open_clip.create_model` and its cache.
"""
import functools
import os

import torch

from .base import BackboneAdapter, UnsupportedBackbone, methods_without_vision_prompts, register_adapter

SCHEMES = ("open_clip:", "openclip:")


@functools.lru_cache(maxsize=None)
def _simple_tokenizer(context_length: int):
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer(context_length=context_length)


def _is_open_clip(model) -> bool:
    return type(model).__module__.startswith("open_clip")


@register_adapter
class OpenClipAdapter(BackboneAdapter):
    @classmethod
    def accepts(cls, model) -> bool:
        return _is_open_clip(model)

    def __init__(self, model):
        super().__init__(model)
        name = getattr(model, "restore_name", type(model).__name__)
        self.family = f"open_clip {name}"
        self._init_text(model)
        self._init_vision(model.visual)

    # ------------------------------------------------------------------------------- setup
    def _init_text(self, model):
        tower = getattr(model, "text", model)  # CustomTextCLIP keeps a TextTransformer
        if not hasattr(tower, "transformer") or not hasattr(tower, "token_embedding"):
            raise UnsupportedBackbone(
                f"{self.family}: its text tower ({type(tower).__name__}, e.g. a Hugging Face "
                "model) has no token blocks to take text prompts; no method can use it")
        if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
            raise UnsupportedBackbone(
                f"{self.family}: a text tower with an appended class token or a padding mask "
                "(CoCa-style) is not supported")
        self.tower = tower
        self.pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        self.eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
        self.text_blocks = list(tower.transformer.resblocks)
        self.text_width = tower.transformer.width
        self.context_length = model.context_length
        self.causal = tower.attn_mask is not None
        self.text_batch_first = getattr(tower.transformer, "batch_first", True)
        if self.pool_type not in ("argmax", "eos", "last"):
            raise UnsupportedBackbone(
                f"{self.family}: text pooling {self.pool_type!r} is not supported (text prompts "
                "in slots 1..n must reach the pooled token: argmax, eos or last)")
        self.tokenizer = getattr(model, "restore_tokenizer", None)
        if self.tokenizer is None:  # a model built by hand: open_clip's default (CLIP) BPE
            self.tokenizer = _simple_tokenizer(self.context_length)
        sot = getattr(self.tokenizer, "sot_token_id", None)
        probe = self.tokenize(["X X X"])[0]
        if sot is None or probe[0] != sot or not (probe[1] == probe[2] == probe[3]):
            raise UnsupportedBackbone(
                f"{self.family}: its tokenizer ({type(self.tokenizer).__name__}) puts no start "
                "token before the text or splits the placeholder 'X X X' unevenly; text prompts "
                "replace the slots after a start token")

    def _init_vision(self, visual):
        # the joint embedding width (timm towers do not record it: the text side's is the same)
        proj = self.tower.text_projection
        text_dim = (self.text_width if proj is None else
                    proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1])
        self.output_dim = getattr(visual, "output_dim", None) or text_dim
        size = getattr(visual, "image_size", None)
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size[0] != size[1]:
            raise UnsupportedBackbone(f"{self.family}: non-square input size {size}")
        self.image_resolution = size[0]
        self.preprocess = dict(getattr(visual, "preprocess_cfg", {}) or {})
        if not (hasattr(visual, "transformer") and hasattr(visual, "_embeds")):
            self.vision_prompt_error = (
                f"its image tower ({type(visual).__name__}) has no token blocks to take vision "
                f"prompts; methods that can use it: {methods_without_vision_prompts()}")
            return
        self.image_blocks = list(visual.transformer.resblocks)
        self.image_width = visual.transformer.width
        self.image_batch_first = getattr(visual.transformer, "batch_first", True)
        if visual.attn_pool is not None or visual.pool_type != "tok":
            pool = "attention pooling" if visual.attn_pool is not None else (
                f"pool_type {visual.pool_type!r}")
            self.vision_prompt_error = (
                f"its image tower pools with {pool}, which would mix the appended vision "
                "prompts into the image feature (vision prompts need class-token pooling, "
                f"'tok'); methods that can use it: {methods_without_vision_prompts()}")

    @property
    def dtype(self):
        return self.tower.transformer.get_cast_dtype()

    @staticmethod
    def _call(block, x, batch_first, **kwargs):
        if batch_first:
            return block(x.transpose(0, 1), **kwargs).transpose(0, 1)
        return block(x, **kwargs)

    # ------------------------------------------------------------------------------ vision
    def encode_image_plain(self, images):
        return self.model.visual(images.to(self.dtype))

    def embed_image(self, images, prompt=None):
        v = self.model.visual
        x = v._embeds(images.to(v.conv1.weight.dtype))  # [B, 1 + grid**2, W], after ln_pre
        n_prefix = x.shape[1]
        if prompt is not None:  # ln_pre acts per token: the same as prompts appended before it
            x = torch.cat([x, v.ln_pre(prompt.to(x.dtype))], dim=1)
        return x.transpose(0, 1), n_prefix

    def image_block(self, index, x):
        return self._call(self.image_blocks[index], x, self.image_batch_first)

    def pool_image(self, x):
        v = self.model.visual
        pooled, _ = v._pool(x.transpose(0, 1))
        if v.proj is None:
            return pooled
        return v.proj(pooled) if isinstance(v.proj, torch.nn.Module) else pooled @ v.proj

    # -------------------------------------------------------------------------------- text
    def tokenize(self, texts):
        return self.tokenizer(texts, context_length=self.context_length)

    def token_count(self, text):
        return len(self.tokenizer.encode(text)) + 2

    def eot_index(self, tokens):
        if self.pool_type == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool_type == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        return torch.full(tokens.shape[:1], tokens.shape[1] - 1, dtype=torch.long)  # "last"

    def token_embedding(self, tokens):
        emb = self.tower.token_embedding
        return emb(tokens.to(emb.weight.device)).to(self.dtype)

    def embed_text(self, x):
        x = x + self.tower.positional_embedding[: x.shape[1]].to(x.dtype)
        return x.transpose(0, 1)

    def causal_mask(self, length):
        mask = self.tower.attn_mask
        return None if mask is None else mask[:length, :length]

    def text_block(self, index, x, mask):
        return self._call(self.text_blocks[index], x, self.text_batch_first, attn_mask=mask)

    def pool_text(self, x, eot):
        x = self.tower.ln_final(x.transpose(0, 1))
        x = x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)]
        proj = self.tower.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Module) else x @ proj


# ------------------------------------------------------------------------------------ loading
def is_open_clip_name(name: str) -> bool:
    return name.startswith(SCHEMES)


def parse_name(name: str):
    """"open_clip:ViT-B-16/laion2b_s34b_b88k" -> ("ViT-B-16", "laion2b_s34b_b88k");
    "open_clip:ViT-B-16" -> ("ViT-B-16", "")."""
    rest = name.split(":", 1)[1]
    model, _, tag = rest.partition("/")
    return model, tag


def load_open_clip(name: str, path: str = "", trust: bool = False):
    """An open_clip model by `open_clip:MODEL/TAG` (weights from open_clip's cache, downloaded
    when online), `open_clip:MODEL` with `path` to a local checkpoint of that architecture, or
    `open_clip:MODEL/TAG` with `path` to a local copy of the tag's weights. A name that would not run
    the weights as they were trained (activation, image grid, text context: restore.pretrained) is
    refused before anything is built. fp32, eval mode, frozen; its tokenizer is attached as
    `restore_tokenizer`."""
    from ..backbone import BackboneError, freeze
    from ..pretrained import pretraining
    pretraining(name, path, trust)  # the name, tag and file checks, in one place
    import open_clip
    model_name, tag = parse_name(name)
    try:
        with torch.random.fork_rng(devices=[]):  # building initialises weights at random first
            model = open_clip.create_model(model_name, pretrained=path or tag,
                                           require_pretrained=True, weights_only=not trust)
    except Exception as err:  # a file torch cannot read raises anything from IndexError to UnpicklingError
        if path:
            raise _unreadable(model_name, path, err) from None
        if not isinstance(err, RuntimeError):
            raise
        raise BackboneError(_offline_message(open_clip, model_name, tag, err)) from None
    model.restore_name = f"{model_name}/{tag}" if tag else model_name
    model.restore_tokenizer = open_clip.get_tokenizer(model_name)
    return freeze(model)


def _unreadable(model_name, path, err):
    """One line for a MODEL.BACKBONE.PATH that open_clip could not load. The cause is found by reading the
    file again with the project's safe loader (torch's own message ends in advice to turn the safe loader
    off): pickled objects that could run code (what --trust-files allows), a file that is damaged or no
    checkpoint, or weights of another architecture (open_clip's error, then)."""
    from ..backbone import BackboneError
    from ..safe_pickle import TRUST_OPT_IN, UntrustedFileError, torch_load
    try:
        torch_load(path)
    except UntrustedFileError:
        return UntrustedFileError(f"{path} (MODEL.BACKBONE.PATH) was not loaded: it holds pickled objects beyond "
                                  f"tensors, and unpickling them could run code. {TRUST_OPT_IN}")
    except Exception as read_error:  # torch raises many kinds for a file that is no checkpoint
        reason = (str(read_error).strip().splitlines() or [""])[0].split(". ")[0]
        return BackboneError(f"Cannot read open_clip {model_name} weights from {path} "
                             f"({type(read_error).__name__}: {reason}): the file is damaged, incomplete or no "
                             "PyTorch checkpoint. Check MODEL.BACKBONE.PATH.")
    reason = (str(err).strip().splitlines() or [""])[0]
    return BackboneError(f"Cannot load {path} into open_clip {model_name} ({type(err).__name__}: {reason}): "
                         "check MODEL.BACKBONE.PATH and the model name in MODEL.BACKBONE.NAME.")


def _offline_message(open_clip, model_name, tag, err):
    """Where open_clip looks for a tag's weights, as its `download_pretrained` decides (the Hugging
    Face hub when huggingface_hub is installed and the tag has a hub repo, else the tag's URL into
    ~/.cache/clip), and the two ways to provide them offline."""
    from open_clip.pretrained import has_hf_hub
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    repo, filename = os.path.split(hub)  # "org/repo/" (default file names) or "org/repo/file"
    if hub and has_hf_hub():
        files = filename or "open_clip_model.safetensors or open_clip_pytorch_model.bin"
        where = (f"the Hugging Face hub repo {repo} (file {files}) in the hub cache "
                 "(~/.cache/huggingface/hub)")
    elif url:
        where = f"{url}, saved as ~/.cache/clip/{os.path.basename(url)}"
    else:
        where = (f"the Hugging Face hub repo {repo}, which needs huggingface_hub (pip install "
                 "huggingface_hub)")
    return (f"Cannot load open_clip weights {model_name}/{tag} ({err}). They are expected from "
            f"{where}. Offline: run `python -c \"import open_clip; open_clip.create_model("
            f"'{model_name}', pretrained='{tag}')\"` once on a machine with internet and copy the "
            f"cache, or download the file and set MODEL.BACKBONE.PATH to it (keeping "
            f"MODEL.BACKBONE.NAME open_clip:{model_name}/{tag}).")
