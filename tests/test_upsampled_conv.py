"""UpsampledConcatConv computes conv(cat[bilinear upsampling, fine map]), values and gradients, at any size."""
import pytest
import torch
import torch.nn.functional as F

from networks.upsampled_conv import UpsampledConcatConv


def reference(conv: UpsampledConcatConv, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """The decoder's computation written plainly: upsample, concatenate, convolve."""
    up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=True)
    return F.conv2d(torch.cat([up, fine], dim=1), conv.weight, conv.bias, padding=conv.padding)


# (coarse h, w) → (fine H, W): the decoder's ×4 of a 16k+1 frame, other ratios, a one-pixel map, kernel 5.
SIZES = [((31, 54), (121, 213), 3), ((3, 3), (9, 9), 3), ((5, 7), (17, 25), 3), ((4, 6), (13, 11), 3),
         ((1, 1), (9, 9), 3), ((6, 5), (21, 17), 5)]


@pytest.mark.parametrize("coarse_size,fine_size,k", SIZES)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_equals_upsample_then_convolve(coarse_size, fine_size, k, layout):
    torch.manual_seed(0)
    conv = UpsampledConcatConv(24 + 8, 16, k, padding=k // 2, bias=True).double().to(memory_format=layout)
    coarse = torch.randn(2, 24, *coarse_size).double().to(memory_format=layout)
    fine = torch.randn(2, 8, *fine_size).double().to(memory_format=layout)
    expected = reference(conv, coarse, fine)
    result = conv(coarse, fine)
    assert result.shape == expected.shape
    # float64: only the order of the sums differs.
    assert (result - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_float32_rounding_and_gradients():
    torch.manual_seed(0)
    conv = UpsampledConcatConv(256 + 48, 64, 3, padding=1, bias=False)
    coarse = torch.randn(1, 256, 9, 14, requires_grad=True)
    fine = torch.randn(1, 48, 33, 53, requires_grad=True)
    expected = reference(conv, coarse, fine)
    result = conv(coarse, fine)
    assert (result - expected).abs().max() <= 1e-5 * expected.abs().max()
    upstream = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (coarse, fine, conv.weight), upstream)
    got = torch.autograd.grad(result, (coarse, fine, conv.weight), upstream)
    for g, w in zip(got, want):
        assert (g - w).abs().max() <= 1e-5 * w.abs().max()


def test_refuses_a_kernel_it_does_not_compute():
    with pytest.raises(ValueError, match="padding"):
        UpsampledConcatConv(8, 4, 3, padding=0)
    with pytest.raises(ValueError, match="odd kernel"):
        UpsampledConcatConv(8, 4, 2, padding=1)
