"""Training losses: OHEM cross-entropy and the distillation KL term, as the authors define them."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OHEM_THRESHOLD = -math.log(0.7)
IGNORE_LABEL = 255


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over the pixels whose loss exceeds −ln 0.7, or over the hardest ⌊pixels/16⌋ if fewer do.

    logits (B,2,H,W), labels (B,H,W) long; label 255 is ignored (it never occurs in binary targets).
    """
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="none").flatten()
    loss = loss[labels.flatten() != IGNORE_LABEL]
    min_kept = loss.numel() // 16
    hard = loss[loss > OHEM_THRESHOLD]
    if hard.numel() >= min_kept and hard.numel() > 0:
        return hard.mean()
    return torch.topk(loss, max(min_kept, 1)).values.mean()


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KLDivLoss(reduction='mean')(log_softmax(student), softmax(teacher)): the mean over every element."""
    pointwise = F.kl_div(F.log_softmax(student_logits.float(), dim=1), F.softmax(teacher_logits.float(), dim=1),
                         reduction="none")
    return pointwise.mean()


def batch_iou(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """IoU of the argmax foreground against binary labels over the whole batch (1 when both empty)."""
    pred = logits.argmax(dim=1).bool()
    target = labels.bool()
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union
