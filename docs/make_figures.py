"""The README's example pictures: the embedded default model on the Space's examples.

    python docs/make_figures.py            # PGAT_MODEL, else weights/pgat-synth-256

Writes ``docs/examples/pose-transfer.png`` (reference | target pose | output, one row per example),
``docs/examples/tryon.png`` (person | garment photo | result) and ``docs/examples/video.png`` (every 12th frame of
the pose-sequence example). Everything is read from ``spaces/examples/``; nothing is downloaded.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "spaces" / "examples"
OUT = ROOT / "docs" / "examples"


def _row(images, size=256) -> np.ndarray:
    return np.concatenate([np.asarray(im.convert("RGB").resize((size, size))) for im in images], axis=1)


def pose_transfer(pipe) -> Image.Image:
    from pgat.pose import draw_skeleton, load_openpose_json

    people = sorted(EXAMPLES.glob("person-*.png"))
    poses = sorted((EXAMPLES / "poses").glob("pose-*.json"))
    rows = []
    for person, pose in zip(people, poses[:: max(1, len(poses) // len(people))]):
        out = pipe(reference_image=str(person), target_pose=str(pose), align_pose=True)
        keypoints = out.target_poses[0]
        ref = Image.open(person)
        skeleton = draw_skeleton(ref.size[::-1], keypoints)
        rows.append(_row([ref, skeleton, out.images[0]]))
    return Image.fromarray(np.concatenate(rows, axis=0))


def tryon(model: str) -> Image.Image:
    from pgat import PGATTryOnPipeline

    pipe = PGATTryOnPipeline.from_pretrained(model)
    person, garment = EXAMPLES / "person-1.png", EXAMPLES / "person-2.png"
    out = pipe(person_image=str(person), garment_image=str(garment))
    return Image.fromarray(_row([Image.open(person), Image.open(garment), out.images[0]]))


def video(model: str) -> Image.Image:
    from pgat import PGATVideoPipeline
    from pgat.pose import read_openpose_folder

    pipe = PGATVideoPipeline.from_pretrained(model)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(EXAMPLES / "workout_march.zip") as z:
            z.extractall(tmp)
        folder = next(p.parent for p in Path(tmp).rglob("*.json"))
        sequence = read_openpose_folder(folder)
    frames = pipe(reference_image=str(EXAMPLES / "person-3.png"), pose_sequence=sequence, fps=30, max_frames=96).frames
    return Image.fromarray(_row([Image.open(EXAMPLES / "person-3.png"), *frames[::12]], size=192))


def main() -> None:
    from pgat import PGATPipeline
    from pgat.pipelines.utils import default_model_path

    model = str(default_model_path())
    OUT.mkdir(parents=True, exist_ok=True)
    pose_transfer(PGATPipeline.from_pretrained(model)).save(OUT / "pose-transfer.png")
    tryon(model).save(OUT / "tryon.png")
    video(model).save(OUT / "video.png")
    print("wrote", *sorted(p.name for p in OUT.glob("*.png")))


if __name__ == "__main__":
    main()
