"""The pair format, its writer, and `PairDataset`, the training view of any pair source (DESIGN.md §3).

A pair-format folder is an ``imagefolder`` dataset of the HF ``datasets`` library plus a list of pairs::

    out/
      metadata.jsonl     {"file_name": "images/000000_a.png", "keypoints": [[x, y], ... 18 ...],
                          "parsing_file_name": "parsing/000000_a.png"}   # the parsing entry is optional
      pairs.csv          from,to                        (file names as in metadata.jsonl)
      images/...         RGB images, any size
      parsing/...        8-bit label maps (`pgat.data.PARSING_LABELS`), same size as their image

``datasets.load_dataset("imagefolder", data_dir="out")`` reads it as columns ``image``, ``keypoints`` and
``parsing`` (``*_file_name`` columns become image columns). Keypoints are ``(x, y)`` pixels of their own
image, ``(-1, -1)`` for a missing point (`pgat.pose`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..pose import COCO18_NAMES, FLIP_INDEX, Letterbox, check_keypoints, letterbox, visible

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.jsonl"
PAIRS_FILE = "pairs.csv"
IMAGE_DIR, PARSING_DIR = "images", "parsing"
IMAGE_FORMATS = ("png", "jpg")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _to_pil(image: Any, name: str = "image") -> Image.Image:
    """PIL, uint8 ``(H, W, 3)`` numpy, or a ``(3, H, W)`` tensor in [-1, 1] (the package convention)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"`{name}` as a tensor must be (3, H, W) in [-1, 1], got shape {tuple(image.shape)}")
        arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(arr)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"`{name}` as an array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    raise ValueError(f"`{name}` must be a PIL image, a uint8 (H, W, 3) array or a (3, H, W) tensor, got {type(image).__name__}")


def check_in_frame(keypoints: np.ndarray, width: int, height: int, name: str = "keypoints") -> None:
    """Raise a ``ValueError`` naming the joints of ``keypoints`` that lie outside a ``width x height`` image."""
    ok = visible(keypoints)
    out = ok & ((keypoints[:, 0] > width - 0.5) | (keypoints[:, 1] > height - 0.5))
    if out.any():
        bad = ", ".join(f"{COCO18_NAMES[i]} ({keypoints[i, 0]:.1f}, {keypoints[i, 1]:.1f})" for i in np.flatnonzero(out))
        raise ValueError(f"`{name}` {bad} lie outside the {width}x{height} image; mark a point outside the frame as (-1, -1)")


