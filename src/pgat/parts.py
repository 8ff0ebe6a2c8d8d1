"""The rigid body parts of a COCO-18 pose, their transforms between two poses, and warps built from them.

A body is cut into ten parts that move rigidly between two poses (Deformable GANs, Siarohin et al. 2018, the
paper's [34]): the head, the torso, and the upper arm, forearm, thigh and shin of each side (`PARTS`). For a pair
of poses each part gets an affine transform from its joints:

- a two-joint part (the limbs, and the head from neck to nose) gets the **similarity** (rotation, uniform scale,
  translation) that carries one joint segment onto the other;
- the torso gets the **least-squares affine** of its four joints (both shoulders, both hips). Seen from the side,
  those four points fall on a line and an affine is not determined across it; then the torso takes the similarity
  of its axis (mid-shoulder to mid-hip) instead.

A part with a joint missing in either pose (or a zero-length segment) has no transform and contributes nothing.

That is the fit of the pose-transfer networks (``fit="joints"``, the default). A garment moved from one photo onto
another person (try-on, `pgat.pipelines.tryon.move_garment`) takes ``fit="body"`` instead: cloth is printed on the
body's surface at the body's scale, so

- a limb stretches along its segment (foreshortening shortens it) but across it only by the ratio of the two
  body units (`body_unit`): a forearm seen end-on is shorter, never thinner;
- the torso is the similarity of its axis (mid-shoulder to mid-hip: its rotation, with mid-shoulder onto
  mid-shoulder) at the body units' ratio. The shoulder and hip widths are left out: they change with raised arms
  and with turning, and a left-right swap between a front and a back view would mirror the shirt.

On SynthHumans' 100 test try-on triples (docs/tryon.md) the rigid warp inside the garment region scores SSIM
0.460 with ``"joints"`` and 0.642 with ``"body"``. The price is a torso that leans towards the camera: its
garment is not foreshortened along the axis.

Each part also has a **soft mask** in a pose: a capsule around the limb segment (the head: around neck to crown),
or a rounded box along the torso, with widths in body units (neck to mid-hip, as SynthHumans draws bodies) so
that masks follow the person's size, not the image's. Hands and feet are part of the forearm and shin masks: on
their own they are too small to help at any stage below 512².

`composite_grid` turns the parts into one sampling grid for a feature map of any size: every pixel of the target
pose takes the transform of the part whose mask is largest there, so a warp is one ``grid_sample``, not one per
part. `warp` applies it; `warp_image` is the training-free part-warp baseline of `pgat evaluate`. Everything is
batched torch, vectorised over batch and parts, in float32 (a bf16 grid would be ~4 px off at 1024²).

Coordinates follow `pgat.pose`: ``(x, y)`` pixels of the image the keypoints belong to, pixel centres at whole
numbers. A feature map of ``h x w`` over an image of ``H x W`` has its pixel ``(i, j)`` centred at image
``x = (j + 0.5) W / w - 0.5``: the ``align_corners=False`` convention of ``grid_sample``, which makes one grid
valid for every feature size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .pose import NUM_KEYPOINTS


@dataclass(frozen=True)
class Part:
    """One rigid body part.

    Args:
        name (`str`): e.g. ``"r_upper_arm"``.
        joints (`Tuple[int, ...]`): COCO-18 indices; two for a segment part (first -> second), four for the torso.
        radius (`float`): half-width of the mask in body units (1 = neck to mid-hip).
        extent (`Tuple[float, float]`): the mask's reach along the part, in fractions of its segment (0 = first
            joint, 1 = second; the torso: 0 = mid-shoulder, 1 = mid-hip).
    """

    name: str
    joints: Tuple[int, ...]
    radius: float
    extent: Tuple[float, float]


# Radii: SynthHumans' drawn half-widths (upper arm 0.095, forearm 0.066, thigh 0.13, shin 0.082, head ~0.2 body
# units), widened for loose sleeves and trousers; the forearm and shin reach past the wrist and ankle to take the
# hand and the foot.
PARTS: Tuple[Part, ...] = (
    Part("head", (1, 0), 0.24, (0.35, 1.7)),
    Part("torso", (2, 5, 8, 11), 0.10, (-0.12, 1.08)),
    Part("r_upper_arm", (2, 3), 0.14, (-0.1, 1.05)),
    Part("r_forearm", (3, 4), 0.11, (0.0, 1.35)),
    Part("l_upper_arm", (5, 6), 0.14, (-0.1, 1.05)),
    Part("l_forearm", (6, 7), 0.11, (0.0, 1.35)),
    Part("r_thigh", (8, 9), 0.18, (-0.05, 1.05)),
    Part("r_shin", (9, 10), 0.13, (0.0, 1.2)),
    Part("l_thigh", (11, 12), 0.18, (-0.05, 1.05)),
    Part("l_shin", (12, 13), 0.13, (0.0, 1.2)),
)
PART_NAMES: Tuple[str, ...] = tuple(p.name for p in PARTS)
NUM_PARTS = len(PARTS)
PART_INDEX = {p.name: i for i, p in enumerate(PARTS)}
TORSO = PART_INDEX["torso"]
# the torso and the arms: where a top is worn (try-on), and how far past the body parts a top may reach, in body
# units. Carrying SynthHumans' top masks from one pose to the other (tests/test_tryon.py, 8 pairs) gave IoU 0.805
# with the target's top at margin 0, 0.775 at 0.05, 0.752 at 0.12 (the try-on's former boxes: 0.781): the part
# radii already allow for loose sleeves, so no margin.
UPPER_BODY_PARTS: Tuple[str, ...] = ("torso", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm")
GARMENT_MARGIN = 0.0
# how much thinner than their masks (drawn for loose sleeves) the arms themselves are, in body units: SynthHumans
# draws upper arms 0.095 and forearms 0.066 units wide, the part masks are 0.14 and 0.11. The *core* of a part
# (its mask grown by this) is where the limb itself is, which `composite_grid(in_front=)` gives priority.
CORE_MARGIN = -0.045
ARM_PARTS: Tuple[str, ...] = ("r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm")
LEG_PARTS: Tuple[str, ...] = ("r_thigh", "r_shin", "l_thigh", "l_shin")
# Lower-body garments (trousers, shorts, skirts) are worn on the thighs and shins, and on the hips between the
# thighs. The hips are not a part of their own (`PARTS`, and with them the part-warped networks' channels, stay
# as they are): they are the lower part of the torso. A bottom garment moves there with the torso's transform (the
# pelvis), and where it can be (the automatic try-on masks) is the torso's mask and the legs' below the waist line,
# `WAIST` of the way down the torso's axis (`part_masks(waist=)`; 0 = mid-shoulder, 1 = mid-hip), so that the top's
# hem above it is not taken. SynthHumans' tops end at 0.88 to 1.02 of the axis. On 100 test triples (both photos,
# the person's pixels within these parts, legs completed by `complete_legs`), the waist line at 0.8 / 0.85 / 0.9 /
# 0.95 / 1.0 took 98.9 / 98.9 / 98.6 / 95.8 / 89.3 % of the bottom garment, and the top made 20 / 15 / 8.6 / 3.4 /
# 0.6 % of what it took: 0.9 keeps nearly all of the bottom for little of the top.
LOWER_BODY_PARTS: Tuple[str, ...] = ("torso",) + LEG_PARTS
WAIST = 0.9
# full-body garments (a top and a bottom, a dress): the upper body's parts and the legs, the whole torso
FULL_BODY_PARTS: Tuple[str, ...] = UPPER_BODY_PARTS + LEG_PARTS
# the garment categories of try-on, each worn on the parts above (the one list the pipeline, SynthHumans' try-on
# triples and the evaluation use)
GARMENT_CATEGORIES: Tuple[str, ...] = ("upper_body", "lower_body", "full_body")
# how a part's transform is fitted to its joints (see the module docstring)
FITS: Tuple[str, ...] = ("joints", "body")

_SEGMENTS = [i for i, p in enumerate(PARTS) if len(p.joints) == 2]
_LOWER = [PART_INDEX[p] for p in LOWER_BODY_PARTS]  # the parts `part_masks(waist=)` cuts
_SEGMENT_JOINTS = torch.tensor([PARTS[i].joints for i in _SEGMENTS])  # (S, 2)
_TORSO_JOINTS = list(PARTS[TORSO].joints)
_RADIUS = torch.tensor([p.radius for p in PARTS])
_EXTENT = torch.tensor([p.extent for p in PARTS])
# canonical lengths in body units (SynthHumans' medians over DeepFashion), to estimate the body unit when the
# torso is not seen: foreshortening only shortens a limb, so the longest estimate wins
_UNIT_SEGMENTS = torch.tensor([(2, 3), (5, 6), (3, 4), (6, 7), (8, 9), (11, 12), (9, 10), (12, 13), (1, 0), (2, 5)])
_UNIT_LENGTHS = torch.tensor([0.56, 0.56, 0.47, 0.47, 0.85, 0.85, 0.82, 0.82, 0.38, 0.42])
_EPS = 1e-6
# a torso whose four joints are this flat (smallest / largest spread) is a side view: its affine is ill-posed
_FLAT_TORSO = 0.08


def _check(keypoints: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(keypoints, torch.Tensor) or keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
        got = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"`{name}` must be a (B, {NUM_KEYPOINTS}, 2) tensor of (x, y) pixels, got {got}")
    return keypoints.float()


def _visible(kps: torch.Tensor) -> torch.Tensor:
    return (kps >= 0).all(-1)


def _similarity(a0: torch.Tensor, b0: torch.Tensor, a1: torch.Tensor, b1: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The similarity carrying segment ``a0 -> b0`` onto ``a1 -> b1`` (``(..., 2)`` each): ``(..., 2, 3)`` matrices
    and whether both segments have a length."""
    d0, d1 = b0 - a0, b1 - a1
    n0 = (d0 * d0).sum(-1)
    ok = (n0 > _EPS) & ((d1 * d1).sum(-1) > _EPS)
    n0 = n0.clamp_min(_EPS)
    # s = d1 / d0 as complex numbers: a rotation by the angle between them, scaled by |d1| / |d0|
    c = (d1[..., 0] * d0[..., 0] + d1[..., 1] * d0[..., 1]) / n0
    s = (d1[..., 1] * d0[..., 0] - d1[..., 0] * d0[..., 1]) / n0
    m = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (..., 2, 2)
    t = a1 - (m @ a0.unsqueeze(-1)).squeeze(-1)
    return torch.cat([m, t.unsqueeze(-1)], -1), ok


