"""CoPrompt's class descriptions: the file a user gives (TRAINER.COPROMPT.DESCRIPTIONS), its checks, the
testbed's own descriptions, and their frozen text features (cached under the run's output folder).

The file is the authors' format (ShuvenduRoy/CoPrompt, gpt_file/<dataset>_prompt.json): one JSON object
{class name: [description, ...]}, the class names as the dataset writes them with "_" read as a space,
matched exactly; every class the run uses needs the same number of descriptions (the authors stack them into
one [n_desc, C, D] tensor and draw one index for all classes per step), each one short enough for the text
encoder. The key may also name a folder holding the authors' files under their names (`AUTHORS_FILES`).
The project neither ships nor generates descriptions for real datasets; on the testbed they come from the
testbed's caption generator (restore.testbed.captions.class_descriptions), so no file is needed there. The
value `CAPTIONS` ("captions") asks for those generated descriptions on any dataset (tests, smoke runs): the
real-data plan refuses it like an empty key.

    check_descriptions(path, classnames, dataset="")   # the checks alone (the real-data plan calls it)
"""
import hashlib
import json
import logging
import os
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from ...errors import UserError

log = logging.getLogger(__name__)

KEY = "TRAINER.COPROMPT.DESCRIPTIONS"
# The authors' file of each dataset, gpt_file/<name>_prompt.json (their dataset_name_mapping).
AUTHORS_FILES = {
    "Caltech101": "caltech", "DescribableTextures": "dtd", "EuroSAT": "eurosat", "FGVCAircraft": "fgvc",
    "Food101": "food101", "ImageNet": "imagenet", "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r",
    "ImageNetSketch": "imagenet_sketch", "ImageNetV2": "imagenetv2", "OxfordFlowers": "oxford_flowers",
    "OxfordPets": "oxford_pets", "StanfordCars": "stanford_cars", "SUN397": "sun397", "UCF101": "ucf101",
}
CAPTIONS = "captions"  # the key's value for the testbed caption generator's descriptions
CLIP_CONTEXT = 77  # the OpenAI text encoder's context, for checks without a model


class DescriptionsError(UserError):
    """A descriptions file that cannot be used; the one-line message names the file and the class."""


def is_testbed(dataset: str) -> bool:
    """Whether `dataset` (DATASET.NAME) is one of the synthetic testbed's (descriptions generated)."""
    from ...testbed.datasets import DATASETS
    return any(d.registry_name == dataset for d in DATASETS.values())


def descriptions_file(path: str, dataset: str = "") -> str:
    """The descriptions file of a run: `path` itself, or in a folder `path` the authors' file of `dataset`
    (<folder>/<name>_prompt.json). DescriptionsError when none is given or the file is missing."""
    if not path or path == CAPTIONS:
        what = "is empty" if not path else f"is {CAPTIONS!r} (the testbed's generated descriptions)"
        raise DescriptionsError(
            f"CoPrompt trains against class descriptions and {KEY} {what}: set it to a JSON file "
            "{class name: [description, ...]} (the authors' gpt_file/<dataset>_prompt.json format) or to a "
            "folder of the authors' files.")
    if os.path.isdir(path):
        if dataset not in AUTHORS_FILES:
            raise DescriptionsError(
                f"{KEY} is the folder {path}, but the authors name no descriptions file for {dataset or 'this dataset'}"
                f" (they have {', '.join(AUTHORS_FILES)}): set {KEY} to the file itself.")
        path = os.path.join(path, f"{AUTHORS_FILES[dataset]}_prompt.json")
    if not os.path.isfile(path):
        raise DescriptionsError(f"The descriptions file {path} ({KEY}) does not exist.")
    return path


