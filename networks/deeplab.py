"""DeepLabv3+ encoder (backbone, ASPP, decoder) giving LSTA's stride-4 frame features."""
from __future__ import annotations

import torch
from torch import nn

from networks.aspp import ASPP
from networks.backbone import ResNetBackbone
from networks.decoder import Decoder


class DeepLab(nn.Module):
    """Images (B,3,H,W) → features (B,256,⌈H/4⌉,⌈W/4⌉)."""

    def __init__(self, backbone: str = "resnet101", aspp_ch: int = 256, shortcut_ch: int = 48,
                 freeze_bn: bool = True) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(backbone, freeze_bn)
        self.aspp = ASPP(self.backbone.out_channels, aspp_ch, freeze_bn)
        self.decoder = Decoder(self.backbone.low_level_channels, aspp_ch, shortcut_ch, aspp_ch, freeze_bn)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x, low_level = self.backbone(images)
        return self.decoder(self.aspp(x), low_level)
