"""AIC: axial inception block of the refine head (1×k then k×1 convs mixed by per-pixel weights)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from networks.acon import AconC


class AIC(nn.Module):
    """Residual block: 3×3 conv, softmax-weighted 1×{3,5,7} then {3,5,7}×1 convs, 3×3 conv, + input."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.x1 = nn.Conv2d(out_ch, out_ch, (1, 3), padding=(0, 1))
        self.x2 = nn.Conv2d(out_ch, out_ch, (1, 5), padding=(0, 2))
        self.x3 = nn.Conv2d(out_ch, out_ch, (1, 7), padding=(0, 3))
        self.y1 = nn.Conv2d(out_ch, out_ch, (3, 1), padding=(1, 0))
        self.y2 = nn.Conv2d(out_ch, out_ch, (5, 1), padding=(2, 0))
        self.y3 = nn.Conv2d(out_ch, out_ch, (7, 1), padding=(3, 0))
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.weights = nn.Conv2d(out_ch, 6, 1)
        self.activate1 = AconC(out_ch)
        self.activate2 = AconC(out_ch)
        self.activate3 = AconC(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv1(x)
        weights = self.weights(c)
        wx = F.softmax(weights[:, 0:3], dim=1)
        wy = F.softmax(weights[:, 3:6], dim=1)
        u = _mix(wx, self.x1(c), self.x2(c), self.x3(c))
        u = self.activate1(F.instance_norm(u))
        v = _mix(wy, self.y1(u), self.y2(u), self.y3(u))
        v = self.conv2(self.activate2(F.instance_norm(v)))
        return self.activate3(F.instance_norm(v + x))


def _mix(weights: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """w0·a + w1·b + w2·c with per-pixel weights (B,3,h,w), in three passes instead of five."""
    return torch.addcmul(torch.addcmul(a * weights[:, 0:1], b, weights[:, 1:2]), c, weights[:, 2:3])
