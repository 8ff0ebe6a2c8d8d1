"""SynthHumans: procedural people drawn from real human poses (DESIGN.md §3).

No real image dataset can be downloaded where PGAT is built and tested, so the project draws its own:
articulated people rendered from 18 COCO-18 keypoints, with garments whose patterns are attached to the
body parts, so that moving a limb moves its texture. Transferring one identity from one pose to another
is then a real, learnable and measurable task, with exact ground truth.

How a person is drawn:

- Every body part (upper/lower arms, hands, thighs, shins, feet, neck) is a tapered capsule between two
  points; the torso is a tapered band from the shoulder line to the hip line, rounded by a shoulder and a
  hip capsule; the head is an ellipse with hair, eyes and ears where those keypoints are given. Each part
  has a local frame (along, across) measured in body units (the neck-to-hip length), and garment patterns
  are evaluated in it, which is what makes a texture follow its limb.
- Coverage is computed analytically from a signed distance (one pixel wide ramp), which anti-aliases every
  edge at the cost of one ``clip`` per pixel instead of supersampling.
- Parts are painted back to front in a depth order read from the pose: facing the camera (right shoulder
  on the image's left), arms are in front of the torso; facing away, behind it; in a side view the near
  arm and leg are in front and the far ones behind. Limbs therefore occlude the torso and each other.
- Missing body joints (out of the frame or occluded in the source photo) are completed from the
  identity's proportions so the figure stays whole; the returned keypoints are those *as drawn*: a joint
  is reported when it is inside the frame and its own body part is the visible surface at its pixel,
  and ``(-1, -1)`` otherwise. Face points (nose, eyes, ears) are drawn only where given.

Poses come from real people by default: OpenPose estimates of the DeepFashion In-shop test images, in
their 256x256 photo framing (scaled to the resolution), with the rows where every joint is missing (and
rows too incomplete to draw) skipped and counted. Pairs follow the benchmark's own test pairs (two photos
of the same person), so pose changes are realistic (front/back/side views). The pose pool is split by the
DeepFashion person id, so train and test never share a pose; identities are numbered ``2 k`` (train) and
``2 k + 1`` (test), so they never share an identity either.

Virtual try-on (`SynthHumansTryOn`): a person, a photo of another identity of the same split in another pose,
and the exact ground truth, the person in their own pose wearing the other's top (`wear_top`: the
`TOP_FIELDS` of the other identity, everything else the person's), bottom (``category="lower_body"``,
`wear_bottom`, `BOTTOM_FIELDS`) or both (``"full_body"``).
"""

from __future__ import annotations

import math
import os
import re
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..pose import (
    COCO18_NAMES,
    NUM_KEYPOINTS,
    Letterbox,
    check_keypoints,
    read_deepfashion_annotations,
    visible,
)
from ..parts import GARMENT_CATEGORIES

PARSING_LABELS: Tuple[str, ...] = ("background", "skin", "face", "hair", "top", "bottom", "shoes")
BACKGROUND, SKIN, FACE, HAIR, TOP, BOTTOM, SHOES = range(len(PARSING_LABELS))

SPLITS = ("train", "test")
MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024

DEEPFASHION_ANNOTATIONS = "fasion-annotation-test.csv"
DEEPFASHION_PAIRS = "fashion-pairs-test.csv"
_PACKAGED_POSES = Path(__file__).resolve().parent / "poses"

# Body parts; the ids fill the part buffer used to decide which keypoints are visible.
(
    HEAD, NECK, TORSO, R_UPPER_ARM, R_FOREARM, R_HAND, L_UPPER_ARM, L_FOREARM, L_HAND,
    R_THIGH, R_SHIN, R_FOOT, L_THIGH, L_SHIN, L_FOOT, SKIRT, LONG_HAIR,
) = range(1, 18)

# The parts on which each keypoint may be seen: a joint hidden behind another part is not reported.
KEYPOINT_PARTS: Tuple[Tuple[int, ...], ...] = (
    (HEAD,),                                   # nose
    (NECK, TORSO, HEAD, LONG_HAIR, R_UPPER_ARM, L_UPPER_ARM),  # neck (a near arm may cross it)
    (TORSO, R_UPPER_ARM), (R_UPPER_ARM, R_FOREARM), (R_FOREARM, R_HAND),
    (TORSO, L_UPPER_ARM), (L_UPPER_ARM, L_FOREARM), (L_FOREARM, L_HAND),
    (TORSO, R_THIGH, SKIRT), (R_THIGH, R_SHIN, SKIRT), (R_SHIN, R_FOOT),
    (TORSO, L_THIGH, SKIRT), (L_THIGH, L_SHIN, SKIRT), (L_SHIN, L_FOOT),
    (HEAD,), (HEAD,), (HEAD,), (HEAD,),        # eyes, ears
)

# Proportions of an average figure in body units (1 = neck to mid-hip), measured as medians over the
# DeepFashion test annotations (shoulders 0.42, upper arm 0.56, forearm 0.47, hips 0.29, neck-nose 0.38).
_SHOULDER_HALF, _HIP_HALF = 0.21, 0.145
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.56, 0.47, 0.85, 0.82
_NOSE_UP = 0.38

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 135], [198, 140, 100], [160, 105, 70], [120, 78, 52], [88, 57, 40]],
    dtype=np.float32,
) / 255.0
_HAIR_COLORS = np.array(
    [[20, 17, 15], [45, 32, 25], [85, 55, 35], [140, 95, 55], [200, 160, 95], [150, 60, 30], [160, 160, 160]],
    dtype=np.float32,
) / 255.0
PATTERN_FAMILIES = ("solid", "stripes", "checks", "dots", "gradient")
PRINT_KINDS = ("none", "logo", "text")
SLEEVES = ("none", "short", "long")
BOTTOMS = ("shorts", "trousers", "skirt")
HAIR_STYLES = ("short", "long", "bun")


