"""PGATVideoPipeline: a reference photo + a sequence of poses -> a video of that person moving.

One frame per pose, made by `PGATPipeline` (the reference encoded once, the poses decoded in batches) and written as
an H.264 mp4. Beyond the paper (DESIGN.md §1 "Video"), the pose sequence is cleaned before generation, each step switchable:

1. gaps: missing or low-confidence points are carried over from neighbouring frames (`pgat.pose.fill_missing`);
2. smoothing: a One-Euro filter against keypoint flicker (`pgat.pose.smooth_keypoints`), run forward and
   backward by default: the whole sequence is known, so the filter's lag can be cancelled;
3. retargeting: the driving skeleton takes the reference person's bone lengths and place
   (`pgat.pose.retarget`), so a tall dancer's motion does not stretch a short reference.

Decisions, written down:

- ``fps`` is the rate of the pose sequence and of the video. A driving video is sampled at ``fps`` (its own
  rate when not given); asking for more frames per second than it has is an error, frames are not invented.
  A folder or an array has no rate of its own: ``fps`` defaults to 30.
- Smoothing runs in the driving frame's pixels (before retargeting), so ``beta`` is per pixel/second of the
  driving poses.
- Without retargeting, poses are placed the way `PGATPipeline` places one pose: an array (or JSON without a
  canvas) is in the reference image's pixels; a driving video's poses (or JSON with ``canvas_width`` /
  ``canvas_height``) are mapped from that frame by fitting both frames into the model's square.
- A retargeted (or mapped) point outside the reference image is missing: the output cannot show it.
- A frame with nobody in it keeps its place in the video (timing matters more than a gap); the counts of
  such frames are logged.
- The mp4 is yuv420p, which needs even sides: an odd-sized reference is padded by one replicated pixel row
  or column in the file only; ``frames`` keep the reference's exact size.
- The reference person's pose is resolved once per video (given, or estimated from the reference photo) when
  retargeting or the model needs it (a model that takes the reference's pose, ``model.needs_reference_pose``,
  DESIGN.md §1b); the same pose serves both, and every frame.
"""

from __future__ import annotations

import argparse
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput, logging

from ..pose import (
    Letterbox,
    check_sequence,
    fill_missing as fill_missing_points,
    read_openpose_folder,
    retarget as retarget_poses,
    smooth_keypoints,
    visible,
)
from ..inputs import InputError, MissingInputError, check_sequence_usable
from .pose_transfer import DTYPE_HELP, DTYPES, PGATPipeline
from .utils import default_batch_size, format_images, load_image, pose_to_square

logger = logging.get_logger(__name__)

DEFAULT_FPS = 30.0
# Chosen on the real 720p workout_march sequence (shared data) with Gaussian noise of 2 px added, at 30 fps:
# mean |second difference| 4.65 px noisy -> 2.04 causal -> 1.16 forward-backward, mean distance to the
# un-noised poses 1.61 -> 1.58 -> 1.19 px (tests/test_video_pipeline.py checks the same).
DEFAULT_SMOOTHING: Dict[str, Any] = {"min_cutoff": 1.0, "beta": 0.1, "d_cutoff": 1.0, "bidirectional": True}


@dataclass
class PGATVideoPipelineOutput(BaseOutput):
    """Output of `PGATVideoPipeline`.

    Args:
        frames (`List[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): one frame per pose, in the reference
            image's size; ``(T, H, W, 3)`` / ``(T, 3, H, W)`` in [0, 1] for ``"np"`` / ``"pt"``.
        video_path (`str` or `None`): the mp4 written, when ``output_path`` was given.
        poses (`np.ndarray`): ``(T, 18, 3)`` the poses the frames were generated from, ``(x, y, confidence)``
            in the reference image's pixels, ``(-1, -1, 0)`` where missing.
        fps (`float`): the frame rate of the sequence and of the video.
        reference_pose (`np.ndarray` or `None`): ``(18, 3)`` the reference person's pose that was used (for
            retargeting and/or by the model), in the reference image's pixels; `None` when none was used. Not part
            of the ``return_dict=False`` tuple, which stays ``(frames, video_path, poses, fps)``.
    """

    frames: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]
    video_path: Optional[str]
    poses: np.ndarray
    fps: float
    reference_pose: Optional[np.ndarray] = None


