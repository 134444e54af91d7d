"""ACON-C activation: a learnable switch between linear and non-linear per channel."""
from __future__ import annotations

import torch
from torch import nn


class AconC(nn.Module):
    """out = (p1 - p2)x · sigmoid(beta (p1 - p2)x) + p2 x, with per-channel p1, p2, beta."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.p1 = nn.Parameter(torch.randn(1, width, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, width, 1, 1))
        self.beta = nn.Parameter(torch.ones(1, width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same function in five passes over x instead of eight: (p1 - p2) is per channel.
        d = x * (self.p1 - self.p2)
        return torch.addcmul(x * self.p2, d, torch.sigmoid(d * self.beta))
