"""Hypothesis strategies for the fuzzer of issue 21 ("Bad input at every door"), used by tests/test_fuzz_inputs.py.

Three families, all drawn as `Case` objects that say what they are (``kind``) and how they travel (``form``):

- **invalid by construction**, one class at a time (`BAD_IMAGES`, `BAD_POSES`): each class breaks one rule of the
  input contract (`pgat.inputs`), and where it can be arranged only that one (an animated GIF made of frames of a real
  person photo, a too-small picture *of a person*, a pose whose only defect is that its points lie outside the
  picture, ...);
- **valid** (`valid_references`, `valid_poses`): the project's person photos (spaces/examples, SynthHumans test
  renders) and real poses (DeepFashion test annotations and the OpenPose sequence of ../shared/data, SynthHumans
  target keypoints), in every form the doors accept;
- **anything goes** (`mutated_poses`, `mutated_references`): random mutations of valid inputs, validity unknown.

Validity is decided by the contract restated here (`CONTRACT`, `body_ok`), never by calling the code under test.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "spaces" / "examples"
EMBEDDED = REPO / "weights" / "pgat-synth-256"
SHARED = Path(os.environ.get("PGAT_SHARED_DATA", REPO.parent / "shared" / "data"))

# ---------------------------------------------------------------------------------------------
# the contract (issue 21), restated: tests/test_fuzz_inputs.py checks that pgat.inputs agrees
# ---------------------------------------------------------------------------------------------

CONTRACT = {"MAX_IMAGE_PIXELS": 8192 * 8192, "MIN_IMAGE_SIDE": 32, "MAX_ASPECT_RATIO": 4, "MIN_BODY_JOINTS": 3}
MIN_IMAGE_SIDE = CONTRACT["MIN_IMAGE_SIDE"]
MAX_ASPECT_RATIO = CONTRACT["MAX_ASPECT_RATIO"]
MIN_BODY_JOINTS = CONTRACT["MIN_BODY_JOINTS"]
BODY_JOINTS = tuple(range(14))  # COCO-18 without eyes and ears
TORSO_JOINTS = (1, 2, 5, 8, 11)  # neck, shoulders, hips
OTHER_BODY_JOINTS = tuple(i for i in BODY_JOINTS if i not in TORSO_JOINTS)  # nose, elbows, wrists, knees, ankles
FACE_JOINTS = (14, 15, 16, 17)
LOWER_BODY = (8, 9, 10, 11, 12, 13)  # hips, knees, ankles: what a half-body pose lacks
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
FRAME = (256, 256)  # every valid reference here is 256x256, and poses without a canvas are in its pixels


def max_image_pixels() -> int:
    """The pixel limit: ``PGAT_MAX_IMAGE_PIXELS`` when set, else the contract's 8192 * 8192."""
    env = os.environ.get("PGAT_MAX_IMAGE_PIXELS")
    return int(env) if env else CONTRACT["MAX_IMAGE_PIXELS"]


def visible(kps: np.ndarray) -> np.ndarray:
    """The contract's visible points of an ``(18, 3)`` array: both coordinates >= 0 and confidence > 0."""
    kps = np.asarray(kps, dtype=np.float64)
    return (kps[:, 0] >= 0) & (kps[:, 1] >= 0) & (kps[:, 2] > 0)


def inside(kps: np.ndarray, frame: Tuple[int, int]) -> np.ndarray:
    """Visible points that lie on a pixel of a ``frame`` = (width, height) picture."""
    kps = np.asarray(kps, dtype=np.float64)
    return visible(kps) & (kps[:, 0] <= frame[0] - 1) & (kps[:, 1] <= frame[1] - 1)


def body_ok(kps: np.ndarray, frame: Tuple[int, int]) -> bool:
    """The contract's "a pose places a body": >= MIN_BODY_JOINTS of the 14 body joints inside the picture, one of them
    the neck, a shoulder or a hip."""
    ok = inside(kps, frame)
    return int(ok[list(BODY_JOINTS)].sum()) >= MIN_BODY_JOINTS and bool(ok[list(TORSO_JOINTS)].any())


def with_confidence(xy: np.ndarray) -> np.ndarray:
    """``(18, 2)`` (missing = negative) -> ``(18, 3)`` with confidence 1 for present points, ``(-1, -1, 0)`` for missing."""
    xy = np.asarray(xy, dtype=np.float32)
    out = np.concatenate([xy, np.ones((len(xy), 1), np.float32)], axis=1)
    out[(xy[:, 0] < 0) | (xy[:, 1] < 0)] = (-1, -1, 0)
    return out


# ---------------------------------------------------------------------------------------------
# a drawn input
# ---------------------------------------------------------------------------------------------


def preview(value: Any, text: Optional[str] = None, limit: int = 260) -> str:
    """A short description of a value, for failure messages (hypothesis prints the `Case` it shrank to)."""
    if text is not None:
        s = f"text {text!r}"
    elif isinstance(value, (bytes, bytearray)):
        s = f"{len(value)} bytes {bytes(value[:24])!r}"
    elif isinstance(value, Image.Image):
        s = f"PIL {value.mode} {value.size[0]}x{value.size[1]}"
    elif isinstance(value, np.ndarray):
        s = f"ndarray {value.dtype} {value.shape} {value.ravel()[:12].tolist()}"
    elif isinstance(value, torch.Tensor):
        s = f"tensor {value.dtype} {tuple(value.shape)} {value.ravel()[:12].tolist()}"
    else:
        try:
            s = json.dumps(value)
        except (TypeError, ValueError):
            s = repr(value)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


@dataclass(frozen=True, eq=False)
class Case:
    """One input. ``form`` says how it travels:

    - ``"file"``: ``value`` is the bytes of a file named ``*<suffix>`` (an image, or garbage);
    - ``"missing-file"``: a path ``<value><suffix>`` that does not exist;
    - ``"image"``: an image in memory (PIL, ``(H, W, 3)`` uint8 or [0, 1] float array, ``(3, H, W)`` tensor in [-1, 1]);
    - ``"value"``: a pose as a Python value (an OpenPose dict, a nested list, an ndarray, a tensor, None, a number);
    - ``"json-file"``: a ``.json`` file of ``text`` (``value`` is its parsed content, or None when it does not parse);
    - ``"npy-file"``: ``value``, an ndarray, saved with ``np.save`` (``allow_pickle`` when it holds objects).
    """

    kind: str
    form: str
    value: Any = None
    suffix: str = ""
    text: Optional[str] = None
    note: str = ""

    def _repr_pretty_(self, printer, cycle) -> None:  # how hypothesis prints a failing example: short
        printer.text(repr(self))

    def __repr__(self) -> str:
        extra = f", suffix={self.suffix!r}" if self.suffix else ""
        note = f", {self.note}" if self.note else ""
        return f"Case({self.kind!r}, form={self.form!r}{note}{extra}, {preview(self.value, self.text)})"


def json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True)  # NaN / Infinity tokens, as Python's json writes and reads them


# ---------------------------------------------------------------------------------------------
# the project's people and poses
# ---------------------------------------------------------------------------------------------

