"""The training step as one module, so that DistributedDataParallel can wrap it: DDP synchronises the
gradients of what runs through its wrapped module's `forward`, and a method's loss is `model.loss`,
not `model.forward` (open_clip's TrainingTask follows the same idea).

    step = TrainStep(model, precision)           # or DDP(TrainStep(...)) under torchrun
    loss, terms = step(batch)                    # = model.loss(batch) under autocast
"""
from torch import nn


class TrainStep(nn.Module):
    def __init__(self, model: nn.Module, precision):
        super().__init__()
        self.model = model
        self.precision = precision

    def forward(self, batch):
        """A training batch (restore.methods.batch.Batch, on the device) -> (scalar loss, {name: 0-dim
        tensor} to log): the method's loss (the step contract, docs/ADDING_A_METHOD.md section 4)."""
        with self.precision.autocast():
            return self.model.loss(batch)


def wrap_distributed(step: TrainStep, device) -> nn.Module:
    """`step` in DistributedDataParallel. broadcast_buffers=False: the buffers (class token
    embeddings, EOT positions, RESTORE's alpha EMA) are equal on every rank by construction (built from
    the same frozen CLIP, updated from reduced values), so re-sending them every step would only cost
    time. The parameters are broadcast from rank 0 once, here."""
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=ids, broadcast_buffers=False)
