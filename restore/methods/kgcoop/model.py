"""KgCoOp (Yao et al., CVPR 2023): CoOp, plus the knowledge-guided loss between the learned and the hand-prompt
class text features.

    loss = CE(logits, y) + W * (1 - mean_c cos(w_c, w_c^clip))

w_c: class c's text feature from the learned context; w_c^clip: the frozen CLIP's feature of the dataset's
hand prompt (KGCOOP_TEMPLATES, or the RESTORE release's table with TEMPLATES "release"), both L2-normalised
(cosine eps 1e-7), the mean over the classes. This is the authors' code (htyao89/KgCoOp, trainers/kgcoop.py):
on unit vectors it equals W/2 times the mean squared Euclidean distance the paper writes. Evaluation is
CoOp's: the loss plays no part in the logits.

Random draws, in the authors' order (for the same seed, the same run): the context (CoOp's, random only
without CTX_INIT), then what their prompt learner builds and never uses: `bias_vectors` N(0, 0.02) [1, 512],
a second CLIP build (the hand prompts' copy; replayed only when the CLIP's own build was,
restore.backbone.replay_second_build), `meta_net` Linear(512, 512) and an `Adapter` Linear(512, 128) +
Linear(128, 512) without bias. The widths are the authors' hard-coded 512 whatever the backbone. The
drawn tensors are dropped: they are not part of the model or its checkpoints.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ...backbone import replay_second_build
from ...checks import lookup
from ...templates import KGCOOP_TEMPLATES, RELEASE_TEMPLATES, template_for
from ..coop.model import CoOp

TABLES = {"authors": KGCOOP_TEMPLATES, "release": RELEASE_TEMPLATES}


class KgCoOp(CoOp):
    node = "TRAINER.KGCOOP"

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)  # draws the context (without CTX_INIT)
        c = lookup(cfg, self.node)
        self.weight = c.W
        replay_unused_draws(clip_model)
        self.template = template_for(cfg.DATASET.NAME, TABLES[c.TEMPLATES])
        self.register_buffer("hand_features", self.hand_prompt_features(self.template), persistent=False)

    def loss_terms(self, batch, enc, logits):
        terms, logs = super().loss_terms(batch, enc, logits)
        terms["kg"] = self.weight * knowledge_guided_loss(enc.text, self.hand_features)
        return terms, logs


def knowledge_guided_loss(text: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
    """1 - mean_c cos(text_c, hand_c): text [C, D] (learned, before normalisation), hand [C, D]; a scalar.
    Normalised, then CosineSimilarity(dim=1, eps=1e-7), as the authors' forward computes it."""
    text = text.float()
    text = text / text.norm(dim=-1, keepdim=True)
    hand = hand / hand.norm(dim=-1, keepdim=True)
    return 1.0 - torch.mean(F.cosine_similarity(text, hand, dim=1, eps=1e-7))


def replay_unused_draws(clip_model) -> None:
    """Draw what the authors' prompt learner and CustomCLIP draw after the context, for modules they never
    use: bias_vectors, the hand prompts' CLIP build, meta_net, the adapter (see the module docstring)."""
    torch.empty(1, 512).normal_(std=0.02)  # bias_vectors
    replay_second_build(clip_model)
    nn.Linear(512, 512)  # meta_net.linear1
    nn.Linear(512, 128, bias=False), nn.Linear(128, 512, bias=False)  # Adapter(512, 4)
