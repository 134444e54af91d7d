"""Float32 precision on CUDA: true float32 by default, TF32 only when asked for."""
from __future__ import annotations

import torch


def set_float32_precision(allow_tf32: bool) -> str:
    """Set float32 convolutions and matmuls on CUDA to IEEE float32 or TF32; returns a label for logs.

    torch 2.14 lets cuDNN convolutions use TF32 by default on Ampere and later GPUs: ~10 mantissa
    bits, which LTM's exp(w·x − |x|²/2) amplifies. The authors' numbers come from GPUs without TF32.
    """
    mode = "tf32" if allow_tf32 else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    torch.backends.cudnn.rnn.fp32_precision = mode
    return "float32 with TF32 convolutions and matmuls" if allow_tf32 else "float32 (TF32 off)"