class PairWriter:
    r"""Write images, their keypoints (and parsing maps) and pairs in the pair format.

    Use it as a context manager; the files are complete when it closes::

        with PairWriter("out") as writer:
            a = writer.add_image("0001_front", image, keypoints)
            b = writer.add_image("0001_back", image2, keypoints2)
            writer.add_pair(a, b)

    Args:
        out_dir (`str` or `os.PathLike`): the folder to write (created if needed).
        image_format (`str`, *optional*, defaults to ``"png"``): ``"png"`` (lossless) or ``"jpg"``.
        overwrite (`bool`, *optional*, defaults to `False`): replace an existing ``metadata.jsonl`` there.
    """

    def __init__(self, out_dir: Union[str, os.PathLike], image_format: str = "png", overwrite: bool = False):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"`image_format` must be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.out_dir = Path(out_dir)
        self.image_format = image_format
        if (self.out_dir / METADATA_FILE).exists() and not overwrite:
            raise ValueError(f"`out_dir` '{self.out_dir}' already holds a {METADATA_FILE}; pass overwrite=True to replace it")
        self._names: Dict[str, str] = {}
        self._with_parsing: Optional[bool] = None
        self._meta = None
        self._pairs = None
        self._pairs_writer = None
        self.num_images = 0
        self.num_pairs = 0

    def open(self) -> "PairWriter":
        (self.out_dir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        self._meta = open(self.out_dir / METADATA_FILE, "w", encoding="utf-8")
        self._pairs = open(self.out_dir / PAIRS_FILE, "w", encoding="utf-8", newline="")
        self._pairs_writer = csv.writer(self._pairs)
        self._pairs_writer.writerow(["from", "to"])
        return self

    def close(self) -> None:
        for f in (self._meta, self._pairs):
            if f is not None:
                f.close()
        self._meta = self._pairs = self._pairs_writer = None

    def __enter__(self) -> "PairWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _require_open(self):
        if self._meta is None:
            raise ValueError("the PairWriter is not open: use it as `with PairWriter(out_dir) as writer:` or call .open()")

    def add_image(self, name: str, image, keypoints, parsing: Optional[np.ndarray] = None) -> str:
        """Save one image with its ``(18, 2)`` keypoints (pixels of this image) and optional parsing map.

        Args:
            name (`str`): a unique base name (letters, digits, ``_ . -``); the extension is added.
            image: PIL image, uint8 ``(H, W, 3)`` array or ``(3, H, W)`` tensor in [-1, 1].
            keypoints: ``(18, 2)`` ``(x, y)``, ``(-1, -1)`` where missing; every present point inside the image.
            parsing (`np.ndarray`, *optional*): uint8 ``(H, W)`` labels. All images of a folder have one or none.

        Returns:
            `str`: the ``file_name`` written to ``metadata.jsonl`` (what `add_pair` takes).
        """
        self._require_open()
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"`name` must be a file-name-safe string (letters, digits, '_', '.', '-'), got {name!r}")
        if name in self._names:
            raise ValueError(f"`name` {name!r} was already added")
        pil = _to_pil(image)
        kps = check_keypoints(keypoints, "keypoints")
        check_in_frame(kps, pil.width, pil.height)
        has_parsing = parsing is not None
        if self._with_parsing is None:
            self._with_parsing = has_parsing
        elif self._with_parsing != has_parsing:
            raise ValueError(
                f"`parsing` must be given for every image of a folder or for none; {name!r} "
                f"{'has one' if has_parsing else 'has none'} unlike the images before it"
            )
        file_name = f"{IMAGE_DIR}/{name}.{self.image_format}"
        row: Dict[str, Any] = {"file_name": file_name, "keypoints": [[round(float(x), 3), round(float(y), 3)] for x, y in kps]}
        if has_parsing:
            parsing = np.asarray(parsing)
            if parsing.dtype != np.uint8 or parsing.shape != (pil.height, pil.width):
                raise ValueError(f"`parsing` must be uint8 of shape {(pil.height, pil.width)} (the image's), got {parsing.dtype} {parsing.shape}")
            (self.out_dir / PARSING_DIR).mkdir(exist_ok=True)
            row["parsing_file_name"] = f"{PARSING_DIR}/{name}.png"
            Image.fromarray(parsing).save(self.out_dir / row["parsing_file_name"])
        pil.save(self.out_dir / file_name, quality=95) if self.image_format == "jpg" else pil.save(self.out_dir / file_name)
        self._meta.write(json.dumps(row) + "\n")
        self._names[name] = file_name
        self.num_images += 1
        return file_name

    def add_pair(self, from_name: str, to_name: str) -> None:
        """Add a (reference, target) pair of images added before (by name or returned file name)."""
        self._require_open()
        files = set(self._names.values())
        resolved = []
        for arg, value in (("from_name", from_name), ("to_name", to_name)):
            if value in self._names:
                value = self._names[value]
            elif value not in files:
                raise ValueError(f"`{arg}` {value!r} is not an image added to this writer; call add_image first")
            resolved.append(value)
        self._pairs_writer.writerow(resolved)
        self.num_pairs += 1


# ---------------------------------------------------------------------------------------------
# sources: a list of images with keypoints + a list of pairs
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageRecord:
    """One image of a pair source: where it is, its keypoints in its own pixels, its parsing map."""

    name: str
    path: Optional[Path]
    keypoints: np.ndarray
    parsing_path: Optional[Path] = None
    size: Optional[Tuple[int, int]] = None  # (width, height)


@dataclass
class PairSource:
    """Images with keypoints and the (reference, target) pairs between them, as readers return them.

    ``skipped`` counts what was left out and why (unreadable image, keypoints out of frame, ...).
    """

    images: List[ImageRecord]
    pairs: List[Tuple[int, int]]
    skipped: Counter = field(default_factory=Counter)
    description: str = ""

    def __len__(self) -> int:
        return len(self.pairs)

    def write(self, out_dir: Union[str, os.PathLike], image_format: str = "png", overwrite: bool = False) -> Path:
        """Copy this source into a pair-format folder."""
        used = sorted({i for p in self.pairs for i in p})
        with PairWriter(out_dir, image_format=image_format, overwrite=overwrite) as writer:
            names = {}
            for i in used:
                rec = self.images[i]
                image = _open_image(rec.path, "image")
                parsing = None if rec.parsing_path is None else np.asarray(_open_image(rec.parsing_path, "parsing", mode="L"))
                names[i] = writer.add_image(_safe_name(rec.name, i), image, rec.keypoints, parsing)
            for a, b in self.pairs:
                writer.add_pair(names[a], names[b])
        return Path(out_dir)


def _safe_name(name: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(name).stem).lstrip("._-") or "image"
    return f"{index:06d}_{stem}"