def _spread(points: torch.Tensor) -> torch.Tensor:
    """Smallest over largest singular value of centred ``(..., N, 2)`` points: 0 on a line."""
    c = points - points.mean(-2, keepdim=True)
    sv = torch.linalg.svdvals(c)
    return sv[..., -1] / sv[..., 0].clamp_min(_EPS)


def _stretch(a0: torch.Tensor, b0: torch.Tensor, a1: torch.Tensor, b1: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
    """The affine carrying segment ``a0 -> b0`` onto ``a1 -> b1`` (``(..., 2)`` each) that scales along the segment by
    the ratio of their lengths and across it by ``across`` (``(...)``): ``(..., 2, 3)`` matrices."""
    d0, d1 = b0 - a0, b1 - a1
    l0, l1 = d0.norm(dim=-1).clamp_min(_EPS), d1.norm(dim=-1).clamp_min(_EPS)
    e0, e1 = d0 / l0[..., None], d1 / l1[..., None]
    n0 = torch.stack([-e0[..., 1], e0[..., 0]], -1)
    n1 = torch.stack([-e1[..., 1], e1[..., 0]], -1)
    # M = (l1 / l0) e1 e0^T + across n1 n0^T: e0 -> e1 scaled along, n0 -> n1 scaled across
    m = (l1 / l0)[..., None, None] * e1[..., :, None] * e0[..., None, :] + across[..., None, None] * n1[..., :, None] * n0[..., None, :]
    t = a1 - (m @ a0.unsqueeze(-1)).squeeze(-1)
    return torch.cat([m, t.unsqueeze(-1)], -1)


def _check_fit(fit: str) -> None:
    if fit not in FITS:
        raise ValueError(f"`fit` must be one of {FITS}, got {fit!r}")


def part_transforms(source: torch.Tensor, target: torch.Tensor, fit: str = "joints") -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Each part's affine transform from ``source`` keypoints to ``target`` keypoints.

    Args:
        source (`torch.Tensor`), target (`torch.Tensor`): ``(B, 18, 2)`` poses in pixels; -1 = missing.
        fit (`str`, *optional*, defaults to ``"joints"``): ``"joints"``, the similarity of each segment and the
            least-squares affine of the torso's four joints; ``"body"``, a garment's fit: limbs stretched along
            their segment and scaled across by the body units' ratio, the torso the similarity of its axis at that
            ratio (module docstring).

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: ``(B, P, 2, 3)`` float32 matrices ``A`` with ``A @ (x, y, 1)`` the
        target-pose position of the source-pose point ``(x, y)`` of that part, and a ``(B, P)`` bool mask of the parts
        that have one (every joint present in both poses, non-degenerate). Invalid parts hold the identity.

    To warp an image *from* pose ``S`` *to* pose ``T`` with ``grid_sample`` (which looks up, for every output pixel,
    where to read), use the transforms from ``T`` to ``S``: `composite_grid` does.
    """
    src, dst = _check(source, "source"), _check(target, "target")
    _check_fit(fit)
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"`source` and `target` must hold the same number of poses, got {src.shape[0]} and {dst.shape[0]}")
    b = src.shape[0]
    ok_s, ok_d = _visible(src), _visible(dst)
    theta = torch.eye(2, 3, device=src.device).repeat(b, NUM_PARTS, 1, 1)
    valid = torch.zeros(b, NUM_PARTS, dtype=torch.bool, device=src.device)

    # 1. two-joint parts: similarities, all segments at once
    j = _SEGMENT_JOINTS.to(src.device)
    m, ok = _similarity(src[:, j[:, 0]], src[:, j[:, 1]], dst[:, j[:, 0]], dst[:, j[:, 1]])
    ok &= (ok_s[:, j] & ok_d[:, j]).all(-1)
    if fit == "body":
        ratio = body_unit(dst) / body_unit(src).clamp_min(_EPS)  # (B,): 0 for an empty pose, whose parts are invalid
        m = _stretch(src[:, j[:, 0]], src[:, j[:, 1]], dst[:, j[:, 0]], dst[:, j[:, 1]], ratio[:, None].expand(-1, len(_SEGMENTS)))
    theta[:, _SEGMENTS] = m
    valid[:, _SEGMENTS] = ok

    # 2. the torso: least-squares affine of its four joints, min ||[x 1] A^T - y||^2 by the normal equations
    xs, ys = src[:, _TORSO_JOINTS], dst[:, _TORSO_JOINTS]  # (B, 4, 2)
    ok = (ok_s[:, _TORSO_JOINTS] & ok_d[:, _TORSO_JOINTS]).all(-1)
    flat = (_spread(xs) < _FLAT_TORSO) | (_spread(ys) < _FLAT_TORSO)
    a = torch.cat([xs, torch.ones_like(xs[..., :1])], -1)  # (B, 4, 3)
    ata = a.transpose(1, 2) @ a + _EPS * torch.eye(3, device=src.device)
    affine = torch.linalg.solve(ata, a.transpose(1, 2) @ ys).transpose(1, 2)  # (B, 2, 3)
    # a side view: the similarity of the torso axis, mid-shoulder -> mid-hip
    axis, axis_ok = _similarity((xs[:, 0] + xs[:, 1]) / 2, (xs[:, 2] + xs[:, 3]) / 2, (ys[:, 0] + ys[:, 1]) / 2, (ys[:, 2] + ys[:, 3]) / 2)
    theta[:, TORSO] = torch.where(flat[:, None, None], axis, affine)
    valid[:, TORSO] = ok & (~flat | axis_ok)
    if fit == "body":
        # the axis' similarity at the body units' ratio: mid-shoulder onto mid-shoulder, the axis' direction onto
        # the other's, scaled by `ratio` both ways (a target axis of the source's length times the ratio)
        top0, top1 = (xs[:, 0] + xs[:, 1]) / 2, (ys[:, 0] + ys[:, 1]) / 2
        d0, d1 = (xs[:, 2] + xs[:, 3]) / 2 - top0, (ys[:, 2] + ys[:, 3]) / 2 - top1
        l0, l1 = d0.norm(dim=-1, keepdim=True), d1.norm(dim=-1, keepdim=True)
        end1 = top1 + d1 / l1.clamp_min(_EPS) * l0 * ratio[:, None]
        theta[:, TORSO] = _stretch(top0, top0 + d0, top1, end1, ratio)
        valid[:, TORSO] = ok & (l0[:, 0] > _EPS) & (l1[:, 0] > _EPS) & (ratio > 0)
    theta = torch.where(valid[..., None, None], theta, torch.eye(2, 3, device=src.device).expand_as(theta))
    return theta, valid


def body_unit(keypoints: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the body unit of each pose in pixels: neck to mid-hip, or where the torso is foreshortened or not
    seen, the longest estimate from the limbs' canonical lengths (SynthHumans' proportions). 0 for an empty pose."""
    kps = _check(keypoints, "keypoints")
    ok = _visible(kps)
    seg = _UNIT_SEGMENTS.to(kps.device)
    lengths = (kps[:, seg[:, 1]] - kps[:, seg[:, 0]]).norm(dim=-1) / _UNIT_LENGTHS.to(kps.device)
    from_limbs = torch.where(ok[:, seg].all(-1), lengths, torch.zeros_like(lengths)).amax(-1)
    hips_ok = ok[:, 8] & ok[:, 11] & ok[:, 1]
    torso = ((kps[:, 8] + kps[:, 11]) / 2 - kps[:, 1]).norm(dim=-1)
    return torch.where(hips_ok, torch.maximum(torso, 0.75 * from_limbs), from_limbs)


def complete_legs(keypoints: torch.Tensor) -> torch.Tensor:
    """``(B, 18, 2)``: the poses with missing knees and ankles put where straight legs would have them, for the
    lower-body garments of try-on: a photo cut off at the thighs still has thighs, and their parts need both joints.

    A missing knee of a present hip goes halfway to a present ankle, or else one thigh length (0.85 body units,
    `body_unit`) down the torso's axis (neck to mid-hip); a missing ankle of a present (or completed) knee goes one
    shin length (0.82) on along the thigh. That is SynthHumans' own completion of a figure it draws (it draws the
    whole body, also out of the frame), so on SynthHumans it is exact; on a real photo it is a guess, and the legs
    it guesses are straight. Poses without both hips, or without the neck, are returned as they are.
    """
    kps = _check(keypoints, "keypoints").clone()
    ok = _visible(kps)
    unit = body_unit(kps)
    can = ok[:, 1] & ok[:, 8] & ok[:, 11] & (unit > 0)
    down = (kps[:, 8] + kps[:, 11]) / 2 - kps[:, 1]
    down = down / down.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):
        guess = torch.where(ok[:, ankle, None], (kps[:, hip] + kps[:, ankle]) / 2, kps[:, hip] + down * (_UNIT_LENGTHS[4] * unit)[:, None])
        fill = can & ~ok[:, knee]
        kps[:, knee] = torch.where(fill[:, None], guess, kps[:, knee])
        has_knee = ok[:, knee] | fill
        thigh = kps[:, knee] - kps[:, hip]
        along = thigh / thigh.norm(dim=-1, keepdim=True).clamp_min(_EPS)
        fill = can & has_knee & ~ok[:, ankle]
        kps[:, ankle] = torch.where(fill[:, None], kps[:, knee] + along * (_UNIT_LENGTHS[6] * unit)[:, None], kps[:, ankle])
    return kps


