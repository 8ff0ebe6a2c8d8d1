"""What a usable input is: reading and validating images, poses and pose sequences, in one place.

Every door of PGAT (the pipelines, the ``pgat`` CLI, the Space, `pgat.serving`, the video and try-on paths, the
dataset readers) reads users' images and poses through this module, so the same input gets the same answer, in the
same words, wherever it arrives. A refusal is an `InputError`: a ``ValueError`` that carries the argument at fault
(``argument``), what was received (``received``) and what is accepted (``expected``), and reads
``` `argument`: received; expected ...```. Each door renders ``argument`` in its own terms (the CLI's ``--pose``, the
server's ``inputs.target_pose``, the Space's "Target pose") with `InputError.renamed`; the rest of the message is
the same everywhere.

Decisions, written down (the limits are module constants; the pixel limit can be changed with
``PGAT_MAX_IMAGE_PIXELS``):

- **Pixels**: at most `MAX_IMAGE_PIXELS` (8192 × 8192 = 67.1 megapixels), checked from the file's header before
  any pixel is decoded, so a small file that declares an enormous image (a decompression bomb) costs nothing.
  A 61-megapixel full-frame camera photo passes (decoded, 190 MB); the model works at most at 1024², so more
  pixels than that add nothing but memory.
- **Smallest side**: `MIN_IMAGE_SIDE` = 32 pixels. Below that a person cannot be seen (BlazePose finds nobody
  in a 32-pixel-tall person either), and the smallest model stage is 64².
- **Aspect ratio**: at most `MAX_ASPECT_RATIO` = 4 (longer side over shorter). The picture is fitted into the
  model's square, so at 4:1 it fills a quarter of it (a 64-pixel strip of a 256² output); beyond that the person
  is a few pixels across. Portraits (DeepFashion 176 × 256 is 1.45), phone photos (4:3) and 16:9 video frames
  all pass.
- **Animated images** (GIF, APNG, WebP with several frames) are refused rather than reduced to a frame the user
  did not choose: the message says how many frames and what to send instead.
- **A body**: a pose (given, or estimated from a photo) is usable when at least `MIN_BODY_JOINTS` = 3 of the 14
  body joints (COCO-18 without eyes and ears) are visible inside the picture, one of them a torso joint (the
  neck, a shoulder or a hip): that places the torso and at least one limb or the head. No stricter: a half-body
  photo (head, shoulders and arms, no hips: most of DeepFashion) is a valid reference. A point is visible when
  both its coordinates are non-negative and its confidence (when given) is above 0.
- **Nothing is corrected silently**: a point outside the picture is not moved inside; a pose with no point inside
  it, or a photo with nobody in it, is an error, never an output.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .pose import COCO18_NAMES, NUM_KEYPOINTS

MAX_IMAGE_PIXELS_ENV = "PGAT_MAX_IMAGE_PIXELS"
MAX_IMAGE_PIXELS = 8192 * 8192  # the default; `max_image_pixels()` is what is applied
MIN_IMAGE_SIDE = 32
MAX_ASPECT_RATIO = 4.0
MIN_BODY_JOINTS = 3
# COCO-18 without eyes and ears: the joints that place a body
BODY_JOINTS: Tuple[int, ...] = tuple(range(14))
TORSO_JOINTS: Tuple[int, ...] = (1, 2, 5, 8, 11)  # neck, shoulders, hips

Frame = Optional[Tuple[int, int]]
ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray, torch.Tensor]


def max_image_pixels() -> int:
    """The pixel limit of every image read: ``PGAT_MAX_IMAGE_PIXELS`` when set, else 8192 × 8192."""
    value = os.environ.get(MAX_IMAGE_PIXELS_ENV)
    if value in (None, ""):
        return MAX_IMAGE_PIXELS
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < MIN_IMAGE_SIDE ** 2:
        raise ValueError(f"environment variable {MAX_IMAGE_PIXELS_ENV} must be a whole number of at least {MIN_IMAGE_SIDE ** 2}, got {value!r}")
    return n



# ---------------------------------------------------------------------------------------------
# the error
# ---------------------------------------------------------------------------------------------


class InputError(ValueError):
    """An input PGAT cannot use: ``argument`` (the parameter at fault, e.g. ``"target_pose"``), ``received``
    (what came, in words) and ``expected`` (what is accepted). ``str()`` is ``` `argument`: received; expected ...```."""

    def __init__(self, argument: str, received: str, expected: str, hint: str = ""):
        self.argument, self.received, self.expected, self.hint = argument, received, expected, hint
        super().__init__(self.message(argument))

    def message(self, argument: Optional[str] = None) -> str:
        text = f"`{argument or self.argument}`: {self.received}; expected {self.expected}"
        return f"{text}. {self.hint}" if self.hint else text

    def renamed(self, names: Union[Mapping[str, str], Callable[[str], str]]) -> str:
        """The message with every argument it names in backticks named as a door names it (``names``: a mapping, e.g.
        ``{"target_pose": "--pose"}``, or a function); an index (``target_pose[2]``) is kept; names not in the
        mapping stay as they are."""
        lookup = names if callable(names) else (lambda n: names.get(n, n))

        def rename(m: "re.Match") -> str:  # every argument the message names in backticks, `reference_pose=` too
            return f"`{lookup(m.group(1))}{m.group(2) or ''}`"

        return re.sub(r"`([a-z_]+)(\[\d+\])?=?`", rename, self.message())

    def __reduce__(self):  # picklable across processes (DataLoader workers)
        return (type(self), (self.argument, self.received, self.expected, self.hint))


class MissingInputError(InputError, FileNotFoundError):
    """An input file or folder that does not exist (also a `FileNotFoundError`)."""


class UnreadableImageError(InputError):
    """An image file that cannot be decoded at all: empty, not an image, truncated or corrupt (as opposed to an
    image that decodes but is not usable: too large, too small, animated)."""


def describe(value: Any) -> str:
    """How a received value is named in messages."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 40 else f"the string {value!r}"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, Mapping):
        keys = sorted(map(str, value))
        return f"an object with keys {keys[:8]}{' ...' if len(keys) > 8 else ''}"
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)} ({value.dtype})"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------

