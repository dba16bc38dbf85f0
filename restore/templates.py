"""Hand-written prompt templates: CoOp's per-dataset templates (ZeroshotCLIP), KgCoOp's, ProGrad's, TCP's and the
RESTORE release's per-dataset tables (their hand prompts; TCP's learnable prompts), and PromptSRC's 60-template ensemble (its frozen
text targets). Data, not code: lists as the public methods use them."""

# CoOp's ZeroshotCLIP templates, keyed by DATASET.NAME. Other datasets (e.g. the synthetic
# testbed) add theirs with `register_template`.
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."


def register_template(dataset_name: str, template: str) -> None:
    if "{}" not in template:
        raise ValueError(f"template for {dataset_name} must contain '{{}}': {template!r}")
    CUSTOM_TEMPLATES[dataset_name] = template


def template_for(dataset_name: str, table=None) -> str:
    """The hand template of `dataset_name`: from `table` (a method's own, e.g. KGCOOP_TEMPLATES) when it has
    the dataset, else CoOp's (with the testbed's registered ones), else "a photo of a {}.". The originals
    raise KeyError for a dataset their table lacks."""
    if table is not None and dataset_name in table:
        return table[dataset_name]
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


# KgCoOp's hand prompts (htyao89/KgCoOp, trainers/kgcoop.py): CoOp's, except DescribableTextures.
KGCOOP_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "DescribableTextures": "a photo of a {}, a type of texture.",
}

# ProGrad's (BeierZhu/Prompt-align, trainers/prograd.py): the category clause moved to the front for four
# datasets, and DescribableTextures "a texture of {}.". With CTX_INIT its words before "{}" initialise the
# context (restore.methods.prograd).
PROGRAD_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}

# The official RESTORE release's copies of both trainers (Yaphabates/RESTORE_, trainers/kgcoop.py and
# trainers/prograd.py, one table): "a photo of a {}." or, for four datasets, "a photo of {}.".
RELEASE_TEMPLATES = {
    **{k: "a photo of a {}." for k in CUSTOM_TEMPLATES},
    **{k: "a photo of {}." for k in ("DescribableTextures", "EuroSAT", "Food101", "UCF101")},
}


# TCP's two tables (htyao89/Textual-based_Class-aware_prompt_tuning, trainers/tcp.py): the hand prompts whose
# frozen features feed its class-token encoder (CUSTOM_TEMPLATES_ori there), and its learnable prompts, whose
# first four words are the context slots (CUSTOM_TEMPLATES there; "X X X X" = random context).
TCP_HAND_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "FGVCAircraft": "a photo of an aircraft {}.",
    "DescribableTextures": "a photo of a {}, a type of texture.",
    "Food101": "a photo of a {}, a type of food.",
}
TCP_PROMPTS = {
    **{k: "X X X X {}." for k in ("EuroSAT", "SUN397", "Caltech101")},
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "StanfordCars": "X X X X {}, a type of car",  # no final period, as theirs
    "Food101": "X X X X {}, a type of food.",
    "UCF101": "a photo of a person doing {}.",
    **{k: "a photo of a {}." for k in ("ImageNet", "ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR")},
}

# PromptSRC's IMAGENET_TEMPLATES (60 of CLIP's 80 ImageNet templates, "a photo of a {}." first).
PROMPTSRC_TEMPLATES = [
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.", "the plastic {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "the origami {}.", "the {} in a video game.",
    "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.",
    "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.",
]
assert len(PROMPTSRC_TEMPLATES) == 60
