"""TCP (Yao, Zhang, Xu, CVPR 2024): CoOp's context at the text input, class-aware tokens in the context slots
of a middle text block, and KgCoOp's loss.

    t_c    = meta_net(w_c^clip).view(n, W)                      the class tokens of class c
    prompt = [SOS, ctx_1..n, <template's rest with class c>]    blocks 0 .. L-1 see the context in slots 1..n
    slots 1..n of the hidden state entering block L := t_c      blocks L .. end see the class tokens there
    loss   = CE(logits, y) + KG_WEIGHT * (1 - mean_c cos(w_c, w_c^clip))

w_c^clip: the frozen CLIP's L2-normalised text feature of class c's hand prompt (TCP_HAND_TEMPLATES), the
input of the class-token encoder ("textual knowledge embedding", restore.methods.class_tokens) and the
target of KgCoOp's loss; w_c: the learned class text feature. L = INSERT_LAYER (the authors' 8 of 12 text
blocks), KG_WEIGHT 8.0 (the authors' literal). The learnable prompt's text after the slots is TCP's own per
dataset (TCP_PROMPTS: "X X X X {}, a type of pet."). Because the class tokens come from class names, a model
trained on base classes makes tokens for new ones (the authors' "dynamic class-aware classifier"):
nothing learned is class-specific. This is the authors' code (htyao89/Textual-based_Class-aware_prompt_tuning,
trainers/tcp.py and trainers/clip_text/model.py); its class tokens replace the slots (`1.0 * t + 0.0 * x`),
the logit scale and image features are detached there (nothing learned sits on the image side).

Random draws, in the authors' order (for the same seed, the same run): the context (random only without
CTX_INIT), a second CLIP build (their frozen copy for the hand prompts; replayed only when the CLIP's own
build was, restore.backbone.replay_second_build), then meta_net's linear1 and linear2.
"""
from torch import Tensor

from ...backbone import replay_second_build
from ...checks import lookup
from ...errors import UserError
from ...templates import TCP_HAND_TEMPLATES, TCP_PROMPTS, template_for
from ..class_tokens import class_token_encoder, with_class_tokens
from ..coop.model import CoOp
from ..kgcoop.model import knowledge_guided_loss

# The learnable prompt of a dataset outside TCP's table: the context, then "<class>." (as CoOp's).
DEFAULT_PROMPT = "X X X X {}."
# TCP_PROMPTS' slot words: the table's first four words stand for the context.
TABLE_SLOTS = 4


class TCP(CoOp):
    node = "TRAINER.TCP"

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model)  # draws the context (without CTX_INIT)
        c = lookup(cfg, self.node)
        layers = self.text_encoder.num_layers
        if not 1 <= c.INSERT_LAYER < layers:
            raise UserError(f"TRAINER.TCP.INSERT_LAYER={c.INSERT_LAYER} must be a text block between 1 and "
                            f"{layers - 1} (the text encoder has {layers} blocks)")
        self.insert_layer = c.INSERT_LAYER
        self.kg_weight = c.KG_WEIGHT
        replay_second_build(clip_model)  # the authors' frozen copy for the hand prompts
        n_ctx, width = self.n_slots, self.text_encoder.width
        self.prompt_learner.meta_net = class_token_encoder(self.image_encoder.output_dim, n_ctx, width)
        self.hand_template = template_for(cfg.DATASET.NAME, TCP_HAND_TEMPLATES)
        self.register_buffer("hand_features", self.hand_prompt_features(self.hand_template), persistent=False)

    def class_template(self) -> str:
        """TCP's learnable prompt of the dataset after its four slot words ("{}, a type of pet.")."""
        prompt = TCP_PROMPTS.get(self.cfg.DATASET.NAME, DEFAULT_PROMPT)
        return prompt.split(" ", TABLE_SLOTS)[TABLE_SLOTS]

    def class_tokens(self) -> Tensor:
        """The class tokens [C, n, W]: meta_net of the hand prompts' features, n * W values per class."""
        tokens = self.prompt_learner.meta_net(self.hand_features)
        return tokens.reshape(tokens.shape[0], self.n_slots, self.text_encoder.width)

    def text_prompts(self):
        return with_class_tokens(super().text_prompts(), self.insert_layer, self.class_tokens())

    def loss_terms(self, batch, enc, logits):
        terms, logs = super().loss_terms(batch, enc, logits)
        terms["kg"] = self.kg_weight * knowledge_guided_loss(enc.text, self.hand_features)
        return terms, logs
