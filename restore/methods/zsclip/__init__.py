"""ZeroshotCLIP: CLIP with CoOp's per-dataset hand template, nothing learned (the model: model.py).

It reads CoOp's node (TRAINER.COOP.PREC is its precision, as in CoOp's zsclip trainer)."""
from ..coop import COOP
from ..registry import register
from ..spec import MethodSpec, lazy_model

register(MethodSpec(
    "ZeroshotCLIP", model="restore.methods.zsclip.model:ZeroshotCLIP", nodes=(COOP,),
    registered_name="prompt_learner",  # never written: nothing to save
    cost=0.05, benchmark=True, configs={"base2new": "vit_b16"}))

__getattr__ = lazy_model(__name__, ("ZeroshotCLIP",))