IMAGE_FORMS = "an image file (PNG, JPEG, WebP, BMP, ...), a PIL image, an (H, W[, 3|4]) uint8 or [0, 1] float array, or a (3, H, W) tensor in [-1, 1]"


def check_image_size(width: int, height: int, name: str, what: str = "image") -> None:
    """Refuse a picture of more than the pixel limit, a side below `MIN_IMAGE_SIDE`, or an aspect ratio above
    `MAX_ASPECT_RATIO` (see the module docstring for why these)."""
    limit = max_image_pixels()
    if width * height > limit:
        raise InputError(name, f"a {width}x{height} {what} ({width * height / 1e6:.1f} megapixels)",
                         f"at most {limit / 1e6:.1f} megapixels ({MAX_IMAGE_PIXELS_ENV}); scale it down first")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(name, f"a {width}x{height} {what}", f"at least {MIN_IMAGE_SIDE} pixels on its shorter side, in which a person can be seen")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise InputError(name, f"a {width}x{height} {what} (aspect ratio {ratio:.1f}:1)",
                         f"an aspect ratio of at most {MAX_ASPECT_RATIO:g}:1; crop it around the person")


def open_image(source: Union[str, os.PathLike, bytes, bytearray], name: str = "image") -> Image.Image:
    """Open an encoded image (a path, or the bytes of a file) and check it before decoding any pixel: that it is
    an image, is not animated, and has a usable size. Returns the opened, not yet decoded, PIL image."""
    if isinstance(source, (bytes, bytearray)):
        where, raw = f"{len(source)} bytes", bytes(source)
        stream = io.BytesIO(raw)
        head = raw[:8]
    else:
        path = Path(source)
        where = f"the file '{path}'"
        if not path.exists():
            raise MissingInputError(name, f"'{path}', which does not exist", "an image file")
        if not path.is_file():
            raise InputError(name, f"'{path}', which is a folder", "an image file")
        stream = path
        head = None  # read only when the file turns out not to be an image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower and applies next
            im = Image.open(stream)
    except Image.DecompressionBombError as e:
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(declared.group(1)) / 1e6:,.0f} megapixels" if declared else "an enormous image"
        raise InputError(name, f"{where}, whose header declares {size}", f"at most {max_image_pixels() / 1e6:.1f} megapixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        if head is None:
            with open(stream, "rb") as f:
                head = f.read(8)
        if not head:
            raise UnreadableImageError(name, f"{where}, which is empty", "an image file") from None
        raise UnreadableImageError(name, f"{where}, which is not an image (it starts with {head!r})", "a PNG, JPEG, WebP or other image file") from None
    try:
        frames = getattr(im, "n_frames", 1) if getattr(im, "is_animated", False) else 1
        if frames > 1:
            raise InputError(name, f"{where}, an animated {im.format} of {frames} frames",
                             "one still image; save the frame you want as PNG or JPEG")
        check_image_size(im.size[0], im.size[1], name, f"{im.format or ''} image".strip())
    except BaseException:
        im.close()  # the file handle of a refused image is not left open
        raise
    return im


def read_image(image: ImageSource, name: str = "image") -> Image.Image:
    """Any accepted image as an RGB PIL image, or an `InputError` naming ``name``.

    Accepts a file path or the bytes of a file (checked by `open_image` before decoding, then decoded: a
    truncated file is an error here, not later in the model), a PIL image, an ``(H, W)`` / ``(H, W, 3|4)`` numpy
    array (uint8, or float in [0, 1] as diffusers returns them) and a ``(3, H, W)`` / ``(1, 3, H, W)`` torch tensor
    in [-1, 1] (the package's own convention). Every form gets the same size checks.
    """
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        im = open_image(image, name)
        try:
            with im:
                im.load()
                return _to_rgb(im)
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            where = f"{len(image)} bytes" if isinstance(image, (bytes, bytearray)) else f"the file '{os.fspath(image)}'"
            raise UnreadableImageError(name, f"{where}, a truncated or corrupt {im.format} image ({e})", "a complete image file") from None
    return Image.fromarray(image_array(image, name))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits, not clip
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray((arr / top * 255).clip(0, 255).round().astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        return Image.fromarray((arr.clip(0, 1) * 255).round().astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def image_array(image, name: str = "image") -> np.ndarray:
    """An image in memory (PIL, numpy array, tensor; see `read_image`) as an ``(H, W, 3)`` uint8 RGB array."""
    if isinstance(image, Image.Image):
        check_image_size(image.size[0], image.size[1], name)
        return np.asarray(_to_rgb(image))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3 or not torch.is_floating_point(t):
            raise InputError(name, f"a {t.dtype} tensor of shape {tuple(image.shape)}", "a float (3, H, W) or (1, 3, H, W) tensor in [-1, 1]")
        if not torch.isfinite(t).all():
            raise InputError(name, "a tensor with NaN or infinite values", "a float tensor in [-1, 1]")
        if t.min() < -1.001 or t.max() > 1.001:
            raise InputError(name, f"a tensor with values in [{t.min().item():.3g}, {t.max().item():.3g}]", "a float tensor in [-1, 1]")
        check_image_size(t.shape[2], t.shape[1], name)
        arr = ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(arr)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[:, :, None].repeat(3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise InputError(name, f"an array of shape {image.shape}", "an (H, W), (H, W, 3) or (H, W, 4) array")
        check_image_size(arr.shape[1], arr.shape[0], name)
        arr = arr[:, :, :3]
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise InputError(name, f"a float array with values in [{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]", "uint8, or float values in [0, 1]")
            return np.ascontiguousarray((arr * 255).round().astype(np.uint8))
        raise InputError(name, f"an array of dtype {arr.dtype}", "uint8, or float values in [0, 1]")
    raise InputError(name, describe(image), IMAGE_FORMS)


# ---------------------------------------------------------------------------------------------
# poses
# ---------------------------------------------------------------------------------------------

POSE_FORMS = ("an (18, 2|3) array of (x, y[, confidence]) in the reference image's pixels (numpy, torch, a list, a .npy file or a "
              ".json file of such a list), OpenPose JSON (an object with a 'people' list; COCO-18 or BODY_25), or a photo of someone in the pose")


OPENPOSE_EXPECTED = "OpenPose JSON: an object with a 'people' list, each person with 'pose_keypoints_2d' of 54 (COCO-18) or 75 (BODY_25) numbers"


def numeric_keypoints(value, name: str = "keypoints", widths: Tuple[int, ...] = (2, 3)) -> np.ndarray:
    """``value`` as a float32 ``(18, w)`` array, ``w`` one of ``widths``, as given (no point changed), or an
    `InputError`: not numbers (strings are refused, not converted), the wrong shape, NaN or infinite values."""
    shape = " or ".join(f"(18, {w})" for w in widths)
    pixels = "x, y[, confidence]" if 3 in widths else "x, y"
    numbers = f"an {shape} array of numbers (COCO-18 {pixels})"
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes)) or isinstance(value, Mapping):
        raise InputError(name, describe(value), numbers)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):  # OpenPose people, one level too deep
        raise InputError(name, f"OpenPose JSON whose top level is {describe(value)}", OPENPOSE_EXPECTED)
    if _has_text(value):  # numpy would read "12.5" as a number: a pose of strings is refused, not converted
        raise InputError(name, f"{describe(value)} with strings among its values", numbers)
    try:
        with np.errstate(over="ignore"):  # an overflowing value becomes inf, refused below
            arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise InputError(name, f"{describe(value)} that is not all numbers", numbers) from None
    if arr.ndim != 2 or arr.shape[0] != NUM_KEYPOINTS or arr.shape[1] not in widths:
        raise InputError(name, f"an array of shape {tuple(arr.shape)}", f"shape {shape} (COCO-18 keypoints as {pixels.replace('y', 'y pixels', 1)})")
    if not np.isfinite(arr).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(arr))[:, 0]})
        at = "every point" if len(bad) == NUM_KEYPOINTS else _names(bad)
        raise InputError(name, f"NaN or infinite coordinates (at {at})", "finite numbers; mark a missing point as (-1, -1)")
    return arr


