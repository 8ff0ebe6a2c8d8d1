"""The keypoint convention of PGAT, in one place.

Every pose in the project is 18 COCO-18 / OpenPose body keypoints (``COCO18_NAMES`` order) stored as
``(x, y)`` pixel coordinates of the image they belong to: origin top-left, pixel centres at whole numbers
(the pixel in row ``i``, column ``j`` has its centre at ``x = j, y = i``). A missing point is ``(-1, -1)``;
any point with a negative coordinate is treated as missing.

This module converts from and to the formats poses come in (OpenPose JSON in COCO-18 or BODY_25,
the DeepFashion annotation CSV of the PATN/GFLA test code), builds the Gaussian pose maps of Eq. (1),
draws skeletons, and maps images with their keypoints to the square the model works on (letterbox).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

NUM_KEYPOINTS = 18

COCO18_NAMES: Tuple[str, ...] = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)
KEYPOINT_INDEX: Dict[str, int] = {name: i for i, name in enumerate(COCO18_NAMES)}

# The 13 body limbs of the paper's local descriptors (§3.2), each (first joint, second joint); the
# quarter point of a limb is measured from its first joint.
BODY_LIMBS: Tuple[Tuple[int, int], ...] = (
    (1, 2), (2, 3), (3, 4),        # neck-r_shoulder, r_shoulder-r_elbow, r_elbow-r_wrist
    (1, 5), (5, 6), (6, 7),        # neck-l_shoulder, l_shoulder-l_elbow, l_elbow-l_wrist
    (1, 8), (8, 9), (9, 10),       # neck-r_hip, r_hip-r_knee, r_knee-r_ankle
    (1, 11), (11, 12), (12, 13),   # neck-l_hip, l_hip-l_knee, l_knee-l_ankle
    (1, 0),                        # neck-nose
)

# Index of each keypoint's mirror image: a horizontal flip turns the right arm into the left one.
FLIP_INDEX: Tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)

# BODY_25 -> COCO-18: BODY_25 inserts MidHip at 8 and appends six foot points (19-24).
BODY25_TO_COCO18: Tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# The 17 limbs OpenPose draws for COCO-18 and their colours, so drawn skeletons look like the
# condition images users know from OpenPose and ControlNet.
OPENPOSE_LIMBS: Tuple[Tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
OPENPOSE_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def visible(keypoints: Union[np.ndarray, torch.Tensor]):
    """Boolean mask of present keypoints: both coordinates non-negative (works for numpy and torch)."""
    return (keypoints[..., 0] >= 0) & (keypoints[..., 1] >= 0)


def check_keypoints(keypoints: ArrayLike, name: str = "keypoints", allow_confidence: bool = False) -> np.ndarray:
    """Return ``keypoints`` as a float32 ``(18, 2)`` (or ``(18, 3)``) array, or raise a `pgat.inputs.InputError`
    (a ``ValueError``) that names the argument, what it received and what was expected."""
    from .inputs import numeric_keypoints

    return numeric_keypoints(keypoints, name, (2, 3) if allow_confidence else (2,))


# ---------------------------------------------------------------------------------------------
# Eq. (1): Gaussian pose maps
# ---------------------------------------------------------------------------------------------


def heatmaps(keypoints: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Gaussian pose maps, Eq. (1): ``P(x; k) = exp(-||x - u(k)||^2 / (2 sigma^2))``.

    Args:
        keypoints (`torch.Tensor`): float ``(B, K, 2)`` in ``(x, y)`` pixels of a ``height x width`` grid,
            pixel centres at whole numbers. A point with a negative coordinate is missing.
        height (`int`), width (`int`): size of the maps.
        sigma (`float`): standard deviation in pixels of this grid.

    Returns:
        `torch.Tensor`: ``(B, K, height, width)`` in the keypoints' dtype; a map is 1 exactly at its
        keypoint's pixel and all zero for a missing point.
    """
    if not isinstance(keypoints, torch.Tensor):
        raise ValueError(f"`keypoints` must be a torch.Tensor of shape (B, K, 2), got {type(keypoints).__name__}")
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f"`keypoints` must have shape (B, K, 2), got {tuple(keypoints.shape)}")
    if not torch.is_floating_point(keypoints):
        keypoints = keypoints.float()
    if keypoints.device.type != "meta" and not torch.isfinite(keypoints).all():
        raise ValueError("`keypoints` contains NaN or infinite coordinates; mark a missing point as (-1, -1)")
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma}")
    device, dtype = keypoints.device, keypoints.dtype
    xs = torch.arange(width, device=device, dtype=dtype)
    ys = torch.arange(height, device=device, dtype=dtype)
    # separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2)
    gx = torch.exp(-((xs[None, None, :] - keypoints[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((ys[None, None, :] - keypoints[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, K, H)
    maps = gy[..., :, None] * gx[..., None, :]
    return maps * visible(keypoints)[..., None, None].to(dtype)


# ---------------------------------------------------------------------------------------------
# OpenPose JSON
# ---------------------------------------------------------------------------------------------


def _person_area(kps: np.ndarray) -> float:
    ok = kps[:, 2] > 0
    if ok.sum() < 2:
        return float(ok.sum())
    pts = kps[ok, :2]
    return float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])) + 2.0  # + 2: any person beats one lone point


def _people_from_openpose(data: Mapping[str, Any], source: str) -> list:
    """Every person of parsed OpenPose JSON, ``(18, 3)`` each (`pgat.inputs.openpose_people`: the one reader, whose
    errors name ``source``, the file, or ``pose`` for a dict)."""
    from .inputs import openpose_people

    return openpose_people(data, source.strip("'") if source != "(dict)" else "pose")


def load_openpose_json(path_or_dict: Union[str, os.PathLike, Mapping[str, Any]]) -> Tuple[Mapping[str, Any], str]:
    """The parsed content of an OpenPose JSON file (or the dict itself) and how to name it in errors."""
    if isinstance(path_or_dict, Mapping):
        return path_or_dict, "(dict)"
    source = f"'{os.fspath(path_or_dict)}'"
    try:
        with open(path_or_dict, "r", encoding="utf-8") as f:
            return json.load(f), source
    except FileNotFoundError:
        raise FileNotFoundError(f"OpenPose JSON file {source} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"OpenPose JSON file {source} is not valid JSON: {e}") from None


def read_openpose_json(path_or_dict: Union[str, os.PathLike, Mapping[str, Any]], return_all: bool = False):
    """Read an OpenPose JSON file (or an already parsed dict) into COCO-18 keypoints.

    Accepts COCO-18 (54 values) and BODY_25 (75 values, MidHip and feet dropped) people, under the
    ``pose_keypoints_2d`` key or the older ``pose_keypoints``. When there are several people, the one
    with the largest keypoint bounding box is returned.

    Args:
        path_or_dict (`str`, `os.PathLike` or `dict`): the file or its parsed content.
        return_all (`bool`, *optional*, defaults to `False`): return every person, largest first.

    Returns:
        `np.ndarray`: float32 ``(18, 3)`` as ``(x, y, confidence)``; a confidence-0 point becomes
        ``(-1, -1, 0)``. With ``return_all``, a list of such arrays.
    """
    data, source = load_openpose_json(path_or_dict)
    people = _people_from_openpose(data, source)
    if not people:
        raise ValueError(f"OpenPose JSON {source} has no people (empty 'people' list): no pose to use")
    people.sort(key=_person_area, reverse=True)
    return people if return_all else people[0]


def write_openpose_json(
    keypoints: ArrayLike,
    path: Optional[Union[str, os.PathLike]] = None,
    canvas_size: Optional[Tuple[int, int]] = None,
) -> Dict[str, Any]:
    """Write COCO-18 keypoints as OpenPose JSON (one person, ``pose_keypoints_2d``).

    Args:
        keypoints (`np.ndarray`): ``(18, 2)`` (confidence 1 for present points) or ``(18, 3)``.
        path (`str`, *optional*): where to write; the dict is returned either way.
        canvas_size (`(width, height)`, *optional*): stored as ``canvas_width`` / ``canvas_height``
            (the ControlNet convention) so that a reader can map the pose into another frame.

    Missing points are written as OpenPose writes them: ``0, 0, 0``.
    """
    arr = check_keypoints(keypoints, "keypoints", allow_confidence=True)
    if arr.shape[1] == 2:
        arr = np.concatenate([arr, visible(arr)[:, None].astype(np.float32)], axis=1)
    arr = arr.copy()
    arr[~visible(arr) | (arr[:, 2] <= 0)] = 0.0
    data: Dict[str, Any] = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [round(float(v), 3) for v in arr.reshape(-1)]}]}
    if canvas_size is not None:
        data["canvas_width"], data["canvas_height"] = int(canvas_size[0]), int(canvas_size[1])
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
    return data


# ---------------------------------------------------------------------------------------------
# DeepFashion annotation CSV (PATN / GFLA layout)
# ---------------------------------------------------------------------------------------------

# The try-on's canonical pose (paper fig. 9): a real frontal, full-body, arms-down DeepFashion test pose, the
# OpenPose estimate of `CANONICAL_POSE_SOURCE` in its 256x256 photo frame, chosen among the rows with all 18 points
# for left/right symmetry, a centred neck and a tall figure. Arms hang a little away from the torso, so sleeves and
# torso do not overlap. Kept here as numbers (tests/test_tryon.py checks them against the shipped annotation file),
# so that no network has to read a dataset to know it.
CANONICAL_POSE_SOURCE = "fashionMENTees_Tanksid0000678701_4full.jpg"
CANONICAL_POSE: Tuple[Tuple[float, float], ...] = (
    (127.0, 27.0), (129.0, 57.0),
    (106.0, 56.0), (99.0, 90.0), (98.0, 122.0),
    (151.0, 57.0), (158.0, 89.0), (159.0, 122.0),
    (114.0, 129.0), (112.0, 178.0), (111.0, 227.0),
    (142.0, 130.0), (145.0, 179.0), (148.0, 227.0),
    (122.0, 22.0), (131.0, 22.0), (116.0, 25.0), (138.0, 25.0),
)
CANONICAL_FRAME = 256  # `CANONICAL_POSE` is in pixels of a square of this side


def canonical_pose(size: int = CANONICAL_FRAME) -> np.ndarray:
    """`CANONICAL_POSE` as ``(18, 2)`` float32 pixels of a ``size`` square (pixel-centre convention)."""
    kps = np.asarray(CANONICAL_POSE, np.float32)
    return ((kps + 0.5) * (size / CANONICAL_FRAME) - 0.5).astype(np.float32)


DEEPFASHION_FRAMES = {"256x176": 40, "256x256": 0}


def read_deepfashion_annotations(path: Union[str, os.PathLike], frame: str = "256x176") -> Dict[str, np.ndarray]:
    """Read a DeepFashion annotation CSV (``name:keypoints_y:keypoints_x``, values in (y, x) order).

    Args:
        path (`str`): e.g. ``fasion-resize-annotation-test.csv``.
        frame (`str`, *optional*, defaults to ``"256x176"``): the image frame of the returned keypoints:
            ``"256x256"`` as annotated, or ``"256x176"`` (the usual crop: x - 40).

    Returns:
        `dict`: image name -> float32 ``(18, 2)`` ``(x, y)``; -1 where missing (rows with every joint
        missing are kept, all -1).
    """
    if frame not in DEEPFASHION_FRAMES:
        raise ValueError(f"`frame` must be one of {sorted(DEEPFASHION_FRAMES)}, got {frame!r}")
    shift = DEEPFASHION_FRAMES[frame]
    out: Dict[str, np.ndarray] = {}
    with open(path, "r", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=":")
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["name", "keypoints_y", "keypoints_x"]:
            raise ValueError(f"DeepFashion annotation file '{path}' must start with the header 'name:keypoints_y:keypoints_x', got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 3:
                raise ValueError(f"'{path}' line {lineno}: expected 3 ':'-separated fields, got {len(row)}")
            name = row[0].strip()
            try:
                ys = np.asarray(json.loads(row[1]), dtype=np.float32)
                xs = np.asarray(json.loads(row[2]), dtype=np.float32)
            except (json.JSONDecodeError, ValueError, TypeError):
                raise ValueError(f"'{path}' line {lineno} ({name}): keypoints must be JSON lists of numbers") from None
            if ys.shape != (18,) or xs.shape != (18,):
                raise ValueError(f"'{path}' line {lineno} ({name}): expected 18 y and 18 x values, got {ys.size} and {xs.size}")
            missing = (xs < 0) | (ys < 0)
            kps = np.stack([xs - shift, ys], axis=1)
            kps[missing] = -1.0
            out[name] = kps
    return out


# ---------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------


def draw_skeleton(
    image: Union[Image.Image, np.ndarray, Tuple[int, int]],
    keypoints: ArrayLike,
    thickness: Optional[int] = None,
    alpha: float = 0.6,
):
    """Draw a COCO-18 skeleton in OpenPose colours.

    Args:
        image (`PIL.Image`, `np.ndarray` or `(height, width)`): the picture to draw on (not modified),
            or a size for a black canvas, as OpenPose condition images are.
        keypoints (`np.ndarray`): ``(18, 2)`` or ``(18, 3)`` in the image's pixels; missing points are skipped.
        thickness (`int`, *optional*): limb width; defaults to ~1/64 of the image side.
        alpha (`float`, *optional*, defaults to 0.6): limb opacity (OpenPose blends its limbs at 0.6).

    Returns:
        The same type as ``image`` (a PIL image for a size).
    """
    kps = check_keypoints(keypoints, "keypoints", allow_confidence=True)
    as_numpy = isinstance(image, np.ndarray)
    if isinstance(image, tuple):
        base = Image.new("RGB", (int(image[1]), int(image[0])), (0, 0, 0))
    elif as_numpy:
        base = Image.fromarray(np.ascontiguousarray(image).astype(np.uint8)).convert("RGB")
    elif isinstance(image, Image.Image):
        base = image.convert("RGB")
    else:
        raise ValueError(f"`image` must be a PIL image, an (H, W, 3) uint8 array or a (height, width) tuple, got {type(image).__name__}")
    w, h = base.size
    t = thickness or max(2, round(max(w, h) / 64))
    ok = visible(kps) if kps.shape[1] == 2 else (visible(kps) & (kps[:, 2] > 0))
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for (a, b), color in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS):
        if ok[a] and ok[b]:
            draw.line([tuple(kps[a, :2]), tuple(kps[b, :2])], fill=color + (int(255 * alpha),), width=t)
    out = Image.alpha_composite(base.convert("RGBA"), layer)
    draw = ImageDraw.Draw(out)
    r = max(2, t * 0.7)
    for i in range(NUM_KEYPOINTS):
        if ok[i]:
            x, y = kps[i, :2]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=OPENPOSE_COLORS[i] + (255,))
    out = out.convert("RGB")
    return np.asarray(out) if as_numpy else out


