"""A convolution of [upsampled coarse map, fine map] that mixes the coarse map's channels before upsampling it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UpsampledConcatConv(nn.Conv2d):
    """`conv(cat[upsample(coarse), fine])`: bilinear upsampling (align_corners=True) to the fine map's size,
    then this k×k convolution (stride 1, padding k // 2, no groups or dilation).

    Why: DeepLabv3+'s decoder runs its first 3×3 convolution on the ASPP map upsampled ×4, and 84 %
    of that convolution's work (11 % of the encoder's) is on those 256 upsampled channels. Mixing
    channels commutes with upsampling, so each kernel tap mixes the coarse map at 1/16 of the
    pixels; the upsampling, with each tap's shift and zero padding folded into it, is then two
    matrix products (columns, then rows) with the interpolation matrices. The same state_dict as
    nn.Conv2d; the same function, to float32 rounding (~5e-7 of the output's largest magnitude).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int, bias: bool = True) -> None:
        if kernel_size % 2 == 0 or padding != kernel_size // 2:
            raise ValueError(f"UpsampledConcatConv needs an odd kernel with padding kernel // 2, got {kernel_size}, "
                             f"{padding}")
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """coarse (B,C,h,w), fine (B,F,H,W) with C + F input channels → (B,out,H,W)."""
        b, c, h, w = coarse.shape
        height, width = fine.shape[-2:]
        k, out = self.kernel_size[0], self.out_channels
        result = F.conv2d(fine, self.weight[:, c:], self.bias, padding=k // 2)
        # Every tap's channel mix at once: channels ordered (tap row, tap column, output channel).
        taps = F.conv2d(coarse, self.weight[:, :c].permute(2, 3, 0, 1).reshape(k * k * out, c, 1, 1))
        # Columns: for each tap row, sum over tap columns of taps @ (shifted interpolation)ᵀ.
        taps = taps.reshape(b, k, k, out * h, w).transpose(2, 3).reshape(b, k, out * h, k * w)
        columns = shifted_interpolation(w, width, k, taps).transpose(1, 2).reshape(k * w, width)
        rows = torch.matmul(taps, columns).reshape(b, k, out, h, width).transpose(1, 2).reshape(b, out, k * h, width)
        # Rows: sum over tap rows and coarse rows, for every fine row.
        return result + torch.matmul(shifted_interpolation(h, height, k, rows).transpose(0, 1).reshape(height, k * h),
                                     rows)


def shifted_interpolation(size_in: int, size_out: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """(k, size_out, size_in): row t is 1-D bilinear upsampling (align_corners=True) read at offset t - k // 2,
    zero where that offset falls outside (a convolution's zero padding); in `like`'s dtype and device."""
    pixels_in, pixels_out = torch.arange(size_in, device=like.device), torch.arange(size_out, device=like.device)
    position = pixels_out + torch.arange(k, device=like.device)[:, None] - k // 2
    inside = (position >= 0) & (position < size_out)
    # (size_in - 1) / (size_out - 1), as tensors so that an export keeps the sizes symbolic; 0 for one pixel.
    source = position.float() * (pixels_in[-1].float() / pixels_out[-1].clamp(min=1).float())
    weights = (1 - (source[..., None] - pixels_in.float()).abs()).clamp(min=0)
    return (weights * inside[..., None]).to(like.dtype)
