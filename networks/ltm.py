"""LTM: linear attention with positive random features (Performer) over a long frame memory."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LTM(nn.Module):
    """Query (B,16,h,w) attends to every position of every memory key; values are the keys.

    A memory frame enters only through two sums over its positions, S = Σ phi(k) (B,m) and
    M = Σ k ⊗ phi(k) (B,d,m): `memory_sums` computes them once per frame, `read` consumes the
    window's totals. All of it runs in float32 and computes phi literally (no stabilisation),
    as the released weights were trained with.
    """

    def __init__(self, dim: int = 16, num_features: int = 8) -> None:
        super().__init__()
        w = nn.init.orthogonal_(torch.empty(num_features, dim)) * math.sqrt(num_features)
        # Fixed random projection; it lives in the checkpoint and is never re-drawn on load.
        self.w = nn.Parameter(w, requires_grad=False)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x) = exp(w·x − |x|²/2) / sqrt(m) for rows x of (B,N,d) → (B,N,m)."""
        wx = torch.einsum("bnd,md->bnm", x, self.w)
        return torch.exp(wx - (x * x).sum(dim=-1, keepdim=True) / 2) / math.sqrt(self.w.shape[0])

    def memory_sums(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One memory frame's projected keys (B,d,h,w) → (S (B,m), M (B,d,m))."""
        with torch.autocast(keys.device.type, enabled=False):
            k = keys.float().flatten(2).transpose(1, 2)
            kp = self.feature_map(k)
            return kp.sum(dim=1), torch.einsum("bnd,bnm->bdm", k, kp)

    def read(self, query: torch.Tensor, sums: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
        """Query (B,d,h,w) and the window's summed (S, M) → layer-normed cat[y, q] (B,2d,h,w)."""
        b, d, h, w = query.shape
        with torch.autocast(query.device.type, enabled=False):
            q = query.float()
            qp = self.feature_map(q.flatten(2).transpose(1, 2))               # (B,T,m)
            normaliser = torch.einsum("btm,bm->bt", qp, sums.float()).unsqueeze(1)  # (B,1,T)
            y = torch.einsum("btm,bdm->bdt", qp, moments.float()) / (normaliser + 1e-8)
            out = torch.cat([y.view(b, d, h, w), q], dim=1)
            # Each (batch, channel) plane normalised over its own h×w values.
            return F.layer_norm(out, (h, w))

    def forward(self, query: torch.Tensor, keys: list[torch.Tensor]) -> torch.Tensor:
        """Attend from `query` to all frames of `keys` (each (B,d,h,w))."""
        per_frame = [self.memory_sums(k) for k in keys]
        sums = torch.stack([s for s, _ in per_frame]).sum(0)
        moments = torch.stack([m for _, m in per_frame]).sum(0)
        return self.read(query, sums, moments)
