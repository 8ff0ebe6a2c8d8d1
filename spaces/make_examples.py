"""Build the Space's examples in ``spaces/examples/`` (committed; rerun to rebuild them exactly).

    python spaces/make_examples.py                 # needs ../shared/data (or PGAT_SHARED_DATA) for the sequence

Everything is drawn by the project itself or comes from real pose data whose licence allows copying:

- people: SynthHumans *test* identities at 256², each drawn in a real DeepFashion test pose, kept only when
  the BlazePose estimator the Space runs finds exactly one person with shoulders and hips within a few
  pixels of the drawn keypoints (so the automatic try-on masks and pose-from-photo work on them);
- preset poses: real DeepFashion test poses (the OpenPose estimates shipped in ``pgat/data/poses``) written as
  OpenPose JSON on their 256x256 canvas and drawn as skeletons for the gallery;
- a pose sequence: the MIT-licensed ``workout_march`` OpenPose output (120 BODY_25 frames), zipped with its
  licence;
- a driving video: a SynthHumans person moved through that sequence (retargeted onto the person's body),
  written as H.264 with imageio-ffmpeg.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pgat.data import SynthHumans
from pgat.data.synthetic import find_pose_file, split_of
from pgat.pipelines.video import write_video
from pgat.pose import draw_skeleton, read_deepfashion_annotations, read_openpose_folder, retarget, visible, write_openpose_json
from pgat.pose_estimation import load_estimator

HERE = Path(__file__).resolve().parent
SIZE = 256
TORSO = [1, 2, 5, 8, 11]  # neck, shoulders, hips: what try-on and retargeting need
NUM_PEOPLE = 4
NUM_PRESETS = 8
VIDEO_FPS = 15  # every other frame of the 30 fps sequence: 4 s, small file


def shared_data() -> Path:
    path = Path(os.environ.get("PGAT_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
    if not (path / "openpose-sequences" / "workout_march").is_dir():
        raise FileNotFoundError(f"the real pose data is not at {path}; set PGAT_SHARED_DATA to the shared/data folder")
    return path


def pick_people(estimator, count: int):
    """SynthHumans test persons the estimator reads well: one person, torso found within 6 px, 15+ points."""
    ds = SynthHumans(resolution=SIZE, split="test", seed=0)
    chosen = []
    for i in range(200):
        item = ds[i]
        drawn = item["reference_keypoints"]
        if not visible(drawn)[TORSO].all() or visible(drawn).sum() < 15:
            continue
        found = estimator(item["reference"], return_all=True)
        if found.num_people != 1 or not visible(found.keypoints)[TORSO].all():
            continue
        err = np.linalg.norm(found.keypoints[TORSO, :2] - drawn[TORSO], axis=1).max()
        if err > 6:
            continue
        chosen.append((i, item))
        if len(chosen) == count:
            break
    if len(chosen) < count:
        raise RuntimeError(f"only {len(chosen)} usable SynthHumans test persons in the first 200")
    return ds, chosen


def pick_presets(count: int):
    """Full-body DeepFashion test poses (neck and all 12 limb joints) that differ most from each other:
    greedy farthest-point sampling on the body joints, each pose centred on its neck and scaled by its
    torso, starting from the first in name order."""
    table = read_deepfashion_annotations(find_pose_file("fasion-annotation-test.csv"), frame="256x256")
    names = sorted(n for n, k in table.items() if split_of(n) == "test" and visible(k)[1:14].all())
    body = np.stack([table[n][1:14] for n in names])
    torso = np.linalg.norm((body[:, 7] + body[:, 10]) / 2 - body[:, 0], axis=1)
    shape = ((body - body[:, :1]) / torso[:, None, None]).reshape(len(names), -1)
    picked = [0]
    dist = np.linalg.norm(shape - shape[0], axis=1)
    while len(picked) < count:
        picked.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(shape - shape[picked[-1]], axis=1))
    return [(names[i], table[names[i]]) for i in picked]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(HERE / "examples"), help="output folder (default: spaces/examples)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        for child in out.iterdir():
            if child.name != "README.md":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    (out / "poses").mkdir(parents=True, exist_ok=True)
    estimator = load_estimator("blazepose")
    provenance = {"people": [], "presets": [], "pose_photo": None}

    # 1. people (reference photos, garment photos) and one photo of someone in a pose
    ds, people = pick_people(estimator, NUM_PEOPLE + 1)
    for k, (i, item) in enumerate(people[:NUM_PEOPLE], start=1):
        Image.fromarray(item["reference"]).save(out / f"person-{k}.png", optimize=True)
        provenance["people"].append({"file": f"person-{k}.png", "synthhumans_test_index": i, "identity": item["identity"], "pose": item["reference_pose"]})
    i, item = people[NUM_PEOPLE]
    Image.fromarray(item["target"]).save(out / "pose-photo.png", optimize=True)
    provenance["pose_photo"] = {"file": "pose-photo.png", "synthhumans_test_index": i, "identity": item["identity"], "pose": item["target_pose"]}

    # 2. preset poses: OpenPose JSON on the 256x256 DeepFashion canvas, and their skeletons
    for k, (name, kps) in enumerate(pick_presets(NUM_PRESETS), start=1):
        stem = f"pose-{k:02d}"
        write_openpose_json(kps, out / "poses" / f"{stem}.json", canvas_size=(SIZE, SIZE))
        draw_skeleton((SIZE, SIZE), kps).save(out / "poses" / f"{stem}.png", optimize=True)
        provenance["presets"].append({"name": stem, "deepfashion_image": name})

    # 3. the pose sequence, zipped with its licence
    source = shared_data() / "openpose-sequences"
    files = sorted((source / "workout_march").glob("*_keypoints.json"))
    with zipfile.ZipFile(out / "workout_march.zip", "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for f in files:
            z.write(f, f"workout_march/{f.name}")
        z.write(source / "LICENSE", "workout_march/LICENSE")

    # 4. the driving video: person 1's identity following every other frame of the sequence
    sequence = read_openpose_folder(source / "workout_march")[:: 30 // VIDEO_FPS]
    used = {p["identity"] for p in provenance["people"]} | {provenance["pose_photo"]["identity"]}
    identity = next(i for i in range(1, 10_000, 2) if i not in used)  # a test identity in none of the examples' clothes
    anchor = people[1][1]["reference_keypoints"]  # the body and place it is drawn on
    moved = retarget(sequence, anchor)
    frames = []
    for kps in moved:
        kps = kps[:, :2].copy()
        outside = ~visible(kps) | (kps > SIZE - 1).any(1) | (kps < 0).any(1)
        kps[outside] = -1
        frames.append(Image.fromarray(ds.render(identity, kps)["image"]))
    write_video(frames, out / "driving.mp4", VIDEO_FPS, quality=6)
    provenance["driving_video"] = {"file": "driving.mp4", "identity": identity, "frames": len(frames), "fps": VIDEO_FPS,
                                   "sequence": "workout_march, every other frame"}
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