# ---------------------------------------------------------------------------------------------
# letterbox: any image + its keypoints <-> the model's square
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """An aspect-preserving fit of a ``width x height`` image into a ``size x size`` square.

    The image is scaled by ``scale`` to ``(new_width, new_height)`` and pasted at ``(left, top)``; the
    rest of the square is filled. Keypoint maps respect the pixel-centre convention:
    ``x' = (x + 0.5) * sx - 0.5 + left`` with ``sx = new_width / width``.
    """

    width: int
    height: int
    size: int
    new_width: int
    new_height: int
    left: int
    top: int

    @classmethod
    def fit(cls, width: int, height: int, size: int) -> "Letterbox":
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        scale = size / max(width, height)
        nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
        return cls(width, height, size, nw, nh, (size - nw) // 2, (size - nh) // 2)

    @property
    def sx(self) -> float:
        return self.new_width / self.width

    @property
    def sy(self) -> float:
        return self.new_height / self.height

    def _map(self, keypoints, forward: bool, strict: bool = True):
        kps = np.array(keypoints, dtype=np.float32, copy=True)
        ok = visible(kps)
        if forward:
            x = (kps[:, 0] + 0.5) * self.sx - 0.5 + self.left
            y = (kps[:, 1] + 0.5) * self.sy - 0.5 + self.top
        else:
            x = (kps[:, 0] - self.left + 0.5) / self.sx - 0.5
            y = (kps[:, 1] - self.top + 0.5) / self.sy - 0.5
        # A point inside the first pixel row/column can land up to half a pixel below zero after
        # scaling; it is still inside that pixel, so it is put on its centre line rather than being
        # read as missing. Anything further out is a keypoint outside the frame: an error.
        x = np.where((x < 0) & (x >= -0.5), 0.0, x)
        y = np.where((y < 0) & (y >= -0.5), 0.0, y)
        outside = ok & ((x < 0) | (y < 0))
        if strict and outside.any():
            bad = [COCO18_NAMES[i] for i in np.flatnonzero(outside)]
            raise ValueError(f"`keypoints` {', '.join(bad)} fall outside the image frame of the letterbox transform")
        ok = ok & ~outside
        kps[:, 0] = np.where(ok, x, -1.0)
        kps[:, 1] = np.where(ok, y, -1.0)
        if kps.shape[1] > 2:
            kps[~ok, 2:] = 0.0
        return kps

    def keypoints_to_square(self, keypoints: ArrayLike) -> np.ndarray:
        """Map ``(18, 2|3)`` keypoints from the original image to the square (extra columns kept)."""
        return self._map(keypoints, forward=True)

    def keypoints_from_square(self, keypoints: ArrayLike, strict: bool = True) -> np.ndarray:
        """Map keypoints from the square back to the original image. A point that lands left of or above
        the image (in the padding) is an error, or with ``strict=False`` reported missing: the image
        cannot show it."""
        return self._map(keypoints, forward=False, strict=strict)

    def image_to_square(self, image: Image.Image, fill=(255, 255, 255)) -> Image.Image:
        """Resize (bicubic) and pad ``image`` into the square."""
        if image.size != (self.width, self.height):
            raise ValueError(f"`image` is {image.size[0]}x{image.size[1]}, this letterbox was fitted to {self.width}x{self.height}")
        canvas = Image.new("RGB", (self.size, self.size), tuple(fill))
        canvas.paste(image.convert("RGB").resize((self.new_width, self.new_height), Image.BICUBIC), (self.left, self.top))
        return canvas

    def image_from_square(self, image: Image.Image) -> Image.Image:
        """Cut the picture area out of a square output and resize it back to the original size."""
        if image.size != (self.size, self.size):
            raise ValueError(f"`image` must be {self.size}x{self.size}, got {image.size[0]}x{image.size[1]}")
        box = (self.left, self.top, self.left + self.new_width, self.top + self.new_height)
        return image.crop(box).resize((self.width, self.height), Image.BICUBIC)


def letterbox(
    image: Union[Image.Image, np.ndarray],
    keypoints: Optional[ArrayLike],
    size: int,
    fill=(255, 255, 255),
) -> Tuple[Image.Image, Optional[np.ndarray], Letterbox]:
    """Fit ``image`` and its keypoints into a ``size x size`` square together.

    The default white fill matches fashion photographs (DeepFashion's backgrounds are near white).

    Returns:
        ``(square image, keypoints in the square or None, Letterbox)``; ``Letterbox`` maps back.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    box = Letterbox.fit(image.size[0], image.size[1], size)
    kps = None if keypoints is None else box.keypoints_to_square(keypoints)
    return box.image_to_square(image, fill), kps, box


def align_to(keypoints: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Move and scale a pose onto another person (a similarity transform without rotation).

    The scale is the median ratio of the lengths of the ``BODY_LIMBS`` present in both poses (robust to a
    bent limb); the translation puts the pose's neck on the reference's neck (or, without a neck in both,
    the mean of the points present in both). Used by ``align_pose=True``: a target pose taken from another
    photo keeps its shape but gets the reference person's size and place.

    Args:
        keypoints (`np.ndarray`): ``(18, 2|3)`` the pose to move.
        reference (`np.ndarray`): ``(18, 2|3)`` the reference person's pose, in the same frame.
    """
    kps = check_keypoints(keypoints, "keypoints", allow_confidence=True).copy()
    ref = check_keypoints(reference, "reference", allow_confidence=True)
    a, b = visible(kps), visible(ref)
    both = a & b
    if both.sum() < 2:
        raise ValueError(f"`reference` and `keypoints` share {int(both.sum())} visible keypoints; at least 2 are needed to align a pose")
    ratios = []
    for i, j in BODY_LIMBS:
        if both[i] and both[j]:
            la = np.linalg.norm(kps[i, :2] - kps[j, :2])
            lb = np.linalg.norm(ref[i, :2] - ref[j, :2])
            if la > 1e-3:
                ratios.append(lb / la)
    if not ratios:
        pa, pb = kps[both, :2], ref[both, :2]
        da, db = np.linalg.norm(pa - pa.mean(0), axis=1).mean(), np.linalg.norm(pb - pb.mean(0), axis=1).mean()
        ratios = [db / da] if da > 1e-3 else [1.0]
    scale = float(np.median(ratios))
    neck = KEYPOINT_INDEX["neck"]
    anchor_a = kps[neck, :2] if both[neck] else kps[both, :2].mean(0)
    anchor_b = ref[neck, :2] if both[neck] else ref[both, :2].mean(0)
    kps[a, :2] = (kps[a, :2] - anchor_a) * scale + anchor_b
    return kps


# ---------------------------------------------------------------------------------------------
# pose sequences (video): reading, gap filling, One-Euro smoothing, retargeting
# ---------------------------------------------------------------------------------------------


def check_sequence(sequence: ArrayLike, name: str = "sequence") -> np.ndarray:
    """Return a pose sequence as a float32 ``(T, 18, 2|3)`` copy, or raise a ``ValueError`` that names the
    argument, what it received and what was expected."""
    if isinstance(sequence, torch.Tensor):
        sequence = sequence.detach().cpu().numpy()
    try:
        arr = np.array(sequence, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a numeric array of shape (T, 18, 2|3), got {type(sequence).__name__}: {e}") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] != NUM_KEYPOINTS or arr.shape[2] not in (2, 3):
        raise ValueError(f"`{name}` must have shape (T, 18, 2) or (T, 18, 3) with T >= 1 (COCO-18 x, y[, confidence] per frame), got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        frames = sorted({int(t) for t in np.argwhere(~np.isfinite(arr))[:, 0]})
        raise ValueError(f"`{name}` contains NaN or infinite values (frames {frames[:10]}); mark a missing point as (-1, -1)")
    return arr


def _present(arr: np.ndarray) -> np.ndarray:
    """``(T, 18)`` present points: non-negative coordinates and, with a confidence column, confidence > 0."""
    ok = visible(arr)
    return ok & (arr[..., 2] > 0) if arr.shape[-1] == 3 else ok


def _natural_key(path) -> list:
    import re

    # frame_2.json before frame_10.json; OpenPose's zero-padded names sort the same either way
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def read_openpose_folder(folder: Union[str, os.PathLike], return_info: bool = False):
    """Read a folder of per-frame OpenPose JSON files (as ``openpose --write_json`` writes them) into a sequence.

    The files are ``*_keypoints.json`` when there are any (OpenPose's names), else every ``*.json``, in
    natural order (``2`` before ``10``). Each is read like `read_openpose_json` (COCO-18 or BODY_25; the
    largest person when there are several). A frame with an empty ``people`` list (OpenPose found nobody)
    becomes 18 missing points and is counted in ``info["empty_frames"]``, not dropped, so frame ``t`` of the
    result stays frame ``t`` of the video.

    Args:
        folder (`str` or `os.PathLike`): the folder.
        return_info (`bool`, *optional*, defaults to `False`): also return a dict with ``files`` (the paths
            read, in order), ``empty_frames`` (indices of frames with nobody) and ``canvas_size``
            (``(width, height)`` when the files record ``canvas_width`` / ``canvas_height``, else `None`).

    Returns:
        `np.ndarray`: float32 ``(T, 18, 3)`` ``(x, y, confidence)``, ``(-1, -1, 0)`` where missing; with
        ``return_info``, ``(sequence, info)``.
    """
    from pathlib import Path

    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"OpenPose folder '{path}' does not exist")
    if not path.is_dir():
        raise ValueError(f"OpenPose folder '{path}' is not a folder")
    files = sorted((f for f in path.glob("*_keypoints.json") if f.is_file()), key=_natural_key)
    if not files:
        files = sorted((f for f in path.glob("*.json") if f.is_file()), key=_natural_key)
    if not files:
        raise FileNotFoundError(f"OpenPose folder '{path}' holds no JSON file (expected one *_keypoints.json or *.json per frame)")
    frames, empty, canvases = [], [], set()
    for t, f in enumerate(files):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"OpenPose JSON file '{f}' is not valid JSON: {e}") from None
        people = _people_from_openpose(data, f"'{f}'")
        if not people:
            empty.append(t)
            frames.append(np.tile(np.float32([-1.0, -1.0, 0.0]), (NUM_KEYPOINTS, 1)))
        else:
            frames.append(max(people, key=_person_area))
        if "canvas_width" in data and "canvas_height" in data:
            canvases.add((int(data["canvas_width"]), int(data["canvas_height"])))
    if len(canvases) > 1:
        raise ValueError(f"OpenPose folder '{path}': the files record different canvases {sorted(canvases)}; one video has one frame size")
    sequence = np.stack(frames).astype(np.float32)
    if not return_info:
        return sequence
    info = {"files": files, "empty_frames": empty, "canvas_size": canvases.pop() if canvases else None}
    return sequence, info


def fill_missing(sequence: ArrayLike, max_gap: Optional[int] = 15, min_confidence: float = 0.1) -> np.ndarray:
    """Carry missing or low-confidence keypoints over from the neighbouring frames of a sequence.

    Per keypoint: a run of frames where the point is missing (or its confidence is below
    ``min_confidence``) between two frames where it is seen is filled by linear interpolation between them;
    a run at the start or end of the sequence holds the nearest seen position. Only runs of at most
    ``max_gap`` frames are filled: a point gone for longer stays missing, as a point that is never seen
    stays missing in every frame. Nothing is invented: every filled value lies between (or at) positions
    where the point was actually seen.

    Args:
        sequence (`np.ndarray`): ``(T, 18, 2|3)`` keypoints; ``(-1, -1)`` (or confidence 0) is missing.
        max_gap (`int`, *optional*, defaults to 15): the longest run of frames filled (half a second at
            30 fps); `None` fills runs of any length.
        min_confidence (`float`, *optional*, defaults to 0.1): with a confidence column, points below it
            count as missing (OpenPose's own peak threshold is 0.1). Ignored for ``(T, 18, 2)``.

    Returns:
        `np.ndarray`: float32, the shape of ``sequence``. A filled point's confidence is interpolated (or held)
        like its position; points left missing are ``(-1, -1[, 0])``.
    """
    arr = check_sequence(sequence)
    if max_gap is not None and (isinstance(max_gap, bool) or int(max_gap) != max_gap or max_gap < 0):
        raise ValueError(f"`max_gap` must be a non-negative whole number of frames or None, got {max_gap!r}")
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"`min_confidence` must be in [0, 1], got {min_confidence}")
    ok = _present(arr)
    if arr.shape[-1] == 3:
        ok &= arr[..., 2] >= min_confidence
    out = arr.copy()
    out[~ok] = -1.0
    if arr.shape[-1] == 3:
        out[..., 2][~ok] = 0.0
    limit = arr.shape[0] if max_gap is None else int(max_gap)
    frames = np.arange(arr.shape[0])
    for k in range(NUM_KEYPOINTS):
        seen = frames[ok[:, k]]
        if seen.size == 0:
            continue  # never seen: stays missing
        gaps = np.flatnonzero(~ok[:, k])
        if gaps.size == 0:
            continue
        # nearest seen frame before and after every missing frame
        after_i = np.searchsorted(seen, gaps)
        before = np.where(after_i > 0, seen[np.maximum(after_i - 1, 0)], -1)
        after = np.where(after_i < seen.size, seen[np.minimum(after_i, seen.size - 1)], -1)
        inner = (before >= 0) & (after >= 0)
        run = np.where(inner, after - before - 1, np.where(before >= 0, arr.shape[0] - 1 - before, after))
        fill = run <= limit
        for t, b, a, is_inner in zip(gaps[fill], before[fill], after[fill], inner[fill]):
            if is_inner:
                w = (t - b) / (a - b)
                out[t, k] = (1 - w) * out[b, k] + w * out[a, k]
            else:
                out[t, k] = out[b if b >= 0 else a, k]
    return out


