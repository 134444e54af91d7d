"""STA: windowed attention from 8×8 patches of the query to the same patches of one frame."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

QUADRANTS = ((0, 0), (0, 1), (1, 0), (1, 1))  # the 4×4 blocks of an 8×8 patch, by (row, column)


class STA(nn.Module):
    """Patches (8×8, stride 4) attend within themselves; outputs are folded back by summation.

    Overlapping patch outputs add up (interior pixels carry 4 contributions) and pixels no patch
    covers stay 0: the released weights were trained with exactly this fold (`nn.Unfold`/`nn.Fold`).
    With stride = half the patch, a patch is 2×2 blocks of 4×4 pixels, so patches are gathered and
    folded as four shifted block grids, and the attention runs as one fused
    `scaled_dot_product_attention` over all patches: half the time of unfold → bmm → softmax →
    bmm → fold on a CPU (tools/bench_model.py), the same values to ~3e-7.
    """

    def __init__(self, dim: int = 16, patch: int = 8, stride: int = 4) -> None:
        super().__init__()
        if patch != 2 * stride:
            raise ValueError(f"STA patch {patch}, stride {stride}: the block layout needs patch = 2 × stride")
        self.patch, self.stride = patch, stride
        # Present in the authors' state_dict but unused in their forward: kept for strict loading.
        self.proj_prev = nn.Conv2d(dim, dim, 1)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """query, key (B,d,h,w) → (B,d,h,w); values are the keys."""
        b, d, h, w = query.shape
        rows, cols = (h - self.patch) // self.stride + 1, (w - self.patch) // self.stride + 1
        q, k = self._patches(query, rows, cols), self._patches(key, rows, cols)
        # softmax(q·kᵀ/√d)·k within each patch; d ** -0.5 is the default scale.
        return self._fold(F.scaled_dot_product_attention(q, k, k), b, h, w, rows, cols)

    def _patches(self, x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """(B,d,h,w) → (B, rows·cols, patch², d): every patch's pixels, as its four blocks in turn."""
        b, d = x.shape[:2]
        s = self.stride
        blocks = x[:, :, :s * (rows + 1), :s * (cols + 1)].permute(0, 2, 3, 1).reshape(b, rows + 1, s, cols + 1, s, d)
        shifted = [blocks[:, i:i + rows, :, j:j + cols] for i, j in QUADRANTS]  # (B,rows,s,cols,s,d) each
        return torch.stack(shifted, dim=3).permute(0, 1, 4, 3, 2, 5, 6).reshape(b, rows * cols, 4 * s * s, d)

    def _fold(self, out: torch.Tensor, b: int, h: int, w: int, rows: int, cols: int) -> torch.Tensor:
        """(B, rows·cols, patch², d) → (B,d,h,w): overlapping blocks summed, uncovered pixels 0."""
        s, d = self.stride, out.shape[-1]
        out = out.view(b, rows, cols, 4, s, s, d)
        total = None
        for index, (i, j) in enumerate(QUADRANTS):
            # This quadrant of every patch, placed on the block grid (B,d,rows+1,s,cols+1,s).
            part = F.pad(out[:, :, :, index].permute(0, 5, 1, 3, 2, 4), (0, 0, j, 1 - j, 0, 0, i, 1 - i))
            total = part if total is None else total + part
        grid = total.reshape(b, d, s * (rows + 1), s * (cols + 1))
        return F.pad(grid, (0, w - s * (cols + 1), 0, h - s * (rows + 1)))