# ---------------------------------------------------------------------------------------------
# pose sequences in every form users bring them
# ---------------------------------------------------------------------------------------------


def _with_confidence(arr: np.ndarray) -> np.ndarray:
    if arr.shape[-1] == 3:
        return arr
    return np.concatenate([arr, visible(arr)[..., None].astype(np.float32)], axis=-1)


def _video_poses(path: Path, fps: Optional[float], max_frames: Optional[int], estimator, progress_bar) -> Tuple[np.ndarray, Tuple[int, int], float]:
    """Pose every sampled frame of a driving video: ``((T, 18, 3), (width, height), rate)``."""
    from ..video_dataset import sample_frames, video_info

    try:
        info = video_info(path)
    except ValueError as e:
        raise ValueError(f"`pose_sequence` {e}") from None
    source = info["fps"]
    # within 1% (30 asked of a 29.97 fps video) every frame is used at the rate asked
    if fps is not None and source > 0 and fps > source * 1.01:
        raise ValueError(
            f"`fps`={fps} is above the {source:g} frames per second of the driving video '{path}': frames are not "
            f"invented; pass fps <= {source:g}, or leave it out to use the video's rate"
        )
    rate = float(fps or source or DEFAULT_FPS)
    expected = int(round(info["duration"] * rate)) or None
    total = min(expected, max_frames) if expected and max_frames else (expected or max_frames or 0)
    poses = []
    with progress_bar(total=total) as bar:
        bar.set_description("pose estimation")
        for index, _, frame in sample_frames(path, rate):
            if max_frames is not None and index >= max_frames:
                break
            poses.append(np.asarray(estimator(frame), dtype=np.float32))
            bar.update(1)
    if not poses:
        raise InputError("pose_sequence", f"the video '{path}', which has no frame to read", "a video with at least one frame")
    return np.stack(poses), tuple(info["size"]), rate


def load_pose_sequence(
    pose_sequence,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    estimator=None,
    progress_bar=None,
) -> Tuple[np.ndarray, Optional[Tuple[int, int]], float]:
    """Read a pose sequence: ``((T, 18, 3) keypoints, frame, fps)``.

    Args:
        pose_sequence: a folder of OpenPose JSON files (COCO-18 or BODY_25), a ``.npy`` file or an array
            ``(T, 18, 2|3)``, or a driving video file (posed frame by frame by ``estimator``).
        fps (`float`, *optional*): the sequence's rate; a video is sampled at it (its own rate by default).
        max_frames (`int`, *optional*): keep only the first frames.
        estimator (*optional*): a callable ``image -> (18, 3)``, needed for a video.
        progress_bar (*optional*): a ``progress_bar(total=...)`` context factory (a pipeline's).

    Returns:
        The keypoints; the frame ``(width, height)`` they are in (`None`: the reference image's pixels); the fps.
    """
    frame = None
    source_fps = None
    if isinstance(pose_sequence, (str, os.PathLike)):
        path = Path(pose_sequence)
        if not path.exists():
            raise MissingInputError("pose_sequence", f"'{path}', which does not exist", "a folder of OpenPose JSON files, a .npy file or a video")
        if path.is_dir():
            try:
                seq, info = read_openpose_folder(path, return_info=True)
            except InputError:
                raise
            except FileNotFoundError:
                raise MissingInputError("pose_sequence", f"the folder '{path}', which holds no JSON file",
                                        "a folder of OpenPose JSON files (*_keypoints.json or *.json), one per frame") from None
            except ValueError as e:  # names the file at fault
                raise InputError("pose_sequence", f"the folder '{path}', in which {e}", "a folder of OpenPose JSON files, one per frame") from None
            if info["empty_frames"]:
                logger.warning(f"{len(info['empty_frames'])} of {len(seq)} OpenPose files in '{path}' have no people: their points are missing")
            frame = info["canvas_size"]
        elif path.suffix.lower() == ".npy":
            try:
                seq = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise InputError("pose_sequence", f"the file '{path}', which is not a numeric .npy array ({e})", "a .npy file of a (T, 18, 2|3) array") from None
            seq = check_sequence(seq, "pose_sequence")
        elif path.suffix.lower() == ".json":
            raise InputError("pose_sequence", f"the single JSON file '{path}'", "the folder holding one OpenPose JSON file per frame")
        else:
            if estimator is None:
                raise InputError("pose_sequence", f"the video '{path}', which needs a pose estimator; this pipeline has none (pose_estimator=None)",
                                 "a folder of OpenPose JSON files or a keypoint array, or a pipeline with a pose estimator")
            seq, frame, source_fps = _video_poses(path, fps, max_frames, estimator, progress_bar)
            empty = int((~visible(seq).any(axis=1)).sum())
            if empty:
                logger.warning(f"{empty} of {len(seq)} frames of '{path}' show nobody: their points are missing")
    else:
        seq = check_sequence(pose_sequence, "pose_sequence")
    seq = _with_confidence(seq)
    if max_frames is not None:
        seq = seq[:max_frames]
    # at least one frame that places a body (`pgat.inputs`); a frame with nobody keeps its place in the video
    check_sequence_usable(seq, "pose_sequence", frame)
    return seq, frame, float(source_fps or fps or DEFAULT_FPS)


