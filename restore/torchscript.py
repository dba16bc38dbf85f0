"""TorchScript archives as CLIP weights: loaded only when they are OpenAI's published files.

A TorchScript archive is a program: `torch.jit.load` compiles and runs the code stored in it. OpenAI
ships its CLIP weights as such archives, and the clip package's model table (`clip.clip._MODELS`)
carries the SHA256 of each file in its download URL. An archive whose SHA256 is one of those is
loaded with `torch.jit.load`; any other one needs the opt-in (`--trust-files`, TRUST_FILES True,
`trust=True`). Plain state dicts never come here: they load with `torch.load(weights_only=True)`.
"""
import hashlib
import os
import warnings

import torch

from .safe_pickle import TRUST_OPT_IN, UntrustedFileError, is_torchscript

_CHUNK = 1 << 20
_hashes = {}  # (real path, size, mtime_ns) -> sha256: a file is hashed once per process


def openai_checksums() -> dict:
    """{sha256: model name} of the files OpenAI publishes (the hash is the URL's folder)."""
    import clip
    return {url.rsplit("/", 2)[-2]: name for name, url in clip.clip._MODELS.items()}


def file_sha256(path: str, chunk: int = _CHUNK) -> str:
    """Hex SHA256 of a file, read in `chunk`-byte pieces; cached per (path, size, modification time),
    so that the TorchScript check and the run record hash a backbone once per process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                digest.update(block)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def check_torchscript(path: str, trust: bool = False) -> bool:
    """Whether `path` is a TorchScript archive that may be loaded (False: not TorchScript). Raises
    UntrustedFileError (naming the file, its SHA256 and the opt-in) for an archive that is not one of
    OpenAI's files, unless `trust`."""
    if not is_torchscript(path):
        return False
    if not trust:
        sha = file_sha256(path)
        if sha not in openai_checksums():
            raise UntrustedFileError(
                f"{path} is a TorchScript archive (a program that runs when loaded) and its SHA256 "
                f"{sha} is none of those OpenAI publishes for CLIP (clip.clip._MODELS): not loaded. Use "
                f"OpenAI's file (delete a damaged download to fetch it again) or a state dict saved "
                f"with torch.save. {TRUST_OPT_IN}")
    return True


def torchscript_state_dict(path: str, trust: bool = False):
    """The state dict of the TorchScript archive at `path`, or None when `path` is not one; an archive
    that is not one of OpenAI's files raises UntrustedFileError unless `trust` (check_torchscript)."""
    if not check_torchscript(path, trust):
        return None
    with warnings.catch_warnings():  # torch deprecates TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(path, map_location="cpu").state_dict()
