"""Speed of BlazePose on this CPU, of `pgat prepare-video`, and BlazePose's agreement with MediaPipe itself.

1. Milliseconds per image for `BlazePoseEstimator` (detector + landmark model, keypoints only and with the
   person mask) at typical photo sizes. The picture is a real photo (scikit-image's astronaut) scaled to
   the frame height and centred on grey, so both stages run on every call. Median and 90th percentile
   of ``--repeats`` calls after two warm-up calls.
2. Frames per second of `prepare_video` on a 1280x720, 30 fps, 10 s video (the astronaut sliding across)
   sampled at 3 fps: sampled frames / wall seconds, decoding + pose + PNG writing, with and without
   background removal.
3. Optional (``--mediapipe-python PY``): the same photos through MediaPipe 0.10.21's own ``Pose`` solution
   (static images, model_complexity=1) run by ``PY`` (a Python with ``mediapipe`` installed, e.g. a separate
   venv, since mediapipe pins numpy<2), and the pixel distance between its 33 landmarks and ours.

    python benchmarks/pose_estimation.py --out benchmarks/results/pose-estimation-cpu.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image
from skimage import data

from model_cost import machine  # the sibling benchmark's machine description (benchmarks/ is on sys.path when run)
from pgat.pose_estimation import BlazePoseEstimator
from pgat.video_dataset import prepare_video

SIZES = ((512, 512), (1280, 720), (1920, 1080))

REFERENCE = r"""
import sys, numpy as np, mediapipe as mp
imgs = np.load(sys.argv[1]); out = {}
with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True) as pose:
    for k in imgs.files:
        r = pose.process(imgs[k]); h, w = imgs[k].shape[:2]
        if r.pose_landmarks is not None:
            out[k] = np.array([[l.x * w, l.y * h, l.visibility] for l in r.pose_landmarks.landmark])
            out[k + "_mask"] = r.segmentation_mask
np.savez(sys.argv[2], **out)
"""


def photo(width: int, height: int) -> np.ndarray:
    frame = np.full((height, width, 3), 128, np.uint8)
    side = min(width, height)
    person = np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.BICUBIC))
    left, top = (width - side) // 2, (height - side) // 2
    frame[top : top + side, left : left + side] = person
    return frame


def time_calls(fn, repeats: int) -> dict:
    fn(), fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"ms_median": round(statistics.median(times), 2), "ms_p90": round(times[int(0.9 * (len(times) - 1))], 2)}


def bench_images(estimator: BlazePoseEstimator, repeats: int) -> list:
    rows = []
    for w, h in SIZES:
        img = photo(w, h)
        assert estimator(img, return_all=True).num_people == 1, "the benchmark photo must show one person"
        row = {"width": w, "height": h}
        row["keypoints"] = time_calls(lambda: estimator(img), repeats)
        row["keypoints_and_mask"] = time_calls(lambda: estimator(img, return_mask=True), repeats)
        row["detector_only"] = time_calls(lambda: estimator.detect(img), repeats)
        rows.append(row)
        print(f"{w}x{h}: {row['keypoints']['ms_median']} ms (with mask {row['keypoints_and_mask']['ms_median']} ms)", flush=True)
    return rows


def bench_video(estimator: BlazePoseEstimator, workdir: Path, seconds: int = 10, fps: int = 30) -> dict:
    w, h = 1280, 720
    person = np.asarray(Image.fromarray(data.astronaut()).resize((512, 512), Image.BICUBIC))
    path = workdir / "walk.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, quality=7, macro_block_size=16)
    writer.send(None)
    for k in range(seconds * fps):
        frame = np.full((h, w, 3), 110, np.uint8)
        x = int(k * (w - 512) / (seconds * fps))
        frame[104:616, x : x + 512] = person
        writer.send(frame)
    writer.close()
    out = {"video": f"{w}x{h}, {fps} fps, {seconds} s", "sample_fps": 3}
    t = time.perf_counter()
    decoded = sum(1 for _ in imageio_ffmpeg.read_frames(str(path), output_params=["-vf", "fps=3"])) - 1
    out["decode_only_frames_per_s"] = round(decoded / (time.perf_counter() - t), 2)
    for key, remove in (("prepare_video", False), ("prepare_video_remove_background", True)):
        result = prepare_video(path, workdir / key, fps=3, estimator=estimator, remove_background=remove, progress=False)
        out[key] = {"sampled": result.sampled, "kept": result.kept, "pairs": result.pairs, "seconds": round(result.seconds, 2),
                    "frames_per_s": round(result.frames_per_second, 2)}
        print(f"{key}: {out[key]['frames_per_s']} frames/s", flush=True)
    return out


def compare_with_mediapipe(estimator: BlazePoseEstimator, python: str, workdir: Path) -> dict:
    images = {f"{w}x{h}": photo(w, h) for w, h in SIZES}
    images["astronaut_rotated_30"] = np.asarray(Image.fromarray(data.astronaut()).rotate(30, expand=True))
    try:  # a full-body photo, if the ultralytics wheel is installed (only the file is read)
        bus = Path(importlib.metadata.distribution("ultralytics").locate_file("ultralytics/assets/bus.jpg"))
        images["ultralytics_bus_810x1080"] = np.asarray(Image.open(bus).convert("RGB"))
    except (importlib.metadata.PackageNotFoundError, OSError):
        pass
    np.savez(workdir / "in.npz", **images)
    (workdir / "ref.py").write_text(REFERENCE)
    subprocess.run([python, str(workdir / "ref.py"), str(workdir / "in.npz"), str(workdir / "out.npz")], check=True, capture_output=True)
    ref = np.load(workdir / "out.npz")
    rows = {}
    for name, img in images.items():
        if name not in ref.files:
            rows[name] = "mediapipe found no person"
            continue
        det = estimator.detect(img)[0]
        landmarks, _, mask = estimator.landmarks(img, estimator.roi(det), want_mask=True)
        theirs = ref[name]
        seen = theirs[:, 2] > 0.5
        dist = np.linalg.norm(landmarks[:, :2] - theirs[:, :2], axis=1)[seen]
        rows[name] = {
            "landmarks_compared": int(seen.sum()),
            "px_median": round(float(np.median(dist)), 2),
            "px_max": round(float(dist.max()), 2),
            "visibility_abs_diff_max": round(float(np.abs(landmarks[seen, 2] - theirs[seen, 2]).max()), 3),
            "mask_mean_abs_diff": round(float(np.abs(mask - ref[name + "_mask"]).mean()), 4),
        }
        print(f"vs mediapipe {name}: {rows[name]}", flush=True)
    return {"mediapipe": "0.10.21 mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)", "images": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--mediapipe-python", default=None, help="a python with mediapipe==0.10.21 installed, to compare against")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    estimator = BlazePoseEstimator()
    info = machine()
    info.update({"cores": os.cpu_count(), "load_average_at_start": [round(v, 2) for v in os.getloadavg()]})
    info["ai_edge_litert"] = importlib.metadata.version("ai-edge-litert")
    results = {"machine": info, "estimator": {"backend": "blazepose", "num_threads": os.cpu_count(), "model": "pose_landmark_full"}}
    results["images"] = bench_images(estimator, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        results["prepare_video"] = bench_video(estimator, Path(tmp))
        if args.mediapipe_python:
            results["agreement_with_mediapipe"] = compare_with_mediapipe(estimator, args.mediapipe_python, Path(tmp))
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
