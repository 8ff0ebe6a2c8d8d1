"""Draw docs/synthhumans.png: a contact sheet of SynthHumans pairs.

Each row block is one pair, one identity in two real DeepFashion poses: the reference, the reference with its
keypoints (OpenPose colours), its parsing map over the image, then the same three for the target.

    python docs/make_synthhumans_sheet.py [--out docs/synthhumans.png] [--pairs 8] [--resolution 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pgat.data import PARSING_LABELS, SynthHumans
from pgat.pose import draw_skeleton

# one colour per parsing label (background stays as it is)
PALETTE = np.array(
    [[0, 0, 0], [250, 170, 120], [255, 220, 40], [120, 60, 20], [220, 40, 60], [40, 90, 220], [40, 190, 80]],
    dtype=np.float32,
)


def overlay_parsing(image: np.ndarray, parsing: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    out = image.astype(np.float32)
    body = parsing > 0
    out[body] = (1 - alpha) * out[body] + alpha * PALETTE[parsing[body]]
    return out.astype(np.uint8)


def legend(width: int, height: int) -> Image.Image:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x = 8
    for i, name in enumerate(PARSING_LABELS[1:], start=1):
        draw.rectangle([x, 6, x + 14, 20], fill=tuple(int(c) for c in PALETTE[i]))
        draw.text((x + 18, 7), name, fill=(0, 0, 0))
        x += 28 + 7 * len(name)
    draw.text((x + 10, 7), "reference | keypoints | parsing || target | keypoints | parsing", fill=(60, 60, 60))
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "synthhumans.png"))
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ds = SynthHumans(resolution=args.resolution, split=args.split, seed=args.seed)
    rows = []
    for i in range(args.pairs):
        item = ds[i]
        tiles = []
        for side in ("reference", "target"):
            img, kps, par = item[side], item[f"{side}_keypoints"], item[f"{side}_parsing"]
            tiles += [img, draw_skeleton(img, kps), overlay_parsing(img, par)]
        gap = np.full((args.resolution, 8, 3), 255, np.uint8)
        rows.append(np.concatenate(tiles[:3] + [gap] + tiles[3:], axis=1))
    # two pairs per line
    lines = []
    for i in range(0, len(rows), 2):
        pair = rows[i : i + 2]
        if len(pair) == 1:
            pair.append(np.full_like(pair[0], 255))
        gap = np.full((args.resolution, 16, 3), 255, np.uint8)
        lines.append(np.concatenate([pair[0], gap, pair[1]], axis=1))
    sheet = np.concatenate(lines, axis=0)
    top = legend(sheet.shape[1], 28)
    out = Image.new("RGB", (sheet.shape[1], sheet.shape[0] + top.height), (255, 255, 255))
    out.paste(top, (0, 0))
    out.paste(Image.fromarray(sheet), (0, top.height))
    out.save(args.out, optimize=True)
    print(f"wrote {args.out} ({out.width}x{out.height})")


if __name__ == "__main__":
    main()