def smooth_keypoints(
    sequence: ArrayLike,
    fps: float,
    min_cutoff: float = 1.0,
    beta: float = 0.1,
    d_cutoff: float = 1.0,
    bidirectional: bool = False,
) -> np.ndarray:
    """Smooth a keypoint sequence over time with a One-Euro filter (Casiez et al., CHI 2012).

    Each coordinate of each keypoint is filtered on its own: a first-order low-pass whose cut-off rises
    with the point's speed, ``f_c = min_cutoff + beta * |dx/dt|``, so a still point is smoothed hard (no
    jitter) and a fast one lightly (little lag). The speed is itself low-passed at ``d_cutoff``. The filter
    runs causally, frame by frame, as it would live.

    Missing points are skipped: they stay missing, and the filter of that coordinate carries its state
    across the gap, with the time step of the gap (a long gap gives a smoothing factor near 1, so the
    point restarts close to where it reappears). Fill gaps first with `fill_missing` to smooth through them.

    Args:
        sequence (`np.ndarray`): ``(T, 18, 2|3)`` in pixels; a confidence column is passed through.
        fps (`float`): frames per second of the sequence (the filter's cut-offs are in Hz).
        min_cutoff (`float`, *optional*, defaults to 1.0): cut-off in Hz of a still point; lower = smoother.
        beta (`float`, *optional*, defaults to 0.1): cut-off increase per pixel/second of speed; higher =
            less lag on fast motion. In pixels, so it depends on the frame size; the default was chosen on
            a real 720p OpenPose sequence with added noise (see tests/test_video_pipeline.py).
        d_cutoff (`float`, *optional*, defaults to 1.0): cut-off in Hz of the speed estimate.
        bidirectional (`bool`, *optional*, defaults to `False`): filter forward, then backward (zero lag, offline).

    Returns:
        `np.ndarray`: float32, the shape of ``sequence``.
    """
    arr = check_sequence(sequence)
    for name, value in (("fps", fps), ("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a positive number, got {value!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)) or not beta >= 0 or not math.isfinite(beta):
        raise ValueError(f"`beta` must be a non-negative number, got {beta!r}")

    def alpha(cutoff, dt):
        # smoothing factor of a first-order low-pass: 1 / (1 + tau / dt), tau = 1 / (2 pi f_c)
        return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))

    ok = _present(arr)
    out = arr.copy()
    x_hat = np.zeros((NUM_KEYPOINTS, 2), dtype=np.float64)
    dx_hat = np.zeros((NUM_KEYPOINTS, 2), dtype=np.float64)
    last = np.full(NUM_KEYPOINTS, -1)  # frame each point was last seen, -1: not yet
    for t in range(arr.shape[0]):
        x = arr[t, :, :2].astype(np.float64)
        start = ok[t] & (last < 0)
        x_hat[start], dx_hat[start] = x[start], 0.0
        run = ok[t] & (last >= 0)
        if run.any():
            dt = ((t - last[run]) / float(fps))[:, None]
            dx = (x[run] - x_hat[run]) / dt
            dx_hat[run] += alpha(d_cutoff, dt) * (dx - dx_hat[run])
            x_hat[run] += alpha(min_cutoff + beta * np.abs(dx_hat[run]), dt) * (x[run] - x_hat[run])
        last[ok[t]] = t
        out[t, ok[t], :2] = x_hat[ok[t]]
    if bidirectional:
        out = smooth_keypoints(out[::-1], fps, min_cutoff, beta, d_cutoff)[::-1].copy()
    return out


