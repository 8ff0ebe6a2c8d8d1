"""A training set from anyone's video: the paper's YouTube recipe (§4) as ``pgat prepare-video``.

Frames are sampled at a fixed rate (3 fps by default, as the paper sampled its dance videos), each is
posed by `pgat.pose_estimation`, frames without one confident person are dropped and counted by reason,
and the rest are written in the pair format (`pgat.data.PairWriter`) with pairs between frames of the
same video only: the same person in the same clothes, in another pose. With ``remove_background`` the
person mask of BlazePose blanks everything else to white, as in the fashion photographs the model is
usually trained on.

Decisions, written down:

- Several people in a frame: the largest (keypoint bounding box) is used and the frame is counted under
  ``several_people``; it is not dropped, as dance videos often show a bystander at the edge.
- "Confident": the person has at least ``min_keypoints`` of the 18 keypoints above the estimator's
  confidence threshold. A frame below it is dropped as ``too few keypoints``; a frame with nobody as
  ``no person``.
- Pairs: each kept frame is the reference of up to ``pairs_per_frame`` targets spread evenly over the
  other kept frames of its video (so short and long pose changes both appear); 0 means every ordered pair.
- A result with no pair at all is an error that gives the counts, never a silent empty dataset.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
SKIP_NO_PERSON = "no person"
SKIP_TOO_FEW_KEYPOINTS = "too few keypoints"


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------


def _open_video(path: Path, output_params=None):
    """imageio-ffmpeg's frame generator and its metadata, or a clear error for an unreadable file."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), output_params=output_params)
    try:
        meta = next(gen)
    except Exception as e:  # ffmpeg's own message says what is wrong with the file
        gen.close()
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ValueError(f"`video` '{path}' is not a readable video: {first}") from None
    return gen, meta


def sample_frames(video: Union[str, Path], fps: float = 3.0) -> Iterator[Tuple[int, float, np.ndarray]]:
    """Decode ``video`` at ``fps`` frames per second.

    ffmpeg's ``fps`` filter does the sampling, so only the kept frames are converted to RGB. A video whose
    own rate is at most ``fps`` gives every frame.

    Yields:
        ``(index, seconds, frame)``: the sample's number, its time, and an ``(H, W, 3)`` uint8 RGB frame.
    """
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"`video` file '{path}' does not exist")
    if not fps > 0:
        raise ValueError(f"`fps` must be positive, got {fps}")
    gen, meta = _open_video(path)
    gen.close()
    source_fps = float(meta.get("fps") or 0.0)
    resample = source_fps <= 0 or fps < source_fps
    rate = fps if resample else source_fps
    gen, meta = _open_video(path, ["-vf", f"fps={fps}"] if resample else None)
    width, height = meta["size"]
    try:
        for index, raw in enumerate(gen):
            yield index, index / rate, np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        gen.close()


def video_info(video: Union[str, Path]) -> dict:
    """``fps``, ``duration`` (seconds) and ``size`` (width, height) of a video, from its header."""
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"`video` file '{path}' does not exist")
    gen, meta = _open_video(path)
    gen.close()
    return {"fps": float(meta.get("fps") or 0.0), "duration": float(meta.get("duration") or 0.0), "size": tuple(meta["size"])}


def find_videos(paths: Sequence[Union[str, Path]]) -> List[Path]:
    """Expand the given files and folders (their video files, sorted) into a list of videos."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise FileNotFoundError(f"`videos` folder '{p}' holds no video file ({', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"`videos` path '{p}' does not exist")
    if not out:
        raise ValueError("`videos` is empty: give at least one video file or folder")
    return out


# ---------------------------------------------------------------------------------------------
# the recipe
# ---------------------------------------------------------------------------------------------


class NoPairError(ValueError):
    """`prepare_video` found no pair to write; ``output`` (`PrepareVideoOutput`) holds the counts of what it saw."""

    def __init__(self, output: "PrepareVideoOutput", message: str):
        super().__init__(message)
        self.output = output


@dataclass
class VideoReport:
    """What became of one video's sampled frames."""

    video: str
    sampled: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    several_people: int = 0
    pairs: int = 0


