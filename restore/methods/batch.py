"""What a method's training loss receives: the whole batch as the data loader makes it (the step contract,
docs/ADDING_A_METHOD.md section 4).

    batch = Batch(loader_item)        # the engines do this, tensors already on the model's device
    batch.images                      # [B, 3, H, W]: the (first) augmented view of "img"
    batch.labels                      # [B]
    batch.views()                     # every augmented view of "img": [[B, 3, H, W]] * K
    batch["img0"], batch["index"]     # anything else the loader gives (Dassl's keys)

Dassl's keys (both engines' loaders): "img" (a list of K views when DATALOADER.K_TRANSFORMS is K > 1),
"img2", ... (one per extra transform), "img0" (the unaugmented image, DATALOADER.RETURN_IMG0), "label",
"domain", "index" (the item's index in the training split), "impath" (a list of paths).
"""
from typing import List

import torch
from torch import Tensor


class Batch(dict):
    """A training batch: Dassl's dict of the loader's keys, with the two every loss reads named."""

    @property
    def images(self) -> Tensor:
        """The images of "img" [B, 3, H, W]; its first view when the loader makes several."""
        return self.views()[0]

    @property
    def labels(self) -> Tensor:
        return self["label"]

    def views(self, key: str = "img") -> List[Tensor]:
        """Every augmented view the loader made of `key` (one unless DATALOADER.K_TRANSFORMS > 1)."""
        value = self[key]
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def to(self, device) -> "Batch":
        """The batch with its tensors (and lists of tensors) on `device` (pinned memory: without waiting)."""
        return Batch({k: _to(v, device) for k, v in self.items()})


def _to(value, device):
    if torch.is_tensor(value):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)) and value and all(torch.is_tensor(v) for v in value):
        return [v.to(device, non_blocking=True) for v in value]
    return value
