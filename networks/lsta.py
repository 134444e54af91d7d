"""LSTA: DeepLabv3+ features → long (LTM) and short (STA) temporal attention → refine head."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from networks.acon import AconC
from networks.aic import AIC
from networks.deeplab import DeepLab
from networks.ltm import LTM
from networks.sta import STA

KEY_DIM = 16          # width of the projected keys and queries
RANDOM_FEATURES = 8   # LTM's random features (m)


@dataclass(frozen=True)
class ModelArgs:
    """The settings an LSTA's weights depend on; checkpoints record them (`model_args`)."""
    backbone: str = "resnet101"
    output_stride: int = 16
    aspp_dim: int = 256
    shortcut_dim: int = 48
    embed_dim: int = 128
    freeze_bn: bool = True

    # The Config key of each field.
    CONFIG_KEYS = {"backbone": "MODEL_BACKBONE", "output_stride": "MODEL_OUTPUT_STRIDE",
                   "aspp_dim": "MODEL_ASPP_OUTDIM", "shortcut_dim": "MODEL_SHORTCUT_DIM",
                   "embed_dim": "MODEL_SEMANTIC_EMBEDDING_DIM", "freeze_bn": "MODEL_FREEZE_BN"}

    @classmethod
    def from_config(cls, cfg: Any) -> "ModelArgs":
        """The MODEL_* settings of a Config (or of a checkpoint's saved config dict)."""
        get = cfg.get if isinstance(cfg, dict) else lambda key, default: getattr(cfg, key, default)
        defaults = cls()
        return cls(**{f.name: get(cls.CONFIG_KEYS[f.name], getattr(defaults, f.name)) for f in fields(cls)})

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ModelArgs":
        """The args a checkpoint recorded (`asdict` of an earlier ModelArgs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def to_record(self) -> dict[str, Any]:
        """A plain dict for checkpoints."""
        return asdict(self)

    def describe(self) -> str:
        """One line naming the architecture, e.g. 'resnet18, ASPP 64, shortcut 16, head 32, frozen BN'."""
        return (f"{self.backbone}, ASPP {self.aspp_dim}, shortcut {self.shortcut_dim}, head {self.embed_dim}, "
                f"{'frozen' if self.freeze_bn else 'trainable'} BN")


@dataclass
class FrameCache:
    """What a frame contributes to inference, computed once from its features.

    As a query it needs its two query projections; as a memory frame its projected key (for STA)
    and its LTM sums. 48 channels instead of the 256 of its features.
    """
    query: torch.Tensor        # projection_curr (B,16,h,w)
    query_patch: torch.Tensor  # projection_curr_patch (B,16,h,w)
    key: torch.Tensor          # projection_m (B,16,h,w)
    sums: torch.Tensor         # LTM S (B,8)
    moments: torch.Tensor      # LTM M (B,16,8)

    def split(self) -> list["FrameCache"]:
        """One FrameCache per batch entry (each with batch size 1)."""
        parts = [t.split(1) for t in (self.query, self.query_patch, self.key, self.sums, self.moments)]
        return [FrameCache(*fields) for fields in zip(*parts)]


class LSTA(nn.Module):
    """The authors' model, with their parameter names; `LSTA()` fits `best_LSTA.pth`.

    `train_encoder` makes the encoder trainable; `encoder_grad` back-propagates through the frozen
    encoder without training it (the authors' training step).
    """

    def __init__(self, args: ModelArgs = ModelArgs(), train_encoder: bool = False, encoder_grad: bool = False) -> None:
        super().__init__()
        if args.output_stride != 16:
            raise ValueError(f"output stride {args.output_stride}: only 16 is implemented (the released weights')")
        self.args = args
        feat_ch, width = args.aspp_dim, args.embed_dim
        self.feature_extractor = DeepLab(args.backbone, feat_ch, args.shortcut_dim, args.freeze_bn)
        self.projection_m = nn.Conv2d(feat_ch, KEY_DIM, 1)
        self.projection_curr = nn.Conv2d(feat_ch, KEY_DIM, 1)
        self.projection_curr_patch = nn.Conv2d(feat_ch, KEY_DIM, 1)
        self.STA = STA(KEY_DIM)
        # proj_prev is unused in the forward: no gradient ever reaches it (DDP needs to know).
        self.STA.proj_prev.requires_grad_(False)
        self.LTM = LTM(KEY_DIM, RANDOM_FEATURES)
        # BatchNorm2d here becomes SyncBatchNorm under DDP (same state_dict names).
        self.refine = nn.Sequential(nn.Conv2d(3 * KEY_DIM, width, 3, padding=1), nn.BatchNorm2d(width),
                                    AconC(width), AIC(width, width))
        self.pred = nn.Conv2d(width, 2, 3, padding=1)
        # The frozen encoder runs without gradients unless it is trained (MODEL_TRAIN_ENCODER) or the
        # caller back-propagates through it (`encoder_grad`: the authors' training does).
        self.encoder_grad = train_encoder or encoder_grad
        self.feature_extractor.requires_grad_(self.encoder_grad)

    @classmethod
    def from_config(cls, cfg: Any, encoder_grad: bool = False) -> "LSTA":
        """The model a Config describes (MODEL_* keys; MODEL_TRAIN_ENCODER)."""
        return cls(ModelArgs.from_config(cfg), cfg.MODEL_TRAIN_ENCODER, encoder_grad)

    def train_encoder_parts(self, names: list[str]) -> None:
        """Make encoder submodules trainable (`aspp`, `decoder`: parts no pretrained file initialised)."""
        for name in names:
            getattr(self.feature_extractor, name).requires_grad_(True)
        self.encoder_grad = self.encoder_grad or bool(names)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised BGR images (B,3,H,W) → stride-4 features (B,256,⌈H/4⌉,⌈W/4⌉)."""
        with torch.set_grad_enabled(self.encoder_grad and torch.is_grad_enabled()):
            return self.feature_extractor(images)

    def head(self, ltm_out: torch.Tensor, sta_out: torch.Tensor) -> torch.Tensor:
        """Refine head on cat[LTM (32 ch), STA (16 ch)] → logits (B,2,h,w)."""
        return self.pred(self.refine(torch.cat([ltm_out, sta_out], dim=1)))

    def segment(self, query: torch.Tensor, long_memory: list[torch.Tensor],
                short_memory: torch.Tensor) -> torch.Tensor:
        """Features of the query, the LTM frames and the STA frame → logits (B,2,h,w)."""
        long_keys = [self.projection_m(f) for f in long_memory]
        ltm_out = self.LTM(self.projection_curr(query), long_keys)
        sta_out = self.STA(self.projection_curr_patch(query), self.projection_m(short_memory))
        return self.head(ltm_out, sta_out)

    def cache_frames(self, features: torch.Tensor) -> FrameCache:
        """Features (N,256,h,w) → their projections and LTM sums, computed once per frame."""
        key = self.projection_m(features)
        sums, moments = self.LTM.memory_sums(key)
        return FrameCache(self.projection_curr(features), self.projection_curr_patch(features), key, sums, moments)

    def segment_cached(self, query: FrameCache, long_memory: list[FrameCache], short_memory: FrameCache,
                       head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """`segment` from cached frames: the same logits, without re-projecting memory frames.

        `head`: another implementation of `self.head` (the ONNX Runtime backend's).
        """
        sums = torch.stack([m.sums for m in long_memory]).sum(0)
        moments = torch.stack([m.moments for m in long_memory]).sum(0)
        ltm_out = self.LTM.read(query.query, sums, moments)
        return (head or self.head)(ltm_out, self.STA(query.query_patch, short_memory.key))

    def forward(self, ref_img: torch.Tensor, prev_img: torch.Tensor,
                curr_imgs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Training forward: one logits map (B,2,H,W) per current frame, memory sliding per frame."""
        batch, size = ref_img.shape[0], ref_img.shape[-2:]
        features = self.encode(torch.cat([ref_img, prev_img, *curr_imgs])).split(batch)
        keys = self.projection_m(torch.cat(features[:-1])).split(batch)  # the last frame is never memory
        memory = [0, 1]  # indices of the two memory frames: LTM sees both, STA the newer
        outputs = []
        for index in range(2, len(features)):
            query = features[index]
            ltm_out = self.LTM(self.projection_curr(query), [keys[memory[0]], keys[memory[1]]])
            sta_out = self.STA(self.projection_curr_patch(query), keys[memory[1]])
            # One head pass per frame: refine.1's batch statistics are per current frame.
            logits = self.head(ltm_out, sta_out)
            outputs.append(F.interpolate(logits, size=size, mode="bilinear", align_corners=True))
            memory = [memory[1], index]
        return outputs