def _pixel_axes(size: Tuple[int, int], image_size: Tuple[int, int], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Image coordinates of the pixel centres of an ``h x w`` map over an ``H x W`` image: a ``(1, w)`` row of x and
    an ``(h, 1)`` column of y."""
    h, w = size
    ih, iw = image_size
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (iw / w) - 0.5
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (ih / h) - 0.5
    return xs[None], ys[:, None]


def _sizes(size, image_size) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    size = (size, size) if isinstance(size, int) else tuple(size)
    image_size = size if image_size is None else ((image_size, image_size) if isinstance(image_size, int) else tuple(image_size))
    if len(size) != 2 or len(image_size) != 2 or min(*size, *image_size) < 1:
        raise ValueError(f"`size` and `image_size` must be positive ints or (height, width), got {size} and {image_size}")
    return size, image_size


def part_masks(
    keypoints: torch.Tensor,
    size: Union[int, Tuple[int, int]],
    image_size: Union[int, Tuple[int, int], None] = None,
    softness: float = 0.04,
    margin: float = 0.0,
    waist: Optional[float] = None,
) -> torch.Tensor:
    r"""Soft masks of the parts of a pose.

    Args:
        keypoints (`torch.Tensor`): ``(B, 18, 2)`` in pixels of an ``image_size`` image; -1 = missing.
        size (`int` or `(height, width)`): the masks' grid (a feature map's size).
        image_size (`int` or `(height, width)`, *optional*): the keypoints' image; defaults to ``size``.
        softness (`float`, *optional*, defaults to 0.04): width of the edge ramp in body units (at least one pixel
            of the grid).
        margin (`float`, *optional*, defaults to 0): grow every mask by this many body units (a loose garment
            reaches past the body: try-on uses `GARMENT_MARGIN`).
        waist (`float`, *optional*): cut the masks of the torso and the legs to what lies below the waist line,
            across the torso's axis this fraction of the way down it (0 = mid-shoulder, 1 = mid-hip; the cut is a
            ramp as soft as the edges): a lower-body garment's hips (`WAIST`, `LOWER_BODY_PARTS`). Default: no cut.

    Returns:
        `torch.Tensor`: ``(B, P, h, w)`` float32 in [0, 1], ``PARTS`` order: 1 inside a part, 0 outside, a linear
        ramp across its edge; all zero for a part with a joint missing.
    """
    kps = _check(keypoints, "keypoints")
    (h, w), image_size = _sizes(size, image_size)
    device = kps.device
    ok = _visible(kps)
    unit = body_unit(kps).clamp_min(1.0)[:, None, None, None]  # (B, 1, 1, 1)
    radius, extent = _RADIUS.to(device), _EXTENT.to(device)
    b = kps.shape[0]

    # every part as a segment a -> b with a reach along it; the torso's runs mid-shoulder -> mid-hip
    j = _SEGMENT_JOINTS.to(device)
    a = torch.empty(b, NUM_PARTS, 2, device=device)
    e = torch.empty_like(a)
    a[:, _SEGMENTS], e[:, _SEGMENTS] = kps[:, j[:, 0]], kps[:, j[:, 1]]
    t = kps[:, _TORSO_JOINTS]
    a[:, TORSO], e[:, TORSO] = (t[:, 0] + t[:, 1]) / 2, (t[:, 2] + t[:, 3]) / 2
    present = torch.zeros(b, NUM_PARTS, dtype=torch.bool, device=device)
    present[:, _SEGMENTS] = ok[:, j].all(-1)
    present[:, TORSO] = ok[:, _TORSO_JOINTS].all(-1)

    d = e - a
    start = a + extent[:, 0, None] * d
    seg = (extent[:, 1, None] - extent[:, 0, None]) * d  # (B, P, 2)
    # separable in x and y: (B, P, 1, w) and (B, P, h, 1) pieces, full (B, P, h, w) maps only where they combine
    xs, ys = _pixel_axes((h, w), image_size, device)
    rx = xs - start[..., 0, None, None]  # (B, P, 1, w)
    ry = ys - start[..., 1, None, None]  # (B, P, h, 1)
    sx, sy = seg[..., 0, None, None], seg[..., 1, None, None]
    length2 = (sx * sx + sy * sy).clamp_min(_EPS)
    frac = ((rx * sx + ry * sy) / length2).clamp(0, 1)
    dist = ((rx - frac * sx) ** 2 + (ry - frac * sy) ** 2).sqrt()  # distance to the segment: a capsule

    half = radius[None, :, None, None] * unit
    # the torso: as wide as its shoulders and hips across its axis (at least 0.26 units, a side view), plus the radius
    n = d[:, TORSO] / d[:, TORSO].norm(dim=-1, keepdim=True).clamp_min(_EPS)
    across = torch.stack([-n[:, 1], n[:, 0]], -1)
    width = torch.maximum(((t[:, 1] - t[:, 0]) * across).sum(-1).abs(), ((t[:, 3] - t[:, 2]) * across).sum(-1).abs()) / 2
    torso_half = torch.maximum(width, 0.13 * unit.flatten()) + PARTS[TORSO].radius * unit.flatten()
    # a box along the axis: the distance across it beyond the half-width, or along it beyond the ends
    tx, ty = rx[:, TORSO], ry[:, TORSO]  # (B, 1, w), (B, h, 1)
    off_axis = (tx * across[:, 0, None, None] + ty * across[:, 1, None, None]).abs() - torso_half[:, None, None]
    length = length2[:, TORSO].sqrt()
    along = (tx * sx[:, TORSO] + ty * sy[:, TORSO]) / length
    beyond = torch.maximum(-along, along - length)
    dist = dist - half
    dist[:, TORSO] = torch.maximum(off_axis, beyond)
    dist = dist - margin * unit
    if waist is not None:
        # above the waist line (across the axis, `waist` of the way down it) is outside, for the torso and the legs
        # (a thigh's rounded end reaches above the hip); the margin does not move it
        axis = length / (extent[TORSO, 1] - extent[TORSO, 0])  # mid-shoulder to mid-hip, px; `along` starts at extent[0]
        above = ((float(waist) - extent[TORSO, 0]) * axis - along)[:, None]  # (B, 1, h, w)
        dist[:, _LOWER] = torch.maximum(dist[:, _LOWER], above)
    # a linear ramp across the edge: exactly 1 inside, exactly 0 beyond, antialiased over >= 1 pixel of the grid
    ramp = (softness * unit).clamp_min(max(image_size[0] / h, image_size[1] / w))
    masks = (0.5 - dist / ramp).clamp(0, 1)
    return masks * present[:, :, None, None]


def composite_grid(
    reference_keypoints: torch.Tensor,
    target_keypoints: torch.Tensor,
    size: Union[int, Tuple[int, int]],
    image_size: Union[int, Tuple[int, int], None] = None,
    parts: Optional[Tuple[str, ...]] = None,
    margin: float = 0.0,
    reference_size: Union[int, Tuple[int, int], None] = None,
    fit: str = "joints",
    in_front: Optional[Tuple[str, ...]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""One sampling grid that moves every part of the reference to the target pose.

    Args:
        reference_keypoints (`torch.Tensor`), target_keypoints (`torch.Tensor`): ``(B, 18, 2)`` pixels of an
            ``image_size`` image (the same frame for both, unless ``reference_size`` says otherwise); -1 = missing.
        size (`int` or `(height, width)`): the grid's size (the feature map it will sample).
        image_size (`int` or `(height, width)`, *optional*): the keypoints' image; defaults to ``size``.
        parts (`Tuple[str, ...]`, *optional*): only these `PART_NAMES` (e.g. `UPPER_BODY_PARTS`); default all.
        margin (`float`, *optional*, defaults to 0): grow the part masks by this many body units (`part_masks`).
        reference_size (`int` or `(height, width)`, *optional*): the reference's own image when it is another
            picture than the target's (try-on: a garment photo onto a person photo); ``reference_keypoints`` are
            then in its pixels and the grid samples it. Defaults to ``image_size``.
        fit (`str`, *optional*, defaults to ``"joints"``): how each part's transform is fitted (`part_transforms`).
        in_front (`Tuple[str, ...]`, *optional*): parts that take the pixels of their *core* (the mask grown by
            `CORE_MARGIN`: the limb itself, not the room left for a sleeve) from every other part, e.g.
            `ARM_PARTS`: where the target's arm lies over its torso, the arm is in front. That is what a seen
            arm means: keypoints behind the body are not seen, and a part with a joint missing has no transform.
            By default the part of largest mask wins, and among equal masks the first in `PARTS` (the torso
            before the arms).

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: the ``(B, h, w, 2)`` float32 grid for
        ``grid_sample(..., align_corners=False)``, and the ``(B, P, h, w)`` part masks in the target pose, zero for
        parts without a transform (and parts not asked for). Each pixel follows the part whose mask is largest
        there; where no part reaches, the grid is the identity (the masks say so: their maximum is the coverage).
    """
    ref, tgt = _check(reference_keypoints, "reference_keypoints"), _check(target_keypoints, "target_keypoints")
    (h, w), (ih, iw) = _sizes(size, image_size)
    if ref.shape[0] not in (1, tgt.shape[0]):
        raise ValueError(f"`reference_keypoints` must hold 1 or {tgt.shape[0]} poses (one per target), got {ref.shape[0]}")
    ref = ref.expand_as(tgt)
    theta, valid = part_transforms(tgt, ref, fit=fit)  # target -> reference: where each output pixel reads
    if parts is not None:
        unknown = [p for p in parts if p not in PART_INDEX]
        if unknown:
            raise ValueError(f"`parts` must name some of {list(PART_NAMES)}, got unknown {unknown}")
        keep = torch.zeros(NUM_PARTS, dtype=torch.bool, device=tgt.device)
        keep[[PART_INDEX[p] for p in parts]] = True
        valid = valid & keep
    masks = part_masks(tgt, (h, w), (ih, iw), margin=margin) * valid[:, :, None, None]
    # the part of largest mask at every pixel (argmax over a non-contiguous dim is slow: one max, both results)
    coverage, best = masks.max(1)  # (B, h, w)
    if in_front:
        unknown = [p for p in in_front if p not in PART_INDEX]
        if unknown:
            raise ValueError(f"`in_front` must name some of {list(PART_NAMES)}, got unknown {unknown}")
        front = [PART_INDEX[p] for p in in_front]
        core = part_masks(tgt, (h, w), (ih, iw), margin=margin + CORE_MARGIN)[:, front] * valid[:, front, None, None]
        score = masks.clone()
        score[:, front] += (core > 0.5).float()  # above every mask (<= 1) inside the cores
        best = score.max(1).indices
    # identity where nothing covers, so that a pixel outside every part reads itself
    theta = torch.where((coverage > 0).flatten(1)[:, :, None], theta.flatten(2).gather(1, best.flatten(1)[..., None].expand(-1, -1, 6)),
                        torch.eye(2, 3, device=tgt.device).flatten())
    m = theta.view(-1, h, w, 6).unbind(-1)  # a b tx / c d ty, per pixel
    xs, ys = _pixel_axes((h, w), (ih, iw), tgt.device)
    q = torch.stack([m[0] * xs + m[1] * ys + m[2], m[3] * xs + m[4] * ys + m[5]], -1)  # (B, h, w, 2)
    # grid_sample, align_corners=False: image pixel centre x sits at (2 x + 1) / W - 1, W the sampled image's width
    _, (rh, rw) = _sizes((ih, iw), reference_size if reference_size is not None else (ih, iw))
    scale = torch.tensor([rw, rh], device=tgt.device, dtype=torch.float32)
    return (2 * q + 1) / scale - 1, masks


