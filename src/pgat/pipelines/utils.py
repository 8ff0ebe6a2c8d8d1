"""The edges of the pipelines: images and poses in every form users bring them, and back out.

A pose input resolves to ``(keypoints (18, 3), frame)``: the keypoints in the pixels of some frame, and
that frame's ``(width, height)``, or ``None`` when the keypoints are already in the reference image's
pixels. Decisions:

- an ``(18, 2|3)`` array (numpy, torch, nested lists, a ``.npy`` file, or a ``.json`` file holding a plain
  list of ``[x, y(, c)]``) is in the reference image's pixels;
- OpenPose JSON (a dict, or a path ending in ``.json``) is in the reference's pixels unless it records
  another canvas (``canvas_width`` / ``canvas_height``, as ControlNet tools write it);
- anything else (a PIL image, an ``(H, W, 3)`` array, an image path) is a picture of someone in the
  pose: the estimator finds the pose, in that picture's frame.

A pose in another frame is mapped into the model's square by fitting that frame into the square the way
the reference is fitted: both pictures are centred and scaled to fill it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..inputs import _is_keypoint_list, read_image, read_pose
from ..pose import Letterbox

Frame = Optional[Tuple[int, int]]


def load_image(image, name: str = "image") -> Image.Image:
    """A PIL RGB image from a path, PIL image, numpy array (uint8 or [0, 1] float) or tensor in [-1, 1], checked by
    `pgat.inputs.read_image` (size limits, truncation, animation)."""
    return read_image(image, name)


def is_keypoint_array(pose) -> bool:
    return _is_keypoint_list(pose)


def resolve_pose(pose, name: str = "target_pose", estimator=None) -> Tuple[np.ndarray, Frame]:
    """Turn one pose input into ``((18, 3) keypoints, frame)``: `pgat.inputs.read_pose` (see the module docstring).

    Args:
        pose: an ``(18, 2|3)`` array (or a ``.npy`` file, or a ``.json`` file of a plain list, of one), OpenPose
            JSON (dict or ``.json`` path), or an image.
        name (`str`): the argument name used in error messages.
        estimator (*optional*): a callable ``image -> (18, 3)`` (a `pgat.pose_estimation.PoseEstimator`);
            needed only for image poses.
    """
    return read_pose(pose, name, estimator)


def pose_to_square(kps: np.ndarray, frame: Frame, reference_box: Letterbox) -> np.ndarray:
    """Keypoints ``(18, 3)`` of ``frame`` (None = the reference's pixels) -> pixels of the model's square."""
    if frame is None or tuple(frame) == (reference_box.width, reference_box.height):
        return reference_box.keypoints_to_square(kps)
    return Letterbox.fit(frame[0], frame[1], reference_box.size).keypoints_to_square(kps)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> ``(3, H, W)`` float in [-1, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def to_pil(images: torch.Tensor) -> List[Image.Image]:
    """``(B, 3, H, W)`` in [-1, 1] -> PIL images."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def format_images(images: List[Image.Image], output_type: str, name: str = "output_type"):
    """PIL list -> ``"pil"`` (as is), ``"np"`` ((B, H, W, 3) float in [0, 1]) or ``"pt"`` ((B, 3, H, W) in [0, 1])."""
    if output_type == "pil":
        return images
    if output_type not in ("np", "pt"):
        raise ValueError(f"`{name}` must be 'pil', 'np' or 'pt', got {output_type!r}")
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise ValueError(f"`{name}`={output_type!r} stacks the images, but they have different sizes {sorted(sizes)}; use 'pil'")
    arr = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
    return arr if output_type == "np" else torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def as_list(value, name: str) -> list:
    """A batch argument as a list (one item stays one item). A nested list of points (an ``(18, 2|3)`` list, or any
    2-D list of numbers) is one pose, not a batch of points."""
    if _is_keypoint_list(value):
        return [value]
    if isinstance(value, list):
        if not value:
            raise ValueError(f"`{name}` is an empty list")
        return value
    if isinstance(value, (list, tuple)) and not is_keypoint_array(value):
        return list(value)
    return [value]


def default_model_path() -> Optional[Path]:
    """The embedded default model of a source checkout (``weights/pgat-synth-256``), when it is there."""
    env = os.environ.get("PGAT_MODEL")
    if env:
        return Path(env)
    path = Path(__file__).resolve().parents[3] / "weights" / "pgat-synth-256"
    return path if path.is_dir() else None


def prepare_reference(image, resolution: int, name: str = "reference_image") -> Tuple[Image.Image, Letterbox, torch.Tensor]:
    """Load a reference image and letterbox it to the model's square: (original PIL, Letterbox, (3, R, R) tensor)."""
    picture = load_image(image, name)
    box = Letterbox.fit(picture.size[0], picture.size[1], resolution)
    return picture, box, to_tensor(box.image_to_square(picture))



def model_or_default(model: Optional[str]) -> str:
    """The ``--model`` a command was given, else the embedded default model, else an error saying what to pass."""
    if model:
        return model
    default = default_model_path()
    if default is None:
        raise ValueError(
            "no model given and the embedded default model (weights/pgat-synth-256) is not in this checkout; "
            "pass --model ID_OR_PATH (a Hub id or a local PGAT repository) or set PGAT_MODEL"
        )
    return str(default)


def default_batch_size(device: torch.device) -> int:
    """Poses per forward pass when the caller does not say: 1 on a CPU, 8 elsewhere.

    Measured on a 2-core CPU (``benchmarks/video.py``, one reference encoded once, 256²): batch 1 makes 57.7
    frames/s with the embedded model and 1.50 with the paper-size one, batch 8 57.1 and 1.41. Batches gain nothing
    there and multiply the memory of the feature maps, so a CPU takes one pose at a time. A GPU needs batches to be
    filled (not measured here: no GPU was available).
    """
    return 1 if torch.device(device).type == "cpu" else 8
