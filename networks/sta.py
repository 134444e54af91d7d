"""STA: windowed attention from 8×8 patches of the query to the same patches of one frame."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class STA(nn.Module):
    """Patches (8×8, stride 4) attend within themselves; outputs are folded back by summation.

    Overlapping patch outputs add up (interior pixels carry 4 contributions) and pixels no patch
    covers stay 0: the released weights were trained with exactly this fold.
    """

    def __init__(self, dim: int = 16, patch: int = 8, stride: int = 4) -> None:
        super().__init__()
        self.patch, self.stride = patch, stride
        # Present in the authors' state_dict but unused in their forward: kept for strict loading.
        self.proj_prev = nn.Conv2d(dim, dim, 1)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """query, key (B,d,h,w) → (B,d,h,w); values are the keys."""
        b, d, h, w = query.shape
        area = self.patch * self.patch
        q = F.unfold(query, self.patch, stride=self.stride).view(b, d, area, -1)  # (B,d,64,P)
        k = F.unfold(key, self.patch, stride=self.stride).view(b, d, area, -1)
        patches = q.shape[-1]
        # One batched matmul per product over all B·P patches, on contiguous (B·P, 64, d) operands:
        # a strided view makes the CPU kernels copy patch by patch (thousands of small copies).
        q = q.permute(0, 3, 2, 1).contiguous().view(b * patches, area, d)
        k = k.permute(0, 3, 2, 1).contiguous().view(b * patches, area, d)
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * d ** -0.5, dim=-1)
        out = torch.bmm(weights, k).view(b, patches, area, d).permute(0, 3, 2, 1).reshape(b, d * area, patches)
        return F.fold(out, (h, w), self.patch, stride=self.stride)
