"""Image -> COCO-18 keypoints: the pose estimators PGAT runs on users' photos and videos.

Two backends behind one interface:

- ``"openpose"``: controlnet-aux's ``OpenposeDetector``, the estimator the paper used. Its weights
  (``body_pose_model.pth``) come from the ``lllyasviel/Annotators`` Hub repository or a local folder.
- ``"blazepose"``: MediaPipe's BlazePose (``pose_detection.tflite`` + ``pose_landmark_full.tflite``,
  Apache-2.0, shipped in the repository's ``weights/blazepose/``), run fully offline on a CPU with
  ``ai-edge-litert``. The two-stage pipeline (person detector -> rotated person crop -> landmark model)
  is written here, following the options of MediaPipe's pose graphs; the landmark model also gives a
  person segmentation mask.
- ``"auto"`` picks OpenPose when its weights are already on this machine (a local folder or the Hub
  cache), BlazePose otherwise.

Keypoints come back in the pixels of the image given, ``(x, y, confidence)`` in ``COCO18_NAMES`` order,
``(-1, -1, 0)`` for a point that is missing (not found, not confident enough, or outside the frame).
An image with nobody in it gives all 18 points missing; check ``visible(keypoints).any()``.

Example:
    >>> from pgat.pose_estimation import estimate, load_estimator
    >>> keypoints = estimate("photo.jpg")                       # (18, 3) float32
    >>> estimator = load_estimator("blazepose")                 # load once, call per frame
    >>> result = estimator(frame, return_all=True, return_mask=True)
    >>> result.num_people, result.mask.shape
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .pose import COCO18_NAMES, NUM_KEYPOINTS, _person_area

BACKENDS: Tuple[str, ...] = ("auto", "openpose", "blazepose")

BLAZEPOSE_DIR_ENV = "PGAT_BLAZEPOSE_DIR"
BLAZEPOSE_FILES: Tuple[str, ...] = ("pose_detection.tflite", "pose_landmark_full.tflite")
OPENPOSE_REPO = "lllyasviel/Annotators"
OPENPOSE_FILE = "body_pose_model.pth"

# BlazePose's 33 landmarks -> COCO-18 (``None``: the neck, which BlazePose does not have; it is the
# shoulder midpoint, as in OpenPose). BlazePose numbers the person's left side first (11 = left shoulder).
BLAZEPOSE_TO_COCO18: Tuple[Optional[int], ...] = (
    0, None,        # nose, neck
    12, 14, 16,     # r_shoulder, r_elbow, r_wrist
    11, 13, 15,     # l_shoulder, l_elbow, l_wrist
    24, 26, 28,     # r_hip, r_knee, r_ankle
    23, 25, 27,     # l_hip, l_knee, l_ankle
    5, 2, 8, 7,     # r_eye, l_eye, r_ear, l_ear
)

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

_HOW_TO_GET = (
    "  - openpose: download 'body_pose_model.pth' from the Hub repository lllyasviel/Annotators "
    "(`huggingface-cli download lllyasviel/Annotators body_pose_model.pth --local-dir DIR`) and pass "
    "`model_path=DIR`, or let it download once with network access;\n"
    "  - blazepose: put 'pose_detection.tflite' and 'pose_landmark_full.tflite' in a folder (they ship in a "
    "source checkout under weights/blazepose/, and inside the mediapipe==0.10.21 wheel under "
    "mediapipe/modules/) and set PGAT_BLAZEPOSE_DIR=that folder or pass `model_path`."
)


@dataclass
class PoseEstimate:
    """The full result of a pose estimator on one image.

    Args:
        keypoints (`np.ndarray`): float32 ``(18, 3)`` ``(x, y, confidence)`` of the largest person;
            all ``(-1, -1, 0)`` when nobody was found.
        people (`list` of `np.ndarray`): every person found, largest (keypoint bounding box) first.
        mask (`np.ndarray`, *optional*): float32 ``(H, W)`` in [0, 1], the segmentation of the returned
            person in the image's pixels; only when asked for, and only from a backend that has one.
        backend (`str`): the backend that produced it.
    """

    keypoints: np.ndarray
    people: List[np.ndarray] = field(default_factory=list)
    mask: Optional[np.ndarray] = None
    backend: str = ""

    @property
    def num_people(self) -> int:
        return len(self.people)


# ---------------------------------------------------------------------------------------------
# input images
# ---------------------------------------------------------------------------------------------


def load_image_rgb(image: ImageInput, name: str = "image") -> np.ndarray:
    """Turn any accepted image into an ``(H, W, 3)`` uint8 RGB array, or raise a clear error
    (`pgat.inputs.read_image`: a file path, a PIL image, an ``(H, W[, 3|4])`` uint8 or [0, 1] float array, or a
    ``(3, H, W)`` / ``(1, 3, H, W)`` tensor in [-1, 1]; size limits checked, files before decoding)."""
    from .inputs import image_array, read_image

    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        return np.asarray(read_image(image, name))
    return image_array(image, name)


def _missing_pose() -> np.ndarray:
    kps = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    kps[:, :2] = -1.0
    return kps


def _finish(kps: np.ndarray, width: int, height: int, min_confidence: float) -> np.ndarray:
    """Mark low-confidence and out-of-frame points missing: a keypoint must lie on a pixel of its image."""
    kps = kps.astype(np.float32, copy=True)
    out = (kps[:, 0] < 0) | (kps[:, 1] < 0) | (kps[:, 0] > width - 1) | (kps[:, 1] > height - 1)
    drop = out | (kps[:, 2] < min_confidence) | ~np.isfinite(kps).all(axis=1)
    kps[drop] = (-1.0, -1.0, 0.0)
    return kps


# ---------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------


class PoseEstimator:
    """Base class: ``estimator(image)`` -> ``(18, 3)``; ``estimator(image, return_all=True)`` -> `PoseEstimate`."""

    backend: str = ""
    has_mask: bool = False

    def __init__(self, min_keypoint_confidence: float = 0.5):
        if not 0.0 <= float(min_keypoint_confidence) <= 1.0:
            raise ValueError(f"`min_keypoint_confidence` must be in [0, 1], got {min_keypoint_confidence}")
        self.min_keypoint_confidence = float(min_keypoint_confidence)

    def _estimate(self, rgb: np.ndarray, want_mask: bool) -> Tuple[List[np.ndarray], Optional[List[np.ndarray]]]:
        """Return every person's ``(18, 3)`` keypoints (and masks when ``want_mask``)."""
        raise NotImplementedError

    def __call__(self, image: ImageInput, return_all: bool = False, return_mask: bool = False):
        """Estimate the pose of the largest person in ``image``.

        Args:
            image: a file path, PIL image, numpy array or torch tensor (see `load_image_rgb`).
            return_all (`bool`, *optional*, defaults to `False`): return a `PoseEstimate` with every person.
            return_mask (`bool`, *optional*, defaults to `False`): return a `PoseEstimate` with the
                person's segmentation mask (BlazePose only).

        Returns:
            `np.ndarray` float32 ``(18, 3)``, or a `PoseEstimate` when either flag is set.
        """
        if return_mask and not self.has_mask:
            raise ValueError(
                f"`return_mask=True` needs a backend that segments the person; {self.backend!r} gives no mask, "
                f"use backend='blazepose'"
            )
        rgb = load_image_rgb(image)
        people, masks = self._estimate(rgb, want_mask=return_mask)
        order = sorted(range(len(people)), key=lambda i: _person_area(people[i]), reverse=True)
        people = [people[i] for i in order]
        keypoints = people[0] if people else _missing_pose()
        if not (return_all or return_mask):
            return keypoints
        mask = None
        if return_mask:
            mask = masks[order[0]] if people else np.zeros(rgb.shape[:2], dtype=np.float32)
        return PoseEstimate(keypoints=keypoints, people=people, mask=mask, backend=self.backend)


