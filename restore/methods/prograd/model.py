"""ProGrad (Zhu et al., ICCV 2023): CoOp's context, updated along the cross-entropy gradient G_d made to agree
with the "general knowledge" gradient G_g of a KL term towards the zero-shot CLIP.

    xe_loss = CE(logits, y)
    kl_loss = mean_b sum_c -softmax(zs_logits / T)_c * log_softmax(logits / T)_c * T^2
    per learned tensor:  G = G_d - LAMBDA * (G_d . Ĝ_g) Ĝ_g   where G_d . G_g < 0,   G = G_d otherwise

zs_logits: the frozen CLIP's image features against its text features of the dataset's hand prompt
(PROGRAD_TEMPLATES, or the release's table), both L2-normalised, times CLIP's logit scale. This is the authors'
code (BeierZhu/Prompt-align, trainers/prograd.py, and the update in their Dassl fork's
`prograd_backward_and_update`): the "KL" is a soft-target cross-entropy, so its value exceeds the KL by
T^2 H(softmax(zs_logits / T)) while its gradient is the KL's; where the gradients do not conflict the update is
the cross-entropy gradient alone (G_g is not added). The conflict test and the projection are per learned
tensor, computed without a host sync (`project`). `ProGrad.backward_and_update` runs them as the engine's
backward hook; evaluation is CoOp's.

The zero-shot image features are the prompted model's own (no vision prompts: the frozen CLIP's
`encode_image`, which the authors run in a second, fp32 copy). CTX_INIT True initialises the context as the
authors do: the words of the hand template before " {}." (k of them, counted as words) fill the last k
slots with their first k token embeddings, the N_CTX - k slots before them are zeros; a template with a comma
has one more token than words, so its last word stays in the fixed text after the slots.

Random draws, in the authors' order: their zero-shot CLIP is built before the prompt learner (a second CLIP
build, replayed only when the CLIP's own build was: restore.backbone.replay_second_build), then the context
(random only without CTX_INIT).
"""
import torch
import torch.nn.functional as F

from ...backbone import replay_second_build
from ...checks import lookup
from ...errors import UserError
from ...templates import PROGRAD_TEMPLATES, RELEASE_TEMPLATES, template_for
from ..base import context_vectors
from ..coop.model import CoOp

TABLES = {"authors": PROGRAD_TEMPLATES, "release": RELEASE_TEMPLATES}


class ProGrad(CoOp):
    node = "TRAINER.PROGRAD"

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)  # the zero-shot CLIP's build, then the context
        loss = lookup(cfg, self.node).LOSS
        self.temperature, self.lambda_ = loss.T, loss.LAMBDA
        self.register_buffer("zs_text_features", self.hand_prompt_features(self.template), persistent=False)

    @property
    def template(self) -> str:
        """The dataset's hand template (TRAINER.PROGRAD.TEMPLATES' table; CoOp's for a dataset it lacks)."""
        return template_for(self.cfg.DATASET.NAME, TABLES[lookup(self.cfg, self.node).TEMPLATES])

    def initial_context(self, c, shape):
        replay_second_build(self.clip)  # the authors build their zero-shot CLIP before the prompt learner
        if not c.CTX_INIT:
            return context_vectors(self.text_encoder, "", c.N_CTX, shape), " ".join(["X"] * c.N_CTX)
        words = self.template.replace(" {}.", "").replace("_", " ")
        k = len(words.split(" "))
        if "{}" in words:
            raise UserError(f"{self.node}.CTX_INIT: the hand template {self.template!r} of {self.cfg.DATASET.NAME} "
                            "has no words before ' {}.' to initialise the context from; set CTX_INIT False.")
        if k > c.N_CTX:
            raise UserError(f"{self.node}.N_CTX is {c.N_CTX}, fewer than the {k} words of {words!r} that CTX_INIT "
                            f"puts into the context: set N_CTX {k} or more.")
        vectors = torch.zeros(c.N_CTX, self.text_encoder.width)
        vectors[c.N_CTX - k:] = self.text_encoder.embed(self.text_encoder.tokenize([words]))[0, 1:1 + k].float()
        return vectors, " ".join(["X"] * (c.N_CTX - k) + [words])

    def zero_shot_logits(self, image: torch.Tensor) -> torch.Tensor:
        """The zero-shot CLIP's logits [B, C] from the image features [B, D] (before normalisation)."""
        image = image.detach().float()
        image = image / image.norm(dim=-1, keepdim=True)
        return self.clip.logit_scale.exp().float() * image @ self.zs_text_features.to(image.device).t()

    def loss_terms(self, batch, enc, logits):
        with torch.no_grad():
            zs_logits = self.zero_shot_logits(enc.image)
        return {"xe_loss": F.cross_entropy(logits, batch.labels),
                "kl_loss": soft_kl(logits, zs_logits, self.temperature)}, {}

    def backward_and_update(self, loss, terms, update):
        """ProGrad's update (the engine's backward hook, docs/ADDING_A_METHOD.md section 4): G_g, the KL
        gradient, first (as the authors' fork), then G_d, the cross-entropy gradient, each as the engine's own
        update sees it (averaged over the processes, unscaled); `project` per learned tensor; the step. `loss`
        (xe_loss + kl_loss, what the log shows) is not differentiated."""
        g_kl = update.grad(terms["kl_loss"], retain_graph=True)
        g_ce = update.grad(terms["xe_loss"])
        update.step([project(a, b, self.lambda_) for a, b in zip(g_ce, g_kl)])


def soft_kl(logits: torch.Tensor, zs_logits: torch.Tensor, t: float) -> torch.Tensor:
    """mean_b sum_c -softmax(zs_logits / t)_c log_softmax(logits / t)_c t^2 (the authors' ProGradLoss "KL"): logits
    and zs_logits [B, C], a scalar."""
    teacher = F.softmax(zs_logits / t, dim=-1)
    return (-teacher * F.log_softmax(logits / t, -1) * t * t).sum(1).mean()


def project(g_ce: torch.Tensor, g_kl: torch.Tensor, lambda_: float) -> torch.Tensor:
    """The update of one learned tensor from its cross-entropy gradient `g_ce` and KL gradient `g_kl` (same
    shape): g_ce - lambda_ (g_ce . ĝ_kl) ĝ_kl where cos(g_ce, g_kl) < 0, else g_ce; the test stays on the
    device (torch.where). A zero gradient makes the cosine NaN, which is not < 0: g_ce, as in the authors'
    code. Their operation order, so that the result equals theirs to the last bit on the same inputs."""
    b_hat = g_kl / torch.linalg.norm(g_kl)
    a_hat = g_ce / torch.linalg.norm(g_ce)
    conflict = torch.dot(a_hat.flatten(), b_hat.flatten()) < 0
    return torch.where(conflict, g_ce - lambda_ * torch.dot(g_ce.flatten(), b_hat.flatten()) * b_hat, g_ce)
