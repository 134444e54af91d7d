"""ASPP of DeepLabv3+ (output stride 16: dilations 1, 6, 12, 18 and an image-pool branch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


class ASPPBranch(nn.Module):
    """Conv (1x1 or dilated 3x3, no bias) → BN → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, norm: type[nn.Module]) -> None:
        super().__init__()
        padding = 0 if kernel == 1 else dilation
        self.atrous_conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False)
        self.bn = norm(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Four parallel branches + global pooling, concatenated and fused to `out_ch` channels."""

    def __init__(self, in_ch: int, out_ch: int = 256, freeze_bn: bool = True) -> None:
        super().__init__()
        norm = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
        self.aspp1 = ASPPBranch(in_ch, out_ch, 1, 1, norm)
        self.aspp2 = ASPPBranch(in_ch, out_ch, 3, 6, norm)
        self.aspp3 = ASPPBranch(in_ch, out_ch, 3, 12, norm)
        self.aspp4 = ASPPBranch(in_ch, out_ch, 3, 18, norm)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(in_ch, out_ch, 1, bias=False), norm(out_ch), nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(5 * out_ch, out_ch, 1, bias=False)
        self.bn1 = norm(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_avg_pool(x)
        pooled = F.interpolate(pooled, size=x.shape[2:], mode="bilinear", align_corners=True)
        x = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled], dim=1)
        return self.dropout(self.relu(self.bn1(self.conv1(x))))