def write_video(frames: List[PIL.Image.Image], path: Union[str, os.PathLike], fps: float, quality: float = 7.0) -> str:
    """Write RGB frames as an H.264 (libx264, yuv420p) mp4 with imageio-ffmpeg; odd sides are padded by one
    replicated pixel, as yuv420p needs even ones. Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"`output_path` must end in .mp4 (H.264 video), got '{path}'")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"`output_path` folder '{path.parent}' does not exist")
    import imageio_ffmpeg

    w, h = frames[0].size
    even = (w + w % 2, h + h % 2)
    writer = imageio_ffmpeg.write_frames(
        str(path), even, fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=quality, macro_block_size=1,
        output_params=["-movflags", "+faststart"],  # playable while it downloads (browsers, Gradio)
    )
    writer.send(None)
    try:
        for image in frames:
            arr = np.asarray(image.convert("RGB"))
            if (w, h) != even:
                arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(arr))
    finally:
        writer.close()
    return str(path)


# ---------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------


class PGATVideoPipeline(PGATPipeline):
    r"""Pose-guided video: one reference photo + a pose sequence -> an mp4 of the person following it.

    Loads like `PGATPipeline` (``PGATVideoPipeline.from_pretrained(id_or_path, resolution=...)`` or
    ``PGATVideoPipeline(model=...)``); each frame is one `PGATPipeline` forward pass. See the module
    docstring for how the sequence is read and cleaned.
    """

    def check_video_inputs(self, fps, smoothing, batch_size, max_frames, max_gap) -> None:
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps <= 240):
            raise ValueError(f"`fps` must be a number in (0, 240] or None, got {fps!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"`max_frames` must be a positive integer or None, got {max_frames!r}")
        if max_gap is not None and (isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0):
            raise ValueError(f"`max_gap` must be a non-negative integer (frames) or None, got {max_gap!r}")
        if smoothing is not None:
            if not isinstance(smoothing, dict):
                raise ValueError(f"`smoothing` must be a dict of One-Euro settings, got {type(smoothing).__name__}")
            unknown = set(smoothing) - set(DEFAULT_SMOOTHING)
            if unknown:
                raise ValueError(f"`smoothing` has unknown keys {sorted(unknown)}; expected some of {sorted(DEFAULT_SMOOTHING)}")

    def _reference_pose(self, reference_pose, picture: PIL.Image.Image, retarget: bool = True) -> np.ndarray:
        """The reference person's ``(18, 3)`` in the reference image's pixels (given, or estimated), for retargeting
        and/or a model that takes it (`PGATPipeline.prepare_reference_pose`)."""
        reasons = (["`retarget=True`"] if retarget else []) + ([self._needs_text()] if self.model.needs_reference_pose else [])
        # `retarget=False` is a way out only when the model does not need the pose itself
        hint = "" if self.model.needs_reference_pose else ", or `retarget=False`"
        return self.prepare_reference_pose(reference_pose, picture, " and ".join(reasons), hint=hint)

    @torch.no_grad()
    def __call__(
        self,
        reference_image,
        pose_sequence,
        fps: Optional[float] = None,
        output_path: Optional[Union[str, os.PathLike]] = None,
        reference_pose=None,
        retarget: bool = True,
        smooth: bool = True,
        smoothing: Optional[Dict[str, Any]] = None,
        fill_missing: bool = True,
        max_gap: Optional[int] = 15,
        batch_size: Optional[int] = None,
        max_frames: Optional[int] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        r"""
        Args:
            reference_image: the person: a PIL image, ``(H, W, 3)`` uint8 array, ``(3, H, W)`` tensor in [-1, 1] or a path.
            pose_sequence: a folder of OpenPose JSON files (one per frame, COCO-18 or BODY_25, as ``openpose
                --write_json`` writes them), an array ``(T, 18, 2|3)`` or a ``.npy`` file of one, or a driving
                video (path) whose frames are posed by the pipeline's pose estimator.
            fps (`float`, *optional*): frames per second of the sequence and the video; a driving video is sampled
                at it. Defaults to the driving video's rate, else 30.
            output_path (`str`, *optional*): where to write the ``.mp4``; no file when omitted.
            reference_pose (*optional*): the reference person's pose (array in its pixels, OpenPose JSON or an
                image); estimated from ``reference_image``, once, when retargeting or the model
                (``model.needs_reference_pose``) needs it and it is not given.
            retarget (`bool`, *optional*, defaults to `True`): give the driving skeleton the reference's bone
                lengths and place (`pgat.pose.retarget`).
            smooth (`bool`, *optional*, defaults to `True`): One-Euro smoothing of the keypoints over time.
            smoothing (`dict`, *optional*): settings of `pgat.pose.smooth_keypoints` (``min_cutoff``, ``beta``,
                ``d_cutoff``, ``bidirectional``); unset keys take ``DEFAULT_SMOOTHING``
                (min_cutoff 1.0 Hz, beta 0.1, d_cutoff 1.0 Hz, forward-backward).
            fill_missing (`bool`, *optional*, defaults to `True`): carry missing points over from neighbouring frames.
            max_gap (`int`, *optional*, defaults to 15): the longest run of frames `fill_missing` fills.
            batch_size (`int`, *optional*): frames per forward pass; by default 1 on a CPU (as fast as batches
                there, in less memory: 57.7 frames/s against 57.1 at batch 8, embedded model, 256²) and 8 on
                other devices (`pgat.pipelines.utils.default_batch_size`).
            max_frames (`int`, *optional*): use only the first frames of the sequence.
            output_type (`str`, *optional*, defaults to ``"pil"``): ``"pil"``, ``"np"`` or ``"pt"`` for ``frames``.
            return_dict (`bool`, *optional*, defaults to `True`): return a `PGATVideoPipelineOutput`, else a tuple.

        Returns:
            `PGATVideoPipelineOutput` or ``(frames, video_path, poses, fps)``.
        """
        if batch_size is None:
            batch_size = default_batch_size(self.model.device)
        self.check_video_inputs(fps, smoothing, batch_size, max_frames, max_gap)
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}")
        if isinstance(reference_image, (list, tuple)):
            raise ValueError(f"`reference_image` must be one image for a video, got a {type(reference_image).__name__} of {len(reference_image)}")
        if output_path is not None:  # checked before any frame is made
            if Path(output_path).suffix.lower() != ".mp4":
                raise ValueError(f"`output_path` must end in .mp4 (H.264 video), got '{output_path}'")
            if not Path(output_path).parent.is_dir():
                raise FileNotFoundError(f"`output_path` folder '{Path(output_path).parent}' does not exist")
        picture = load_image(reference_image, "reference_image")

        # 1. the pose sequence, in its own frame
        poses, frame, rate = load_pose_sequence(pose_sequence, fps, max_frames, self._estimator(), self.progress_bar)

        # 2. clean it: fill gaps, then smooth (both in the driving frame)
        if fill_missing:
            poses = fill_missing_points(poses, max_gap=max_gap)
        if smooth:
            settings = {**DEFAULT_SMOOTHING, **(smoothing or {})}
            poses = smooth_keypoints(poses, rate, **settings)

        # 3. into the reference image's pixels: retargeted onto its body, or mapped from the driving frame
        width, height = picture.size
        needs = self.model.needs_reference_pose
        reference_kps = self._reference_pose(reference_pose, picture, retarget) if (retarget or needs) else None
        if retarget:
            poses = retarget_poses(poses, reference_kps)
        elif frame is not None and tuple(frame) != (width, height):
            box = Letterbox.fit(width, height, self.resolution)
            poses = np.stack([box.keypoints_from_square(pose_to_square(p, frame, box), strict=False) for p in poses])
        outside = visible(poses) & ((poses[..., 0] > width - 1) | (poses[..., 1] > height - 1) | (poses[..., :2] < 0).any(-1))
        if outside.any():
            logger.info(f"{int(outside.sum())} keypoints in {int(outside.any(1).sum())} frames fall outside the reference image and are left out")
        poses[outside] = (-1.0, -1.0, 0.0)
        empty = int((~visible(poses).any(axis=1)).sum())
        if empty:
            logger.warning(f"{empty} of {len(poses)} frames have no keypoint left; they are generated from an empty pose")

        # 4. generate: one PGATPipeline call, which encodes the reference once and decodes the poses in batches
        #    (its progress bar counts the batches); a model that takes the reference's pose gets the one resolved above
        #    The reference photo must show a person whatever the model reads (checked here when nothing above
        #    estimated its pose); the sequence was checked as a whole, so a frame with nobody in it keeps its place.
        if reference_kps is None:
            self.check_reference_person(picture)
        with torch.no_grad():
            frames: List[PIL.Image.Image] = self._transfer(
                picture, list(poses), reference_pose=reference_kps if needs else None, batch_size=batch_size, output_type="pil", check=False
            ).images

        # 5. the video file
        video_path = write_video(frames, output_path, rate) if output_path is not None else None
        frames = format_images(frames, output_type)
        if not return_dict:
            return frames, video_path, poses, rate
        return PGATVideoPipelineOutput(frames=frames, video_path=video_path, poses=poses, fps=rate, reference_pose=reference_kps)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def _cmd_video(args: argparse.Namespace) -> int:
    from .utils import model_or_default

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pipe = PGATVideoPipeline.from_pretrained(model_or_default(args.model), resolution=args.resolution, pose_estimator=args.pose_estimator,
                                             torch_dtype=getattr(torch, args.dtype))
    if args.device:
        pipe.to(args.device)
    out = pipe(
        args.reference,
        args.poses,
        fps=args.fps,
        output_path=args.out,
        reference_pose=args.reference_pose,
        retarget=not args.no_retarget,
        smooth=not args.no_smooth,
        batch_size=args.batch_size,
        max_frames=args.max_frames,
    )
    print(f"wrote {len(out.frames)} frames at {out.fps:g} fps to {out.video_path}")
    return 0


def register_video(sub) -> None:
    p = sub.add_parser("video", help="animate a reference photo with a pose sequence (OpenPose JSON folder, .npy or a driving video) into an mp4")
    p.add_argument("reference", metavar="REF", help="the reference photo of the person")
    p.add_argument("--poses", required=True, metavar="DIR_OR_VIDEO_OR_NPY", help="folder of OpenPose JSON files, a (T, 18, 2|3) .npy, or a driving video")
    p.add_argument("-o", "--out", required=True, help="output .mp4")
    p.add_argument("--model", default=None, help="Hub id or local folder of a PGAT repository (default: weights/pgat-synth-256 when present)")
    p.add_argument("--resolution", type=int, default=None, help="stage to load (default: the highest in the repository)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the driving video's, else 30)")
    p.add_argument("--reference-pose", default=None, metavar="FILE",
                   help="the reference person's pose: OpenPose JSON, or a .json / .npy (18, 2|3) array in REF's pixels; used for retargeting "
                        "and by models that take the reference's pose (default: estimated from REF when needed)")
    p.add_argument("--pose-estimator", choices=["auto", "openpose", "blazepose"], default="auto", help="pose estimator for videos and REF (default: auto)")
    p.add_argument("--no-retarget", action="store_true", help="use the driving poses as they are, without the reference's bone lengths and place")
    p.add_argument("--no-smooth", action="store_true", help="no One-Euro smoothing of the keypoints over time")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
    p.add_argument("--batch-size", type=int, default=None, help="frames per forward pass (default: 1 on a CPU, 8 on a GPU)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help=DTYPE_HELP)
    p.set_defaults(func=_cmd_video)