def warp(
    features: torch.Tensor,
    reference_keypoints: torch.Tensor,
    target_keypoints: torch.Tensor,
    image_size: Union[int, Tuple[int, int], None] = None,
    parts: Optional[Tuple[str, ...]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Warp a feature map (or image) of the reference, part by part, to the target pose.

    Args:
        features (`torch.Tensor`): ``(B or 1, C, h, w)`` over the reference image.
        reference_keypoints (`torch.Tensor`), target_keypoints (`torch.Tensor`): ``(B or 1, 18, 2)`` and
            ``(B, 18, 2)`` pixels of an ``image_size`` image.
        image_size (`int` or `(height, width)`, *optional*): the keypoints' image; defaults to the features' size.
        parts (`Tuple[str, ...]`, *optional*): only these parts; default all.

    Returns:
        `Tuple[torch.Tensor, torch.Tensor]`: the warped ``(B, C, h, w)`` features (in their dtype, sampled in
        float32), zero where no part reaches, and the ``(B, P, h, w)`` target part masks. Gradients flow to the
        features; the keypoints are data.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"`features` must be a (B, C, h, w) tensor, got {got}")
    b = target_keypoints.shape[0] if isinstance(target_keypoints, torch.Tensor) else None
    if b is not None and features.shape[0] not in (1, b):
        raise ValueError(f"`features` must hold 1 or {b} references (one per target pose), got {features.shape[0]}")
    size = tuple(features.shape[-2:])
    grid, masks = composite_grid(reference_keypoints, target_keypoints, size, image_size or size, parts)
    src = features.float().expand(grid.shape[0], *features.shape[1:])
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    coverage = masks.amax(1, keepdim=True)
    return (out * coverage).to(features.dtype), masks


def warp_image(
    reference: torch.Tensor,
    reference_keypoints: torch.Tensor,
    target_keypoints: torch.Tensor,
) -> torch.Tensor:
    r"""The part-warp baseline: the reference image moved part by part to the target pose, with no training.

    Args:
        reference (`torch.Tensor`): ``(B, 3, H, W)`` images in [-1, 1]; the keypoints are in their pixels.
        reference_keypoints (`torch.Tensor`), target_keypoints (`torch.Tensor`): ``(B, 18, 2)``; -1 = missing.

    Returns:
        `torch.Tensor`: ``(B, 3, H, W)`` in [-1, 1]: the warped parts blended by their coverage over a flat
        background, the median colour of the reference outside its own part masks (where no person is). What a
        rigid warp cannot know (the back of a turned body, a hidden arm, crossing parts) it gets wrong, which is
        what a trained network must beat.
    """
    if not isinstance(reference, torch.Tensor) or reference.ndim != 4:
        got = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        raise ValueError(f"`reference` must be a (B, C, H, W) tensor in [-1, 1], got {got}")
    size = tuple(reference.shape[-2:])
    n = reference_keypoints.shape[0] if isinstance(reference_keypoints, torch.Tensor) else 1
    if reference.shape[0] == 1 and n > 1:  # one picture with its pose given once per target
        reference = reference.expand(n, *reference.shape[1:])
    warped, masks = warp(reference, reference_keypoints, target_keypoints, size)
    coverage = masks.amax(1, keepdim=True)
    person = part_masks(reference_keypoints.float(), size).amax(1, keepdim=True) > 0.05
    flat = reference.float().flatten(2)
    outside = (~person).flatten(2).expand_as(flat)
    # median over the pixels outside the person (all pixels if the masks cover everything)
    filled = torch.where(outside, flat, torch.full_like(flat, float("nan")))
    background = filled.nanmedian(-1).values
    background = torch.where(torch.isnan(background), flat.median(-1).values, background)[..., None, None]
    # warped is already multiplied by the coverage
    return (warped.float() + (1 - coverage) * background).clamp(-1, 1).to(reference.dtype)