# Every limb OpenPose draws, as (parent, child) edges of a tree rooted at the neck, parents first.
_KINEMATIC_TREE: Tuple[Tuple[int, int], ...] = OPENPOSE_LIMBS


def retarget(
    sequence: ArrayLike,
    reference_pose: ArrayLike,
    preserve_foreshortening: bool = True,
) -> np.ndarray:
    """Move a driving pose sequence onto the body of the reference person.

    The most visible fault of pose-driven video is the driving body's proportions pasted onto another
    person (a tall dancer's legs on a short reference). This walks the COCO-18 kinematic tree (the 17 limbs
    OpenPose draws) from the neck and rebuilds every frame:

    - direction: each bone keeps its direction in the driving frame;
    - length: each bone takes the reference's length. With ``preserve_foreshortening`` (default) the
      driving bone's length relative to its median over the sequence is kept (a thigh seen shortened as
      the knee comes up stays shortened), i.e. ``length_t = |bone_t| * L_ref / median_t |bone_t|``; the
      median over the sequence of every retargeted bone is then the reference's length. Without it every
      frame has exactly the reference's length;
    - a bone missing in the reference (e.g. a hidden wrist) scales by the global body-size ratio
      ``s = sum L_ref / sum median |bone|`` over the bones both skeletons have;
    - root: the neck follows the driving neck's motion scaled by ``s``, anchored at the reference's neck
      in the first frame where the driving neck is seen: ``neck_t = ref_neck + s (neck_t - neck_first)``;
    - a joint whose parent is missing in a frame is placed by the same global map
      ``ref_neck + s (p - neck_first)``, and its children follow it by bones.

    Missing driving points stay missing; points are not clipped to any frame (the caller decides what is
    outside its image).

    Args:
        sequence (`np.ndarray`): ``(T, 18, 2|3)`` driving keypoints (any frame); a confidence column is kept.
        reference_pose (`np.ndarray`): ``(18, 2|3)`` of the reference person, in the output frame. Needs
            the neck and at least one bone in common with the driving sequence.
        preserve_foreshortening (`bool`, *optional*, defaults to `True`): see above.

    Returns:
        `np.ndarray`: float32, the shape of ``sequence``, in the reference's frame.
    """
    arr = check_sequence(sequence)
    ref = check_keypoints(reference_pose, "reference_pose", allow_confidence=True)
    ref_ok = visible(ref) & (ref[:, 2] > 0) if ref.shape[1] == 3 else visible(ref)
    ref = ref[:, :2].astype(np.float64)
    neck = KEYPOINT_INDEX["neck"]
    if not ref_ok[neck]:
        raise ValueError("`reference_pose` has no neck: retargeting anchors the driving skeleton at the reference's neck")
    ok = _present(arr)
    if not ok[:, neck].any():
        raise ValueError("`sequence` never shows the neck: retargeting needs it in at least one frame to anchor the motion")
    xy = arr[..., :2].astype(np.float64)

    # 1. per-bone lengths: the reference's, the driving sequence's median, and the global ratio s
    n_bones = len(_KINEMATIC_TREE)
    ref_len = np.full(n_bones, np.nan)
    drive_len = np.full((arr.shape[0], n_bones), np.nan)
    drive_med = np.full(n_bones, np.nan)
    for b, (p, c) in enumerate(_KINEMATIC_TREE):
        if ref_ok[p] and ref_ok[c]:
            ref_len[b] = np.linalg.norm(ref[c] - ref[p])
        both = ok[:, p] & ok[:, c]
        drive_len[both, b] = np.linalg.norm(xy[both, c] - xy[both, p], axis=-1)
        if both.any():
            drive_med[b] = np.median(drive_len[both, b])
    common = np.isfinite(ref_len) & np.isfinite(drive_med) & (drive_med > 0)
    if not common.any():
        raise ValueError("`reference_pose` and `sequence` share no bone (a limb with both joints present): cannot relate their body sizes")
    s = ref_len[common].sum() / drive_med[common].sum()

    # 2. rebuild every frame from the neck outwards
    first = int(np.flatnonzero(ok[:, neck])[0])
    origin = xy[first, neck]
    out = arr.copy()
    for t in range(arr.shape[0]):
        placed = np.zeros(NUM_KEYPOINTS, dtype=bool)
        new = np.zeros((NUM_KEYPOINTS, 2))
        if ok[t, neck]:
            new[neck], placed[neck] = ref[neck] + s * (xy[t, neck] - origin), True
        for b, (p, c) in enumerate(_KINEMATIC_TREE):
            if not ok[t, c]:
                continue
            if placed[p]:
                bone = xy[t, c] - xy[t, p]
                length = np.linalg.norm(bone)
                if not np.isfinite(ref_len[b]):
                    target = s * length
                elif preserve_foreshortening and drive_med[b] > 0:
                    target = length * ref_len[b] / drive_med[b]
                else:
                    target = ref_len[b]
                new[c] = new[p] + (bone / length * target if length > 0 else 0.0)
            else:
                new[c] = ref[neck] + s * (xy[t, c] - origin)
            placed[c] = True
        out[t, :, :2] = np.where(placed[:, None], new, -1.0)
        if arr.shape[-1] == 3:
            out[t, ~placed, 2] = 0.0
    return out
