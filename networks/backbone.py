"""ResNet backbone of the DeepLabv3+ encoder: torchvision ResNet, frozen BN, multigrid layer 4."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.ops import FrozenBatchNorm2d

_BUILDERS = {
    "resnet101": resnet.resnet101,
    "resnet": resnet.resnet101,  # the authors' name for it
    "resnet50": resnet.resnet50,
    "resnet34": resnet.resnet34,
    "resnet18": resnet.resnet18,
}
# Multigrid dilations of layer 4 (output stride 16): 2, 4, 8 for its three blocks.
_MULTIGRID = (2, 4, 8)


class ResNetBackbone(nn.Module):
    """torchvision ResNet without pool/fc; strides 1,2,2,1 with layer 4 dilated (multigrid)."""

    def __init__(self, name: str = "resnet101", freeze_bn: bool = True) -> None:
        super().__init__()
        if name not in _BUILDERS:
            raise ValueError(f"MODEL_BACKBONE {name!r} is not one of {sorted(_BUILDERS)}")
        norm = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
        net = _BUILDERS[name](weights=None, norm_layer=norm)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        _dilate_layer4(self.layer4)
        self.low_level_channels = _out_channels(self.layer1)
        self.out_channels = _out_channels(self.layer4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images → (layer 4 output at stride 16, layer 1 output at stride 4)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low_level = self.layer1(x)
        x = self.layer4(self.layer3(self.layer2(low_level)))
        return x, low_level


def _dilate_layer4(layer: nn.Sequential) -> None:
    # Stride 1 everywhere in layer 4; each block's 3x3 convs get the multigrid dilation (= padding).
    # torchvision's replace_stride_with_dilation would give 1, 2, 2 instead of 2, 4, 8.
    for block, dilation in zip(layer, _MULTIGRID):
        for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3):
                conv.dilation = (dilation, dilation)
                conv.padding = (dilation, dilation)


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).weight.shape[0]