def keypoint_array(value, name: str = "keypoints") -> np.ndarray:
    """``value`` as float32 ``(18, 3)`` ``(x, y, confidence)``: an ``(18, 2)`` array gets confidence 1 where present;
    a point of confidence 0 is missing. A non-numeric, wrongly shaped, NaN or infinite array is an `InputError`
    (`numeric_keypoints`)."""
    arr = numeric_keypoints(value, name)
    if arr.shape[1] == 2:
        arr = np.concatenate([arr, ((arr[:, 0] >= 0) & (arr[:, 1] >= 0))[:, None].astype(np.float32)], axis=1)
    else:  # OpenPose's convention, as its JSON is read: a point of confidence 0 was not found
        arr = arr.copy()
        arr[arr[:, 2] <= 0] = (-1.0, -1.0, 0.0)
    return arr


def _has_text(value, depth: int = 0) -> bool:
    """Whether a (nested) keypoint value holds strings, bytes or objects numpy would convert or choke on."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "USO" and (value.dtype.kind != "O" or any(_has_text(v, depth + 1) for v in value.ravel()))
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, (list, tuple)) and depth < 3:
        return any(_has_text(v, depth + 1) for v in value)
    return False


def openpose_people(data: Any, name: str, source: str = "OpenPose JSON") -> list:
    """Every person of parsed OpenPose JSON as ``(18, 3)`` (BODY_25 mapped to COCO-18; confidence-0 points
    missing), or an `InputError` that says which part of the JSON is wrong."""
    from .pose import BODY25_TO_COCO18

    expected = OPENPOSE_EXPECTED
    if not isinstance(data, Mapping):
        raise InputError(name, f"{source} whose top level is {describe(data)}", expected)
    if "people" not in data:
        raise InputError(name, f"{source} {describe(data)}, without 'people'", expected)
    people = data["people"]
    if not isinstance(people, list):
        raise InputError(name, f"{source} whose 'people' is {describe(people)}", expected)
    out = []
    for i, person in enumerate(people):
        flat = None
        for key in ("pose_keypoints_2d", "pose_keypoints"):
            if isinstance(person, Mapping) and key in person:
                flat = person[key]
                break
        if flat is None:
            raise InputError(name, f"{source} whose people[{i}] is {describe(person)}, without 'pose_keypoints_2d'", expected)
        if not isinstance(flat, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            raise InputError(name, f"{source} whose people[{i}].pose_keypoints_2d is {describe(flat)} with values that are not all numbers", expected)
        arr = np.asarray(flat, dtype=np.float64)
        # every value checked, the BODY_25 points that COCO-18 leaves out (MidHip, feet) too: a file with NaN is broken
        if not np.isfinite(arr).all() or np.abs(arr).max(initial=0) > 1e7:
            raise InputError(name, f"{source} whose people[{i}] has NaN, infinite or absurd values", "finite pixel coordinates")
        if arr.size == 18 * 3:
            arr = arr.reshape(18, 3)
        elif arr.size == 25 * 3:
            arr = arr.reshape(25, 3)[list(BODY25_TO_COCO18)]
        else:
            raise InputError(name, f"{source} whose people[{i}].pose_keypoints_2d has {arr.size} values", expected)
        arr = arr.astype(np.float32)
        arr[arr[:, 2] <= 0] = (-1.0, -1.0, 0.0)
        out.append(arr)
    return out


def parse_json_file(path: Union[str, os.PathLike], name: str) -> Any:
    """The parsed content of a JSON file, or an `InputError` (`MissingInputError`) naming ``name``."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(name, f"'{path}', which does not exist", "a JSON file")
    if not path.is_file():
        raise InputError(name, f"'{path}', which is a folder", "a JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(name, f"the file '{path}', which is not valid JSON ({e})", "a JSON file") from None
    except RecursionError:
        raise InputError(name, f"the file '{path}', JSON nested too deeply", "a JSON file") from None


def _is_keypoint_list(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.ndim == 2
    if isinstance(value, np.ndarray):
        return value.ndim == 2
    if not (isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(p, (list, tuple, np.ndarray)) for p in value)):
        return False
    try:  # a list of points, not a list of poses (a batch)
        return np.ndim(value) == 2
    except ValueError:  # ragged: points of different lengths, which `keypoint_array` names
        return all(not isinstance(p, np.ndarray) and not any(isinstance(q, (list, tuple)) for q in p) for p in value)


def read_pose(pose, name: str = "target_pose", estimator: Optional[Callable] = None) -> Tuple[np.ndarray, Frame]:
    """One pose in any accepted form as ``((18, 3) keypoints, frame)``: the keypoints in the pixels of ``frame``
    (``(width, height)``), or of the reference image when ``frame`` is `None`.

    - an ``(18, 2|3)`` array (numpy, torch, nested lists, a ``.npy`` file, or a ``.json`` file of a plain list) is
      in the reference image's pixels;
    - OpenPose JSON (a dict, or a ``.json`` file) is in the reference's pixels unless it records another canvas
      (``canvas_width`` / ``canvas_height``, as ControlNet tools write it); of several people, the largest is used;
    - anything else is a picture of someone in the pose, read by ``estimator`` (``image -> (18, 2|3)``), in that
      picture's frame; a picture with nobody in it is an error.

    Only the form is checked here; `check_body` checks that the pose places a body in its picture.
    """
    from .pose import _person_area

    if _is_keypoint_list(pose):
        return keypoint_array(pose, name), None
    if isinstance(pose, (str, os.PathLike)) and str(pose).lower().endswith(".npy"):
        return keypoint_array(_load_npy(pose, name), name), None
    if isinstance(pose, Mapping) or (isinstance(pose, (str, os.PathLike)) and str(pose).lower().endswith(".json")):
        data = pose if isinstance(pose, Mapping) else parse_json_file(pose, name)
        if isinstance(data, list) and _is_keypoint_list(data):  # a plain [[x, y(, c)], ...] list saved as JSON
            return keypoint_array(data, name), None
        people = openpose_people(data, name)
        if not people:
            raise InputError(name, "OpenPose JSON with an empty 'people' list (nobody in it)", "at least one person")
        kps = max(people, key=_person_area)
        frame = canvas_of(data, name)
        return kps, frame
    if isinstance(pose, (list, tuple)):
        raise InputError(name, f"{describe(pose)} that is not (18, 2|3) keypoints", POSE_FORMS)
    if not isinstance(pose, (str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray, torch.Tensor)):
        raise InputError(name, describe(pose), POSE_FORMS)
    if estimator is None:
        raise InputError(name, "an image, which needs a pose estimator; this pipeline has none (pose_estimator=None)",
                         "keypoints or OpenPose JSON, or a pipeline with a pose estimator")
    picture = read_image(pose, name)
    kps = keypoint_array(estimator(picture), "the pose estimator's output")
    check_body(kps, name, picture.size, what=f"the {picture.size[0]}x{picture.size[1]} pose photo", photo=True)
    return kps, picture.size


def canvas_of(data: Mapping, name: str) -> Frame:
    """The ``(canvas_width, canvas_height)`` an OpenPose JSON records, or `None`; a canvas that is not two
    positive whole numbers is an error."""
    if "canvas_width" not in data and "canvas_height" not in data:
        return None
    w, h = data.get("canvas_width"), data.get("canvas_height")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 1 and float(v).is_integer() for v in (w, h))
    if not ok:
        raise InputError(name, f"OpenPose JSON with canvas_width {w!r} and canvas_height {h!r}", "both positive whole numbers of pixels, or neither")
    return int(w), int(h)