# ---------------------------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """A garment pattern, evaluated in part-local body units ``(u across, v along)``."""

    family: str
    color: Tuple[float, float, float]
    color2: Tuple[float, float, float]
    period: float = 0.12
    angle: float = 0.0

    def __call__(self, u: np.ndarray, v: np.ndarray, pixels_per_unit: float) -> np.ndarray:
        c1, c2 = np.asarray(self.color, np.float32), np.asarray(self.color2, np.float32)
        if self.family == "solid":
            return np.broadcast_to(c1, u.shape + (3,))
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        a = u * ca + v * sa
        b = v * ca - u * sa
        p = self.period
        # sin(2 pi a / p) crosses zero with slope 2 pi / (p * px): dividing by it gives the distance
        # to the edge in pixels, a one-pixel anti-aliased ramp.
        ramp = p * pixels_per_unit / (2 * math.pi)
        if self.family == "stripes":
            m = np.clip(0.5 + np.sin(2 * math.pi * a / p) * ramp, 0.0, 1.0)
        elif self.family == "checks":
            m = np.clip(0.5 + np.sin(2 * math.pi * a / p) * np.sin(2 * math.pi * b / p) * ramp, 0.0, 1.0)
        elif self.family == "dots":
            fa, fb = a / p - np.round(a / p), b / p - np.round(b / p)
            d = np.sqrt(fa * fa + fb * fb) * p * pixels_per_unit
            m = np.clip(0.3 * p * pixels_per_unit - d + 0.5, 0.0, 1.0)
        elif self.family == "gradient":
            m = 0.5 + 0.5 * np.sin(2 * math.pi * b / (6 * p))
        else:
            raise ValueError(f"unknown pattern family {self.family!r}; expected one of {PATTERN_FAMILIES}")
        m = m.astype(np.float32)[..., None]
        return c1 * (1.0 - m) + c2 * m


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look like themselves, independent of the pose."""

    identity_id: int
    skin: Tuple[float, float, float]
    hair: Tuple[float, float, float]
    hair_style: str
    sleeves: str
    top_front: Pattern
    top_back: Pattern
    top_length: float
    print_kind: str
    print_text: str
    print_shape: int
    print_color: Tuple[float, float, float]
    bottom: str
    bottom_pattern: Pattern
    bottom_length: float
    shoes: Tuple[float, float, float]
    build: float = 1.0
    head_scale: float = 1.0
    background: Tuple[float, float, float] = (0.94, 0.94, 0.94)
    # Where the bottom garment's pattern starts on the torso, as a share of the torso like ``top_length``;
    # ``None``: at the top's hem. The try-on ground truth (`SynthHumansTryOn`) pins it to the person's own
    # hem, so that a longer or shorter new top covers more or less of the same trousers, not a slid pattern.
    bottom_start: Optional[float] = None

    @classmethod
    def sample(cls, identity_id: int, seed: int = 0) -> "Identity":
        """Draw identity ``identity_id`` of the stream ``seed`` (deterministic)."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(identity_id), 0x1D]))

        def garment_color():
            h, s, v = rng.uniform(0, 1), rng.uniform(0.25, 0.85), rng.uniform(0.25, 0.9)
            return _hsv(h, s, v)

        def contrasting(c):
            h, s, v = _rgb_to_hsv(c)
            if rng.uniform() < 0.5:
                return _hsv((h + rng.uniform(0.3, 0.7)) % 1.0, rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.95))
            return _hsv(h, s * 0.4, 0.95 if v < 0.6 else 0.15)

        def pattern(families=PATTERN_FAMILIES):
            c = garment_color()
            return Pattern(
                family=str(rng.choice(families)),
                color=c,
                color2=contrasting(c),
                period=float(rng.uniform(0.07, 0.16)),
                angle=float(rng.choice([0.0, math.pi / 2, math.pi / 4, -math.pi / 4])),
            )

        front = pattern()
        # The back is the same garment: same colours, sometimes plain where the front is patterned.
        back = front if rng.uniform() < 0.6 else Pattern("solid", front.color, front.color2)
        t = rng.uniform()
        skin = tuple(float(x) for x in (_SKIN_TONES[int(t * 6)] * (1 - (t * 6) % 1) + _SKIN_TONES[int(t * 6) + 1] * ((t * 6) % 1)))
        bg = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.08), rng.uniform(0.88, 0.97))
        return cls(
            identity_id=int(identity_id),
            skin=skin,
            hair=tuple(float(x) for x in _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))]),
            hair_style=str(rng.choice(HAIR_STYLES)),
            sleeves=str(rng.choice(SLEEVES, p=[0.25, 0.4, 0.35])),
            top_front=front,
            top_back=back,
            top_length=float(rng.uniform(0.88, 1.02)),
            print_kind=str(rng.choice(PRINT_KINDS, p=[0.4, 0.3, 0.3])),
            print_text=str(rng.choice([str(rng.integers(1, 100)), "".join(rng.choice(list("ABCDEFGHKLMNPRSTXZ"), 3))])),
            print_shape=int(rng.integers(4)),
            print_color=contrasting(front.color),
            bottom=str(rng.choice(BOTTOMS, p=[0.25, 0.5, 0.25])),
            bottom_pattern=pattern(("solid", "solid", "stripes", "checks", "dots", "gradient")),
            bottom_length=float(rng.uniform(0.45, 0.8)),
            shoes=_hsv(rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.1, 0.7)),
            build=float(rng.uniform(0.85, 1.2)),
            head_scale=float(rng.uniform(0.92, 1.08)),
            background=bg,
        )


def _hsv(h: float, s: float, v: float) -> Tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (float(r), float(g), float(b))


def _rgb_to_hsv(c) -> Tuple[float, float, float]:
    r, g, b = c
    mx, mn = max(c), min(c)
    v, d = mx, mx - mn
    s = 0.0 if mx == 0 else d / mx
    if d == 0:
        h = 0.0
    elif mx == r:
        h = ((g - b) / d) % 6
    elif mx == g:
        h = (b - r) / d + 2
    else:
        h = (r - g) / d + 4
    return (h / 6.0, s, v)


