"""The authors' way of computing, as we read their code: the oracle tests compare against, the baseline benchmarks time.

Not used to segment: VideoSegmenter computes the same function faster (each frame encoded and
projected once, STA by shifted views, the decoder's first convolution before its upsampling).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from networks.lsta import LSTA


def authors_sta(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """STA as the authors' code computes it: unfold 8×8 patches at stride 4, bmm, softmax, bmm, fold."""
    b, d, h, w = query.shape
    q = F.unfold(query, 8, stride=4).view(b, d, 64, -1).permute(0, 3, 2, 1)  # (B,P,64,d)
    k = F.unfold(key, 8, stride=4).view(b, d, 64, -1).permute(0, 3, 2, 1)
    out = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1) @ k
    return F.fold(out.permute(0, 3, 2, 1).reshape(b, d * 64, -1), (h, w), 8, stride=4)


def authors_encode(model: LSTA, images: torch.Tensor) -> torch.Tensor:
    """The encoder as the authors' code computes it: the decoder upsamples the ASPP map, concatenates, convolves."""
    deeplab, decoder = model.feature_extractor, model.feature_extractor.decoder
    x, low_level = deeplab.backbone(images)
    low_level = decoder.relu(decoder.bn1(decoder.conv1(low_level)))
    x = F.interpolate(deeplab.aspp(x), size=low_level.shape[2:], mode="bilinear", align_corners=True)
    first = decoder.last_conv[0]
    x = F.conv2d(torch.cat([x, low_level], dim=1), first.weight, first.bias, padding=first.padding)
    for layer in list(decoder.last_conv)[1:]:
        x = layer(x)
    return x


def authors_segment(model: LSTA, query: torch.Tensor, long_memory: list[torch.Tensor],
                    short_memory: torch.Tensor) -> torch.Tensor:
    """One query frame's logits the authors' way: every memory frame re-projected, their STA."""
    long_keys = [model.projection_m(f) for f in long_memory]
    ltm_out = model.LTM(model.projection_curr(query), long_keys)
    return model.head(ltm_out, authors_sta(model.projection_curr_patch(query), model.projection_m(short_memory)))


def authors_schedule(model: LSTA, feats: list[torch.Tensor], size: int) -> dict[int, torch.Tensor]:
    """Every frame's logits under the authors' window schedule, transcribed literally (uncached step).

    n < size: the features padded with the last one, frame t predicted with query index t; else the
    first window predicts frames 0..size-1, then each frame t ≥ size with the window ending at t.
    """
    n = len(feats)

    def step(window: list[torch.Tensor], i: int) -> torch.Tensor:
        others = window[:i] + window[i + 1:] if i >= 0 else window[:-1]
        return model.segment(window[i], others[:-1], others[-1])

    if n < size:
        window = feats + [feats[-1]] * (size - n)
        return {t: step(window, t) for t in range(n)}
    out = {t: step(feats[:size], t) for t in range(size)}
    for t in range(size, n):
        out[t] = step(feats[t - size + 1:t + 1], -1)
    return out