def _load_npy(path, name: str) -> np.ndarray:
    """An array saved with ``np.save`` (no pickles: they run code on load)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(name, f"'{path}', which does not exist", "a .npy file of an (18, 2|3) array")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(name, f"the file '{path}', which is not a numeric .npy array ({e})", "a .npy file of an (18, 2|3) array") from None


def _names(indices) -> str:
    return ", ".join(COCO18_NAMES[i] for i in indices) or "none"


def body_problem(keypoints: np.ndarray, size: Frame = None) -> Optional[str]:
    """Why ``keypoints`` (``(18, 3)``) do not place a body in a picture of ``size`` (``(width, height)``, or `None`
    when the frame is unknown), in words, or `None` when they do (see the module docstring)."""
    kps = np.asarray(keypoints, dtype=np.float32)
    seen = (kps[:, 0] >= 0) & (kps[:, 1] >= 0) & (kps[:, 2] > 0)
    if not seen.any():
        return "no visible keypoint (all 18 are missing or have confidence 0)"
    inside = seen
    if size is not None:
        w, h = size
        inside = seen & (kps[:, 0] <= w - 1) & (kps[:, 1] <= h - 1)
        if not inside.any():
            xs, ys = kps[seen, 0], kps[seen, 1]
            return (f"{int(seen.sum())} visible keypoints, all outside the {w}x{h} picture "
                    f"(x from {xs.min():.0f} to {xs.max():.0f}, y from {ys.min():.0f} to {ys.max():.0f})")
    body = [i for i in BODY_JOINTS if inside[i]]
    if len(body) < MIN_BODY_JOINTS or not any(i in TORSO_JOINTS for i in body):
        where = " inside the picture" if size is not None else ""
        return f"only {len(body)} body joint{'s' if len(body) != 1 else ''} visible{where} ({_names(body)})"
    return None


BODY_EXPECTED = (f"a body: at least {MIN_BODY_JOINTS} of the 14 body joints (nose, neck, shoulders, elbows, wrists, hips, knees, "
                 "ankles) visible, one of them the neck, a shoulder or a hip")


def check_body(keypoints: np.ndarray, name: str, size: Frame = None, what: str = "a pose", photo: bool = False) -> np.ndarray:
    """Return ``keypoints`` when they place a body in the picture of ``size``, else raise an `InputError` that
    says what is missing. ``photo``: the keypoints were estimated from a photo (the message says "no person
    found" rather than "no visible keypoint")."""
    problem = body_problem(keypoints, size)
    if problem is None:
        return keypoints
    if photo and problem.startswith("no visible"):
        raise InputError(name, f"{what}, in which no person was found", "a photo of one person, seen at least from the head to the shoulders and arms")
    raise InputError(name, f"{what} with {problem}", BODY_EXPECTED)


def check_person(keypoints: np.ndarray, name: str, size: Tuple[int, int], needed_by: str = "pose transfer", what: str = "reference photo") -> np.ndarray:
    """The pose of the person estimated from a photo of ``size`` (by default the reference photo; ``what`` names
    another): refuse a photo with nobody in it, or too little of a body, saying what was found."""
    what = f"the {size[0]}x{size[1]} {what}"
    problem = body_problem(keypoints, size)
    if problem is None:
        return keypoints
    if problem.startswith("no visible"):
        raise InputError(name, f"{what}, in which no person was found", f"a photo of one person for {needed_by}, seen at least from the head to the shoulders and arms")
    raise InputError(name, f"{what}, in which the person found has {problem}", f"{BODY_EXPECTED}, for {needed_by}")


# ---------------------------------------------------------------------------------------------
# pose sequences
# ---------------------------------------------------------------------------------------------


def check_sequence_usable(sequence: np.ndarray, name: str, size: Frame = None, max_frames: Optional[int] = None) -> np.ndarray:
    """A ``(T, 18, 2|3)`` sequence that can drive a video: at least one frame, at most ``max_frames``, and at
    least one frame whose pose places a body (frames with nobody keep their place; see `PGATVideoPipeline`)."""
    seq = np.asarray(sequence, dtype=np.float32)
    if seq.ndim != 3 or seq.shape[0] < 1:
        raise InputError(name, f"a sequence of shape {tuple(seq.shape)}", "at least one frame of (18, 2|3) keypoints")
    if max_frames is not None and seq.shape[0] > max_frames:
        raise InputError(name, f"a sequence of {seq.shape[0]} frames", f"at most {max_frames} frames; cut it or sample it at a lower fps")
    full = seq if seq.shape[2] == 3 else np.concatenate([seq, ((seq[..., 0] >= 0) & (seq[..., 1] >= 0))[..., None].astype(np.float32)], axis=2)
    if all(body_problem(frame, size) is not None for frame in full):
        first = body_problem(full[0], size)
        raise InputError(name, f"a sequence of {seq.shape[0]} frames in none of which a body is placed (frame 0: {first})", BODY_EXPECTED + " in at least one frame")
    return seq


# ---------------------------------------------------------------------------------------------
# what each door accepts and refuses (the README's table, generated from this module)
# ---------------------------------------------------------------------------------------------


def _png(width: int, height: int, frames: int = 1) -> bytes:
    buffer = io.BytesIO()
    images = [Image.new("RGB", (width, height), (40 * i, 90, 160)) for i in range(frames)]
    if frames > 1:
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=100)
    else:
        images[0].save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 60-byte PNG whose header declares ``width`` × ``height`` pixels (and holds none of them)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _pose(points: Mapping[str, Tuple[float, float]]) -> np.ndarray:
    kps = np.tile(np.float32([-1.0, -1.0, 0.0]), (NUM_KEYPOINTS, 1))
    for joint, (x, y) in points.items():
        kps[COCO18_NAMES.index(joint)] = (x, y, 1.0)
    return kps