def _open_image(path: Path, what: str, mode: str = "RGB") -> Image.Image:
    """One image of a pair dataset, read and checked as every door reads images (`pgat.inputs`); a parsing map
    (``mode`` other than RGB) is converted from the file's own mode, as it always was."""
    from ..inputs import UnreadableImageError, open_image, read_image

    if mode == "RGB":
        return read_image(path, what)
    with open_image(path, what) as im:
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise UnreadableImageError(what, f"the file '{path}', a truncated or corrupt {im.format} image ({e})", "a complete image file") from None
        return im.convert(mode)


def probe_image(path: Path) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
    """``((width, height), None)`` for a usable image, ``(None, reason)`` otherwise: the header checks of
    `pgat.inputs.open_image` (not an image, animated, size limits), no pixel decoded."""
    from ..inputs import InputError, UnreadableImageError, open_image

    if not path.is_file():
        return None, "missing image file"
    try:
        with open_image(path, "image") as im:
            im.verify()
            return im.size, None
    except UnreadableImageError:
        return None, "unreadable image"
    except InputError as e:  # decodes, but every door would refuse it (too large, too small, animated)
        return None, f"unusable image ({e.received})"
    except Exception:  # noqa: BLE001 - any decoder failure means the same thing here
        return None, "unreadable image"


def validate_records(images: List[ImageRecord], skipped: Counter) -> List[bool]:
    """Check every record's file and keypoints; returns which are usable and counts the others by reason."""
    usable = []
    for rec in images:
        reason = None
        if rec.path is not None:
            size, reason = probe_image(rec.path)
            rec.size = size
            if reason is None and rec.parsing_path is not None and not rec.parsing_path.is_file():
                reason = "missing parsing file"
        if reason is None and rec.size is not None:
            try:
                check_in_frame(rec.keypoints, *rec.size)
            except ValueError:
                reason = "keypoints out of frame"
        if reason is None and not visible(rec.keypoints).any():
            reason = "no keypoints"
        if reason is not None:
            skipped[reason] += 1
            logger.warning("skipping %s: %s", rec.path or rec.name, reason)
        usable.append(reason is None)
    return usable


