"""Readers for the datasets users bring, and ``pgat synth`` (DESIGN.md §3).

Each reader returns a `PairSource` (images + keypoints + pairs) that `PairDataset` trains on directly and
that ``.write(out_dir)`` turns into a pair-format folder for ``datasets``.

- DeepFashion In-shop in the PATN/GFLA layout: an image folder, ``fasion-resize-annotation-{split}.csv``
  (``name:keypoints_y:keypoints_x``) and ``fasion-resize-pairs-{split}.csv`` (``from,to``), images 256x176
  or 256x256 (the frame is read from the image size: 176 wide means the annotation's x is shifted by 40).
- Human3.6M: a folder of frames and a 2-D pose ``.npz`` in the VideoPose3D 17-joint layout, mapped to
  COCO-18 (eyes and ears missing).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from ..pose import NUM_KEYPOINTS, read_deepfashion_annotations
from .pairs import ImageRecord, PairSource, PairWriter, finish_source, probe_image, read_pairs_csv

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# VideoPose3D's Human3.6M joints: 0 hip, 1 r_hip, 2 r_knee, 3 r_foot, 4 l_hip, 5 l_knee, 6 l_foot, 7 spine,
# 8 thorax, 9 neck/nose, 10 head, 11 l_shoulder, 12 l_elbow, 13 l_wrist, 14 r_shoulder, 15 r_elbow, 16 r_wrist.
# COCO-18 takes the thorax as its neck and joint 9 as its nose; the eyes and ears have no counterpart.
H36M17_TO_COCO18: Tuple[int, ...] = (9, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, -1, -1, -1, -1)


def h36m_to_coco18(joints: np.ndarray) -> np.ndarray:
    """Map ``(..., 17, 2)`` Human3.6M joints (VideoPose3D order) to ``(..., 18, 2)`` COCO-18, -1 for eyes/ears."""
    joints = np.asarray(joints, dtype=np.float32)
    if joints.ndim < 2 or joints.shape[-2:] != (17, 2):
        raise ValueError(f"`joints` must have shape (..., 17, 2) (Human3.6M, VideoPose3D order), got {joints.shape}")
    out = np.full(joints.shape[:-2] + (NUM_KEYPOINTS, 2), -1.0, dtype=np.float32)
    for coco, h36m in enumerate(H36M17_TO_COCO18):
        if h36m >= 0:
            out[..., coco, :] = joints[..., h36m, :]
    return out


def read_deepfashion(
    root: Union[str, os.PathLike],
    split: str = "test",
    image_dir: Optional[str] = None,
    annotation_file: Optional[str] = None,
    pairs_file: Optional[str] = None,
    from_column: str = "from",
    to_column: str = "to",
) -> PairSource:
    """DeepFashion in the PATN/GFLA layout as a `PairSource`.

    Args:
        root (`str`): the dataset folder.
        split (`str`, *optional*, defaults to ``"test"``): picks the default file names below.
        image_dir (`str`, *optional*): image folder under ``root``; defaults to the first of ``{split}``,
            ``{split}_256``, ``{split}_highres`` that exists.
        annotation_file, pairs_file (`str`, *optional*): default ``fasion-resize-annotation-{split}.csv`` and
            ``fasion-resize-pairs-{split}.csv`` (the ``fasion-annotation-{split}.csv`` /
            ``fasion-pairs-{split}.csv`` names of GFLA are tried next).
        from_column, to_column (`str`): the pairs CSV's column names.

    Images whose file is missing or unreadable, or whose keypoints fall outside the image, are skipped
    and counted in ``.skipped``; no usable pair at all is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DeepFashion folder '{root}' does not exist")

    def pick(given, candidates, what):
        names = [given] if given else candidates
        for n in names:
            if (root / n).exists():
                return root / n
        raise FileNotFoundError(f"DeepFashion {what} not found in '{root}': tried {names}; found {sorted(p.name for p in root.iterdir())[:12]}")

    images_path = pick(image_dir, [split, f"{split}_256", f"{split}_highres"], "image folder")
    ann_path = pick(annotation_file, [f"fasion-resize-annotation-{split}.csv", f"fasion-annotation-{split}.csv"], "annotation file")
    pairs_path = pick(pairs_file, [f"fasion-resize-pairs-{split}.csv", f"fasion-pairs-{split}.csv", f"fashion-pairs-{split}.csv"], "pairs file")
    named_pairs = read_pairs_csv(pairs_path, from_column, to_column)
    if not named_pairs:
        raise ValueError(f"DeepFashion pairs file '{pairs_path}' lists no pairs")
    files = [p for p in sorted(images_path.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"DeepFashion image folder '{images_path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    # The annotation is in the 256x256 frame; a 176-wide image is the centre crop (x - 40).
    size = None
    for p in files:
        size, _ = probe_image(p)
        if size is not None:
            break
    frame = "256x176" if size is not None and size[0] * 256 == 176 * size[1] else "256x256"
    table = read_deepfashion_annotations(ann_path, frame=frame)
    if size is not None and size[1] != 256:
        scale = size[1] / 256.0  # a high-resolution copy: scale with pixel centres kept
        table = {n: np.where(k >= 0, (k + 0.5) * scale - 0.5, -1.0).astype(np.float32) for n, k in table.items()}
    skipped: Counter = Counter()
    images: List[ImageRecord] = []
    wanted = {n for pair in named_pairs for n in pair}
    for name in sorted(wanted):
        if name not in table:
            skipped["image without annotation"] += 1
            continue
        images.append(ImageRecord(name, images_path / name, table[name]))
    return finish_source(images, named_pairs, skipped, f"DeepFashion '{root}' ({split})")


def read_human36m(
    frames: Union[str, os.PathLike],
    poses: Union[str, os.PathLike],
    key: str = "positions_2d",
    subject: Optional[str] = None,
    action: Optional[str] = None,
    camera: int = 0,
    pair_offset: Optional[int] = None,
    allow_pickle: bool = False,
) -> PairSource:
    """Human3.6M frames with 2-D poses from a VideoPose3D-style ``.npz`` as a `PairSource`.

    The ``.npz`` holds, under ``key``, either a plain ``(N, 17, 2)`` pixel array (one pose per frame), or
    VideoPose3D's ``data_2d_h36m_*.npz`` nested ``{subject: {action: [camera arrays]}}`` (then name
    ``subject`` and ``action``; that file is a pickle, so it needs ``allow_pickle=True``: trusted files only).

    Frames are the images of ``frames`` sorted by name, one per pose. Pairs are ``(i, (i + pair_offset) % N)``,
    by default half a sequence apart (the largest pose change within it).
    """
    frames, poses = Path(frames), Path(poses)
    if not frames.is_dir():
        raise FileNotFoundError(f"Human3.6M frame folder '{frames}' does not exist")
    if not poses.is_file():
        raise FileNotFoundError(f"Human3.6M pose file '{poses}' does not exist")
    try:
        npz = np.load(poses, allow_pickle=allow_pickle)
    except ValueError as e:
        raise ValueError(f"could not read '{poses}' as .npz: {e}") from None
    if key not in npz.files:
        raise ValueError(f"'{poses}' has no array {key!r}; its arrays are {npz.files} (set key=...)")
    try:
        data = npz[key]
    except ValueError:
        raise ValueError(
            f"'{poses}' array {key!r} is a pickled object (VideoPose3D's nested layout); pass allow_pickle=True "
            "only for a file you trust"
        ) from None
    if data.dtype == object:
        data = data.item()
        if subject not in data:
            raise ValueError(f"`subject` must be one of {sorted(data)}, got {subject!r}")
        if action not in data[subject]:
            raise ValueError(f"`action` must be one of {sorted(data[subject])}, got {action!r}")
        cams = data[subject][action]
        if not 0 <= camera < len(cams):
            raise ValueError(f"`camera` must be in [0, {len(cams) - 1}], got {camera}")
        data = np.asarray(cams[camera])
    joints = np.asarray(data, dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (17, 2):
        raise ValueError(f"'{poses}' {key!r} must be (N, 17, 2) Human3.6M joints in pixels, got shape {joints.shape}")
    files = [p for p in sorted(frames.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"Human3.6M frame folder '{frames}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if len(files) != len(joints):
        raise ValueError(f"'{frames}' has {len(files)} frames but '{poses}' has {len(joints)} poses; they must match one to one")
    kps = h36m_to_coco18(joints)
    images = [ImageRecord(p.name, p, k) for p, k in zip(files, kps)]
    n = len(images)
    offset = n // 2 if pair_offset is None else int(pair_offset)
    if n < 2 or offset % n == 0:
        raise ValueError(f"`pair_offset` {offset} pairs every frame with itself ({n} frames); need two frames and an offset not a multiple of {n}")
    named = [(images[i].name, images[(i + offset) % n].name) for i in range(n)]
    return finish_source(images, named, Counter(), f"Human3.6M '{frames}'")


# ---------------------------------------------------------------------------------------------
# pgat synth
# ---------------------------------------------------------------------------------------------


def write_synth(
    out_dir: Union[str, os.PathLike],
    num_pairs: int,
    resolution: int = 256,
    split: str = "train",
    seed: int = 0,
    poses: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``num_pairs`` SynthHumans pairs (``ds[0] ... ds[num_pairs - 1]``) as a pair-format folder."""
    from tqdm.auto import tqdm

    from .synthetic import SynthHumans

    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"`num_pairs` must be a positive integer, got {num_pairs!r}")
    ds = SynthHumans(resolution=resolution, split=split, seed=seed, poses=poses, length=max(num_pairs, 1))
    with PairWriter(out_dir, overwrite=overwrite) as writer:
        for i in tqdm(range(num_pairs), desc="pgat synth", disable=not progress):
            item = ds[i]
            a = writer.add_image(f"{i:06d}_reference", item["reference"], item["reference_keypoints"], item["reference_parsing"])
            b = writer.add_image(f"{i:06d}_target", item["target"], item["target_keypoints"], item["target_parsing"])
            writer.add_pair(a, b)
    return Path(out_dir)


def _cmd_synth(args: argparse.Namespace) -> int:
    out = write_synth(args.out, args.num_pairs, args.resolution, args.split, args.seed, args.poses, args.overwrite)
    print(f"wrote {args.num_pairs} SynthHumans pairs ({args.split}, {args.resolution}x{args.resolution}, seed {args.seed}) to {out}")
    return 0


def register_synth(sub) -> None:
    p = sub.add_parser("synth", help="write SynthHumans pairs in the pair format (imagefolder + pairs.csv)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-pairs", type=int, default=100, help="number of pairs (default: 100)")
    p.add_argument("--resolution", type=int, default=256, help="square image side, 64-1024 (default: 256)")
    p.add_argument("--split", choices=("train", "test"), default="train", help="identity and pose split (default: train)")
    p.add_argument("--seed", type=int, default=0, help="identity/pair stream (default: 0)")
    p.add_argument("--poses", choices=("deepfashion", "random"), default="deepfashion", help="pose pool (default: the real DeepFashion poses)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing pair folder at --out")
    p.set_defaults(func=_cmd_synth)