# ---------------------------------------------------------------------------------------------
# BlazePose (MediaPipe's models on ai-edge-litert)
# ---------------------------------------------------------------------------------------------


def blazepose_model_dir(model_path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The folder holding BlazePose's two ``.tflite`` files.

    Looked up in order: ``model_path``; ``$PGAT_BLAZEPOSE_DIR``; ``weights/blazepose`` of the source
    checkout this module runs from (source and editable installs); ``pgat/weights/blazepose`` inside the
    installed package (a wheel that ships them as package data).
    """
    if model_path is not None:
        candidates = [Path(model_path)]
    elif os.environ.get(BLAZEPOSE_DIR_ENV):
        candidates = [Path(os.environ[BLAZEPOSE_DIR_ENV])]
    else:
        here = Path(__file__).resolve().parent
        candidates = [here.parents[1] / "weights" / "blazepose", here / "weights" / "blazepose"]
    for folder in candidates:
        if all((folder / f).is_file() for f in BLAZEPOSE_FILES):
            return folder
    tried = "; ".join(f"{c} (missing {', '.join(f for f in BLAZEPOSE_FILES if not (c / f).is_file())})" for c in candidates)
    raise FileNotFoundError(f"BlazePose model files not found. Looked in: {tried}.\n{_HOW_TO_GET}")


def _ssd_anchors(input_size: int = 224, strides: Sequence[int] = (8, 16, 32, 32, 32)) -> np.ndarray:
    """Anchor centres of MediaPipe's pose detector, ``(2254, 2)`` normalised ``(x, y)``.

    The options of its graph (pose_detection_cpu.pbtxt): 5 layers, strides 8-16-32-32-32, one aspect
    ratio plus the interpolated scale (2 anchors per layer and cell), offset 0.5, fixed anchor size
    (so every anchor is 1x1 and only the centres matter). Layers sharing a stride share a grid.
    """
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        side = math.ceil(input_size / strides[i])
        ys, xs = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float):
    """MediaPipe's weighted non-maximum suppression: every box overlapping the best remaining one by
    IoU > ``threshold`` is merged into it, box and keypoints averaged with score weights; the merged
    detection keeps the best score. ``boxes`` are ``(N, 4)`` x0, y0, x1, y1."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    remaining = np.arange(len(scores))
    out = []
    while remaining.size:
        top = remaining[0]
        x0 = np.maximum(boxes[remaining, 0], boxes[top, 0])
        y0 = np.maximum(boxes[remaining, 1], boxes[top, 1])
        x1 = np.minimum(boxes[remaining, 2], boxes[top, 2])
        y1 = np.minimum(boxes[remaining, 3], boxes[top, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / np.maximum(area[remaining] + area[top] - inter, 1e-12)
        group = remaining[iou > threshold]
        if group.size == 0:  # a degenerate (zero-area) box still stands for itself
            group = remaining[:1]
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(0) / w.sum(), (keypoints[group] * w[:, :, None]).sum(0) / w.sum(), scores[top]))
        remaining = np.setdiff1d(remaining, group, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    return out


@contextmanager
def _native_stderr_quiet():
    """Silence what native code writes to file descriptor 2 (TFLite's INFO lines) while the block runs; Python's
    own ``sys.stderr`` and errors raised in the block are untouched. Where fd 2 cannot be redirected (no such
    descriptor, e.g. under some embedders), the block runs as it is."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x) without overflow


class BlazePoseEstimator(PoseEstimator):
    """MediaPipe BlazePose (full) on ai-edge-litert, fully offline on a CPU.

    Two stages, as MediaPipe's pose graphs run them:
    1. the detector (224x224, letterboxed, [-1, 1]) finds people by their face box and two alignment
       points: the hip centre and a point whose distance gives the body's size and whose direction gives
       its rotation (SSD anchors, weighted NMS at IoU 0.3);
    2. per person, a square crop centred on the hip centre, side = 2 x that distance x 1.25, rotated so
       the body stands upright, is resampled to 256x256 ([0, 1]) for the landmark model, which returns 33
       landmarks (refined on its heatmaps), visibility and presence scores, a pose-presence flag and a
       segmentation mask; both are projected back to the image.

    The 33 landmarks map to COCO-18 (`BLAZEPOSE_TO_COCO18`; neck = shoulder midpoint); a point's
    confidence is its visibility score.

    Args:
        model_path (`str`, *optional*): folder with ``pose_detection.tflite`` and ``pose_landmark_full.tflite``;
            see `blazepose_model_dir` for where it is looked up by default.
        min_detection_confidence (`float`, *optional*, defaults to 0.5): detector score to accept a person.
        min_presence_confidence (`float`, *optional*, defaults to 0.5): landmark model's pose flag to keep one.
        min_keypoint_confidence (`float`, *optional*, defaults to 0.5): visibility below which a point is missing.
        max_people (`int`, *optional*, defaults to 4): at most this many detections get landmarks.
        num_threads (`int`, *optional*): CPU threads for the interpreters; defaults to all cores.
    """

    backend = "blazepose"
    has_mask = True

    # MediaPipe's graph options (pose_detection_cpu.pbtxt, pose_detection_to_roi.pbtxt).
    detector_size = 224
    landmark_size = 256
    nms_iou = 0.3
    roi_scale = 1.25
    heatmap_kernel = 7

    def __init__(
        self,
        model_path: Optional[Union[str, os.PathLike]] = None,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        min_keypoint_confidence: float = 0.5,
        max_people: int = 4,
        num_threads: Optional[int] = None,
    ):
        super().__init__(min_keypoint_confidence)
        for name, value in (("min_detection_confidence", min_detection_confidence), ("min_presence_confidence", min_presence_confidence)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {value}")
        if int(max_people) < 1:
            raise ValueError(f"`max_people` must be at least 1, got {max_people}")
        self.model_dir = blazepose_model_dir(model_path)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence_confidence = float(min_presence_confidence)
        self.max_people = int(max_people)

        from ai_edge_litert.interpreter import Interpreter

        threads = int(num_threads) if num_threads else (os.cpu_count() or 1)
        with _native_stderr_quiet():  # TFLite's "Created XNNPACK delegate" line: not a message for our users
            self._detector = Interpreter(model_path=str(self.model_dir / BLAZEPOSE_FILES[0]), num_threads=threads)
            self._landmarker = Interpreter(model_path=str(self.model_dir / BLAZEPOSE_FILES[1]), num_threads=threads)
            self._detector.allocate_tensors()
            self._landmarker.allocate_tensors()
        det_out = {tuple(d["shape"][1:]): d["index"] for d in self._detector.get_output_details()}
        self._det_in = self._detector.get_input_details()[0]["index"]
        self._det_boxes, self._det_scores = det_out[(2254, 12)], det_out[(2254, 1)]
        lm_out = {tuple(d["shape"][1:]): d["index"] for d in self._landmarker.get_output_details()}
        self._lm_in = self._landmarker.get_input_details()[0]["index"]
        self._lm_landmarks = lm_out[(195,)]      # 39 x (x, y, z, visibility, presence), crop pixels
        self._lm_flag = lm_out[(1,)]             # pose presence
        self._lm_mask = lm_out[(256, 256, 1)]    # segmentation logits
        self._lm_heatmap = lm_out[(64, 64, 39)]  # per-landmark heatmap logits
        self._anchors = _ssd_anchors(self.detector_size)

    # -- geometry ----------------------------------------------------------------------------

    @staticmethod
    def _crop_matrix(cx: float, cy: float, side: float, angle: float, out: int) -> np.ndarray:
        """2x3 affine from crop pixels to image pixels for the square of ``side`` pixels centred on
        ``(cx, cy)`` and rotated by ``angle`` (radians, clockwise on screen), resampled to ``out x out``.

        It follows MediaPipe's image-to-tensor convention exactly (crop pixel ``j`` sits at
        ``corner + j * side / out``), since the models were trained and tuned on crops made that way.
        """
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]], dtype=np.float64)
        offset = np.array([cx, cy]) - rot @ np.full(2, side / 2)
        return np.concatenate([rot * (side / out), offset[:, None]], axis=1)

    def _crop(self, rgb: np.ndarray, matrix: np.ndarray, out: int, replicate: bool) -> np.ndarray:
        import cv2

        border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
        return cv2.warpAffine(rgb, matrix, (out, out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0)

    # -- stage 1: detector -------------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> List[Dict[str, Any]]:
        """Run the person detector on an ``(H, W, 3)`` uint8 RGB image. Returns detections (best first) with
        ``score``, ``box`` (x0, y0, x1, y1) and ``keypoints`` ``(4, 2)``: hip centre, full-body size/rotation
        point, shoulder centre, upper-body size/rotation point; all in image pixels."""
        h, w = rgb.shape[:2]
        n = self.detector_size
        side = float(max(w, h))
        # letterbox = the centred square around the whole image, unrotated, padded black
        matrix = self._crop_matrix(w / 2, h / 2, side, 0.0, n)
        tensor = self._crop(rgb, matrix, n, replicate=False).astype(np.float32) / 127.5 - 1.0
        self._detector.set_tensor(self._det_in, tensor[None])
        self._detector.invoke()
        raw = self._detector.get_tensor(self._det_boxes)[0]
        scores = _sigmoid(np.clip(self._detector.get_tensor(self._det_scores)[0, :, 0], -100.0, 100.0))
        keep = scores >= self.min_detection_confidence
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        # box and keypoints are offsets from the anchor centre in input pixels
        centre = raw[:, 0:2] / n + anchors
        half = raw[:, 2:4] / n / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        kps = raw[:, 4:12].reshape(-1, 4, 2) / n + anchors[:, None, :]
        # normalised letterbox coordinates -> image pixels (undo the centred square of `matrix`)
        shift = (side - np.array([w, h], dtype=np.float32)) / 2
        return [
            {"score": float(score), "box": box * side - np.tile(shift, 2), "keypoints": kp * side - shift}
            for box, kp, score in _weighted_nms(boxes, kps, scores, self.nms_iou)
        ]

    def roi(self, detection: Dict[str, Any]) -> Tuple[float, float, float, float]:
        """The person crop of a detection: ``(cx, cy, side, angle)`` (pose_detection_to_roi.pbtxt)."""
        (x0, y0), (x1, y1) = detection["keypoints"][0], detection["keypoints"][1]
        side = 2.0 * math.hypot(x1 - x0, y1 - y0) * self.roi_scale
        # rotate so that hip centre -> size point points up (target angle 90 degrees; y grows downwards)
        angle = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
        angle = (angle + math.pi) % (2 * math.pi) - math.pi
        return float(x0), float(y0), float(side), float(angle)

    # -- stage 2: landmarks ------------------------------------------------------------------

    def _refine(self, xy: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
        """MediaPipe's heatmap refinement: replace each landmark (normalised crop coordinates) by the
        sigmoid-weighted mean position of a 7x7 heatmap window around it, where that window is confident."""
        hm_h, hm_w, _ = heatmap.shape
        off = (self.heatmap_kernel - 1) // 2
        out = xy.copy()
        for k in range(xy.shape[0]):
            col, row = int(xy[k, 0] * hm_w), int(xy[k, 1] * hm_h)
            if not (0 <= col < hm_w and 0 <= row < hm_h):
                continue
            r0, r1, c0, c1 = max(0, row - off), min(hm_h, row + off + 1), max(0, col - off), min(hm_w, col + off + 1)
            conf = _sigmoid(heatmap[r0:r1, c0:c1, k])
            total = conf.sum()
            if conf.max() >= 0.5 and total > 0:
                rows, cols = np.mgrid[r0:r1, c0:c1]
                out[k] = ((cols * conf).sum() / hm_w / total, (rows * conf).sum() / hm_h / total)
        return out

    def landmarks(self, rgb: np.ndarray, roi: Tuple[float, float, float, float], want_mask: bool = False):
        """Run the landmark model on one person crop.

        Returns ``(landmarks (33, 4) x, y, visibility, presence in image pixels, pose flag, mask or None)``.
        """
        h, w = rgb.shape[:2]
        n = self.landmark_size
        matrix = self._crop_matrix(*roi, n)
        crop = self._crop(rgb, matrix, n, replicate=True).astype(np.float32) / 255.0
        self._landmarker.set_tensor(self._lm_in, crop[None])
        self._landmarker.invoke()
        raw = self._landmarker.get_tensor(self._lm_landmarks)[0].reshape(39, 5)
        flag = float(self._landmarker.get_tensor(self._lm_flag).reshape(-1)[0])
        xy = self._refine(raw[:, :2] / n, self._landmarker.get_tensor(self._lm_heatmap)[0])[:33]
        img = (xy * n) @ matrix[:, :2].T + matrix[:, 2]  # crop pixels -> image pixels
        out = np.concatenate([img, _sigmoid(raw[:33, 3:5])], axis=1).astype(np.float32)
        mask = None
        if want_mask:
            import cv2

            logits = self._landmarker.get_tensor(self._lm_mask)[0, :, :, 0]
            mask = cv2.warpAffine(_sigmoid(logits).astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out, flag, mask

    def to_coco18(self, landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
        """33 BlazePose landmarks ``(x, y, visibility, presence)`` -> COCO-18 ``(x, y, confidence)``."""
        kps = _missing_pose()
        for i, j in enumerate(BLAZEPOSE_TO_COCO18):
            if j is not None:
                kps[i] = (landmarks[j, 0], landmarks[j, 1], landmarks[j, 2])
        kps = _finish(kps, width, height, self.min_keypoint_confidence)
        r, l = COCO18_NAMES.index("r_shoulder"), COCO18_NAMES.index("l_shoulder")
        if kps[r, 2] > 0 and kps[l, 2] > 0:
            kps[1] = ((kps[r, 0] + kps[l, 0]) / 2, (kps[r, 1] + kps[l, 1]) / 2, min(kps[r, 2], kps[l, 2]))
        return kps

    def _estimate(self, rgb, want_mask):
        h, w = rgb.shape[:2]
        people, masks = [], []
        for det in self.detect(rgb)[: self.max_people]:
            landmarks, flag, mask = self.landmarks(rgb, self.roi(det), want_mask)
            if flag < self.min_presence_confidence:
                continue
            kps = self.to_coco18(landmarks, w, h)
            if not (kps[:, 2] > 0).any():
                continue
            people.append(kps)
            masks.append(mask)
        return people, masks


# ---------------------------------------------------------------------------------------------
# OpenPose (controlnet-aux)
# ---------------------------------------------------------------------------------------------


def _openpose_weights(model_path: Union[str, os.PathLike], filename: str, cache_dir, local_files_only: bool) -> Path:
    """Resolve ``body_pose_model.pth`` from a folder or the Hub (or its cache), or raise how to get it."""
    if os.path.isdir(model_path):
        path = Path(model_path) / filename
        if not path.is_file():
            raise FileNotFoundError(f"OpenPose weights '{path}' not found in the folder `model_path`={os.fspath(model_path)!r}.\n{_HOW_TO_GET}")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(model_path), filename, cache_dir=cache_dir, local_files_only=local_files_only))
    except Exception as e:  # offline, not cached, no network, unknown repo: one answer for all
        raise FileNotFoundError(
            f"OpenPose weights {filename!r} from {model_path!r} are not available here ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).\n{_HOW_TO_GET}"
        ) from None


def openpose_available(model_path: Union[str, os.PathLike] = OPENPOSE_REPO, filename: str = OPENPOSE_FILE, cache_dir=None) -> bool:
    """Whether OpenPose weights are on this machine already (a folder, or the Hub cache), without downloading."""
    try:
        _openpose_weights(model_path, filename, cache_dir, local_files_only=True)
    except FileNotFoundError:
        return False
    return True


class OpenPoseEstimator(PoseEstimator):
    """The paper's estimator: OpenPose body (COCO-18) through controlnet-aux's ``OpenposeDetector``.

    Only the body network is loaded (hands and face are not used). Keypoints come from the detector's
    body network and ``format_body_result`` - the two calls ``OpenposeDetector.detect_poses`` makes -
    so that each point keeps its heatmap score (``detect_poses`` itself replaces it by 1.0).

    Args:
        model_path (`str`, *optional*, defaults to ``"lllyasviel/Annotators"``): a Hub repository id or a
            local folder holding ``body_pose_model.pth``.
        filename (`str`, *optional*, defaults to ``"body_pose_model.pth"``): the weights file.
        cache_dir (`str`, *optional*), local_files_only (`bool`, *optional*): as in ``hf_hub_download``.
        device (`str`, *optional*, defaults to ``"cpu"``).
        detect_resolution (`int`, *optional*, defaults to 512): images whose long side is larger are
            downscaled to it for detection (OpenPose looks at 184-px-high inputs anyway); keypoints are
            returned in the original pixels.
        min_keypoint_confidence (`float`, *optional*, defaults to 0.1): heatmap score below which a point is
            missing (OpenPose's own peak threshold is 0.1).
    """

    backend = "openpose"
    has_mask = False

    def __init__(
        self,
        model_path: Union[str, os.PathLike] = OPENPOSE_REPO,
        filename: str = OPENPOSE_FILE,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        local_files_only: bool = False,
        device: Union[str, torch.device] = "cpu",
        detect_resolution: int = 512,
        min_keypoint_confidence: float = 0.1,
    ):
        super().__init__(min_keypoint_confidence)
        if int(detect_resolution) < 64:
            raise ValueError(f"`detect_resolution` must be at least 64 pixels, got {detect_resolution}")
        self.detect_resolution = int(detect_resolution)
        self.weights_path = _openpose_weights(model_path, filename, cache_dir, local_files_only)
        from controlnet_aux.open_pose import OpenposeDetector
        from controlnet_aux.open_pose.body import Body

        try:
            body = Body(str(self.weights_path))  # torch.load here defaults to weights_only=True (torch >= 2.6)
        except Exception as e:
            raise ValueError(f"OpenPose weights '{self.weights_path}' could not be loaded as the body network: {e}") from None
        body.to(device)
        self._detector = OpenposeDetector(body)

    def _estimate(self, rgb, want_mask):
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_resolution / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        body = self._detector.body_estimation
        candidate, subset = body(np.ascontiguousarray(small[:, :, ::-1]))  # the network wants BGR
        people = []
        for person in body.format_body_result(candidate, subset):
            kps = _missing_pose()
            for i, kp in enumerate(person.keypoints[:NUM_KEYPOINTS]):
                if kp is not None:
                    # peaks are pixel indices of the small image; map pixel centres back
                    kps[i] = ((kp.x + 0.5) / sx - 0.5, (kp.y + 0.5) / sy - 0.5, kp.score)
            kps = _finish(kps, w, h, self.min_keypoint_confidence)
            if (kps[:, 2] > 0).any():
                people.append(kps)
        return people, None


# ---------------------------------------------------------------------------------------------
# loading and the one-call interface
# ---------------------------------------------------------------------------------------------


def load_estimator(backend: str = "auto", model_path: Optional[Union[str, os.PathLike]] = None, **kwargs) -> PoseEstimator:
    """Load a pose estimator once, to call on many images.

    Args:
        backend (`str`, *optional*, defaults to ``"auto"``): ``"openpose"``, ``"blazepose"`` or ``"auto"``
            (OpenPose when its weights are already on this machine, else BlazePose).
        model_path (`str`, *optional*): for ``"openpose"`` a Hub id or folder with ``body_pose_model.pth``;
            for ``"blazepose"`` the folder with its two ``.tflite`` files. Not accepted with ``"auto"``.
        **kwargs: passed to `OpenPoseEstimator` / `BlazePoseEstimator` (with ``"auto"``, only
            ``min_keypoint_confidence``, which both take).

    Raises:
        `FileNotFoundError`: the backend's weights are not here; the message says how to get each.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "openpose":
        return OpenPoseEstimator(OPENPOSE_REPO if model_path is None else model_path, **kwargs)
    if backend == "blazepose":
        return BlazePoseEstimator(model_path, **kwargs)
    if model_path is not None:
        raise ValueError("`model_path` needs an explicit `backend` ('openpose' or 'blazepose'), got backend='auto'")
    if set(kwargs) - {"min_keypoint_confidence"}:
        raise ValueError(f"with backend='auto' only `min_keypoint_confidence` can be passed, got {sorted(kwargs)}")
    errors = []
    if openpose_available():
        try:
            return OpenPoseEstimator(OPENPOSE_REPO, local_files_only=True, **kwargs)
        except (FileNotFoundError, ValueError) as e:
            errors.append(f"openpose: {e}")
    else:
        errors.append(f"openpose: weights {OPENPOSE_FILE!r} of {OPENPOSE_REPO} are not in the Hub cache")
    try:
        return BlazePoseEstimator(**kwargs)
    except FileNotFoundError as e:
        errors.append(f"blazepose: {str(e).splitlines()[0]}")
    raise FileNotFoundError("No pose estimation backend is available:\n  " + "\n  ".join(errors) + f"\nTo get one:\n{_HOW_TO_GET}")


_ESTIMATORS: Dict[str, PoseEstimator] = {}


def estimate(image: ImageInput, backend: str = "auto", return_all: bool = False, return_mask: bool = False):
    """Estimate the COCO-18 pose of the largest person in ``image``.

    The estimator of each backend is loaded on first use and kept; for other settings use
    `load_estimator`.

    Args:
        image: a file path, PIL image, ``(H, W, 3)`` uint8 (or [0, 1] float) array, or a ``(3, H, W)``
            tensor in [-1, 1].
        backend (`str`, *optional*, defaults to ``"auto"``): ``"openpose"``, ``"blazepose"`` or ``"auto"``.
            With ``return_mask``, ``"auto"`` means BlazePose (the backend that segments).
        return_all (`bool`, *optional*, defaults to `False`): return a `PoseEstimate` with every person.
        return_mask (`bool`, *optional*, defaults to `False`): return a `PoseEstimate` with a person mask.

    Returns:
        `np.ndarray`: float32 ``(18, 3)`` ``(x, y, confidence)`` in the image's pixels, ``(-1, -1, 0)`` for
        missing points (all of them when nobody is found); a `PoseEstimate` when either flag is set.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    if return_mask and backend == "auto":
        backend = "blazepose"
    if backend not in _ESTIMATORS:
        _ESTIMATORS[backend] = load_estimator(backend)
    return _ESTIMATORS[backend](image, return_all=return_all, return_mask=return_mask)