def read_pairs_csv(path: Path, from_column: str = "from", to_column: str = "to") -> List[Tuple[str, str]]:
    """The ``(from, to)`` rows of a pairs CSV; a missing column is an error listing the real ones."""
    if not path.is_file():
        raise FileNotFoundError(f"pairs file '{path}' does not exist")
    with open(path, "r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in (from_column, to_column) if c not in header]
        if missing:
            raise ValueError(f"pairs file '{path}' has no column {missing}; its columns are {header} (set from_column / to_column)")
        return [(row[from_column].strip(), row[to_column].strip()) for row in reader if row.get(from_column) and row.get(to_column)]


def finish_source(images: List[ImageRecord], named_pairs: Sequence[Tuple[str, str]], skipped: Counter, description: str) -> PairSource:
    """Validate images, resolve pairs by name and refuse an empty result (counted skips, never silence)."""
    usable = validate_records(images, skipped)
    index = {rec.name: i for i, rec in enumerate(images)}
    pairs = []
    for a, b in named_pairs:
        if a not in index or b not in index:
            skipped["pair with an unknown image"] += 1
        elif not (usable[index[a]] and usable[index[b]]):
            skipped["pair with a skipped image"] += 1
        else:
            pairs.append((index[a], index[b]))
    if skipped:
        logger.warning("%s: skipped %s", description, dict(skipped))
    if not pairs:
        raise ValueError(
            f"{description}: no usable pair ({len(images)} images, {len(named_pairs)} pairs listed; skipped: {dict(skipped) or 'nothing'})"
        )
    return PairSource(images, pairs, skipped, description)


def imagefolder_column(column: str) -> str:
    """The ``metadata.jsonl`` key that ``imagefolder`` turns into image column ``column``."""
    return "file_name" if column == "image" else f"{column}_file_name"


def read_pair_folder(
    folder: Union[str, os.PathLike],
    file_column: str = "file_name",
    keypoints_column: str = "keypoints",
    parsing_column: Optional[str] = "parsing_file_name",
) -> PairSource:
    """Read a pair-format folder (``metadata.jsonl`` + ``pairs.csv``) without loading any pixels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"pair folder '{folder}' does not exist")
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise FileNotFoundError(f"'{folder}' is not a pair-format folder: no {METADATA_FILE} (found {found or 'nothing'}); write one with PairWriter or `pgat synth`")
    images: List[ImageRecord] = []
    skipped: Counter = Counter()
    with open(meta_path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"'{meta_path}' line {lineno} is not valid JSON: {e}") from None
            missing = [c for c in (file_column, keypoints_column) if c not in row]
            if missing:
                raise ValueError(f"'{meta_path}' line {lineno} has no column {missing}; its columns are {sorted(row)}")
            kps = check_keypoints(row[keypoints_column], f"{keypoints_column} (line {lineno})")
            parsing = row.get(parsing_column) if parsing_column else None
            images.append(ImageRecord(row[file_column], folder / row[file_column], kps, folder / parsing if parsing else None))
    if not images:
        raise ValueError(f"'{meta_path}' lists no images")
    pairs = read_pairs_csv(folder / PAIRS_FILE)
    return finish_source(images, pairs, skipped, f"pair folder '{folder}'")


# ---------------------------------------------------------------------------------------------
# PairDataset
# ---------------------------------------------------------------------------------------------


def _to_tensor(image: Image.Image) -> torch.Tensor:
    arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).float() / 127.5 - 1.0


def _parsing_to_square(parsing: Image.Image, box: Letterbox) -> torch.Tensor:
    # labels are resized with nearest neighbours (never blended) and padded with background
    canvas = Image.new("L", (box.size, box.size), 0)
    canvas.paste(parsing.resize((box.new_width, box.new_height), Image.NEAREST), (box.left, box.top))
    return torch.from_numpy(np.asarray(canvas, dtype=np.int64).copy())


class PairDataset(torch.utils.data.Dataset):
    r"""(reference, target) pairs as training tensors, from any pair source.

    Each item is a dict: ``reference``, ``target`` (float ``(3, R, R)`` in [-1, 1], letterboxed with
    `pgat.pose.letterbox`), ``reference_keypoints``, ``target_keypoints`` (float ``(18, 2)`` pixels of the
    square, -1 where missing) and, when the source has them, ``reference_parsing``, ``target_parsing``
    (int64 ``(R, R)``).

    Args:
        source: a pair-format folder (`str` / `os.PathLike`), a `PairSource` (what the readers return), a
            `SynthHumans` (drawn on the fly, no files) or a `datasets.Dataset` with one image per row
            (then ``pairs`` lists row indices).
        resolution (`int`, *optional*, defaults to 256): side of the square.
        flip_prob (`float`, *optional*, defaults to 0.0): probability of mirroring a pair (both images
            together): x -> R - 1 - x, and left/right keypoints swap (`pgat.pose.FLIP_INDEX`).
        seed (`int`, *optional*, defaults to 0): the flips depend only on ``(seed, epoch, index)``.
        image_column, keypoints_column, parsing_column (`str`, *optional*): column names as ``datasets``
            shows them (``parsing_column=None`` ignores parsing). In a folder's ``metadata.jsonl`` an image
            column ``X`` is stored as ``X_file_name`` (``image`` as ``file_name``), as imagefolder reads it.
        pairs (sequence of `(int, int)`, *optional*): row-index pairs of a `datasets.Dataset` source.
        fill (`tuple`, *optional*, defaults to white): letterbox padding colour.
    """

    def __init__(
        self,
        source,
        resolution: int = 256,
        flip_prob: float = 0.0,
        seed: int = 0,
        image_column: str = "image",
        keypoints_column: str = "keypoints",
        parsing_column: Optional[str] = "parsing",
        pairs: Optional[Sequence[Tuple[int, int]]] = None,
        fill: Tuple[int, int, int] = (255, 255, 255),
    ):
        from .synthetic import SynthHumans

        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
            raise ValueError(f"`resolution` must be an integer >= 8, got {resolution!r}")
        if not 0.0 <= float(flip_prob) <= 1.0:
            raise ValueError(f"`flip_prob` must be in [0, 1], got {flip_prob!r}")
        self.resolution, self.flip_prob, self.seed, self.fill = resolution, float(flip_prob), int(seed), tuple(fill)
        self.epoch = 0
        self._synth = self._hf = self._source = None
        self.skipped: Counter = Counter()
        if isinstance(source, SynthHumans):
            self._synth = source
        elif isinstance(source, PairSource):
            self._source = source
        elif isinstance(source, (str, os.PathLike)):
            self._source = read_pair_folder(
                source,
                file_column=imagefolder_column(image_column),
                keypoints_column=keypoints_column,
                parsing_column=None if parsing_column is None else imagefolder_column(parsing_column),
            )
        elif _is_hf_dataset(source):
            self._init_hf(source, image_column, keypoints_column, parsing_column, pairs)
        else:
            raise ValueError(
                "`source` must be a pair-format folder, a PairSource, a SynthHumans or a datasets.Dataset, "
                f"got {type(source).__name__}"
            )
        if self._source is not None:
            self.skipped = self._source.skipped

    def _init_hf(self, ds, image_column, keypoints_column, parsing_column, pairs):
        columns = list(ds.column_names)
        missing = [c for c in (image_column, keypoints_column) if c not in columns]
        if missing:
            raise ValueError(f"`source` has no column {missing}; its columns are {columns} (set image_column / keypoints_column)")
        if parsing_column is not None and parsing_column not in columns:
            parsing_column = None
        if pairs is None:
            raise ValueError("`pairs` is required with a datasets.Dataset source: a list of (reference row, target row) indices")
        pairs = [tuple(int(i) for i in p) for p in pairs]
        bad = [p for p in pairs if len(p) != 2 or not all(0 <= i < len(ds) for i in p)]
        if bad:
            raise ValueError(f"`pairs` must be (row, row) indices below {len(ds)}, got {bad[:3]}")
        if not pairs:
            raise ValueError("`pairs` is empty: give at least one (reference row, target row)")
        self._hf = (ds, image_column, keypoints_column, parsing_column, pairs)

    def set_epoch(self, epoch: int) -> None:
        """Draw new flips for a new epoch (call it at the start of each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self._synth is not None:
            return len(self._synth)
        if self._hf is not None:
            return len(self._hf[4])
        return len(self._source.pairs)

    def _load(self, index: int):
        """Both sides of pair ``index`` as (PIL image, keypoints, parsing PIL or None)."""
        if self._synth is not None:
            item = self._synth[index]
            return [
                (Image.fromarray(item[s]), item[f"{s}_keypoints"], Image.fromarray(item[f"{s}_parsing"]))
                for s in ("reference", "target")
            ]
        if self._hf is not None:
            ds, image_column, keypoints_column, parsing_column, pairs = self._hf
            out = []
            for row_index in pairs[index]:
                row = ds[row_index]
                image = row[image_column]
                if not isinstance(image, Image.Image):
                    raise ValueError(f"column {image_column!r} row {row_index} must hold PIL images (a datasets Image feature), got {type(image).__name__}")
                kps = check_keypoints(row[keypoints_column], f"{keypoints_column} (row {row_index})")
                check_in_frame(kps, image.width, image.height, f"{keypoints_column} (row {row_index})")
                parsing = row[parsing_column].convert("L") if parsing_column and row[parsing_column] is not None else None
                out.append((image.convert("RGB"), kps, parsing))
            return out
        out = []
        for i in self._source.pairs[index]:
            rec = self._source.images[i]
            parsing = None if rec.parsing_path is None else _open_image(rec.parsing_path, "parsing", mode="L")
            out.append((_open_image(rec.path, "image"), rec.keypoints, parsing))
        return out

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a PairDataset of {len(self)} pairs")
        sides = self._load(index)
        flip = False
        if self.flip_prob > 0:
            flip = np.random.default_rng([self.seed, self.epoch, int(index)]).uniform() < self.flip_prob
        item: Dict[str, torch.Tensor] = {}
        for name, (image, kps, parsing) in zip(("reference", "target"), sides):
            square, kps_sq, box = letterbox(image, kps, self.resolution, self.fill)
            img = _to_tensor(square)
            kps_t = torch.from_numpy(np.asarray(kps_sq, dtype=np.float32))
            lab = None if parsing is None else _parsing_to_square(parsing, box)
            if flip:
                img, kps_t, lab = flip_pair(img, kps_t, lab)
            item[name] = img
            item[f"{name}_keypoints"] = kps_t
            if lab is not None:
                item[f"{name}_parsing"] = lab
        return item


def flip_pair(image: torch.Tensor, keypoints: torch.Tensor, parsing: Optional[torch.Tensor] = None):
    """Mirror an image ``(C, H, W)``, its keypoints ``(18, 2)`` and parsing ``(H, W)`` left-right.

    x -> W - 1 - x (pixel centres at whole numbers), and each keypoint takes its mirror's slot: the left
    arm of the mirrored person is the right arm of the original.
    """
    width = image.shape[-1]
    ok = visible(keypoints)
    flipped = keypoints.clone()
    flipped[:, 0] = torch.where(ok, width - 1 - keypoints[:, 0], keypoints[:, 0])
    flipped = flipped[list(FLIP_INDEX)]
    return image.flip(-1), flipped, None if parsing is None else parsing.flip(-1)


def _is_hf_dataset(obj) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return False
    return isinstance(obj, datasets.Dataset)
