"""Figures of docs/tryon.md: the try-on of the embedded model on SynthHumans' ground-truth triples, and on a real photo.

    python docs/make_tryon_figures.py            # writes docs/tryon-samples.png and docs/tryon-real.png

- ``tryon-samples.png``: test triples (`pgat.data.SynthHumansTryOn`, unseen identities and poses), one a row:
  person | garment photo | ground truth | keep the person | canonical pose | garment pasted unwarped. Masks are the
  parsing masks (the person's own top and the garment photo's top), poses as drawn.
- ``tryon-real.png``: two people of one real photo (Ultralytics' ``assets/bus.jpg``, AGPL-3.0, read from the
  installed wheel), each in the other's coat: person | garment photo | keep | canonical, with automatic masks and
  poses (BlazePose), which is what a user of the Space gets.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pgat.data.synthetic import TOP, SynthHumansTryOn
from pgat.evaluation import unwarped_paste
from pgat.pipelines.tryon import PGATTryOnPipeline

ROOT = Path(__file__).resolve().parents[1]
ROWS = (0, 3, 5, 8, 11)
# the two people of bus.jpg (left, top, right, bottom in its 810x1080 pixels)
BUS_PEOPLE = {"cream coat": (30, 370, 245, 915), "black coat": (212, 385, 362, 875)}


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(tile)
    ImageDraw.Draw(im).rectangle((0, 0, im.width, 14), fill=(255, 255, 255))
    ImageDraw.Draw(im).text((3, 1), text, fill=(0, 0, 0))
    return np.asarray(im)


def samples(pipe, out: Path) -> None:
    triples = SynthHumansTryOn(resolution=256, split="test", length=max(ROWS) + 1)
    rows = []
    for i in ROWS:
        t = triples[i]
        pm, gm = t["person_parsing"] == TOP, t["garment_parsing"] == TOP
        args = (t["person"], t["garment"], pm, gm, t["person_keypoints"], t["garment_keypoints"])
        keep = np.asarray(pipe(*args, mode="keep").images[0])
        canonical = np.asarray(pipe(*args, mode="canonical").images[0])
        paste = unwarped_paste(t["person"], t["garment"], gm)
        tiles = [t["person"], t["garment"], t["ground_truth"], keep, canonical, paste]
        names = ["person", "garment photo", "ground truth", "keep (default)", "canonical (paper)", "unwarped paste"]
        rows.append(np.concatenate([_label(np.asarray(x), n) for x, n in zip(tiles, names)], 1))
    Image.fromarray(np.concatenate(rows, 0)).quantize(256).save(out, optimize=True)  # a palette: a third of the bytes


def real(pipe, out: Path) -> None:
    path = importlib.metadata.distribution("ultralytics").locate_file("ultralytics/assets/bus.jpg")
    photo = Image.open(path).convert("RGB")
    crops = {k: photo.crop(box) for k, box in BUS_PEOPLE.items()}
    rows = []
    for person, garment in (("black coat", "cream coat"), ("cream coat", "black coat")):
        p, g = crops[person], crops[garment]
        keep = pipe(p, g, mode="keep").images[0]
        canonical = pipe(p, g, mode="canonical").images[0]
        h = 400
        tiles = [im.resize((round(im.width * h / im.height), h), Image.BICUBIC) for im in (p, g, keep, canonical)]
        names = ["person", "garment photo", "keep (default)", "canonical (paper)"]
        rows.append(np.concatenate([_label(np.asarray(x), n) for x, n in zip(tiles, names)], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows, 0)).quantize(256).save(out, optimize=True)  # a palette: a third of the bytes


if __name__ == "__main__":
    pipe = PGATTryOnPipeline.from_pretrained(ROOT / "weights" / "pgat-synth-256", resolution=256, pose_estimator="blazepose")
    samples(pipe, ROOT / "docs" / "tryon-samples.png")
    real(pipe, ROOT / "docs" / "tryon-real.png")
    print("wrote docs/tryon-samples.png, docs/tryon-real.png")
