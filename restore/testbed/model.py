"""The testbed CLIP: OpenAI's ``clip.model.CLIP`` class at a tiny size, and its bundled checkpoint.

The checkpoint stores every parameter except the 49408 x width token embedding, of which it keeps only
the rows that pretraining captions use (plus SOT, EOT and the padding id 0). The other rows were never
trained (no gradient, no weight decay), so they are rebuilt exactly from the seed:
``torch.randn(vocab, width, generator=torch.Generator().manual_seed(seed)) * 0.02``.

Inputs: 32 x 32 RGB images normalised with CLIP's mean/std; text tokenised with
``clip.tokenize(texts, context_length=model.context_length)`` (16, not 77).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import torch

from ..files import save_torch

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSET_DIR / "testbed_clip.pt"
DEFAULT_RECORD = ASSET_DIR / "testbed_clip.json"
FORMAT = "restore-testbed-clip-v1"

# heads = width // 64, as clip.model.build_model infers them.
DEFAULT_DIMS = dict(embed_dim=128, image_resolution=32, vision_layers=4, vision_width=128, vision_patch_size=8,
                    context_length=16, vocab_size=49408, transformer_width=128, transformer_heads=2,
                    transformer_layers=4)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKEN_STD = 0.02


def _clip_model():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip.model
    return clip.model


def token_embedding_init(seed: int, vocab_size: int, width: int) -> torch.Tensor:
    """The token embedding every testbed CLIP starts from (and the never-trained rows keep)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(vocab_size, width, generator=g) * TOKEN_STD


def build_clip(dims: Optional[dict] = None, seed: int = 0):
    """A randomly initialised ``clip.model.CLIP`` (fp32, CPU) with the testbed's token-embedding init.

    Deterministic by ``seed``; does not change the global torch RNG state."""
    dims = dict(DEFAULT_DIMS if dims is None else dims)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left untouched
        torch.manual_seed(int(seed))
        model = _clip_model().CLIP(**dims)
    with torch.no_grad():
        model.token_embedding.weight.copy_(token_embedding_init(seed, dims["vocab_size"], dims["transformer_width"]))
    return model.float()


def caption_token_ids(texts: Iterable[str]) -> torch.Tensor:
    """Sorted ids of every BPE token in ``texts``, plus padding (0), SOT and EOT."""
    from clip.simple_tokenizer import SimpleTokenizer
    tok = SimpleTokenizer()
    ids = {0, tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]}
    for t in texts:
        ids.update(tok.encode(t))
    return torch.tensor(sorted(ids), dtype=torch.long)


def save_checkpoint(model, path, dims: dict, seed: int, rows: torch.Tensor, extra: Optional[dict] = None):
    """Write the compact checkpoint atomically (temp file + rename)."""
    emb = model.token_embedding.weight.detach().float().cpu()
    init = token_embedding_init(seed, dims["vocab_size"], dims["transformer_width"])
    untouched = torch.ones(len(emb), dtype=torch.bool)
    untouched[rows] = False
    if not torch.equal(emb[untouched], init[untouched]):
        changed = (emb != init).any(1) & untouched
        raise RuntimeError(f"token rows outside the stored set were trained: {changed.nonzero().flatten()[:10]}")
    sd = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()
          if k != "token_embedding.weight"}
    ckpt = {"format": FORMAT, "dims": dict(dims), "seed": int(seed), "state_dict": sd,
            "token_rows": rows.clone(), "token_values": emb[rows].clone(),
            "token_init": f"torch.randn(vocab, width, generator=torch.Generator().manual_seed(seed)) * {TOKEN_STD}",
            "extra": extra or {}}
    save_torch(ckpt, path)


def load_testbed_clip(path=None):
    """The bundled pretrained testbed CLIP as a ``clip.model.CLIP`` (fp32, eval mode, on CPU).

    ``path``: a checkpoint written by ``restore.testbed.pretrain`` (default: restore/assets/testbed_clip.pt).
    Dims: ``model.visual.input_resolution`` (32), ``model.context_length`` (16), width 128, embed 128.
    """
    path = Path(path) if path else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"testbed CLIP checkpoint not found: {path}. It ships with the project at {DEFAULT_CHECKPOINT}; "
            f"regenerate it with `python -m restore.testbed.pretrain --out {DEFAULT_CHECKPOINT}`.")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a testbed CLIP checkpoint (format {FORMAT!r} expected)")
    dims, seed = ckpt["dims"], ckpt["seed"]
    with torch.random.fork_rng(devices=[]):  # loading does not consume the caller's random numbers
        model = _clip_model().CLIP(**dims)
    emb = token_embedding_init(seed, dims["vocab_size"], dims["transformer_width"])
    emb[ckpt["token_rows"]] = ckpt["token_values"].float()
    sd = dict(ckpt["state_dict"])
    sd["token_embedding.weight"] = emb
    model.load_state_dict(sd, strict=True)
    return model.float().eval()


def read_record(path=None) -> dict:
    """The JSON record next to the checkpoint (seed, command, dims, steps, zero-shot accuracies)."""
    with open(path or DEFAULT_RECORD) as f:
        return json.load(f)