@dataclass
class PrepareVideoOutput:
    """The result of `prepare_video`: where it wrote, per-video counts and how long it took."""

    out_dir: Path
    videos: List[VideoReport]
    seconds: float

    @property
    def sampled(self) -> int:
        return sum(v.sampled for v in self.videos)

    @property
    def kept(self) -> int:
        return sum(v.kept for v in self.videos)

    @property
    def pairs(self) -> int:
        return sum(v.pairs for v in self.videos)

    @property
    def skipped(self) -> Counter:
        return sum((v.skipped for v in self.videos), Counter())

    @property
    def several_people(self) -> int:
        return sum(v.several_people for v in self.videos)

    @property
    def frames_per_second(self) -> float:
        """Sampled frames processed per second of wall time (decode + pose + write)."""
        return self.sampled / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        lines = [
            f"{len(self.videos)} video(s): {self.sampled} frames sampled, {self.kept} kept, skipped: {skipped}",
            f"{self.several_people} kept frame(s) showed several people: the largest person was used",
            f"{self.pairs} same-video pairs written to {self.out_dir} ({self.frames_per_second:.2f} frames/s)",
        ]
        lines += [f"  {v.video}: {v.sampled} sampled, {v.kept} kept, {v.pairs} pairs" for v in self.videos]
        return "\n".join(lines)


def _pair_targets(i: int, n: int, per_frame: int) -> List[int]:
    others = [j for j in range(n) if j != i]
    if per_frame <= 0 or len(others) <= per_frame:
        return others
    picks = np.unique(np.linspace(0, len(others) - 1, per_frame).round().astype(int))
    return [others[k] for k in picks]


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem).strip("._-") or "video"


