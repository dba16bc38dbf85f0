"""Surgery adapters on the final projected features (docs/METHOD.md section 4) and the release's
calibrator (section 5). Both are residual: the caller computes z + alpha * adapter(z)."""
import torch.nn.functional as F
from torch import nn


class Surgery(nn.Module):
    """Surgery(z) = ReLU(LN(z) W_up) W_down with W_down = 0 at init, so that training starts
    exactly at the base method."""

    def __init__(self, dim: int, ratio: int = 4):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, ratio * dim, bias=False)
        self.down = nn.Linear(ratio * dim, dim, bias=False)
        nn.init.zeros_(self.down.weight)

    def forward(self, z):
        return self.down(F.relu(self.up(self.ln(z))))


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * (1.702 * x).sigmoid()


class ReleaseCalibrator(nn.Module):
    """The official release's Feature_Calibrator FFN: LN -> Linear(d, 4d) -> QuickGELU ->
    Linear(4d, d), with biases and PyTorch's default initialisation."""

    def __init__(self, dim: int):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, z):
        return self.fc2(self.act(self.fc1(self.ln(z))))
