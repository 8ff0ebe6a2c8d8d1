"""Local descriptors (§3.2): points on the body and the square crops around them.

``descriptor_points`` turns the 18 keypoints into 18, 31 or 44 points: the keypoints; then the
midpoints of the 13 ``BODY_LIMBS``; then the point a quarter of the way along each limb from its
first joint. A point is valid only when every keypoint it is made from is present.

``crop_regions`` cuts a square of side ``size`` centred on every point out of a batch of images in
one ``torchvision.ops.roi_align`` call, differentiable with respect to the images. The image is
treated as zero outside its frame, with bilinear sampling: a crop whose centre is a half-integer
point (for an even side) or a whole pixel (odd side) reproduces direct slicing exactly.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from .pose import BODY_LIMBS, NUM_KEYPOINTS, visible

DESCRIPTOR_COUNTS = (18, 31, 44)


def descriptor_points(keypoints: torch.Tensor, count: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Descriptor centres from COCO-18 keypoints.

    Args:
        keypoints (`torch.Tensor`): ``(B, 18, 2)`` ``(x, y)`` pixels, negative = missing.
        count (`int`): 18, 31 or 44.

    Returns:
        ``points`` ``(B, count, 2)`` (``-1`` where invalid) and ``valid`` ``(B, count)`` bool.
    """
    if count not in DESCRIPTOR_COUNTS:
        raise ValueError(f"`count` must be one of {DESCRIPTOR_COUNTS}, got {count!r}")
    if not isinstance(keypoints, torch.Tensor) or keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
        shape = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"`keypoints` must be a tensor of shape (B, 18, 2), got {shape}")
    kps = keypoints if torch.is_floating_point(keypoints) else keypoints.float()
    ok = visible(kps)
    points, valid = [kps], [ok]
    if count > 18:
        a = torch.tensor([l[0] for l in BODY_LIMBS], device=kps.device)
        b = torch.tensor([l[1] for l in BODY_LIMBS], device=kps.device)
        pa, pb = kps[:, a], kps[:, b]
        limb_ok = ok[:, a] & ok[:, b]
        fractions = (0.5,) if count == 31 else (0.5, 0.25)
        for t in fractions:
            points.append(pa + t * (pb - pa))
            valid.append(limb_ok)
    points, valid = torch.cat(points, dim=1), torch.cat(valid, dim=1)
    points = torch.where(valid[..., None], points, torch.full_like(points, -1.0))
    return points, valid


def crop_regions(images: torch.Tensor, points: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops of side ``size`` centred on ``points``.

    Args:
        images (`torch.Tensor`): ``(B, C, H, W)``.
        points (`torch.Tensor`): ``(B, N, 2)`` ``(x, y)`` in the images' pixels.
        size (`int`): crop side in pixels (R/8 for the paper's descriptors).

    Returns:
        `torch.Tensor`: ``(B, N, C, size, size)``, zero where a crop leaves the image.
    """
    if images.ndim != 4:
        raise ValueError(f"`images` must be (B, C, H, W), got shape {tuple(images.shape)}")
    if points.ndim != 3 or points.shape[0] != images.shape[0] or points.shape[-1] != 2:
        raise ValueError(f"`points` must be (B, N, 2) with B = {images.shape[0]}, got shape {tuple(points.shape)}")
    if int(size) < 1:
        raise ValueError(f"`size` must be a positive number of pixels, got {size}")
    b, c = images.shape[:2]
    n = points.shape[1]
    # One pixel of zero padding: roi_align replicates the border for samples less than one pixel
    # outside the image; with the pad, every sample outside the frame reads zero.
    padded = F.pad(images, (1, 1, 1, 1))
    pts = points.to(images.dtype) + 1.0
    half = size / 2.0
    # roi_align(aligned=True) puts pixel centres at k + 0.5; ours are at k, hence + 0.5.
    x0 = pts[..., 0] - half + 0.5
    y0 = pts[..., 1] - half + 0.5
    batch_index = torch.arange(b, device=images.device, dtype=images.dtype)[:, None].expand(b, n)
    boxes = torch.stack([batch_index, x0, y0, x0 + size, y0 + size], dim=-1).reshape(b * n, 5)
    crops = roi_align(padded, boxes, output_size=(size, size), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    return crops.reshape(b, n, c, size, size)
