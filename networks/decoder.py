"""DeepLabv3+ decoder: fuses upsampled ASPP output with stride-4 low-level features."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from networks.upsampled_conv import UpsampledConcatConv


class Decoder(nn.Module):
    """low-level 1x1 → 48 ch; cat with ASPP upsampled (bilinear, align_corners); two 3x3 convs → `out_ch` features."""

    def __init__(self, low_level_ch: int, aspp_ch: int = 256, shortcut_ch: int = 48, out_ch: int = 256,
                 freeze_bn: bool = True) -> None:
        super().__init__()
        norm = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
        self.conv1 = nn.Conv2d(low_level_ch, shortcut_ch, 1, bias=False)
        self.bn1 = norm(shortcut_ch)
        self.relu = nn.ReLU(inplace=True)
        # Indices 3 and 7 held dropouts removed by the authors; Identity keeps the names 0, 1, 4, 5.
        # 0 is conv(cat[ASPP upsampled to stride 4, shortcut]), computed without upsampling 256 channels.
        self.last_conv = nn.Sequential(
            UpsampledConcatConv(aspp_ch + shortcut_ch, out_ch, 3, padding=1, bias=False), norm(out_ch),
            nn.ReLU(inplace=True),
            nn.Identity(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), norm(out_ch), nn.ReLU(inplace=True),
            nn.Identity(),
        )

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low_level = self.relu(self.bn1(self.conv1(low_level)))
        x = self.last_conv[0](x, low_level)
        for layer in list(self.last_conv)[1:]:  # not a sliced Sequential: FX traces only registered modules
            x = layer(x)
        return x
