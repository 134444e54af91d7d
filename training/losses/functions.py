"""The loss functions: OHEM cross-entropy and the distillation KL term per sample, as the authors define them; batch IoU.

The authors trained one sample per GPU, so each of their losses covered one sample. Computing
them per sample keeps that meaning whatever the split of a batch over passes and processes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OHEM_THRESHOLD = -math.log(0.7)
IGNORE_LABEL = 255


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample (B,): mean CE over pixels whose loss exceeds −ln 0.7, or over the hardest ⌊pixels/16⌋ if fewer do.

    logits (B,2,H,W), labels (B,H,W) long; label 255 is ignored (it never occurs in binary targets).
    """
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="none").flatten(1)
    valid = labels.flatten(1) != IGNORE_LABEL
    return torch.stack([_ohem_mean(sample[keep]) for sample, keep in zip(loss, valid)])


def _ohem_mean(loss: torch.Tensor) -> torch.Tensor:
    min_kept = loss.numel() // 16
    hard = loss[loss > OHEM_THRESHOLD]
    if hard.numel() >= min_kept and hard.numel() > 0:
        return hard.mean()
    return torch.topk(loss, max(min_kept, 1)).values.mean()


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per sample (B,): KLDivLoss(reduction='mean')(log_softmax(student), softmax(teacher)) over its elements."""
    pointwise = F.kl_div(F.log_softmax(student_logits.float(), dim=1), F.softmax(teacher_logits.float(), dim=1),
                         reduction="none")
    return pointwise.flatten(1).mean(1)


def batch_iou(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """IoU of the argmax foreground against binary labels over the whole batch (1 when both empty)."""
    pred = logits.argmax(dim=1).bool()
    target = labels.bool()
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union