@lru_cache(maxsize=256)
def _text_mask(text: str) -> np.ndarray:
    """A float mask of ``text`` in a bold-ish sans font, 48 px tall, tight on its ink."""
    font = ImageFont.load_default(size=44)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    draw = ImageDraw.Draw(img)
    draw.text((2 - left, 2 - top), text, fill=255, font=font, stroke_width=2, stroke_fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _sample_mask(mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``mask`` at normalised ``x, y`` in [0, 1] (zero outside)."""
    h, w = mask.shape
    fx, fy = x * (w - 1), y * (h - 1)
    inside = (fx >= 0) & (fx <= w - 1) & (fy >= 0) & (fy <= h - 1)
    fx, fy = np.clip(fx, 0, w - 1.001), np.clip(fy, 0, h - 1.001)
    x0, y0 = fx.astype(np.int64), fy.astype(np.int64)
    ax, ay = fx - x0, fy - y0
    top = mask[y0, x0] * (1 - ax) + mask[y0, x0 + 1] * ax
    bot = mask[y0 + 1, x0] * (1 - ax) + mask[y0 + 1, x0 + 1] * ax
    return np.where(inside, top * (1 - ay) + bot * ay, 0.0)


def _logo_distance(x: np.ndarray, y: np.ndarray, shape: int) -> np.ndarray:
    """Signed distance (in logo units, ~[-1, 1] box) to one of four simple logo shapes."""
    r = np.sqrt(x * x + y * y)
    if shape == 0:  # ring
        return np.abs(r - 0.7) - 0.2
    if shape == 1:  # five-pointed star
        a = np.arctan2(y, x) + math.pi / 2
        return r - (0.55 + 0.35 * np.cos(5 * a))
    if shape == 2:  # triangle
        return np.maximum(np.abs(x) * 0.866 + y * 0.5, -y) - 0.45
    return (np.abs(x) + np.abs(y)) * 0.7071 - 0.6  # diamond


# ---------------------------------------------------------------------------------------------
# the pose: completion, facing, depth
# ---------------------------------------------------------------------------------------------


def _unit(v: np.ndarray, fallback=(0.0, 1.0)) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-6 else np.asarray(fallback, np.float64)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def drawable(keypoints: np.ndarray) -> bool:
    """Whether a pose has enough body to draw: the neck (or both shoulders) and 5 body joints."""
    ok = visible(keypoints)
    return bool((ok[1] or (ok[2] and ok[5])) and ok[1:14].sum() >= 5)


@dataclass
class _Figure:
    """A completed pose with its body unit, orientation and per-side depth."""

    points: np.ndarray  # (18, 2) float64; face points may stay missing
    given: np.ndarray  # (18,) bool, present in the input
    unit: float
    down: np.ndarray
    side: np.ndarray  # image direction of the person's left when facing the camera
    frontness: float  # +1 facing the camera, -1 facing away
    near: str  # "r", "l" or "" (both sides equal)


def _complete(keypoints: np.ndarray) -> _Figure:
    """Fill in missing body joints from average proportions so the whole figure can be drawn."""
    k = keypoints.astype(np.float64).copy()
    ok = visible(keypoints).copy()
    given = ok.copy()
    if not ok[1]:
        k[1], ok[1] = (k[2] + k[5]) / 2, True
    hips = [i for i in (8, 11) if ok[i]]
    down = _unit((k[8] + k[11]) / 2 - k[1]) if len(hips) == 2 else (_unit(k[hips[0]] - k[1]) if hips else np.array([0.0, 1.0]))
    # Length estimates of the body unit; foreshortening only shortens a limb, so the longest wins.
    others = []
    for (a, b), canon in (((2, 5), 2 * _SHOULDER_HALF), ((2, 3), _UPPER_ARM), ((5, 6), _UPPER_ARM), ((3, 4), _FOREARM),
                          ((6, 7), _FOREARM), ((8, 9), _THIGH), ((11, 12), _THIGH), ((9, 10), _SHIN), ((12, 13), _SHIN),
                          ((1, 0), _NOSE_UP), ((16, 17), 0.3)):
        if ok[a] and ok[b]:
            others.append(float(np.hypot(*(k[a] - k[b]))) / canon)
    if hips:
        torso = float(np.hypot(*(np.mean(k[hips], axis=0) - k[1])))
        unit = max(torso, 0.75 * max(others, default=0.0))
    else:
        unit = max(others, default=0.0)
    unit = max(unit, 4.0)
    side = np.array([down[1], -down[0]])  # (1, 0), the image's right, when upright
    # facing: the person's left shoulder on the image's right means they face the camera
    if ok[2] and ok[5]:
        frontness = float(np.clip(np.dot(k[5] - k[2], side) / (2 * _SHOULDER_HALF * unit), -1, 1))
    elif ok[14] or ok[15]:
        frontness = 0.3
    else:
        frontness = 0.0
    sign = 1.0 if frontness >= 0 else -1.0
    for a, b in ((2, 5), (5, 2)):
        if not ok[a] and ok[b]:
            k[a], ok[a] = 2 * k[1] - k[b], True
    if not ok[2]:
        k[2] = k[1] - side * sign * _SHOULDER_HALF * unit
        k[5] = k[1] + side * sign * _SHOULDER_HALF * unit
        ok[2] = ok[5] = True
    shoulder_vec = k[5] - k[2]
    if not ok[8] and not ok[11]:
        mid = k[1] + down * unit
        k[8], k[11] = mid - shoulder_vec * (_HIP_HALF / _SHOULDER_HALF) / 2, mid + shoulder_vec * (_HIP_HALF / _SHOULDER_HALF) / 2
    elif not ok[8]:
        k[8] = k[11] - shoulder_vec * (_HIP_HALF / _SHOULDER_HALF)
    elif not ok[11]:
        k[11] = k[8] + shoulder_vec * (_HIP_HALF / _SHOULDER_HALF)
    ok[8] = ok[11] = True
    for s_, e_, w_, outward in ((2, 3, 4, -1.0), (5, 6, 7, 1.0)):
        if not ok[e_]:
            if ok[w_]:
                k[e_] = (k[s_] + k[w_]) / 2 + side * sign * outward * 0.08 * unit
            else:
                k[e_] = k[s_] + _rotate(down, -outward * sign * 0.12) * _UPPER_ARM * unit
        if not ok[w_]:
            k[w_] = k[e_] + _unit(k[e_] - k[s_]) * _FOREARM * unit
    for h_, n_, a_ in ((8, 9, 10), (11, 12, 13)):
        if not ok[n_]:
            k[n_] = (k[h_] + k[a_]) / 2 if ok[a_] else k[h_] + down * _THIGH * unit
        if not ok[a_]:
            k[a_] = k[n_] + _unit(k[n_] - k[h_], down) * _SHIN * unit
    ok[1:14] = True
    # Side views: which side is nearer the camera. Facing the image's left (nose left of the neck),
    # the person's left side is the near one.
    near = ""
    if abs(frontness) < 0.45:
        if given[0]:
            near = "l" if np.dot(k[0] - k[1], side) < 0 else "r"
        elif given[16] != given[17]:
            near = "r" if given[16] else "l"
    k[~ok] = -1.0
    return _Figure(k, given, unit, down, side, frontness, near)


# ---------------------------------------------------------------------------------------------
# rasterisation
# ---------------------------------------------------------------------------------------------


class _Canvas:
    """Colour, parsing and part buffers painted back to front with fractional coverage."""

    def __init__(self, size: int, background):
        self.size = size
        y = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        bg = np.asarray(background, np.float32)
        # a soft studio backdrop: slightly darker towards the floor
        self.color = np.broadcast_to(bg * (1.0 - 0.06 * y), (size, size, 3)).copy()
        self.label = np.zeros((size, size), np.uint8)
        self.part = np.zeros((size, size), np.uint8)

    def box(self, lo: np.ndarray, hi: np.ndarray):
        x0, y0 = max(int(math.floor(lo[0])), 0), max(int(math.floor(lo[1])), 0)
        x1, y1 = min(int(math.ceil(hi[0])) + 1, self.size), min(int(math.ceil(hi[1])) + 1, self.size)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def paint(self, box, coverage, color, label, part):
        x0, y0, x1, y1 = box
        a = coverage[..., None]
        region = self.color[y0:y1, x0:x1]
        region *= 1.0 - a
        region += a * color
        solid = coverage > 0.5
        self.label[y0:y1, x0:x1][solid] = label[solid] if isinstance(label, np.ndarray) else label
        self.part[y0:y1, x0:x1][solid] = part


@dataclass
class _Local:
    """Pixel grid of a part's bounding box in the part's frame."""

    box: Tuple[int, int, int, int]
    along: np.ndarray  # pixels from the first point along the axis
    across: np.ndarray  # signed pixels from the axis
    length: float


def _local_frame(canvas: _Canvas, a, b, pad: float) -> Optional[_Local]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    box = canvas.box(np.minimum(a, b) - pad - 1, np.maximum(a, b) + pad + 1)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    d = b - a
    length = float(np.hypot(*d))
    e = d / length if length > 1e-6 else np.array([0.0, 1.0])
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(a[0])
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(a[1])
    along = xs * np.float32(e[0]) + ys * np.float32(e[1])
    across = xs * np.float32(e[1]) - ys * np.float32(e[0])  # image-right when the axis points down
    return _Local(box, along, across, max(length, 1e-6))


def _tighten(local: _Local, cov: np.ndarray, *arrays):
    """Crop a part's box (and per-pixel ``arrays``) to the pixels it covers: a rotated limb fills little
    of its axis-aligned box, and the shading below then runs only where it shows."""
    rows, cols = np.flatnonzero(cov.any(axis=1)), np.flatnonzero(cov.any(axis=0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    x0, y0, _, _ = local.box
    sub = _Local((x0 + c0, y0 + r0, x0 + c1, y0 + r1), local.along[r0:r1, c0:c1], local.across[r0:r1, c0:c1], local.length)
    return (sub, cov[r0:r1, c0:c1]) + tuple(a if np.ndim(a) == 0 else a[r0:r1, c0:c1] for a in arrays)


def _capsule(local: _Local, r0: float, r1: float, widen=None):
    """Coverage of a tapered capsule of radii ``r0 -> r1`` (optionally ``widen(t)`` x radius) and its ``t``."""
    t = np.clip(local.along / local.length, 0.0, 1.0)
    r = r0 + (r1 - r0) * t
    if widen is not None:
        r = r * widen(t)
    dist = np.sqrt((local.along - t * local.length) ** 2 + local.across**2) - r
    return np.clip(0.5 - dist, 0.0, 1.0), t, r


def _shade(color: np.ndarray, across: np.ndarray, radius) -> np.ndarray:
    """Cylinder shading: parts are lit from the front-left and darken towards their silhouette."""
    x = np.clip(across / np.maximum(radius, 1e-3), -1.0, 1.0)
    light = 0.80 + 0.2 * np.sqrt(1.0 - x * x) - 0.06 * x
    return color * light[..., None]


class _Renderer:
    def __init__(self, identity: Identity, figure: _Figure, size: int):
        self.id = identity
        self.f = figure
        self.u = figure.unit
        self.size = size
        self.canvas = _Canvas(size, identity.background)
        self.skin = np.asarray(identity.skin, np.float32)

    # parts ---------------------------------------------------------------------------------

    def limb(self, part, a, b, r0, r1, length_units, v_offset, sleeve_to=None, sleeve_label=TOP, pattern=None,
             cuff_from=None, cuff_color=None, u_offset=0.0, widen=1.12):
        """A capsule limb; pixels with ``t < sleeve_to`` wear ``pattern`` (label ``sleeve_label``),
        pixels with ``t >= cuff_from`` are ``cuff_color`` (shoes), the rest is skin."""
        pad = max(r0, r1) * widen + 1
        local = _local_frame(self.canvas, a, b, pad)
        if local is None:
            return
        garment = (lambda t: np.where(t < sleeve_to, widen, 1.0)) if sleeve_to else None
        cov, t, r = _capsule(local, r0, r1, garment)
        tight = _tighten(local, cov > 0, cov, t, r)
        if tight is None:
            return
        local, _, cov, t, r = tight
        color = np.broadcast_to(self.skin, cov.shape + (3,)).copy()
        label = np.full(cov.shape, SKIN, np.uint8)
        if sleeve_to:
            m = t < sleeve_to
            if m.any():
                uu = local.across[m] / self.u + u_offset
                vv = t[m] * length_units + v_offset
                color[m] = pattern(uu, vv, self.u)
                label[m] = sleeve_label
        if cuff_from is not None:
            m = t >= cuff_from
            color[m] = cuff_color
            label[m] = SHOES
        self.canvas.paint(local.box, cov, _shade(color, local.across, r), label, part)

    def torso(self):
        k, u, ident = self.f.points, self.u, self.id
        top_mid, hip_mid = (k[2] + k[5]) / 2, (k[8] + k[11]) / 2
        axis = _unit(hip_mid - top_mid, self.f.down)
        perp = np.array([-axis[1], axis[0]])
        arm_r = 0.095 * u * ident.build
        hip_r = 0.13 * u * ident.build
        hw_top = max(abs(np.dot(k[5] - k[2], perp)) / 2, 0.13 * u) + arm_r
        hw_bot = max(abs(np.dot(k[11] - k[8], perp)) / 2, 0.11 * u) + hip_r
        pad = max(hw_top, hw_bot) + arm_r
        local = _local_frame(self.canvas, top_mid, hip_mid, pad)
        if local is None:
            return
        L = local.length
        t = local.along / L
        tc = np.clip(t, 0.0, 1.0)
        hw = (hw_top + (hw_bot - hw_top) * tc) * (1.0 - 0.07 * np.sin(math.pi * tc))  # the waist
        band = np.maximum(np.abs(local.across) - hw, np.maximum(-local.along, local.along - L))
        dist = np.minimum(band, self._segment_distance(local, k[2], k[5], arm_r * 1.05))
        dist = np.minimum(dist, self._segment_distance(local, k[8], k[11], hip_r))
        cov = np.clip(0.5 - dist, 0.0, 1.0)
        tight = _tighten(local, cov > 0, cov, hw)
        if tight is None:
            return
        local, _, cov, hw = tight
        v = local.along / u
        uu = local.across / u
        front = self.f.frontness >= 0
        pattern = ident.top_front if front else ident.top_back
        color = pattern(uu, v, u).copy()
        label = np.full(cov.shape, TOP, np.uint8)
        if front and ident.print_kind != "none":
            self._print(color, uu, v)
        if ident.sleeves == "none" and abs(self.f.frontness) > 0.2:
            # a round neckline shows skin (front) or a lower one at the back
            depth = 0.09 if front else 0.04
            neck = (uu / 0.12) ** 2 + ((v + 0.02) / depth) ** 2 < 1.0
            color[neck] = self.skin
            label[neck] = SKIN
        tlen = ident.top_length * (L / u)
        start = tlen if ident.bottom_start is None else ident.bottom_start * (L / u)
        lower = v > tlen
        if lower.any():
            color[lower] = ident.bottom_pattern(uu[lower], v[lower] - start, u)
            label[lower] = BOTTOM
        self.canvas.paint(local.box, cov, _shade(color, local.across, hw), label, TORSO)

    def _segment_distance(self, local: _Local, a, b, radius):
        """Distance to a capsule between ``a`` and ``b`` over ``local``'s pixel box."""
        x0, y0, x1, y1 = local.box
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
        dd = float(np.dot(d, d))
        px, py = xs - np.float32(a[0]), ys - np.float32(a[1])
        t = np.clip((px * np.float32(d[0]) + py * np.float32(d[1])) / max(dd, 1e-6), 0.0, 1.0)
        return np.sqrt((px - t * np.float32(d[0])) ** 2 + (py - t * np.float32(d[1])) ** 2) - radius

    def _print(self, color: np.ndarray, uu: np.ndarray, v: np.ndarray):
        ident = self.id
        squash = max(abs(self.f.frontness), 0.35)  # a chest print turns with the chest
        x = uu / (0.17 * squash)
        y = (v - 0.33) / 0.13
        if ident.print_kind == "logo":
            d = _logo_distance(x, y, ident.print_shape) * (0.13 * self.u)
            m = np.clip(0.5 - d, 0.0, 1.0)
        else:
            mask = _text_mask(ident.print_text)
            h, w = mask.shape
            half_w = min(1.0, 0.95 * w / h)  # keep the glyphs' aspect
            m = _sample_mask(mask, (x / half_w + 1) / 2, (y + 1) / 2)
        m = m[..., None]
        color *= 1.0 - m
        color += m * np.asarray(ident.print_color, np.float32)

    def skirt(self):
        k, u, ident = self.f.points, self.u, self.id
        hip_mid = (k[8] + k[11]) / 2
        knee_mid = (k[9] + k[12]) / 2
        length = ident.bottom_length * float(np.hypot(*(knee_mid - hip_mid))) * 1.3
        axis = _unit(knee_mid - hip_mid, self.f.down)
        top, bottom = hip_mid - axis * 0.05 * u, hip_mid + axis * length
        perp = np.array([-axis[1], axis[0]])
        hw_top = max(abs(np.dot(k[11] - k[8], perp)) / 2, 0.11 * u) + 0.13 * u * ident.build
        spread = abs(np.dot(k[12] - k[9], perp)) / 2 * min(1.0, ident.bottom_length * 1.3)
        hw_bot = max(hw_top * 1.3, spread + 0.12 * u)
        local = _local_frame(self.canvas, top, bottom, max(hw_top, hw_bot) + 1)
        if local is None:
            return
        t = np.clip(local.along / local.length, 0, 1)
        hw = hw_top + (hw_bot - hw_top) * t
        dist = np.maximum(np.abs(local.across) - hw, np.maximum(-local.along, local.along - local.length))
        cov = np.clip(0.5 - dist, 0.0, 1.0)
        tight = _tighten(local, cov > 0, cov, hw)
        if tight is None:
            return
        local, _, cov, hw = tight
        color = ident.bottom_pattern(local.across / u, local.along / u, u)
        self.canvas.paint(local.box, cov, _shade(color, local.across, hw), BOTTOM, SKIRT)

    def head(self):
        k, f, u, ident = self.f.points, self.f, self.u, self.id
        g = f.given
        up = -f.down
        if g[16] and g[17]:
            centre = (k[16] + k[17]) / 2 + up * 0.03 * u
        elif g[0] and (g[16] or g[17]):
            centre = (k[0] + k[16 if g[16] else 17]) / 2 + up * 0.04 * u
        elif g[0]:
            centre = k[0] + up * 0.05 * u
        elif g[16] or g[17]:
            ear = k[16 if g[16] else 17]
            centre = ear + _unit(k[1] + up * _NOSE_UP * u - ear) * 0.06 * u
        elif g[14] or g[15]:
            centre = np.mean(k[[i for i in (14, 15) if g[i]]], axis=0) + f.down * 0.02 * u
        else:
            centre = k[1] + up * (_NOSE_UP + 0.04) * u
        head_up = _unit(centre - k[1], up)
        rw, rh = 0.155 * u * ident.head_scale, 0.205 * u * ident.head_scale
        # neck, drawn first: the head and the torso cover its ends
        self.limb(NECK, k[1], centre, 0.07 * u * ident.build, 0.065 * u * ident.build, 0.3, 0.0)
        face_visible = bool(g[0] or g[14] or g[15])
        # where the face points, across the head (-1 .. 1): the hair covers the other side
        turn = 0.0
        if g[0]:
            turn = float(np.clip(np.dot(k[0] - centre, np.array([-head_up[1], head_up[0]]) * -1) / (0.6 * rw), -1, 1))
        hair = np.asarray(ident.hair, np.float32)
        # the head: face (skin) with a hair cap
        a, b = centre - head_up * rh, centre + head_up * rh
        local = _local_frame(self.canvas, a, b, rw * 1.25 + 1)
        if local is None:
            return
        s = local.along - rh  # from the centre, towards the crown
        c = local.across  # the axis points to the crown: positive towards the image's left when upright
        if ident.hair_style == "bun":
            bun = np.sqrt((c / (0.5 * rw)) ** 2 + ((s - rh * 1.05) / (0.4 * rw)) ** 2)
        ell = np.sqrt((c / rw) ** 2 + (s / rh) ** 2)
        hair_ell = np.sqrt((c / (rw * 1.1)) ** 2 + ((s - 0.06 * rh) / (rh * 1.06)) ** 2)
        dist = (ell - 1.0) * min(rw, rh)
        hair_dist = (hair_ell - 1.0) * min(rw, rh)
        if ident.hair_style == "bun":
            hair_dist = np.minimum(hair_dist, (bun - 1.0) * 0.4 * rw)
        # hair outline behind the face
        cov_h = np.clip(0.5 - hair_dist, 0.0, 1.0)
        self.canvas.paint(local.box, cov_h, _shade(np.broadcast_to(hair, cov_h.shape + (3,)), c, rw * 1.1), HAIR, HEAD)
        cov = np.clip(0.5 - dist, 0.0, 1.0)
        color = np.broadcast_to(self.skin, cov.shape + (3,)).copy()
        label = np.full(cov.shape, FACE, np.uint8)
        if face_visible:
            # hairline: the crown, plus the back of the head when it is turned
            hairline = s > rh * (0.42 - 0.1 * abs(turn))
            if abs(turn) > 0.2:
                hairline |= (c / rw) * np.sign(turn) < -(1.0 - abs(turn)) - 0.05
            cover = hairline
        else:
            cover = np.ones_like(cov, dtype=bool)
        color[cover] = hair
        label[cover] = HAIR
        self.canvas.paint(local.box, cov, _shade(color, c, rw), label, HEAD)
        # face features where the pose gives them
        if face_visible and g[0]:
            mouth = k[0] - head_up * 0.075 * u
            self._dot(mouth, 0.035 * u, 0.012 * u, head_up, (0.62, 0.3, 0.3), FACE, HEAD)
        for i in (14, 15):
            if g[i] and face_visible:
                self._dot(k[i], 0.022 * u, 0.016 * u, head_up, (0.12, 0.08, 0.07), FACE, HEAD)
        for i in (16, 17):
            if g[i]:
                self._dot(k[i], 0.032 * u, 0.05 * u, head_up, self.skin * 0.92, FACE, HEAD)

    def long_hair(self):
        k, u, ident = self.f.points, self.f.unit, self.id
        centre = k[1] - self.f.down * (_NOSE_UP + 0.02) * u
        g = self.f.given
        if g[16] and g[17]:
            centre = (k[16] + k[17]) / 2
        end = centre + self.f.down * 0.62 * u
        hair = np.asarray(ident.hair, np.float32)
        local = _local_frame(self.canvas, centre, end, 0.2 * u + 1)
        if local is None:
            return
        cov, t, r = _capsule(local, 0.17 * u * ident.head_scale, 0.2 * u, None)
        self.canvas.paint(local.box, cov, _shade(np.broadcast_to(hair, cov.shape + (3,)), local.across, r), HAIR, LONG_HAIR)

    def _dot(self, centre, rx, ry, up, color, label, part):
        """A small axis-aligned-to-the-head ellipse (eye, mouth, ear)."""
        local = _local_frame(self.canvas, centre - up * ry, centre + up * ry, rx + 1)
        if local is None:
            return
        s = local.along - ry
        ell = np.sqrt((local.across / rx) ** 2 + (s / ry) ** 2)
        cov = np.clip(0.5 - (ell - 1.0) * min(rx, ry), 0.0, 1.0)
        col = np.broadcast_to(np.asarray(color, np.float32), cov.shape + (3,))
        self.canvas.paint(local.box, cov, col, label, part)

    # the whole figure ----------------------------------------------------------------------

    def arm(self, side: str):
        k, u, ident = self.f.points, self.u, self.id
        s_, e_, w_ = (2, 3, 4) if side == "r" else (5, 6, 7)
        parts = (R_UPPER_ARM, R_FOREARM, R_HAND) if side == "r" else (L_UPPER_ARM, L_FOREARM, L_HAND)
        bw = ident.build
        pattern = ident.top_front if self.f.frontness >= 0 else ident.top_back
        offset = 0.7 if side == "r" else -0.7  # each sleeve is its own piece of the fabric
        sleeve_upper = {"none": None, "short": 0.5, "long": 1.01}[ident.sleeves]
        sleeve_fore = 0.9 if ident.sleeves == "long" else None
        self.limb(parts[0], k[s_], k[e_], 0.095 * u * bw, 0.068 * u * bw, _UPPER_ARM, 0.0, sleeve_upper, TOP, pattern, u_offset=offset)
        self.limb(parts[1], k[e_], k[w_], 0.066 * u * bw, 0.048 * u * bw, _FOREARM, _UPPER_ARM, sleeve_fore, TOP, pattern, u_offset=offset)
        hand_end = k[w_] + _unit(k[w_] - k[e_]) * 0.15 * u
        self.limb(parts[2], k[w_], hand_end, 0.05 * u, 0.042 * u, 0.15, 0.0)

    def leg(self, side: str):
        k, u, ident = self.f.points, self.u, self.id
        h_, n_, a_ = (8, 9, 10) if side == "r" else (11, 12, 13)
        parts = (R_THIGH, R_SHIN, R_FOOT) if side == "r" else (L_THIGH, L_SHIN, L_FOOT)
        bw = ident.build
        offset = 0.5 if side == "r" else -0.5
        bottom = ident.bottom
        thigh_to = {"shorts": ident.bottom_length * 0.9, "trousers": 1.01, "skirt": None}[bottom]
        shin_to = 0.94 if bottom == "trousers" else None
        shoes = np.asarray(ident.shoes, np.float32)
        self.limb(parts[0], k[h_], k[n_], 0.13 * u * bw, 0.085 * u * bw, _THIGH, 0.0, thigh_to, BOTTOM, ident.bottom_pattern, u_offset=offset, widen=1.08)
        self.limb(parts[1], k[n_], k[a_], 0.082 * u * bw, 0.055 * u * bw, _SHIN, _THIGH, shin_to, BOTTOM, ident.bottom_pattern,
                  cuff_from=0.93 if bottom != "trousers" else None, cuff_color=shoes, u_offset=offset, widen=1.08)
        # the foot points where the person faces: down-and-out from the front, sideways in profile
        f = self.f
        sideways = 0.0 if not f.near else (1.0 - abs(f.frontness))
        facing_dir = -1.0 if f.near == "l" else 1.0
        toe = k[a_] + f.down * 0.1 * u + f.side * facing_dir * sideways * 0.2 * u
        self.limb(parts[2], k[a_], toe, 0.058 * u, 0.05 * u, 0.2, 0.0, 1.01, SHOES, _Solid(shoes))

    def draw(self):
        f, ident = self.f, self.id
        front = f.frontness >= 0
        # long hair hangs behind the back, so it covers the torso only when the face is turned away
        face_away = not f.given[[0, 14, 15]].any()
        # depth order (back to front); side views put the far arm and leg behind the torso
        arm_z = {"r": 1.0, "l": 1.0} if front else {"r": -1.0, "l": -1.0}
        leg_z = {"r": -0.5, "l": -0.5}
        if f.near:
            far = "r" if f.near == "l" else "l"
            arm_z = {f.near: 1.0, far: -1.0}
            leg_z = {f.near: -0.4, far: -0.6}
        steps = [
            (0.5 if face_away else -2.0, self.long_hair if ident.hair_style == "long" else None),
            (arm_z["r"] + (0.01 if f.near == "r" else 0.0), lambda: self.arm("r")),
            (arm_z["l"] + (0.01 if f.near == "l" else 0.0), lambda: self.arm("l")),
            (leg_z["r"], lambda: self.leg("r")),
            (leg_z["l"] + 0.001, lambda: self.leg("l")),
            (0.0, self.torso),
            (0.2, self.skirt if ident.bottom == "skirt" else None),
            (0.3 if front or f.near else 0.6, self.head),
        ]
        for _, fn in sorted(steps, key=lambda s: s[0]):
            if fn is not None:
                fn()
        return self.canvas


@dataclass(frozen=True)
class _Solid:
    """A one-colour 'pattern' (shoes)."""

    color: np.ndarray

    def __call__(self, u, v, pixels_per_unit):
        return np.broadcast_to(self.color, u.shape + (3,))


def render_person(identity: Identity, keypoints: np.ndarray, resolution: int) -> Dict[str, np.ndarray]:
    """Draw ``identity`` in the pose ``keypoints`` (COCO-18 ``(x, y)`` pixels of the square frame).

    Returns:
        `dict`: ``image`` uint8 ``(R, R, 3)``, ``keypoints`` float32 ``(18, 2)`` as drawn (-1 where not
        visible), ``parsing`` uint8 ``(R, R)`` with ``PARSING_LABELS`` indices.
    """
    kps = check_keypoints(keypoints, "keypoints")
    if not drawable(kps):
        raise ValueError(
            "`keypoints` do not describe a drawable body: need the neck (or both shoulders) and at least 5 of the "
            f"13 body joints, got present {[COCO18_NAMES[i] for i in np.flatnonzero(visible(kps))]}"
        )
    figure = _complete(kps)
    canvas = _Renderer(identity, figure, resolution).draw()
    image = np.clip(canvas.color * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.full((NUM_KEYPOINTS, 2), -1.0, np.float32)
    for j in range(NUM_KEYPOINTS):
        x, y = figure.points[j]
        if not (figure.given[j] or 1 <= j <= 13) or x < 0 or y < 0:
            continue
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < resolution and 0 <= yi < resolution and canvas.part[yi, xi] in KEYPOINT_PARTS[j]:
            out[j] = (x, y)
    return {"image": image, "keypoints": out, "parsing": canvas.label}


# ---------------------------------------------------------------------------------------------
# poses
# ---------------------------------------------------------------------------------------------


def find_pose_file(name: str) -> Path:
    """Locate a DeepFashion pose file: ``$PGAT_SHARED_DATA/deepfashion``, the repository's
    ``../shared/data/deepfashion``, or the copy shipped in ``pgat/data/poses``."""
    candidates = []
    if os.environ.get("PGAT_SHARED_DATA"):
        candidates.append(Path(os.environ["PGAT_SHARED_DATA"]) / "deepfashion" / name)
    here = Path(__file__).resolve()
    if len(here.parents) > 4:  # a source checkout: <repo>/src/pgat/data/synthetic.py, shared data beside <repo>
        candidates.append(here.parents[4] / "shared" / "data" / "deepfashion" / name)
    candidates.append(_PACKAGED_POSES / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"pose file {name!r} not found; looked in {[str(p) for p in candidates]}")


_PERSON_ID = re.compile(r"id(\d+)")


def person_id(name: str) -> str:
    """The DeepFashion person/item id in an image name (``...id0000337203_3back.jpg`` -> ``0000337203``)."""
    m = _PERSON_ID.search(name)
    return m.group(1) if m else name


def split_of(name: str) -> str:
    """Which split a DeepFashion pose belongs to: one person in ten (by a stable hash of the id) is test."""
    return "test" if zlib.crc32(person_id(name).encode()) % 10 == 0 else "train"


@lru_cache(maxsize=4)
def _deepfashion_pool(annotation_path: str, pairs_path: str):
    table = read_deepfashion_annotations(annotation_path, frame="256x256")
    names, skipped = [], 0
    for name, kps in table.items():
        if drawable(kps):
            names.append(name)
        else:
            skipped += 1
    keep = set(names)
    pairs = []
    with open(pairs_path, "r", encoding="utf-8") as f:
        header = f.readline().strip()
        if header != "from,to":
            raise ValueError(f"DeepFashion pairs file '{pairs_path}' must start with the header 'from,to', got {header!r}")
        for line in f:
            parts = line.strip().split(",")
            if len(parts) == 2 and parts[0] in keep and parts[1] in keep:
                pairs.append((parts[0], parts[1]))
    return table, names, skipped, pairs


def random_pose(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A random plausible standing pose in a ``size x size`` frame (full body, any facing direction)."""
    theta = rng.uniform(-math.pi, math.pi) if rng.uniform() < 0.5 else rng.normal(0.0, 0.5)
    cf, sf = math.cos(theta), math.sin(theta)
    unit = size * rng.uniform(0.22, 0.27)
    down = _rotate(np.array([0.0, 1.0]), rng.normal(0, 0.04))
    side = np.array([down[1], -down[0]])
    neck = np.array([size / 2 + rng.normal(0, size * 0.02), size / 2 - 3.25 * unit / 2 + 0.55 * unit])
    k = np.full((18, 2), -1.0)
    k[1] = neck
    k[2], k[5] = neck - side * _SHOULDER_HALF * unit * cf, neck + side * _SHOULDER_HALF * unit * cf
    mid = neck + down * unit
    k[8], k[11] = mid - side * _HIP_HALF * unit * cf, mid + side * _HIP_HALF * unit * cf
    sgn = 1.0 if cf >= 0 else -1.0
    for s_, e_, w_, out in ((2, 3, 4, -1.0), (5, 6, 7, 1.0)):
        if abs(cf) > 0.5:
            raise_ = rng.uniform(-0.15, 1.3)  # abduction, away from the body
            ua = _rotate(down, -out * sgn * raise_)
            fa = _rotate(ua, rng.uniform(-0.6, 0.9) * -out * sgn if rng.uniform() < 0.8 else rng.uniform(-1.8, -0.6) * -out * sgn)
        else:  # profile: the arms swing forwards/backwards in the image plane
            ua = _rotate(down, rng.uniform(-0.6, 0.6))
            fa = _rotate(ua, rng.uniform(-1.4, 0.2) * (1 if sf > 0 else -1))
        k[e_] = k[s_] + ua * _UPPER_ARM * unit * rng.uniform(0.85, 1.0)
        k[w_] = k[e_] + fa * _FOREARM * unit * rng.uniform(0.85, 1.0)
    for h_, n_, a_, out in ((8, 9, 10, -1.0), (11, 12, 13, 1.0)):
        th = _rotate(down, -out * sgn * rng.uniform(-0.1, 0.3) * abs(cf) + rng.normal(0, 0.15) * (1 - abs(cf)))
        sh = _rotate(th, rng.uniform(-0.3, 0.3) * (1 - abs(cf)) + rng.normal(0, 0.05))
        k[n_] = k[h_] + th * _THIGH * unit
        k[a_] = k[n_] + sh * _SHIN * unit
    up = -down
    centre = neck + up * (_NOSE_UP + 0.03) * unit
    if cf > -0.3:
        k[0] = centre + side * sf * 0.12 * unit - up * 0.03 * unit
    for i, o in ((14, -1.0), (15, 1.0)):
        far = (o < 0 and sf < -0.5) or (o > 0 and sf > 0.5)
        if cf > 0.1 and not far:
            k[i] = k[0] + up * 0.055 * unit + side * (o * 0.06 * cf) * unit
    for i, o in ((16, -1.0), (17, 1.0)):
        far = (o < 0 and sf < -0.6) or (o > 0 and sf > 0.6)
        if not far:
            k[i] = centre + side * (o * 0.15 * cf - sf * 0.05) * unit
    return k.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------


def _item_index(index, length: int, dataset: str) -> int:
    """``ds[index]``'s index, negative ones counted from the end; an error for a non-integer or one out of range."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"`index` must be an integer, got {type(index).__name__}")
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {dataset} of length {length}")
    return int(index)


class SynthHumans:
    r"""Procedural people in real poses; ``ds[i]`` is one identity in two poses.

    Args:
        resolution (`int`, *optional*, defaults to 256): side of the square images, 64 to 1024.
        split (`str`, *optional*, defaults to ``"train"``): ``"train"`` or ``"test"``; the two share no
            identity and (for the DeepFashion and random pose pools) no pose.
        seed (`int`, *optional*, defaults to 0): stream of identities and pairs; ``ds[i]`` depends only on
            ``(seed, split, i)`` and the pose pool.
        poses (`str` or sequence of arrays, *optional*): ``None`` / ``"deepfashion"`` for the real DeepFashion
            test poses (pairs as in the benchmark's pair list), ``"random"`` for random plausible poses,
            or a list of ``(18, 2)`` keypoint arrays in a ``pose_frame`` image, paired at random. A given
            list is used by both splits: splitting it is the caller's choice.
        length (`int`, *optional*): ``len(ds)``; defaults to the number of DeepFashion pose pairs in the
            split, or 10,000 (train) / 1,000 (test) for the other pools.
        pose_frame (`(width, height)`, *optional*, defaults to ``(256, 256)``): the frame of the given poses;
            they are letterboxed into the square like images (`pgat.pose.Letterbox`).

    Attributes:
        num_poses (`int`): poses in this split's pool. skipped_poses (`int`): DeepFashion rows skipped
        (every joint missing, or too little body to draw).
    """

    def __init__(
        self,
        resolution: int = 256,
        split: str = "train",
        seed: int = 0,
        poses: Union[None, str, Sequence] = None,
        length: Optional[int] = None,
        pose_frame: Tuple[int, int] = (256, 256),
    ):
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise ValueError(f"`resolution` must be an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {resolution!r}")
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
        self.resolution, self.split, self.seed = resolution, split, int(seed)
        self._split_code = SPLITS.index(split)
        self.skipped_poses = 0
        self._pairs: List[Tuple[str, str]] = []
        self._pose_names: List[str] = []
        self._poses: Dict[str, np.ndarray] = {}
        if len(pose_frame) != 2 or min(pose_frame) <= 0:
            raise ValueError(f"`pose_frame` must be a positive (width, height), got {pose_frame!r}")
        self._box = Letterbox.fit(int(pose_frame[0]), int(pose_frame[1]), resolution)
        if poses is None or (isinstance(poses, str) and poses == "deepfashion"):
            self.pose_source = "deepfashion"
            table, names, skipped, pairs = _deepfashion_pool(
                str(find_pose_file(DEEPFASHION_ANNOTATIONS)), str(find_pose_file(DEEPFASHION_PAIRS))
            )
            self._box = Letterbox.fit(256, 256, resolution)
            self.skipped_poses = skipped
            self._pose_names = [n for n in names if split_of(n) == split]
            self._poses = {n: table[n] for n in self._pose_names}
            self._pairs = [p for p in pairs if split_of(p[0]) == split]
            default_length = len(self._pairs)
        elif isinstance(poses, str):
            if poses != "random":
                raise ValueError(f"`poses` must be None, 'deepfashion', 'random' or a list of (18, 2) arrays, got {poses!r}")
            self.pose_source = "random"
            default_length = 10_000 if split == "train" else 1_000
        else:
            self.pose_source = "given"
            if len(poses) < 1:
                raise ValueError("`poses` is an empty list; give at least one (18, 2) keypoint array")
            for i, p in enumerate(poses):
                kps = check_keypoints(p, f"poses[{i}]")
                if not drawable(kps):
                    raise ValueError(
                        f"`poses[{i}]` has too little body to draw: need the neck (or both shoulders) and 5 body joints, "
                        f"got {int(visible(kps)[1:14].sum())} body joints"
                    )
                self._pose_names.append(str(i))
                self._poses[str(i)] = kps
            default_length = 10_000 if split == "train" else 1_000
        self.length = default_length if length is None else length
        if isinstance(self.length, bool) or not isinstance(self.length, (int, np.integer)) or self.length < 1:
            raise ValueError(f"`length` must be a positive integer, got {length!r}")

    @property
    def pose_names(self) -> List[str]:
        """Names of this split's poses (DeepFashion image names, or list indices for given poses)."""
        return list(self._pose_names)

    @property
    def num_poses(self) -> int:
        return len(self._pose_names) if self.pose_source != "random" else self.length * 2

    def __len__(self) -> int:
        return int(self.length)

    def __repr__(self) -> str:
        return (f"SynthHumans(resolution={self.resolution}, split={self.split!r}, seed={self.seed}, "
                f"poses={self.pose_source!r}, length={len(self)})")

    def identity(self, index: int) -> Identity:
        """The identity of pair ``index``: id ``2 index`` in train, ``2 index + 1`` in test."""
        return Identity.sample(2 * int(index) + self._split_code, self.seed)

    def pose(self, name: str) -> np.ndarray:
        """A pose of the pool by name, in the square frame of this dataset."""
        if name not in self._poses:
            raise ValueError(f"`name` {name!r} is not a pose of this split's pool ({len(self._poses)} poses)")
        return self._to_square(self._poses[name])

    def _to_square(self, kps: np.ndarray) -> np.ndarray:
        # poses are fitted like their photos: a pose point outside the frame is dropped, not an error
        k = kps.copy()
        ok = visible(k) & (k[:, 0] < self._box.width) & (k[:, 1] < self._box.height)
        k[~ok] = -1.0
        return self._box.keypoints_to_square(k)

    def _pose_pair(self, rng: np.random.Generator, index: int):
        if self.pose_source == "deepfashion":
            a, b = self._pairs[int(rng.integers(len(self._pairs)))]
            return a, b, self.pose(a), self.pose(b)
        if self.pose_source == "random":
            p0 = random_pose(np.random.default_rng([self.seed, self._split_code, index, 0x70]))
            p1 = random_pose(np.random.default_rng([self.seed, self._split_code, index, 0x71]))
            return f"random-{self.split}-{index}-0", f"random-{self.split}-{index}-1", self._to_square(p0), self._to_square(p1)
        a, b = rng.choice(len(self._pose_names), size=2, replace=len(self._pose_names) < 2)
        a, b = self._pose_names[a], self._pose_names[b]
        return a, b, self.pose(a), self.pose(b)

    def render(self, identity: Union[Identity, int], keypoints) -> Dict[str, np.ndarray]:
        """Draw one identity (an `Identity` or an identity id) in a pose given in this dataset's square frame.

        Returns:
            `dict` with ``image`` (uint8 ``(R, R, 3)``), ``keypoints`` (float32 ``(18, 2)``, as drawn, -1 where
            not visible) and ``parsing`` (uint8 ``(R, R)``, `PARSING_LABELS`).
        """
        if not isinstance(identity, Identity):
            if isinstance(identity, bool) or not isinstance(identity, (int, np.integer)) or identity < 0:
                raise ValueError(f"`identity` must be an Identity or a non-negative identity id, got {identity!r}")
            identity = Identity.sample(int(identity), self.seed)
        kps = check_keypoints(keypoints, "keypoints")
        r = self.resolution
        ok = visible(kps)
        if (ok & ((kps[:, 0] > r - 1) | (kps[:, 1] > r - 1))).any():
            bad = [COCO18_NAMES[i] for i in np.flatnonzero(ok & ((kps[:, 0] > r - 1) | (kps[:, 1] > r - 1)))]
            raise ValueError(f"`keypoints` {', '.join(bad)} fall outside the {r}x{r} frame; mark them (-1, -1) or refit the pose")
        return render_person(identity, kps, r)

    def __getitem__(self, index: int) -> Dict[str, object]:
        index = _item_index(index, len(self), "SynthHumans")
        rng = np.random.default_rng([self.seed, self._split_code, int(index), 0x9A])
        identity = self.identity(index)
        ref_name, tgt_name, ref_pose, tgt_pose = self._pose_pair(rng, int(index))
        ref = render_person(identity, ref_pose, self.resolution)
        tgt = render_person(identity, tgt_pose, self.resolution)
        return {
            "reference": ref["image"],
            "target": tgt["image"],
            "reference_keypoints": ref["keypoints"],
            "target_keypoints": tgt["keypoints"],
            "reference_parsing": ref["parsing"],
            "target_parsing": tgt["parsing"],
            "identity": identity.identity_id,
            "reference_pose": ref_name,
            "target_pose": tgt_name,
        }


# ---------------------------------------------------------------------------------------------
# virtual try-on triples
# ---------------------------------------------------------------------------------------------

# The `Identity` fields that make up the top garment; everything else is the wearer's (and the rest of the outfit).
TOP_FIELDS: Tuple[str, ...] = (
    "sleeves", "top_front", "top_back", "top_length", "print_kind", "print_text", "print_shape", "print_color",
)
# Joints the try-on pipeline needs in both photos: the torso the top covers.
TORSO_CORNERS: Tuple[int, ...] = (2, 5, 8, 11)


def wear_top(person: Identity, garment: Identity) -> Identity:
    """``person`` wearing ``garment``'s top: every field of `TOP_FIELDS` taken from ``garment``, the rest from ``person``.

    The bottom garment's pattern stays where it was on ``person`` (``bottom_start`` pinned to their own hem), so a
    new top of another length covers more or less of the same trousers instead of sliding their pattern.
    """
    start = person.top_length if person.bottom_start is None else person.bottom_start
    return replace(person, bottom_start=start, **{name: getattr(garment, name) for name in TOP_FIELDS})


# The `Identity` fields that make up the bottom garment (trousers, shorts or a skirt, its pattern and length). The
# shoes stay the wearer's.
BOTTOM_FIELDS: Tuple[str, ...] = ("bottom", "bottom_pattern", "bottom_length")
# try-on garment categories (as `PGATTryOnPipeline`'s ``category``): what `SynthHumansTryOn` swaps
TRYON_CATEGORIES: Tuple[str, ...] = GARMENT_CATEGORIES
CATEGORY_FIELDS: Dict[str, Tuple[str, ...]] = {"upper_body": TOP_FIELDS, "lower_body": BOTTOM_FIELDS, "full_body": TOP_FIELDS + BOTTOM_FIELDS}
# the parsing labels of each category's garment: the try-on region is these labels in the person and in the answer
CATEGORY_LABELS: Dict[str, Tuple[int, ...]] = {"upper_body": (TOP,), "lower_body": (BOTTOM,), "full_body": (TOP, BOTTOM)}


def wear_bottom(person: Identity, garment: Identity) -> Identity:
    """``person`` wearing ``garment``'s bottom garment: every field of `BOTTOM_FIELDS` taken from ``garment``, the rest
    (the top, the shoes) from ``person``.

    The bottom's pattern sits on the body where it sat on ``garment`` (``bottom_start`` pinned to the garment
    wearer's own hem): trousers are the same trousers at the same height of the hips, and ``person``'s top covers as
    much of them as it covered of their own. So what the garment photo shows below its hem is what the answer shows
    there, and a try-on that moves it by the body gets it right; where ``person``'s top is shorter than the
    wearer's, the answer shows trousers the garment photo hides.
    """
    start = garment.top_length if garment.bottom_start is None else garment.bottom_start
    return replace(person, bottom_start=start, **{name: getattr(garment, name) for name in BOTTOM_FIELDS})


def wear(person: Identity, garment: Identity, category: str = "upper_body") -> Identity:
    """``person`` wearing ``garment``'s garment of ``category``: `wear_top` (``"upper_body"``), `wear_bottom`
    (``"lower_body"``), or both (``"full_body"``: the bottom's pattern where it sits on ``garment``)."""
    if category not in TRYON_CATEGORIES:
        raise ValueError(f"`category` must be one of {list(TRYON_CATEGORIES)}, got {category!r}")
    if category == "upper_body":
        return wear_top(person, garment)
    if category == "lower_body":
        return wear_bottom(person, garment)
    return wear_bottom(wear_top(person, garment), garment)


class SynthHumansTryOn:
    r"""Virtual try-on triples of SynthHumans: ``ds[i]`` is a person, a photo of someone else's garment, and the
    exact ground truth, the person in their own pose wearing that garment: their top (``category="upper_body"``, the
    default), their bottom garment (``"lower_body"``) or both (``"full_body"``).

    Each triple draws, from the split's own identities and pose pool (those of `SynthHumans` with the same
    ``split`` and ``seed``): the person ``A`` (identity `SynthHumans.identity` ``(i)``) in pose ``pa``, another identity
    ``B`` in pose ``pb`` (the garment photo), and renders ``wear(A, B, category)`` in ``pa`` (the ground truth:
    `wear_top`, `wear_bottom`, or both). The two poses are two different poses of the pool, drawn independently (any
    facing: a garment seen from behind is part of the task). A draw is replaced (deterministically, by the next draw
    of the triple's own stream) when the two garments are identical (every field of the category's
    `CATEGORY_FIELDS`) or when either photo does not show both shoulders and both hips (as drawn, see
    `render_person`): the try-on pipeline needs the torso's corners in both. The draws are the same for every
    category; only what is swapped, and so which draws are replaced, differs. ``"upper_body"`` items are those of
    the class before it had categories, to the byte.

    What the ground truth changes: every pixel that differs from the person photo lies in the union of the two
    garments (the category's `CATEGORY_LABELS` in the person's parsing and in the ground truth's: ``"top"``,
    ``"bottom"``, or both) or within about one pixel of it (the anti-aliased rim of a sleeve or trouser leg of
    another width, or a front part blending over a changed part behind it). Sleeves, top length, the kind of bottom
    and its length decide which pixels are skin, so the person's garment alone is not the region. One more band
    for the lower and full body: the shoes' tops (``"shoes"``) at the ankles, which show above the foot below shorts
    and skirts but not below trousers; the union of the two ``"shoes"`` labels holds it.

    Args:
        resolution (`int`, *optional*, defaults to 256): side of the square images, 64 to 1024.
        split (`str`, *optional*, defaults to ``"test"``): ``"train"`` or ``"test"``; the splits share no identity
            and no pose, as in `SynthHumans`.
        seed (`int`, *optional*, defaults to 0): stream of identities and draws; ``ds[i]`` depends only on
            ``(seed, split, i)``.
        length (`int`, *optional*, defaults to 200): ``len(ds)``; the garment identities are drawn among the
            first ``max(length, 2)`` identities of the split.
        category (`str`, *optional*, defaults to ``"upper_body"``): the garment swapped, one of
            `TRYON_CATEGORIES`.

    Items are dicts: ``person``, ``garment``, ``ground_truth`` (uint8 ``(R, R, 3)``); ``person_keypoints``,
    ``garment_keypoints``, ``ground_truth_keypoints`` (float32 ``(18, 2)`` as drawn, -1 missing);
    ``person_parsing``, ``garment_parsing``, ``ground_truth_parsing`` (uint8 ``(R, R)``, `PARSING_LABELS`);
    ``person_identity``, ``garment_identity`` (identity ids) and ``person_pose``, ``garment_pose`` (pose names).
    """

    DEFAULT_LENGTH = 200
    MAX_DRAWS = 100  # a split whose pool never gives a valid triple in this many draws is an error

    def __init__(self, resolution: int = 256, split: str = "test", seed: int = 0, length: Optional[int] = None,
                 category: str = "upper_body"):
        length = self.DEFAULT_LENGTH if length is None else length
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"`length` must be a positive integer, got {length!r}")
        if category not in TRYON_CATEGORIES:
            raise ValueError(f"`category` must be one of {list(TRYON_CATEGORIES)}, got {category!r}")
        self.humans = SynthHumans(resolution=resolution, split=split, seed=seed, length=int(length))
        self.resolution, self.split, self.seed = self.humans.resolution, self.humans.split, self.humans.seed
        self.category = category

    def __len__(self) -> int:
        return len(self.humans)

    def __repr__(self) -> str:
        return (f"SynthHumansTryOn(resolution={self.resolution}, split={self.split!r}, seed={self.seed}, length={len(self)}, "
                f"category={self.category!r})")

    @property
    def pose_names(self) -> List[str]:
        """Names of the split's poses (the pool the triples draw from)."""
        return self.humans.pose_names

    def __getitem__(self, index: int) -> Dict[str, object]:
        index = _item_index(index, len(self), "SynthHumansTryOn")
        humans, r = self.humans, self.resolution
        rng = np.random.default_rng([self.seed, humans._split_code, index, 0x7E])
        names = humans.pose_names
        pool = max(len(self), 2)
        person = humans.identity(index)
        for _ in range(self.MAX_DRAWS):
            other = int(rng.integers(pool - 1))
            other += other >= index  # anyone but the person
            garment = humans.identity(other)
            a, b = rng.choice(len(names), size=2, replace=False)
            if all(getattr(person, f) == getattr(garment, f) for f in CATEGORY_FIELDS[self.category]):
                continue
            seen = render_person(person, humans.pose(names[a]), r)
            worn = render_person(garment, humans.pose(names[b]), r)
            if not (visible(seen["keypoints"])[list(TORSO_CORNERS)].all() and visible(worn["keypoints"])[list(TORSO_CORNERS)].all()):
                continue
            truth = render_person(wear(person, garment, self.category), humans.pose(names[a]), r)
            return {
                "person": seen["image"],
                "garment": worn["image"],
                "ground_truth": truth["image"],
                "person_keypoints": seen["keypoints"],
                "garment_keypoints": worn["keypoints"],
                "ground_truth_keypoints": truth["keypoints"],
                "person_parsing": seen["parsing"],
                "garment_parsing": worn["parsing"],
                "ground_truth_parsing": truth["parsing"],
                "person_identity": person.identity_id,
                "garment_identity": garment.identity_id,
                "person_pose": names[a],
                "garment_pose": names[b],
            }
        raise RuntimeError(
            f"no valid try-on triple for index {index} in {self.MAX_DRAWS} draws (split {self.split!r}, {len(names)} poses): "
            "the pool's poses rarely show both shoulders and both hips"
        )
