"""STM teacher (Space-Time Memory network) with the official interface and parameter names.

Used only for distillation; its weights come from the official `STM_weights.pth`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

from utils.image_io import IMAGENET_MEAN, IMAGENET_STD


class ResBlock(nn.Module):
    """x + conv2(relu(conv1(relu(x)))) with 3×3 convs (in = out everywhere in STM)."""

    def __init__(self, in_ch: int, out_ch: int | None = None) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.downsample = None if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        return (x if self.downsample is None else self.downsample(x)) + r


class _Encoder(nn.Module):
    """ResNet-50 up to layer 3 (stride 16), with the input normalisation as buffers."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.res2, self.res3, self.res4 = net.layer1, net.layer2, net.layer3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _trunk(self, stem: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c1 = self.relu(self.bn1(stem))
        r2 = self.res2(self.maxpool(c1))
        r3 = self.res3(r2)
        r4 = self.res4(r3)
        return r4, r3, r2, c1


class Encoder_M(_Encoder):  # noqa: N801 - official name
    """Memory encoder: frame + object mask + other-objects mask."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1_m = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self.conv1_o = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        # Registration order of the official model (conv1_m, conv1_o before the ResNet parts).
        for name in ("conv1", "bn1", "relu", "maxpool", "res2", "res3", "res4"):
            self._modules[name] = self._modules.pop(name)

    def forward(self, frame: torch.Tensor, mask: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = (frame - self.mean) / self.std
        r4, r3, r2, c1 = self._trunk(self.conv1(f) + self.conv1_m(mask) + self.conv1_o(other))
        return r4, r3, r2, c1, f


class Encoder_Q(_Encoder):  # noqa: N801 - official name
    """Query encoder: the frame alone."""

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = (frame - self.mean) / self.std
        r4, r3, r2, c1 = self._trunk(self.conv1(f))
        return r4, r3, r2, c1, f


class KeyValue(nn.Module):
    """3×3 convs to a key and a value map."""

    def __init__(self, in_ch: int, key_ch: int, value_ch: int) -> None:
        super().__init__()
        self.Key = nn.Conv2d(in_ch, key_ch, 3, padding=1)
        self.Value = nn.Conv2d(in_ch, value_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Key(x), self.Value(x)


class Memory(nn.Module):
    """Space-time memory read: softmax over all memory positions, weighted sum of values."""

    def forward(self, m_key: torch.Tensor, m_value: torch.Tensor, q_key: torch.Tensor,
                q_value: torch.Tensor) -> torch.Tensor:
        b, key_ch, t, h, w = m_key.shape
        affinity = torch.bmm(m_key.reshape(b, key_ch, t * h * w).transpose(1, 2), q_key.reshape(b, key_ch, h * w))
        p = F.softmax(affinity / math.sqrt(key_ch), dim=1)
        read = torch.bmm(m_value.reshape(b, m_value.shape[1], t * h * w), p).view(b, -1, h, w)
        return torch.cat([read, q_value], dim=1)


class Refine(nn.Module):
    """Skip-feature fusion: ResFS(convFS(f)) + upsampled coarser map, then ResMM."""

    def __init__(self, in_ch: int, width: int) -> None:
        super().__init__()
        self.convFS = nn.Conv2d(in_ch, width, 3, padding=1)
        self.ResFS = ResBlock(width, width)
        self.ResMM = ResBlock(width, width)

    def forward(self, f: torch.Tensor, pm: torch.Tensor) -> torch.Tensor:
        s = self.ResFS(self.convFS(f))
        return self.ResMM(s + F.interpolate(pm, scale_factor=2, mode="bilinear", align_corners=False))


class Decoder(nn.Module):
    """Memory read (stride 16) → refined with r3, r2 → 2-channel logits at input size."""

    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.convFM = nn.Conv2d(1024, width, 3, padding=1)
        self.ResMM = ResBlock(width, width)
        self.RF3 = Refine(512, width)
        self.RF2 = Refine(256, width)
        self.pred2 = nn.Conv2d(width, 2, 3, padding=1)

    def forward(self, r4: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        m4 = self.ResMM(self.convFM(r4))
        m2 = self.RF2(r2, self.RF3(r3, m4))
        p2 = self.pred2(F.relu(m2))
        return F.interpolate(p2, scale_factor=4, mode="bilinear", align_corners=False)


def pad_to_multiple(tensors: list[torch.Tensor], divisor: int = 16) -> tuple[list[torch.Tensor], tuple[int, ...]]:
    """Zero-pad H, W to multiples of `divisor`, the smaller half before; returns (tensors, (l, r, t, b))."""
    h, w = tensors[0].shape[-2:]
    pad_h, pad_w = (-h) % divisor, (-w) % divisor
    pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return [F.pad(t, pad) for t in tensors], pad


class STM(nn.Module):
    """The official STM: `memorize(frame, masks, num_objects)` and `segment(frame, keys, values, num_objects)`."""

    def __init__(self) -> None:
        super().__init__()
        self.Encoder_M = Encoder_M()
        self.Encoder_Q = Encoder_Q()
        self.KV_M_r4 = KeyValue(1024, 128, 512)
        self.KV_Q_r4 = KeyValue(1024, 128, 512)
        self.Memory = Memory()
        self.Decoder = Decoder(256)

    def memorize(self, frame: torch.Tensor, masks: torch.Tensor,
                 num_objects: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame (1,3,H,W) and masks (1,K,H,W) → keys (1,K,128,1,h,w), values (1,K,512,1,h,w)."""
        num_objects = int(num_objects[0] if torch.is_tensor(num_objects) and num_objects.dim() else num_objects)
        k = masks.shape[1]
        (frame, masks), _ = pad_to_multiple([frame, masks.float()])
        frames, objects, others = [], [], []
        for o in range(1, num_objects + 1):
            frames.append(frame)
            objects.append(masks[:, o:o + 1])
            rest = torch.cat([masks[:, 1:o], masks[:, o + 1:num_objects + 1]], dim=1)
            others.append(rest.sum(dim=1, keepdim=True).clamp(0, 1))
        r4 = self.Encoder_M(torch.cat(frames), torch.cat(objects), torch.cat(others))[0]
        keys, values = self.KV_M_r4(r4)
        padded = []
        for mem in (keys, values):
            slots = mem.new_zeros(1, k, mem.shape[1], 1, mem.shape[2], mem.shape[3])
            slots[0, 1:num_objects + 1, :, 0] = mem
            padded.append(slots)
        return padded[0], padded[1]

    def segment(self, frame: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                num_objects: int | torch.Tensor) -> torch.Tensor:
        """Frame (1,3,H,W) with memory (1,K,C,T,h,w) → soft-aggregated logits (1,K,H,W)."""
        num_objects = int(num_objects[0] if torch.is_tensor(num_objects) and num_objects.dim() else num_objects)
        k = keys.shape[1]
        (frame,), pad = pad_to_multiple([frame])
        r4, r3, r2, _, _ = self.Encoder_Q(frame)
        q_key, q_value = self.KV_Q_r4(r4)
        expand = lambda t: t.expand(num_objects, -1, -1, -1)  # noqa: E731
        read = self.Memory(keys[0, 1:num_objects + 1], values[0, 1:num_objects + 1], expand(q_key), expand(q_value))
        logits = self.Decoder(read, expand(r3), expand(r2))
        probs = F.softmax(logits, dim=1)[:, 1]
        em = logits.new_zeros(1, k, *probs.shape[-2:])
        em[0, 0] = torch.prod(1 - probs, dim=0)
        em[0, 1:num_objects + 1] = probs
        em = em.clamp(1e-7, 1 - 1e-7)
        logit = torch.log(em / (1 - em))
        left, right, top, bottom = pad
        return logit[:, :, top:logit.shape[2] - bottom, left:logit.shape[3] - right]

    def forward(self, *args):
        """`segment` when the second argument is a memory (more than 4 dims), else `memorize`."""
        return self.segment(*args) if args[1].dim() > 4 else self.memorize(*args)
