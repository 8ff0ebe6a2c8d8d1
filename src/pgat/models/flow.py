"""AppearanceFlowModel: the try-on warper of the paper's fig. 9 (``../DESIGN.md`` §1, virtual try-on).

It looks at a garment (its pixels and its mask) and at the region the garment must cover on the target
person, and predicts where every output pixel should take its colour from in the garment image: a 2-D
flow field. ``warp`` then moves the garment with bilinear sampling (``grid_sample``), so the network
never has to paint the garment's texture, only to say where it goes.

Layout (``block_out_channels = (c0, c1, ..., cn)``)::

    garment (3) ⊕ garment mask (1) ⊕ target mask (1)
      conv_in         3x3 conv, 5 -> c0
      down.0          block c0 -> c0       ── skip ──┐
      avg-pool                                       │
      ...                                            │
      down.n          block c(n-1) -> cn   (the coarsest grid: a large receptive field for large moves)
      nearest up-sample, ⊕ skip                      │
      up.(n-1)        block cn + c(n-1) -> c(n-1)    │
      ...                                            │
      up.0            block c1 + c0 -> c0  ──────────┘
      conv_out        3x3 conv, c0 -> 2  (zero-initialised: the initial flow is the identity)

A block is [3x3 conv -> LeakyReLU(0.2)] x 2; no normalisation, so a batch of one at inference behaves
as in training. The flow is in normalised coordinates (``grid_sample``'s [-1, 1] with
``align_corners=False``), which makes it independent of the image size: a flow predicted at the
training size ``sample_size`` is resized and used at any other size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from ..pose import CANONICAL_POSE, CANONICAL_POSE_SOURCE, NUM_KEYPOINTS  # noqa: F401  (the source is re-exported)


@dataclass
class AppearanceFlowModelOutput(BaseOutput):
    """Output of `AppearanceFlowModel`.

    Args:
        flow (`torch.Tensor` of shape `(B, 2, H, W)`): offsets ``(dx, dy)`` in normalised coordinates added
            to the identity sampling grid.
        warped_garment (`torch.Tensor` of shape `(B, 3, H, W)`): the garment moved by the flow, in [-1, 1].
        warped_mask (`torch.Tensor` of shape `(B, 1, H, W)`): the garment mask moved by the flow, in [0, 1].
    """

    flow: torch.Tensor
    warped_garment: torch.Tensor
    warped_mask: torch.Tensor


def identity_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``(1, H, W, 2)`` sampling grid of ``grid_sample(..., align_corners=False)`` that returns its input:
    pixel ``j`` of ``W`` sits at ``(2 j + 1) / W - 1``."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    r"""Move ``image`` by ``flow``: output pixel ``p`` takes the (bilinear) colour of ``image`` at ``p + flow(p)``.

    Args:
        image (`torch.Tensor`): ``(B, C, H, W)``.
        flow (`torch.Tensor`): ``(B, 2, H, W)`` offsets ``(dx, dy)`` in normalised coordinates (2 / W per pixel
            in x, 2 / H in y). A flow of another size than ``image`` is an error: resize it first (it is in
            normalised units, so resizing needs no rescaling of its values).

    Returns:
        `torch.Tensor`: ``(B, C, H, W)``; samples from outside the image are zero (``padding_mode="zeros"``).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise ValueError(f"`image` must be a (B, C, H, W) tensor, got {tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    if not isinstance(flow, torch.Tensor) or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"`flow` must be a (B, 2, H, W) tensor, got {tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__}")
    b, _, h, w = image.shape
    if flow.shape[0] != b or flow.shape[2:] != image.shape[2:]:
        raise ValueError(f"`flow` must have shape ({b}, 2, {h}, {w}) to warp an image of shape {tuple(image.shape)}, got {tuple(flow.shape)}")
    grid = identity_grid(h, w, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(image.to(flow.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def default_canonical_pose() -> List[List[float]]:
    """The try-on's canonical pose (`pgat.pose.CANONICAL_POSE`), 18 ``(x, y)`` pixels of a 256 square, as a config
    value."""
    return [list(p) for p in CANONICAL_POSE]


class FlowBlock(nn.Module):
    """[3x3 conv -> LeakyReLU] x 2."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))))


class AppearanceFlowModel(ModelMixin, ConfigMixin):
    r"""Predicts the 2-D appearance flow that moves a garment onto a target garment region.

    Args:
        block_out_channels (`Tuple[int]`, *optional*, defaults to `(32, 64, 128, 256, 256)`): widths from the
            finest to the coarsest level; ``len - 1`` average-pool halvings, so inputs must be divisible by
            ``2 ** (len - 1)``.
        in_channels (`int`, *optional*, defaults to 5): garment RGB + garment mask + target mask.
        negative_slope (`float`, *optional*, defaults to 0.2): LeakyReLU slope.
        sample_size (`int`, *optional*, defaults to 256): side of the square images the network was trained on;
            `PGATTryOnPipeline` runs it at this size and resizes the flow to its own.
        canonical_pose (`List[List[float]]`, *optional*): the fixed frontal pose of the try-on pipeline, 18
            ``(x, y)`` pixels of a 256 square (-1 = missing); shipped with the weights so every user of a
            repository puts people into the same pose. `train/flow.py` writes `default_canonical_pose()`.

    The last convolution starts at zero, so an untrained model predicts the identity flow (the garment unmoved).
    """

    @register_to_config
    def __init__(
        self,
        block_out_channels: Tuple[int, ...] = (32, 64, 128, 256, 256),
        in_channels: int = 5,
        negative_slope: float = 0.2,
        sample_size: int = 256,
        canonical_pose: Optional[List[List[float]]] = None,
    ):
        super().__init__()
        widths = list(block_out_channels)
        if len(widths) < 1 or any(not isinstance(c, int) or c < 1 for c in widths):
            raise ValueError(f"`block_out_channels` must be a non-empty sequence of positive integers, got {block_out_channels!r}")
        if in_channels != 5:
            raise ValueError(f"`in_channels` must be 5 (garment RGB, garment mask, target mask), got {in_channels}")
        factor = 2 ** (len(widths) - 1)
        if not isinstance(sample_size, int) or sample_size < factor or sample_size % factor:
            raise ValueError(f"`sample_size` must be a positive multiple of {factor} (2 ** (len(block_out_channels) - 1)), got {sample_size!r}")
        if canonical_pose is not None:
            pose = torch.as_tensor(canonical_pose, dtype=torch.float32)
            if pose.shape != (NUM_KEYPOINTS, 2) or not torch.isfinite(pose).all():
                raise ValueError(f"`canonical_pose` must be 18 (x, y) pairs in pixels of a 256 square, got shape {tuple(pose.shape)}")

        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        prev = widths[0]
        for c in widths:
            self.down.append(FlowBlock(prev, c, negative_slope))
            prev = c
        self.up = nn.ModuleList([FlowBlock(widths[i + 1] + widths[i], widths[i], negative_slope) for i in range(len(widths) - 1)])
        self.conv_out = nn.Conv2d(widths[0], 2, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        # zero flow at initialisation: training starts from "leave the garment where it is"
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def check_inputs(self, garment: torch.Tensor, garment_mask: torch.Tensor, target_mask: torch.Tensor) -> None:
        if not isinstance(garment, torch.Tensor) or garment.ndim != 4 or garment.shape[1] != 3:
            got = tuple(garment.shape) if isinstance(garment, torch.Tensor) else type(garment).__name__
            raise ValueError(f"`garment` must be a (B, 3, H, W) tensor in [-1, 1], got {got}")
        b, _, h, w = garment.shape
        f = self.downsample_factor
        if h % f or w % f:
            raise ValueError(f"`garment` height and width must be multiples of {f} for this model, got {h}x{w}")
        for name, m in (("garment_mask", garment_mask), ("target_mask", target_mask)):
            if not isinstance(m, torch.Tensor) or tuple(m.shape) != (b, 1, h, w):
                got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise ValueError(f"`{name}` must be a ({b}, 1, {h}, {w}) tensor in [0, 1] like `garment`, got {got}")

    def forward(
        self, garment: torch.Tensor, garment_mask: torch.Tensor, target_mask: torch.Tensor, return_dict: bool = True
    ) -> Union[AppearanceFlowModelOutput, Tuple[torch.Tensor, ...]]:
        r"""
        Args:
            garment (`torch.Tensor`): ``(B, 3, H, W)`` garment pixels in [-1, 1] (0 outside the garment is usual).
            garment_mask (`torch.Tensor`): ``(B, 1, H, W)`` the garment's region in ``garment``, in [0, 1].
            target_mask (`torch.Tensor`): ``(B, 1, H, W)`` the region it must cover on the target person, in [0, 1].
            return_dict (`bool`, *optional*, defaults to `True`): return an `AppearanceFlowModelOutput`.

        Returns:
            `AppearanceFlowModelOutput` or ``(flow, warped_garment, warped_mask)``.
        """
        self.check_inputs(garment, garment_mask, target_mask)
        dtype = self.conv_in.weight.dtype
        x = self.conv_in(torch.cat([garment, garment_mask, target_mask], dim=1).to(dtype))

        # 1. encode, keeping every level but the coarsest as a skip
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                skips.append(x)
                x = F.avg_pool2d(x, 2)
            x = block(x)

        # 2. decode back to full size
        for block in reversed(self.up):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skips.pop()], dim=1))

        # 3. flow, and the garment and its mask moved by it
        flow = self.conv_out(x)
        warped = warp(torch.cat([garment, garment_mask], dim=1).to(flow.dtype), flow)
        out = (flow, warped[:, :3], warped[:, 3:])
        if not return_dict:
            return out
        return AppearanceFlowModelOutput(*out)


def total_variation(flow: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring flow vectors: the smoothness term of the flow loss."""
    dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean()
    dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean()
    return dx + dy


def mask_iou(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of two ``(B, 1, H, W)`` soft masks thresholded at ``threshold``, per sample ``(B,)``;
    1 when both are empty."""
    a, b = a > threshold, b > threshold
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


__all__ = ["AppearanceFlowModel", "AppearanceFlowModelOutput", "warp", "default_canonical_pose", "identity_grid", "total_variation", "mask_iou"]