def refusal_examples() -> list:
    """``(input class, example, function raising the refusal)`` for every class of bad input: what the README's
    table shows, and what `tests/test_inputs.py` checks each door refuses."""
    half_body = _pose({"nose": (128, 40), "neck": (128, 70), "r_shoulder": (100, 72), "l_shoulder": (156, 72)})
    nose_and_eyes = _pose({"nose": (128, 40), "r_eye": (120, 35), "l_eye": (136, 35)})
    valid_json = {"people": [{"pose_keypoints_2d": [v for p in half_body for v in p.tolist()]}]}
    png = _png(256, 256)
    return [
        ("image: not an image, whatever its extension", "the bytes of a text file", lambda: read_image(b"PGAT, a text file\n", "reference_image")),
        ("image: empty file", "0 bytes", lambda: read_image(b"", "reference_image")),
        ("image: truncated file", "a 256x256 PNG cut to half its bytes", lambda: read_image(png[: len(png) // 2], "reference_image")),
        ("image: more pixels than the limit (from the header)", f"a {len(_bomb_png())}-byte PNG declaring 100000x100000",
         lambda: read_image(_bomb_png(), "reference_image")),
        ("image: animated", "a GIF of 3 frames", lambda: read_image(_png(128, 128, frames=3), "reference_image")),
        ("image: too small", "a 1x1 PNG", lambda: read_image(_png(1, 1), "reference_image")),
        ("image: extreme aspect ratio", "a 3200x320 PNG", lambda: read_image(_png(3200, 320), "reference_image")),
        ("reference photo: nobody in it", "the estimator finds no one", lambda: check_person(_pose({}), "reference_image", (256, 256))),
        ("reference photo: too little of a body", "only the face is found", lambda: check_person(nose_and_eyes, "reference_image", (256, 256))),
        ("pose: not an OpenPose object", "a JSON file holding a list of objects", lambda: openpose_people([valid_json], "target_pose")),
        ("pose: wrong count", "pose_keypoints_2d of 51 values", lambda: read_pose({"people": [{"pose_keypoints_2d": [1.0] * 51}]}, "target_pose")),
        ("pose: strings", "pose_keypoints_2d of strings", lambda: read_pose({"people": [{"pose_keypoints_2d": ["1"] * 54}]}, "target_pose")),
        ("pose: NaN or infinite", "an (18, 2) array of NaN", lambda: read_pose(np.full((18, 2), np.nan), "target_pose")),
        ("pose: wrong shape", "a (17, 2) array", lambda: read_pose(np.zeros((17, 2)), "target_pose")),
        ("pose: no visible point", "every confidence 0", lambda: check_body(np.zeros((18, 3), np.float32), "target_pose", (256, 256), "a target pose")),
        ("pose: every point outside the picture", "all points at x > 5000 in a 256x256 picture",
         lambda: check_body(half_body + np.float32([5000, 0, 0]), "target_pose", (256, 256), "a target pose")),
        ("pose: too few body joints", "nose and eyes only", lambda: check_body(nose_and_eyes, "target_pose", (256, 256), "a target pose")),
        ("pose sequence: no frame places a body", "10 frames of nose and eyes",
         lambda: check_sequence_usable(np.stack([nose_and_eyes] * 10), "pose_sequence", (256, 256))),
        ("pose sequence: longer than the limit", "a sequence of 500 frames, limit 120",
         lambda: check_sequence_usable(np.stack([half_body] * 500), "pose_sequence", (256, 256), max_frames=120)),
    ]


def door_names() -> Dict[str, Dict[str, str]]:
    """How each door names the pipelines' arguments (its own tables: the CLI's, the server's, the Space's)."""
    from .cli import CLI_NAMES
    from .serving import _request_name

    space = {}
    spaces_ui = Path(__file__).resolve().parent / "space" / "ui.py"
    if spaces_ui.is_file():  # the Space's labels, read from its source (the Space is not an importable package)
        import ast

        tree = ast.parse(spaces_ui.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SPACE_NAMES" for t in node.targets):
                space = ast.literal_eval(node.value)
    arguments = ("reference_image", "target_pose", "pose_sequence")
    return {
        "CLI (`pgat transfer` / `pgat video`: exit 2, one line)": {a: CLI_NAMES.get(a, a) for a in arguments},
        "`pgat serve` (HTTP 400, `field`)": {a: _request_name(a) for a in arguments},
        "Space (an error toast)": {a: space.get(a, a) for a in arguments},
    }


def doors_table() -> str:
    """The markdown table of what every door refuses, with the message each gives (one message, each door naming
    the argument its own way), produced by running the checks on the examples of `refusal_examples`."""
    doors = door_names()
    lines = [
        "| input | example | the refusal (the pipelines' words) | " + " | ".join(doors) + " |",
        "|---|---|---|" + "---|" * len(doors),
    ]
    for label, example, refuse in refusal_examples():
        try:
            refuse()
        except InputError as e:
            base = e.argument.partition("[")[0]
            names = " | ".join(f"`{d[base]}`" for d in doors.values())
            lines.append(f"| {label} | {example} | {e.message().replace('|', '/')} | {names} |")
        else:  # pragma: no cover - the test of this table fails first
            raise AssertionError(f"{label}: {example} was not refused")
    return "\n".join(lines)

