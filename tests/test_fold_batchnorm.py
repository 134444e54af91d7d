"""The encoder with its BatchNorms folded into its convolutions computes what the encoder computes."""
import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from networks.deeplab import DeepLab
from utils.fold_batchnorm import fold_batchnorm


@pytest.mark.parametrize("backbone,freeze_bn", [("resnet18", True), ("resnet50", True), ("resnet18", False)])
def test_folded_encoder_equals_the_encoder(backbone, freeze_bn):
    torch.manual_seed(0)
    encoder = DeepLab(backbone, 64, 16, freeze_bn).eval()
    norms = [m for m in encoder.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    with torch.no_grad():  # statistics far from the identity, so that a norm left out or applied twice shows
        for norm in norms:
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.25, 4)
            norm.weight.uniform_(0.5, 2)
            norm.bias.normal_(0, 0.5)
    folded = fold_batchnorm(encoder)
    # Every norm of DeepLab follows a convolution: none is left, and no convolution was lost.
    assert not [m for m in folded.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    assert sum(isinstance(m, nn.Conv2d) for m in folded.modules()) == sum(
        isinstance(m, nn.Conv2d) for m in encoder.modules())
    images = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        expected, result = encoder(images), folded(images)
    assert result.shape == expected.shape
    assert (result - expected).abs().max() <= 1e-5 * expected.abs().max()
    # A snapshot: the encoder's own weights are untouched.
    assert all(isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)) for m in norms)
    with torch.no_grad():
        assert torch.equal(encoder(images), expected)
