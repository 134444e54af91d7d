"""The STM teacher as the authors feed it during training (or as STM was designed to be fed)."""
from __future__ import annotations

import torch

from networks.stm import STM
from networks.weights import load_stm_teacher
from utils.checkpoint import CheckpointError
from utils.image_io import IMAGENET_MEAN, IMAGENET_STD


class StmTeacher:
    """Per current frame: memorise the previous frame with its mask, segment the current frame.

    Default (the authors' signal, docs/quirks.md): the student's normalised BGR tensors go in
    as they are (STM normalises them again), the mask channel gets the id map, and STM runs in
    train mode. TRAIN_DISTILLATION_TEACHER_AS_DESIGNED: [0,1] RGB, a binary mask, eval mode.
    """

    def __init__(self, path: str, as_designed: bool, device: torch.device, model: STM | None = None) -> None:
        """The STM teacher of the weights at `path` (MODEL_DISTILLATION_PRETRAINED_TEACHER), or `model` as given;
        `as_designed`: TRAIN_DISTILLATION_TEACHER_AS_DESIGNED."""
        self.as_designed = as_designed
        if model is None:
            model = STM()
            try:
                load_stm_teacher(model, path)
            except CheckpointError as err:
                raise CheckpointError(f"{err}; distillation needs the official STM weights at {path} "
                                      f"(see pretrained/README.md); to train without them, pass "
                                      f"--opts MODEL_DISTILLATION False") from None
        self.model = model.to(device).requires_grad_(False)
        self.model.train(not self.as_designed)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._mean, self._std = mean, std

    def _frame(self, image: torch.Tensor) -> torch.Tensor:
        if not self.as_designed:
            return image
        return (image * self._std + self._mean).flip(1)  # normalised BGR → [0,1] RGB

    @torch.no_grad()
    def logits(self, prev_img: torch.Tensor, prev_mask: torch.Tensor, curr_img: torch.Tensor) -> torch.Tensor:
        """Teacher logits (B,2,H,W) for the current frames, one batch entry at a time.

        prev_mask (B,1,H,W): the id map (default) or the binary label (as designed).
        """
        out = []
        for b in range(prev_img.shape[0]):
            m = prev_mask[b:b + 1].float()
            keys, values = self.model.memorize(self._frame(prev_img[b:b + 1].float()), torch.cat([1 - m, m], 1), 1)
            out.append(self.model.segment(self._frame(curr_img[b:b + 1].float()), keys, values, 1))
        return torch.cat(out)