def _resize(frame: np.ndarray, keypoints: np.ndarray, max_size: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    h, w = frame.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return frame, keypoints
    from PIL import Image

    s = max_size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = np.asarray(Image.fromarray(frame).resize((nw, nh), Image.BICUBIC))
    kps = keypoints.copy()
    ok = (kps[:, 0] >= 0) & (kps[:, 1] >= 0)
    # pixel centres: x' = (x + 0.5) * sx - 0.5, clamped onto the last pixel row/column it rounds into
    kps[ok, 0] = np.clip((kps[ok, 0] + 0.5) * (nw / w) - 0.5, 0, nw - 1)
    kps[ok, 1] = np.clip((kps[ok, 1] + 0.5) * (nh / h) - 0.5, 0, nh - 1)
    return small, kps


def prepare_video(
    videos: Union[str, Path, Sequence[Union[str, Path]]],
    out_dir: Union[str, Path],
    fps: float = 3.0,
    backend: str = "auto",
    remove_background: bool = False,
    min_keypoints: int = 8,
    pairs_per_frame: int = 10,
    max_size: Optional[int] = None,
    image_format: str = "png",
    overwrite: bool = False,
    estimator=None,
    progress: bool = True,
) -> PrepareVideoOutput:
    """Turn videos of people into a pair-format training set (same-video pairs).

    Args:
        videos: a video file, a folder of videos, or a list of either.
        out_dir: the pair-format folder to write (`pgat.data.PairWriter`).
        fps (`float`, *optional*, defaults to 3.0): frames sampled per second of video.
        backend (`str`, *optional*, defaults to ``"auto"``): pose estimator (`pgat.pose_estimation`);
            ``remove_background`` needs BlazePose, so ``"auto"`` then means BlazePose.
        remove_background (`bool`, *optional*, defaults to `False`): blank all but the person to white.
        min_keypoints (`int`, *optional*, defaults to 8): confident keypoints a kept frame's person needs.
        pairs_per_frame (`int`, *optional*, defaults to 10): targets per reference frame; 0 for all pairs.
        max_size (`int`, *optional*): downscale frames whose long side is larger (keypoints follow).
        image_format (`str`, *optional*, defaults to ``"png"``), overwrite (`bool`): as in `PairWriter`.
        estimator (`pgat.pose_estimation.PoseEstimator`, *optional*): a loaded estimator to use instead of ``backend``.
        progress (`bool`, *optional*, defaults to `True`): show a tqdm progress bar.

    Returns:
        `PrepareVideoOutput` with per-video counts (sampled, kept, skipped by reason, several people, pairs).

    Raises:
        `NoPairError` (a `ValueError`): no video gave two usable frames, so there is no pair to write (the counts
            say why, and its ``output`` holds them).
    """
    from tqdm.auto import tqdm

    from .data.pairs import PairWriter
    from .pose_estimation import BACKENDS, load_estimator

    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    if not fps > 0:
        raise ValueError(f"`fps` must be positive, got {fps}")
    if not 1 <= int(min_keypoints) <= 18:
        raise ValueError(f"`min_keypoints` must be between 1 and 18, got {min_keypoints}")
    if int(pairs_per_frame) < 0:
        raise ValueError(f"`pairs_per_frame` must be >= 0 (0 = every pair), got {pairs_per_frame}")
    if max_size is not None and int(max_size) < 16:
        raise ValueError(f"`max_size` must be at least 16 pixels, got {max_size}")
    paths = find_videos(videos)
    if estimator is None:
        if remove_background and backend == "openpose":
            raise ValueError("`remove_background` needs the person mask of backend='blazepose'; backend='openpose' gives none")
        estimator = load_estimator("blazepose" if remove_background and backend == "auto" else backend)
    elif remove_background and not estimator.has_mask:
        raise ValueError(f"`remove_background` needs an estimator with a person mask; {estimator.backend!r} gives none")

    infos = [video_info(p) for p in paths]  # an unreadable video fails here, before anything is written

    start = time.perf_counter()
    reports: List[VideoReport] = []
    with PairWriter(out_dir, image_format=image_format, overwrite=overwrite) as writer:
        for vi, (path, info) in enumerate(zip(paths, infos)):
            report = VideoReport(str(path))
            reports.append(report)
            expected = int(info["duration"] * min(fps, info["fps"] or fps)) or None
            names: List[str] = []
            bar = tqdm(total=expected, desc=path.name, unit="frame", disable=not progress, leave=False)
            for index, _, frame in sample_frames(path, fps):
                report.sampled += 1
                bar.update(1)
                result = estimator(frame, return_all=True, return_mask=remove_background)
                if result.num_people == 0:
                    report.skipped[SKIP_NO_PERSON] += 1
                    continue
                kps = result.keypoints
                if int((kps[:, 2] > 0).sum()) < min_keypoints:
                    report.skipped[SKIP_TOO_FEW_KEYPOINTS] += 1
                    continue
                report.several_people += result.num_people > 1
                if remove_background:
                    alpha = result.mask[..., None]
                    frame = (frame * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
                image, kps2 = _resize(frame, kps[:, :2], max_size)
                names.append(writer.add_image(f"v{vi:03d}_{_safe_stem(path)}_{index:05d}", image, kps2))
                report.kept += 1
            bar.close()
            for i in range(len(names)):
                for j in _pair_targets(i, len(names), int(pairs_per_frame)):
                    writer.add_pair(names[i], names[j])
                    report.pairs += 1
    output = PrepareVideoOutput(Path(out_dir), reports, time.perf_counter() - start)
    if output.pairs == 0:
        raise NoPairError(output,
            "prepare-video found no pair to write: every video needs at least two frames with one confident "
            f"person.\n{output.summary()}\n(images kept so far are in '{out_dir}'; try a lower --min-keypoints or a higher --fps)"
        )
    return output


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def _cmd_prepare_video(args: argparse.Namespace) -> int:
    output = prepare_video(
        args.videos,
        args.out,
        fps=args.fps,
        backend=args.backend,
        remove_background=args.remove_background,
        min_keypoints=args.min_keypoints,
        pairs_per_frame=args.pairs_per_frame,
        max_size=args.max_size,
        image_format=args.image_format,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(output.summary())
    return 0


def register_prepare_video(sub) -> None:
    p = sub.add_parser(
        "prepare-video",
        help="make a pair-format training set from videos: sample frames, estimate poses, pair frames of the same video",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video file(s) or folder(s) of videos")
    p.add_argument("--out", required=True, help="output folder (pair format: metadata.jsonl, pairs.csv, images/)")
    p.add_argument("--fps", type=float, default=3.0, help="frames sampled per second of video (default: 3, as the paper)")
    p.add_argument("--backend", choices=["auto", "openpose", "blazepose"], default="auto", help="pose estimator (default: auto)")
    p.add_argument("--remove-background", action="store_true", help="blank everything but the person to white (BlazePose's person mask)")
    p.add_argument("--min-keypoints", type=int, default=8, help="confident keypoints (of 18) a frame's person needs to be kept (default: 8)")
    p.add_argument("--pairs-per-frame", type=int, default=10, help="targets paired with each reference frame; 0 = every pair (default: 10)")
    p.add_argument("--max-size", type=int, default=None, help="downscale frames whose long side is larger than this")
    p.add_argument("--image-format", choices=["png", "jpg"], default="png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare_video)