def read_descriptions(path: str, classnames: Sequence[str], count_tokens=None,
                      context_length: int = CLIP_CONTEXT) -> List[List[str]]:
    """The descriptions of each class of `classnames` (label order; "_" read as a space) from the JSON file
    `path`: [C][n_desc]. `count_tokens(text)` (with SOT/EOT) bounds each by `context_length`; default CLIP's
    tokenizer. DescriptionsError, one line naming the file and the class, for: unreadable or non-JSON file,
    not an object of lists of strings, a class without descriptions, classes with different counts, a
    description too long for the text encoder."""
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except OSError as err:
        raise DescriptionsError(f"The descriptions file {path} cannot be read: {err.strerror}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DescriptionsError(f"The descriptions file {path} is not JSON ({err}): write one object "
                                "{class name: [description, ...]}.") from None
    if not isinstance(table, dict):
        raise DescriptionsError(f"The descriptions file {path} holds a JSON {type(table).__name__}, not an "
                                "object {class name: [description, ...]}.")
    count_tokens = count_tokens or _clip_token_count
    out, first = [], None
    for name in (c.replace("_", " ") for c in classnames):
        texts = table.get(name)
        if texts is None:
            near = [k for k in table if isinstance(k, str) and k.lower() == name.lower()]
            hint = f" (the file has {near[0]!r}: names are matched exactly)" if near else ""
            raise DescriptionsError(f"The descriptions file {path} has no descriptions for class {name!r}{hint}.")
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise DescriptionsError(f"The descriptions file {path}: class {name!r} must map to a list of "
                                    "non-empty strings.")
        if not texts:
            raise DescriptionsError(f"The descriptions file {path}: class {name!r} has no descriptions.")
        if first is None:
            first = (name, len(texts))
        elif len(texts) != first[1]:
            raise DescriptionsError(
                f"The descriptions file {path}: class {name!r} has {len(texts)} descriptions, class "
                f"{first[0]!r} {first[1]}: every class needs the same number (CoPrompt draws one index for all).")
        for text in texts:
            n = count_tokens(text)
            if n > context_length:
                short = text if len(text) <= 60 else text[:57] + "..."
                raise DescriptionsError(
                    f"The descriptions file {path}: a description of class {name!r} takes {n} tokens, more than "
                    f"the text encoder's {context_length}: {short!r}.")
        out.append(texts)
    return out


def check_descriptions(path: str, classnames: Sequence[str], dataset: str = "") -> int:
    """Check a CoPrompt run's descriptions before any work (the real-data plan refuses CoPrompt without
    them): `path` is TRAINER.COPROMPT.DESCRIPTIONS (a file, or a folder of the authors' files), `classnames`
    the run's classes, `dataset` its DATASET.NAME. Returns the number of descriptions per class.
    DescriptionsError (a UserError, one line naming the file and the class) for everything
    `descriptions_file` and `read_descriptions` refuse, with CLIP's 77-token context."""
    return len(read_descriptions(descriptions_file(path, dataset), classnames)[0]) if classnames else 0


def testbed_descriptions(classnames: Sequence[str]) -> List[List[str]]:
    """The testbed's descriptions of each class: its caption generator's templates (every style), [C][18]."""
    from ...testbed.captions import class_descriptions
    return [class_descriptions(c.replace("_", " ")) for c in classnames]


_TOKENIZER = None


def _clip_token_count(text: str) -> int:
    global _TOKENIZER
    if _TOKENIZER is None:
        from clip.simple_tokenizer import SimpleTokenizer
        _TOKENIZER = SimpleTokenizer()
    return len(_TOKENIZER.encode(text)) + 2


@torch.no_grad()
def encode_descriptions(text_encoder, descriptions: List[List[str]], chunk: int = 1024) -> Tensor:
    """[n_desc, C, D] fp32: each description through the frozen text encoder (no prompts), L2-normalised
    one by one, as the authors' gpt_clip_classifier (theirs: the full 77-token sequence through a second
    CLIP copy; ours stops after the EOT token, which the causal mask makes the same up to float order)."""
    n = len(descriptions[0])
    texts = [t for per_class in descriptions for t in per_class]  # class-major
    enc = text_encoder
    parts = []
    for i in range(0, len(texts), chunk):
        tokens = enc.tokenize(texts[i:i + chunk])
        parts.append(enc(enc.embed(tokens), enc.eot_index(tokens))[0].float())
    features = torch.cat(parts)
    features = features / features.norm(dim=-1, keepdim=True)
    return features.view(len(descriptions), n, -1).transpose(0, 1).contiguous()


def cache_key(path: str, classnames: Sequence[str], backbone_id: str) -> str:
    """What the cached features depend on: the file's bytes, the classes and the backbone."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    h.update(json.dumps([list(classnames), backbone_id]).encode())
    return h.hexdigest()


def cached_features(cache: Optional[str], key: str, compute) -> Tensor:
    """`compute()`'s features, read from the file `cache` when it holds them for `key` (else computed and
    written there, atomically, by the primary process); no cache when `cache` is None."""
    if cache and os.path.isfile(cache):
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file: recomputed and replaced
            saved = None
        if isinstance(saved, dict) and saved.get("key") == key and torch.is_tensor(saved.get("features")):
            log.info(f"Description features read from {cache}")
            return saved["features"]
    features = compute()
    if cache:
        from ...distributed import is_primary
        if is_primary():
            os.makedirs(os.path.dirname(cache) or ".", exist_ok=True)
            tmp = f"{cache}.tmp{os.getpid()}"
            torch.save({"key": key, "features": features}, tmp)
            os.replace(tmp, cache)
    return features