N_PHOTOS = 4  # spaces/examples/person-1.png ... person-4.png
SYNTH_INDICES = (0, 1, 2, 3, 4, 5)  # SynthHumans(256, "test") items whose person BlazePose finds


@functools.lru_cache(maxsize=None)
def person_photo(i: int) -> Image.Image:
    return Image.open(EXAMPLES / f"person-{i + 1}.png").convert("RGB")


@functools.lru_cache(maxsize=None)
def _synth():
    from pgat.data.synthetic import SynthHumans

    return SynthHumans(resolution=256, split="test")


@functools.lru_cache(maxsize=None)
def synth_item(i: int) -> Tuple[Image.Image, np.ndarray]:
    """A SynthHumans test render (its reference picture) and its target keypoints ``(18, 2)`` in its pixels."""
    item = _synth()[i]
    ref = item["reference"]
    if isinstance(ref, torch.Tensor):  # a (3, H, W) tensor in [-1, 1]
        ref = ((ref.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.asarray(ref)), np.asarray(item["target_keypoints"], dtype=np.float32)


def reference_picture(source: Tuple[str, int]) -> Image.Image:
    kind, i = source
    return person_photo(i) if kind == "photo" else synth_item(i)[0]


@functools.lru_cache(maxsize=None)
def deepfashion_poses() -> np.ndarray:
    """The DeepFashion test annotations (``name:keypoints_y:keypoints_x``, 256x256 frame) that place a body, as
    ``(N, 18, 3)`` (x, y, 1) with ``(-1, -1, 0)`` for missing points."""
    rows = []
    with open(SHARED / "deepfashion" / "fasion-annotation-test.csv", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, ys, xs = line.strip().split(":")
            xy = np.stack([json.loads(xs), json.loads(ys)], axis=1).astype(np.float32)
            kps = with_confidence(xy)
            if body_ok(kps, FRAME):
                rows.append(kps)
    return np.stack(rows)


@functools.lru_cache(maxsize=None)
def workout_poses() -> np.ndarray:
    """The 120 BODY_25 frames of openpose-sequences/workout_march as COCO-18 ``(120, 18, 3)``, each moved and scaled
    into `FRAME` (the video's own size is not recorded) with a 12-pixel margin; only frames that place a body."""
    folder = SHARED / "openpose-sequences" / "workout_march"
    out = []
    for path in sorted(folder.glob("*_keypoints.json")):
        people = json.loads(path.read_text())["people"]
        if not people:
            continue
        kps = np.asarray(people[0]["pose_keypoints_2d"], np.float32).reshape(25, 3)[list(BODY25_TO_COCO18)]
        ok = kps[:, 2] > 0
        if ok.sum() < 2:
            continue
        lo, hi = kps[ok, :2].min(0), kps[ok, :2].max(0)
        scale = (FRAME[1] - 24) / max(float((hi - lo).max()), 1.0)
        fitted = kps.copy()
        fitted[:, :2] = (kps[:, :2] - lo) * scale + 12
        fitted[:, 0] += (FRAME[0] - 24 - (hi - lo)[0] * scale) / 2
        fitted[~ok] = (-1, -1, 0)
        fitted[ok, 2] = np.clip(kps[ok, 2], 0.05, 1.0)
        if body_ok(fitted, FRAME):
            out.append(fitted)
    return np.stack(out)


def openpose_doc(kps: np.ndarray, body25: bool = False, canvas: Optional[Tuple[int, int]] = None,
                 legacy_key: bool = False, realistic_midhip: bool = False) -> dict:
    """One person's ``(18, 3)`` keypoints as OpenPose JSON; BODY_25 adds MidHip (missing, or the hips' midpoint with
    ``realistic_midhip``) and six missing foot points."""
    kps = np.asarray(kps, dtype=np.float64)
    triples = [[float(round(v, 3)) for v in p] for p in kps]
    if body25:
        mid = [0.0, 0.0, 0.0]
        if realistic_midhip and visible(kps)[[8, 11]].all():
            mid = [float(round((kps[8, 0] + kps[11, 0]) / 2, 3)), float(round((kps[8, 1] + kps[11, 1]) / 2, 3)), 1.0]
        triples = triples[:8] + [mid] + triples[8:] + [[0.0, 0.0, 0.0]] * 6
    doc = {"version": 1.3, "people": [{"person_id": [-1], ("pose_keypoints" if legacy_key else "pose_keypoints_2d"): sum(triples, [])}]}
    if canvas is not None:
        doc["canvas_width"], doc["canvas_height"] = int(canvas[0]), int(canvas[1])
    return doc


# ---------------------------------------------------------------------------------------------
# image bytes, built by hand where the encoder would refuse
# ---------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (8-bit), with the compressed zeros of one row at most as
    its only pixel data: opening it costs nothing, decoding it would allocate the whole picture."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + min(width, 4096) * channels))
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@functools.lru_cache(maxsize=None)
def complete_png(width: int, height: int) -> bytes:
    """A complete, valid greyscale PNG of ``width`` x ``height`` black pixels (a decompression bomb: KB of file)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF89a whose screen and only frame are ``width`` x ``height``, with a few bytes of LZW data."""
    return (b"GIF89a" + struct.pack("<HH", width, height) + bytes([0x80, 0, 0]) + b"\x00\x00\x00\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + b"\x02\x02\x4c\x01\x00" + b"\x3b")


@functools.lru_cache(maxsize=None)
def encoded_photo(i: int, fmt: str, mode: str = "RGB", quality: int = 90, progressive: bool = False) -> bytes:
    image = person_photo(i).convert(mode)
    if fmt == "JPEG":
        return encode(image, "JPEG", quality=quality, progressive=progressive)
    return encode(image, fmt)


@functools.lru_cache(maxsize=None)
def png_last_cut(data: bytes) -> int:
    """The most leading bytes of a non-interlaced PNG that still lack part of its pixel data: keeping
    ``png_last_cut(data)`` bytes or fewer loses at least one byte of the deflate stream needed for the last row."""
    pos, stream, runs = 8, bytearray(), []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        start = pos + 8
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[start:start + 13])
            assert interlace == 0
        elif kind == b"IDAT":
            runs.append((len(stream), start, length))
            stream += data[start:start + length]
        pos = start + length + 4
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    raw = height * (1 + (width * channels * depth + 7) // 8)
    lo, hi = 1, len(stream)  # the shortest prefix of the stream that decodes every row
    while lo < hi:
        mid = (lo + hi) // 2
        if len(zlib.decompressobj().decompress(bytes(stream[:mid]))) >= raw:
            hi = mid
        else:
            lo = mid + 1
    last_needed = lo - 1
    for s0, f0, n in runs:
        if s0 <= last_needed < s0 + n:
            return f0 + (last_needed - s0)
    raise AssertionError("no IDAT data")


@functools.lru_cache(maxsize=None)
def animation(i: int, fmt: str, frames: int, how: str) -> bytes:
    """An animation of ``frames`` frames of person photo ``i`` (darker and darker, or moving right)."""
    base = person_photo(i)
    if how == "brightness":
        seq = [ImageEnhance.Brightness(base).enhance(1.0 - 0.15 * k) for k in range(frames)]
    else:
        seq = [ImageChops.offset(base, 12 * k, 0) for k in range(frames)]
    data = encode(seq[0], fmt, save_all=True, append_images=seq[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as im:  # the construction itself, checked: the encoder kept every frame
        assert getattr(im, "n_frames", 1) >= 2, (fmt, frames, how)
    return data


# ---------------------------------------------------------------------------------------------
# images: invalid by construction
# ---------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".txt", "")
MAGIC = (
    PNG_SIGNATURE, PNG_SIGNATURE + b"\x00\x00\x00\rIHDR", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\xff\xd8\xff",
    b"GIF89a", b"GIF87a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM", b"II*\x00", b"MM\x00*",
)
NOT_IMAGES = (b"", b'{"people": []}', b"this is not an image", b"<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'/>",
              b"\x00" * 1024, b"PK\x03\x04" + b"\x00" * 60)


def _in_memory(kind: str, image: Image.Image, note: str):
    """``image`` in every form a door takes an image in: PNG / JPEG file bytes, PIL, uint8 and float arrays, a tensor."""

    def build(form: str) -> Case:
        if form == "png":
            return Case(kind, "file", encode(image, "PNG"), ".png", note=note)
        if form == "jpeg":
            return Case(kind, "file", encode(image.convert("RGB"), "JPEG", quality=90), ".jpg", note=note)
        if form == "pil":
            return Case(kind, "image", image, note=note)
        arr = np.asarray(image.convert("RGB"))
        if form == "uint8":
            return Case(kind, "image", arr, note=note)
        if form == "float01":
            return Case(kind, "image", arr.astype(np.float32) / 255.0, note=note)
        return Case(kind, "image", torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous(), note=note)

    return st.sampled_from(["png", "jpeg", "pil", "uint8", "float01", "tensor"]).map(build)


def not_an_image():
    content = st.one_of(
        st.binary(max_size=2048),
        st.text(max_size=300).map(lambda s: s.encode("utf-8")),
        st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary(max_size=600)),
        st.sampled_from(NOT_IMAGES),
    )
    return st.builds(lambda data, suffix: Case("not-an-image", "file", data, suffix), content, st.sampled_from(IMAGE_SUFFIXES))


@st.composite
def truncated_image(draw):
    photo = draw(st.integers(0, N_PHOTOS - 1))
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    if fmt == "PNG":
        mode = draw(st.sampled_from(["RGB", "RGBA", "L"]))
        data = encoded_photo(photo, "PNG", mode)
        last = png_last_cut(data)
        note = f"person-{photo + 1} PNG {mode}"
    else:
        quality, progressive = draw(st.sampled_from([50, 75, 95])), draw(st.booleans())
        data = encoded_photo(photo, "JPEG", "RGB", quality, progressive)
        last = len(data) - 3  # at least one byte of the scan is gone, not only the end marker
        note = f"person-{photo + 1} JPEG q{quality}{' progressive' if progressive else ''}"
    cut = draw(st.one_of(st.integers(1, last), st.integers(max(1, last - 64), last)))
    suffix = draw(st.sampled_from([".png" if fmt == "PNG" else ".jpg", ".png", ".jpg", ""]))
    return Case("truncated", "file", data[:cut], suffix, note=f"{note} cut to {cut} of {len(data)} bytes")


def _oversized_sides(max_side: int):
    """(width, height) with width * height above the pixel limit and an aspect ratio of at most 4 (so that the pixel
    count is the only defect), each side at most ``max_side``."""
    limit = max_image_pixels()
    lo = math.isqrt(limit) + 1

    @st.composite
    def sides(draw):
        a = draw(st.integers(lo, max_side))
        b = draw(st.integers(max(-(-a // 4), limit // a + 1), min(4 * a, max_side)))
        return (a, b) if draw(st.booleans()) else (b, a)

    return sides()


@st.composite
def pixel_bomb(draw):
    how = draw(st.sampled_from(["png-header", "gif-header", "png-complete"]))
    if how == "png-header":
        w, h = draw(st.one_of(st.just((100000, 100000)), _oversized_sides(2 ** 20)))
        data = png_declaring(w, h, draw(st.sampled_from([0, 2, 6])))
        natural = ".png"
    elif how == "gif-header":
        w, h = draw(_oversized_sides(65535))
        data = gif_declaring(w, h)
        natural = ".gif"
    else:
        s = math.isqrt(max_image_pixels()) + 1
        w, h = draw(st.sampled_from([(s, s), (2 * s, s // 2 + 1)]))
        data = complete_png(w, h)
        natural = ".png"
    suffix = draw(st.sampled_from([natural, natural, ".jpg", ""]))
    return Case("too-many-pixels", "file", data, suffix, note=f"{how} {w}x{h}")


@st.composite
def animated_image(draw):
    photo = draw(st.integers(0, N_PHOTOS - 1))
    fmt = draw(st.sampled_from(["GIF", "PNG", "WEBP"]))  # PNG with several frames: APNG
    frames = draw(st.integers(2, 4))
    how = draw(st.sampled_from(["brightness", "shift"]))
    natural = {"GIF": ".gif", "PNG": ".png", "WEBP": ".webp"}[fmt]
    suffix = draw(st.sampled_from([natural, natural, ".png", ""]))
    return Case("animated", "file", animation(photo, fmt, frames, how), suffix,
                note=f"person-{photo + 1} {'APNG' if fmt == 'PNG' else fmt} of {frames} frames ({how})")


@st.composite
def too_small_image(draw):
    short = draw(st.integers(1, MIN_IMAGE_SIDE - 1))
    long = draw(st.integers(short, min(4 * short, 4 * MIN_IMAGE_SIDE)))  # aspect ratio <= 4: only the size is wrong
    w, h = (short, long) if draw(st.booleans()) else (long, short)
    photo = draw(st.integers(0, N_PHOTOS - 1))
    return draw(_in_memory("too-small", person_photo(photo).resize((w, h), Image.LANCZOS), f"person-{photo + 1} at {w}x{h}"))


@st.composite
def bad_aspect_image(draw):
    short = draw(st.integers(MIN_IMAGE_SIDE, 256))
    long = draw(st.integers(math.floor(MAX_ASPECT_RATIO * short) + 1, min(12 * short, 4096)))
    photo = draw(st.integers(0, N_PHOTOS - 1))
    colour = tuple(draw(st.lists(st.integers(0, 255), min_size=3, max_size=3)))
    at = draw(st.integers(0, long - short))
    horizontal = draw(st.booleans())
    canvas = Image.new("RGB", (long, short) if horizontal else (short, long), colour)
    canvas.paste(person_photo(photo).resize((short, short), Image.LANCZOS), (at, 0) if horizontal else (0, at))
    w, h = canvas.size
    return draw(_in_memory("aspect-ratio", canvas, f"person-{photo + 1} on a {w}x{h} canvas (ratio {long / short:.2f})"))


@st.composite
def nobody_image(draw):
    short = draw(st.integers(MIN_IMAGE_SIDE, 384))
    long = draw(st.integers(short, min(4 * short, 512)))
    w, h = (short, long) if draw(st.booleans()) else (long, short)
    pattern = draw(st.sampled_from(["flat", "noise", "gradient", "checker", "stripes", "blobs"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    a = np.array(draw(st.lists(st.integers(0, 255), min_size=3, max_size=3)), np.float32)
    b = np.array(draw(st.lists(st.integers(0, 255), min_size=3, max_size=3)), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    if pattern == "flat":
        arr = np.broadcast_to(a, (h, w, 3))
    elif pattern == "noise":
        arr = rng.integers(0, 256, (h, w, 3))
    elif pattern == "gradient":
        t = (xx / max(w - 1, 1))[..., None]
        arr = a * (1 - t) + b * t
    elif pattern == "checker":
        cell = draw(st.integers(2, 64))
        arr = np.where((((xx // cell) + (yy // cell)) % 2 == 0)[..., None], a, b)
    elif pattern == "stripes":
        period = draw(st.integers(2, 64))
        arr = np.where(((xx // period) % 2 == 0)[..., None], a, b)
    else:  # smooth random blobs: low-frequency noise, upsampled
        small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3)).astype(np.uint8)
        arr = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))
    image = Image.fromarray(np.ascontiguousarray(arr).astype(np.uint8))
    return draw(_in_memory("nobody", image, f"{pattern} {w}x{h}"))


def missing_file(kind: str, suffixes):
    names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_"), min_size=1, max_size=16)
    return st.builds(lambda n, s: Case(kind, "missing-file", f"absent-{n}", s), names, st.sampled_from(suffixes))


BAD_IMAGES = {
    "not-an-image": not_an_image(),
    "truncated": truncated_image(),
    "too-many-pixels": pixel_bomb(),
    "animated": animated_image(),
    "too-small": too_small_image(),
    "aspect-ratio": bad_aspect_image(),
    "nobody": nobody_image(),
    "missing-file": missing_file("missing-file", IMAGE_SUFFIXES),
}


@functools.lru_cache(maxsize=None)
def canonical_images():
    """One plain example of each class of `BAD_IMAGES` (the ones the issue names), run before the drawn ones."""
    flat = Image.new("RGB", (256, 256), (200, 220, 240))
    wide = Image.new("RGB", (1100, 256), (235, 235, 235))
    wide.paste(person_photo(0), (420, 0))
    photo = encoded_photo(0, "PNG")
    return {
        "not-an-image": Case("not-an-image", "file", b"this is not an image", ".png"),
        "truncated": Case("truncated", "file", photo[:300], ".png", note="person-1 PNG cut to 300 bytes"),
        "too-many-pixels": Case("too-many-pixels", "file", png_declaring(100000, 100000), ".png", note="png-header 100000x100000"),
        "animated": Case("animated", "file", animation(0, "GIF", 2, "brightness"), ".gif", note="person-1 GIF of 2 frames"),
        "too-small": Case("too-small", "file", encode(person_photo(0).resize((24, 24)), "PNG"), ".png", note="person-1 at 24x24"),
        "aspect-ratio": Case("aspect-ratio", "file", encode(wide, "PNG"), ".png", note="person-1 on a 1100x256 canvas"),
        "nobody": Case("nobody", "file", encode(flat, "PNG"), ".png", note="flat 256x256"),
        "missing-file": Case("missing-file", "missing-file", "absent-photo", ".png"),
    }


# ---------------------------------------------------------------------------------------------
# valid references and poses
# ---------------------------------------------------------------------------------------------

REFERENCE_SOURCES = [("photo", i) for i in range(N_PHOTOS)] + [("synth", i) for i in SYNTH_INDICES]


@st.composite
def valid_references(draw):
    """A 256x256 person photo (spaces/examples or a SynthHumans test render) in any accepted form."""
    source = draw(st.sampled_from(REFERENCE_SOURCES))
    return draw(_in_memory("valid", reference_picture(source), f"{source[0]} {source[1]}"))


@st.composite
def valid_keypoints(draw, frame: Tuple[int, int] = FRAME):
    """Real keypoints ``(18, 3)`` that place a body in a ``frame`` picture (a square): a DeepFashion test pose, a
    SynthHumans target pose or a frame of the OpenPose sequence, maybe half-body, maybe with points dropped (always
    keeping a torso joint and two more body joints), confidences in (0.05, 1]."""
    source = draw(st.sampled_from(["deepfashion", "synth", "workout"]))
    if source == "deepfashion":
        rows = deepfashion_poses()
        kps = rows[draw(st.integers(0, len(rows) - 1))].copy()
    elif source == "synth":
        kps = with_confidence(synth_item(draw(st.sampled_from(SYNTH_INDICES)))[1])
    else:
        rows = workout_poses()
        kps = rows[draw(st.integers(0, len(rows) - 1))].copy()
    if tuple(frame) != FRAME:  # a square canvas of another size
        ok = visible(kps)
        kps[ok, :2] *= (frame[0] - 1) / (FRAME[0] - 1)
    assert body_ok(kps, frame)
    if draw(st.booleans()):  # half-body: head, neck, shoulders, arms; no hips
        half = kps.copy()
        half[list(LOWER_BODY)] = (-1, -1, 0)
        if body_ok(half, frame):
            kps = half
    seen = inside(kps, frame)
    torso = [i for i in TORSO_JOINTS if seen[i]]
    keep = {draw(st.sampled_from(torso))}
    others = [i for i in BODY_JOINTS if seen[i] and i not in keep]
    keep |= set(draw(st.permutations(others))[:MIN_BODY_JOINTS - 1])
    drop = draw(st.lists(st.booleans(), min_size=18, max_size=18))
    for i in range(18):
        if drop[i] and i not in keep and draw(st.integers(0, 3)) == 0:  # a few points dropped, not half of them
            kps[i] = (-1, -1, 0)
    if draw(st.booleans()):
        confidences = draw(st.lists(st.floats(0.05, 1.0), min_size=18, max_size=18))
        ok = visible(kps)
        kps[ok, 2] = np.asarray(confidences, np.float32)[ok]
    assert body_ok(kps, frame), kps
    return kps


POSE_VALUE_FORMS = ("list-xy", "list-xyc", "array-xy", "array-xyc", "array64-xyc", "tensor-xy", "tensor-xyc")
POSE_FILE_FORMS = ("npy-xy", "npy-xyc", "json-list-xy")
OPENPOSE_FORMS = ("dict-coco18", "dict-body25", "file-coco18", "file-body25")


def xy_only(kps: np.ndarray) -> np.ndarray:
    """``(18, 3)`` -> ``(18, 2)``, every point that is not visible written (-1, -1)."""
    xy = np.asarray(kps, dtype=np.float32)[:, :2].copy()
    xy[~visible(kps)] = -1
    return xy


@st.composite
def render_pose(draw, kind: str, kps: np.ndarray, canvas: Optional[Tuple[int, int]] = None, forms=None, note: str = ""):
    """``(18, 3)`` keypoints as one pose input. Without ``canvas`` they are in the reference's pixels (`FRAME`) and
    may travel in any form; with one, only as OpenPose JSON that records it."""
    if forms is None:
        forms = OPENPOSE_FORMS if canvas is not None else POSE_VALUE_FORMS + POSE_FILE_FORMS + OPENPOSE_FORMS
    form = draw(st.sampled_from(forms))
    kps = np.asarray(kps, dtype=np.float32)
    if form.startswith(("dict", "file")):
        record = canvas if canvas is not None else (FRAME if draw(st.booleans()) else None)
        if kind == "valid":  # as OpenPose writes a point it did not find
            kps = kps.copy()
            kps[~visible(kps)] = 0
        doc = openpose_doc(kps, body25=form.endswith("body25"), canvas=record, legacy_key=draw(st.integers(0, 4)) == 0,
                           realistic_midhip=kind == "valid")
        note = f"{note} {form}{'' if record is None else f' canvas {record[0]}x{record[1]}'}".strip()
        if form.startswith("dict"):
            return Case(kind, "value", doc, note=note)
        return Case(kind, "json-file", doc, ".json", json_text(doc), note=note)
    xy = form.endswith("-xy")
    arr = xy_only(kps) if xy else kps.copy()
    note = f"{note} {form}".strip()
    if form.startswith("list"):
        return Case(kind, "value", arr.astype(np.float64).round(3).tolist(), note=note)
    if form.startswith("array"):
        return Case(kind, "value", arr.astype(np.float64 if form.startswith("array64") else np.float32), note=note)
    if form.startswith("tensor"):
        return Case(kind, "value", torch.from_numpy(arr.copy()), note=note)
    if form.startswith("npy"):
        return Case(kind, "npy-file", arr, ".npy", note=note)
    lst = arr.astype(np.float64).round(3).tolist()
    return Case(kind, "json-file", lst, ".json", json_text(lst), note=note)


@functools.lru_cache(maxsize=None)
def pose_photo_bytes(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


@st.composite
def valid_poses(draw):
    """A real pose in the reference's pixels or on a square canvas, in any accepted form; or a photo of a person."""
    how = draw(st.sampled_from(["keypoints", "keypoints", "keypoints", "canvas", "photo"]))
    if how == "photo":
        name = draw(st.sampled_from(["pose-photo.png"] + [f"person-{i + 1}.png" for i in range(N_PHOTOS)]))
        return Case("valid", "file", pose_photo_bytes(name), ".png", note=f"photo {name}")
    if how == "canvas":
        side = draw(st.sampled_from([128, 512, 1024]))
        kps = draw(valid_keypoints((side, side)))
        return draw(render_pose("valid", kps, canvas=(side, side)))
    return draw(render_pose("valid", draw(valid_keypoints())))


def canonical_reference() -> Case:
    """spaces/examples/person-1.png, as its file."""
    return Case("valid", "file", pose_photo_bytes("person-1.png"), ".png", note="person-1")


def valid_plain_lists():
    """A real pose as a plain Python list of 18 [x, y] or [x, y, c]."""
    return valid_keypoints().flatmap(lambda kps: render_pose("valid", kps, forms=("list-xy", "list-xyc")))


def half_body_pose() -> Case:
    """A real DeepFashion pose with hips, knees and ankles removed, as OpenPose JSON: valid by the contract."""
    kps = deepfashion_poses()[0].copy()
    kps[list(LOWER_BODY)] = (-1, -1, 0)
    assert body_ok(kps, FRAME)
    return Case("valid", "value", openpose_doc(kps), note="half-body (no hips) dict-coco18")


# ---------------------------------------------------------------------------------------------
# poses: invalid by construction
# ---------------------------------------------------------------------------------------------


def _finite(lo=-1e4, hi=1e4):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def missing_point(draw, frame: Tuple[int, int]):
    """One point that is not visible, in one of the ways a pose says so."""
    style = draw(st.sampled_from(["conf0", "minus-one", "zeros", "negative-x", "negative-y", "negative-conf"]))
    w, h = frame
    if style == "conf0":
        return [draw(_finite(0, 2 * w)), draw(_finite(0, 2 * h)), 0.0]
    if style == "minus-one":
        return [-1.0, -1.0, draw(st.sampled_from([0.0, 0.5, 1.0]))]
    if style == "zeros":
        return [0.0, 0.0, 0.0]
    if style == "negative-x":
        return [draw(_finite(-1e4, -0.5)), draw(_finite(0, h - 1)), draw(_finite(0.05, 1))]
    if style == "negative-y":
        return [draw(_finite(0, w - 1)), draw(_finite(-1e4, -0.5)), draw(_finite(0.05, 1))]
    return [draw(_finite(0, w - 1)), draw(_finite(0, h - 1)), draw(_finite(-1, -0.01))]


def _frame_and_canvas(draw):
    """The picture a pose's pixels refer to: the reference (no canvas) or a square canvas it records."""
    if draw(st.booleans()):
        return FRAME, None
    side = draw(st.integers(64, 2048))
    return (side, side), (side, side)


@st.composite
def no_visible_point(draw):
    if draw(st.integers(0, 5)) == 0:  # OpenPose found nobody
        doc = {"version": 1.3, "people": []}
        if draw(st.booleans()):
            return Case("no-visible-point", "value", doc, note="empty people")
        return Case("no-visible-point", "json-file", doc, ".json", json_text(doc), note="empty people")
    frame, canvas = _frame_and_canvas(draw)
    uniform = draw(st.sampled_from([None, [0.0, 0.0, 0.0], [-1.0, -1.0, 0.0], [-1.0, -1.0, 1.0]]))
    if uniform is not None:
        kps = np.tile(np.float32(uniform), (18, 1))
    else:
        kps = np.asarray([draw(missing_point(frame)) for _ in range(18)], np.float32)
    assert not visible(kps).any()
    return draw(render_pose("no-visible-point", kps, canvas))


@st.composite
def outside_point(draw, frame: Tuple[int, int]):
    """A visible point (confidence > 0, coordinates >= 0) that lies off the picture by at least one pixel."""
    w, h = frame
    c = draw(_finite(0.05, 1))
    if draw(st.booleans()):
        return [draw(_finite(w + 1, 20 * w)), draw(_finite(0, 20 * h)), c]
    return [draw(_finite(0, 20 * w)), draw(_finite(h + 1, 20 * h)), c]


@st.composite
def all_outside(draw):
    frame, canvas = _frame_and_canvas(draw)
    points = [draw(outside_point(frame)) if draw(st.integers(0, 3)) else draw(missing_point(frame)) for _ in range(18)]
    points[draw(st.integers(0, 17))] = draw(outside_point(frame))
    kps = np.asarray(points, np.float32)
    assert visible(kps).any() and not inside(kps, frame).any()
    return draw(render_pose("all-outside", kps, canvas, note=f"{int(visible(kps).sum())} points off {frame[0]}x{frame[1]}"))


@st.composite
def too_few_joints(draw):
    """Fewer than 3 body joints inside the picture, or any number of them but none of neck / shoulders / hips; the eyes
    and ears may be there; every other point is missing."""
    frame, canvas = _frame_and_canvas(draw)
    real = draw(valid_keypoints(frame))  # real positions for the points that stay
    if draw(st.booleans()):
        body = draw(st.lists(st.sampled_from(BODY_JOINTS), max_size=MIN_BODY_JOINTS - 1, unique=True))
        why = f"{len(body)} body joints"
    else:
        body = draw(st.lists(st.sampled_from(OTHER_BODY_JOINTS), max_size=len(OTHER_BODY_JOINTS), unique=True))
        why = f"{len(body)} body joints, no neck, shoulder or hip"
    face = draw(st.lists(st.sampled_from(FACE_JOINTS), max_size=4, unique=True))
    kps = np.asarray([draw(missing_point(frame)) for _ in range(18)], np.float32)
    for i in body + face:
        if inside(real, frame)[i]:
            kps[i] = real[i]
        else:
            kps[i] = (draw(_finite(0, frame[0] - 1)), draw(_finite(0, frame[1] - 1)), draw(_finite(0.05, 1)))
    assert not body_ok(kps, frame)
    return draw(render_pose("too-few-joints", kps, canvas, note=f"{why} + {len(face)} face points"))


@st.composite
def _valid_doc(draw):
    """A valid OpenPose dict (COCO-18 or BODY_25, maybe with the reference's canvas) and its flat keypoint list."""
    kps = draw(valid_keypoints())
    doc = openpose_doc(kps, body25=draw(st.booleans()), canvas=FRAME if draw(st.booleans()) else None)
    return doc


def _flat(doc: dict) -> list:
    return doc["people"][0]["pose_keypoints_2d"]


def _json_case(kind: str, draw, value, note: str = "", direct_ok: bool = True) -> Case:
    """A JSON document as a Python value passed as it is, or as a .json file."""
    if direct_ok and draw(st.booleans()):
        return Case(kind, "value", value, note=note)
    return Case(kind, "json-file", value, ".json", json_text(value), note=note)


@st.composite
def json_top_level(draw):
    """A JSON document whose top level is not an object (and not an (18, 2|3) list of keypoints)."""
    doc = draw(_valid_doc())
    what = draw(st.sampled_from(["list-of-docs", "number", "string", "null", "bool", "empty-list", "flat-keypoints"]))
    value = {
        "list-of-docs": lambda: [doc] * draw(st.integers(1, 3)),
        "number": lambda: draw(st.one_of(st.integers(-10 ** 9, 10 ** 9), _finite(-1e9, 1e9))),
        "string": lambda: draw(st.text(max_size=60)),
        "null": lambda: None,
        "bool": lambda: draw(st.booleans()),
        "empty-list": lambda: [],
        "flat-keypoints": lambda: _flat(doc),  # the keypoints without their envelope: 54 or 75 numbers
    }[what]()
    # a Python list is a batch and a str a path at the pipeline: those travel as files
    return _json_case("json-top-level", draw, value, what, direct_ok=what in ("number", "null", "bool"))


@st.composite
def json_people(draw):
    """'people' missing or not a list, a person that is not an object or has no 'pose_keypoints_2d', or keypoints
    that are not a list."""
    doc = draw(_valid_doc())
    person = doc["people"][0]
    junk = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=12), st.just({}), st.just({"0": person}))
    what = draw(st.sampled_from(["no-people", "renamed", "people-not-list", "person-not-object", "person-without-keypoints", "keypoints-not-list"]))
    bad = copy.deepcopy(doc)
    if what == "no-people":
        del bad["people"]
    elif what == "renamed":
        bad[draw(st.sampled_from(["persons", "People", "person", "pose"]))] = bad.pop("people")
    elif what == "people-not-list":
        bad["people"] = draw(st.one_of(junk, st.just(person)))
    elif what == "person-not-object":
        bad["people"] = [draw(st.one_of(st.none(), st.integers(), st.text(max_size=12), st.just(_flat(doc))))]
    elif what == "person-without-keypoints":
        bad["people"] = [draw(st.sampled_from([{}, {"person_id": [-1]}, {"face_keypoints_2d": _flat(doc)}, {"pose_keypoints_3d": _flat(doc)}]))]
    else:
        bad["people"][0]["pose_keypoints_2d"] = draw(st.one_of(st.none(), st.integers(-5, 5), _finite(), st.text(max_size=12), st.just({})))
    return _json_case("json-people", draw, bad, what)


@st.composite
def json_count(draw):
    doc = draw(_valid_doc())
    flat = _flat(doc)
    n = draw(st.integers(0, 160).filter(lambda n: n not in (54, 75)))
    doc["people"][0]["pose_keypoints_2d"] = (flat * 3)[:n]
    return _json_case("json-count", draw, doc, f"{n} values")


@st.composite
def json_strings(draw):
    doc = draw(_valid_doc())
    flat = list(_flat(doc))
    if draw(st.integers(0, 4)) == 0:
        flat = [str(v) for v in flat]
        what = "every value a numeric string"
    else:
        at = draw(st.lists(st.integers(0, len(flat) - 1), min_size=1, max_size=5, unique=True))
        for i in at:
            flat[i] = draw(st.one_of(st.just(str(flat[i])), st.text(max_size=8)))
        what = f"strings at {sorted(at)}"
    doc["people"][0]["pose_keypoints_2d"] = flat
    return _json_case("json-strings", draw, doc, what)


@st.composite
def json_nested_junk(draw):
    doc = draw(_valid_doc())
    flat = list(_flat(doc))
    if draw(st.integers(0, 3)) == 0:  # a ragged nesting: points of 2 and 3 values
        lengths = draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=18, max_size=18).filter(lambda ls: len(set(ls)) > 1))
        it = iter(flat * 2)
        value = [[next(it) for _ in range(n)] for n in lengths]
        what = f"ragged points of {sorted(set(lengths))} values"
    else:
        at = draw(st.lists(st.integers(0, len(flat) - 1), min_size=1, max_size=5, unique=True))
        for i in at:
            flat[i] = draw(st.sampled_from([None, {}, [], [flat[i], flat[i]], {"x": flat[i]}, [[flat[i]]]]))
        value = flat
        what = f"junk at {sorted(at)}"
    doc["people"][0]["pose_keypoints_2d"] = value
    return _json_case("json-nested-junk", draw, doc, what)


NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])


@st.composite
def json_nan(draw):
    doc = draw(_valid_doc())
    flat = list(_flat(doc))
    at = draw(st.lists(st.integers(0, len(flat) - 1), min_size=1, max_size=6, unique=True))
    for i in at:
        flat[i] = draw(NON_FINITE)
    doc["people"][0]["pose_keypoints_2d"] = flat
    return _json_case("json-nan", draw, doc, f"NaN/Infinity at {sorted(at)}")


@st.composite
def json_syntax(draw):
    """A file that is not JSON: a valid document cut short, with a stray character, or not UTF-8."""
    text = json_text(draw(_valid_doc()))
    what = draw(st.sampled_from(["cut", "stray", "not-utf8", "empty"]))
    if what == "cut":
        cut = draw(st.integers(0, len(text) - 1))
        return Case("json-syntax", "json-file", None, ".json", text[:cut], note=f"cut to {cut} of {len(text)} characters")
    if what == "stray":
        at = draw(st.integers(1, len(text) - 1))
        stray = draw(st.sampled_from(["{", "}", "]", ",", ":", "@", "'"]))
        bad = text[:at] + stray + text[at:]
        try:
            json.loads(bad)
            bad = text + "}"  # the stray character happened to fit (e.g. inside a string): a trailing brace never does
        except ValueError:
            pass
        return Case("json-syntax", "json-file", None, ".json", bad, note=f"{stray!r} inserted at {at}")
    if what == "not-utf8":
        return Case("json-syntax", "file", b'{"people": [{"pose_keypoints_2d": [\xff\xfe]}]}', ".json", note="not UTF-8")
    return Case("json-syntax", "json-file", None, ".json", "", note="empty file")


@st.composite
def array_shape(draw):
    """Keypoint arrays of any shape but (18, 2) and (18, 3), filled with real coordinates."""
    real = draw(valid_keypoints())
    shape = draw(st.one_of(
        st.tuples(st.integers(0, 40), st.integers(0, 6)).filter(lambda s: s not in ((18, 2), (18, 3))),
        st.tuples(st.integers(1, 80)),  # flat
        st.sampled_from([(2, 18), (3, 18), (18, 2, 1), (18, 1, 3), (6, 3, 3)]),
    ))
    values = np.resize(real, shape).astype(np.float32)
    form = draw(st.sampled_from(["list", "array", "tensor", "npy", "json-list"]))
    if form == "list" and len(shape) == 1:
        form = "json-list"  # a flat Python list is a batch of poses at the pipeline: as a file it is one pose
    if form == "list":
        if 0 in shape:
            form = "json-list"  # an empty list is an empty batch at the pipeline: as a file it is one bad pose
        else:
            return Case("array-shape", "value", values.astype(np.float64).round(2).tolist(), note=f"list {shape}")
    if form == "array":
        return Case("array-shape", "value", values, note=f"array {shape}")
    if form == "tensor":
        return Case("array-shape", "value", torch.from_numpy(values), note=f"tensor {shape}")
    if form == "npy":
        return Case("array-shape", "npy-file", values, ".npy", note=f"npy {shape}")
    lst = values.astype(np.float64).round(2).tolist()
    return Case("array-shape", "json-file", lst, ".json", json_text(lst), note=f"json list {shape}")


@st.composite
def array_nan(draw):
    kps = draw(valid_keypoints())
    xy = draw(st.booleans())
    arr = xy_only(kps) if xy else kps.copy()
    at = draw(st.lists(st.tuples(st.integers(0, 17), st.integers(0, arr.shape[1] - 1)), min_size=1, max_size=6, unique=True))
    for i, j in at:
        arr[i, j] = draw(NON_FINITE)
    form = draw(st.sampled_from(["list", "array", "tensor", "npy", "json-list"]))
    note = f"{'(18, 2)' if xy else '(18, 3)'} NaN/inf at {sorted(at)}"
    if form == "list":
        return Case("array-nan", "value", arr.astype(np.float64).tolist(), note=f"list {note}")
    if form == "array":
        return Case("array-nan", "value", arr, note=f"array {note}")
    if form == "tensor":
        return Case("array-nan", "value", torch.from_numpy(arr), note=f"tensor {note}")
    if form == "npy":
        return Case("array-nan", "npy-file", arr, ".npy", note=f"npy {note}")
    lst = arr.astype(np.float64).tolist()
    return Case("array-nan", "json-file", lst, ".json", json_text(lst), note=f"json list {note}")


@st.composite
def array_strings(draw):
    """(18, 2|3) keypoints with strings among the numbers (numeric strings too), as lists, string / object arrays,
    .npy files and .json lists."""
    kps = draw(valid_keypoints())
    arr = (xy_only(kps) if draw(st.booleans()) else kps).astype(np.float64).round(2)
    lst = arr.tolist()
    if draw(st.integers(0, 3)) == 0:
        lst = [[str(v) for v in p] for p in lst]
        what = "every value a numeric string"
    else:
        at = draw(st.lists(st.tuples(st.integers(0, 17), st.integers(0, arr.shape[1] - 1)), min_size=1, max_size=5, unique=True))
        for i, j in at:
            lst[i][j] = draw(st.one_of(st.just(str(lst[i][j])), st.text(max_size=8)))
        what = f"strings at {sorted(at)}"
    form = draw(st.sampled_from(["list", "str-array", "object-array", "npy", "json-list"]))
    if form == "list":
        return Case("array-strings", "value", lst, note=f"list, {what}")
    if form == "str-array":
        return Case("array-strings", "value", np.array([[str(v) for v in p] for p in lst]), note=f"str array, {what}")
    if form == "object-array":
        return Case("array-strings", "value", np.array(lst, dtype=object), note=f"object array, {what}")
    if form == "npy":
        return Case("array-strings", "npy-file", np.array([[str(v) for v in p] for p in lst]), ".npy", note=f"npy of strings, {what}")
    return Case("array-strings", "json-file", lst, ".json", json_text(lst), note=f"json list, {what}")


@st.composite
def npy_junk(draw):
    what = draw(st.sampled_from(["bytes", "pickle", "json-as-npy"]))
    if what == "bytes":
        data = draw(st.one_of(st.binary(max_size=512), st.builds(lambda r: b"\x93NUMPY" + r, st.binary(max_size=256))))
        return Case("npy-junk", "file", data, ".npy", note="random bytes")
    if what == "pickle":  # an object array needs a pickle, which runs code on load: never loaded
        arr = np.empty((18, 2), dtype=object)
        arr[:] = 1.0
        return Case("npy-junk", "npy-file", arr, ".npy", note="object array (a pickle)")
    return Case("npy-junk", "file", json_text(draw(_valid_doc())).encode(), ".npy", note="OpenPose JSON named .npy")


@st.composite
def bad_pose_photo(draw):
    """A pose given as a picture that is not a usable photo of a person (any bad image class but a missing file)."""
    kind = draw(st.sampled_from(sorted(k for k in BAD_IMAGES if k != "missing-file")))
    case = draw(BAD_IMAGES[kind])
    if case.form == "file" and case.suffix in (".json", ".npy"):
        case = Case(case.kind, case.form, case.value, ".png", note=case.note)
    return Case("pose-photo", case.form, case.value, case.suffix, note=f"{kind}: {case.note}".rstrip(": "))


BAD_POSES = {
    "json-top-level": json_top_level(),
    "json-people": json_people(),
    "json-count": json_count(),
    "json-strings": json_strings(),
    "json-nested-junk": json_nested_junk(),
    "json-nan": json_nan(),
    "json-syntax": json_syntax(),
    "no-visible-point": no_visible_point(),
    "all-outside": all_outside(),
    "too-few-joints": too_few_joints(),
    "array-shape": array_shape(),
    "array-nan": array_nan(),
    "array-strings": array_strings(),
    "npy-junk": npy_junk(),
    "pose-photo": bad_pose_photo(),
    "missing-file": missing_file("missing-file", (".json", ".npy", ".png", "")),
}
# the classes a door that takes pose *files* only (the Space's OpenPose JSON upload) can be sent
JSON_FILE_CLASSES = ("json-top-level", "json-people", "json-count", "json-strings", "json-nested-junk", "json-nan",
                     "json-syntax", "no-visible-point", "all-outside", "too-few-joints")


@functools.lru_cache(maxsize=None)
def canonical_poses():
    """One plain example of each class of `BAD_POSES`."""
    good = next(p for p in deepfashion_poses() if visible(p)[[0, 14, 15]].all())
    doc = openpose_doc(good)
    flat = _flat(doc)
    nose_and_eyes = np.tile(np.float32([-1, -1, 0]), (18, 1))
    nose_and_eyes[[0, 14, 15]] = good[[0, 14, 15]]
    outside = good.copy()
    outside[visible(good), 0] += 1000
    with_nan = copy.deepcopy(doc)
    _flat(with_nan)[3] = float("nan")
    strings = copy.deepcopy(doc)
    _flat(strings)[0] = "12.5"
    count = copy.deepcopy(doc)
    count["people"][0]["pose_keypoints_2d"] = flat[:53]
    nested = copy.deepcopy(doc)
    _flat(nested)[5] = [1, 2]
    zeros = {"version": 1.3, "people": [{"pose_keypoints_2d": [0.0] * 54}]}
    arr_nan = xy_only(good)
    arr_nan[1, 0] = np.nan
    text = json_text(doc)
    return {
        "json-top-level": Case("json-top-level", "json-file", [doc], ".json", json_text([doc]), note="list-of-docs"),
        "json-people": Case("json-people", "value", {"version": 1.3}, note="no-people"),
        "json-count": Case("json-count", "json-file", count, ".json", json_text(count), note="53 values"),
        "json-strings": Case("json-strings", "value", strings, note="'12.5' at 0"),
        "json-nested-junk": Case("json-nested-junk", "value", nested, note="[1, 2] at 5"),
        "json-nan": Case("json-nan", "json-file", with_nan, ".json", json_text(with_nan), note="NaN at 3"),
        "json-syntax": Case("json-syntax", "json-file", None, ".json", text[:40], note="cut to 40 characters"),
        "no-visible-point": Case("no-visible-point", "json-file", zeros, ".json", json_text(zeros), note="all (0, 0, 0)"),
        "all-outside": Case("all-outside", "value", openpose_doc(outside), note="x + 1000"),
        "too-few-joints": Case("too-few-joints", "value", openpose_doc(nose_and_eyes), note="nose and eyes only, dict-coco18"),
        "array-shape": Case("array-shape", "value", np.zeros((17, 2), np.float32), note="(17, 2)"),
        "array-nan": Case("array-nan", "value", arr_nan, note="NaN neck x"),
        "array-strings": Case("array-strings", "value", [[str(v) for v in p] for p in xy_only(good).tolist()], note="numeric strings"),
        "npy-junk": Case("npy-junk", "file", b"not a numpy file", ".npy"),
        "pose-photo": Case("pose-photo", "file", encode(Image.new("RGB", (256, 256), (200, 220, 240)), "PNG"), ".png", note="nobody: flat 256x256"),
        "missing-file": Case("missing-file", "missing-file", "absent-pose", ".json"),
    }


def explicit_poses(kind: str) -> list:
    """The examples of a class of `BAD_POSES` run before the drawn ones: its canonical example, and the ones long runs
    found that CI should not wait for."""
    extra = []
    if kind == "json-nan":  # NaN in BODY_25's MidHip, a point that COCO-18 drops
        good = next(p for p in deepfashion_poses() if visible(p)[[8, 11]].all())
        doc = openpose_doc(good, body25=True, realistic_midhip=True)
        _flat(doc)[24] = float("nan")
        extra.append(Case("json-nan", "json-file", doc, ".json", json_text(doc), note="BODY_25 MidHip x NaN"))
    if kind == "array-strings":
        good = deepfashion_poses()[0]
        extra.append(Case("array-strings", "value", xy_only(good).astype(str), note="str ndarray of numeric strings"))
    return [canonical_poses()[kind]] + extra


# ---------------------------------------------------------------------------------------------
# anything goes: mutations of valid inputs (validity unknown)
# ---------------------------------------------------------------------------------------------

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=8))
JSON_ANY = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=8)


def _mutate_json(draw, node, depth=0):
    """One random edit somewhere inside ``node``; returns the new node."""
    if isinstance(node, (dict, list)) and node and depth < 8 and draw(st.integers(0, 4)) > 0:  # go deeper, mostly
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
        node[key] = _mutate_json(draw, node[key], depth + 1)
        return node
    if isinstance(node, dict):
        op = draw(st.sampled_from(["delete", "add", "replace"]))
        if op == "delete" and node:
            del node[draw(st.sampled_from(sorted(node)))]
        elif op == "add":
            node[draw(st.sampled_from(["people", "canvas_width", "canvas_height", "pose_keypoints_2d", "version", "x"]))] = draw(JSON_ANY)
        else:
            return draw(JSON_ANY)
        return node
    if isinstance(node, list):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate", "replace"]))
        if op == "delete" and node:
            del node[draw(st.integers(0, len(node) - 1))]
        elif op == "insert":
            node.insert(draw(st.integers(0, len(node))), draw(JSON_ANY))
        elif op == "duplicate" and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        elif op == "truncate":
            del node[draw(st.integers(0, len(node))):]
        else:
            return draw(JSON_ANY)
        return node
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        op = draw(st.sampled_from(["scale", "negate", "non-finite", "string", "replace", "huge"]))
        if op == "scale":
            return node * draw(st.sampled_from([0, 0.5, 2, 10, 1000]))
        if op == "negate":
            return -node
        if op == "non-finite":
            return draw(NON_FINITE)
        if op == "string":
            return str(node)
        if op == "huge":
            return draw(st.sampled_from([1e30, -1e30, 2 ** 63, 1e308]))
    return draw(JSON_ANY)


@st.composite
def mutated_poses(draw):
    """A valid pose (OpenPose dict, or an (18, 2|3) list) after 1-4 random edits."""
    if draw(st.booleans()):
        value = copy.deepcopy(draw(_valid_doc()))
    else:
        kps = draw(valid_keypoints())
        value = (xy_only(kps) if draw(st.booleans()) else kps).astype(np.float64).round(2).tolist()
    for _ in range(draw(st.integers(1, 4))):
        value = _mutate_json(draw, value)
    if isinstance(value, (dict, type(None), bool, int, float)) and draw(st.booleans()):
        return Case("mutated", "value", value)
    return Case("mutated", "json-file", value, ".json", json_text(value))


@st.composite
def mutate_bytes(draw, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip", "delete", "insert", "duplicate", "truncate", "zero"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del b[i:i + draw(st.integers(1, 64))]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "duplicate":
            b[i:i] = b[i:i + draw(st.integers(1, 256))]
        elif op == "truncate":
            del b[i:]
        elif op == "zero":
            n = draw(st.integers(1, 64))
            b[i:i + n] = bytes(len(b[i:i + n]))
    return bytes(b)


@st.composite
def mutated_references(draw):
    """A person photo's PNG or JPEG file after 1-4 random byte edits."""
    photo = draw(st.integers(0, N_PHOTOS - 1))
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    data = encoded_photo(photo, fmt)
    return Case("mutated", "file", draw(mutate_bytes(data)), ".png" if fmt == "PNG" else ".jpg", note=f"person-{photo + 1} {fmt}")
