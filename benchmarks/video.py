"""Video frames per second through `PGATVideoPipeline`: read the poses, generate, encode the mp4.

Each model is a repository loaded with ``PGATVideoPipeline.from_pretrained``, i.e. in the pipelines' default
inference form: the embedded model ``weights/pgat-synth-256`` as shipped, and the paper-size model with random
weights (speed does not depend on them) saved as a repository first. Two pose sources:

- ``openpose``: the real 120-frame OpenPose sequence ``openpose-sequences/workout_march`` (shared data): read the
  JSON files, fill gaps, smooth, retarget onto the reference, generate, write an H.264 mp4;
- ``driving-video``: an mp4 of a SynthHumans person marching through the same poses (rendered here): decode it,
  pose every frame with BlazePose, then as above.

The reference is a 256x256 SynthHumans person. Each run reports the wall time and frames per second, and how the
time splits: the model (`PGATModel.encode` + `decode`), pose estimation, and the mp4 encoding (the same frames
written again alone); the rest is pose reading and cleaning, letterboxing and image conversion. ``--batch-sizes``
compares one frame per forward with batches (each batch also shares one encoding of the reference).

    python benchmarks/video.py --out benchmarks/results/video-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from model_cost import machine  # benchmarks/ is on sys.path when run as a script
from pgat import PGATModel, PGATPipeline, PGATVideoPipeline
from pgat.data.synthetic import SynthHumans
from pgat.pipelines.video import write_video
from pgat.pose import read_openpose_folder, visible
from pgat.stages import stage_folder

REPO = Path(__file__).resolve().parents[1]
MARCH = "openpose-sequences/workout_march"


class Stopwatch:
    """Accumulates the time spent in wrapped callables."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def driving_video(march: np.ndarray, frames: int, path: Path) -> Path:
    """A 256x256 mp4 at 30 fps of a SynthHumans person marching through the real poses (mapped into its frame)."""
    ds = SynthHumans(resolution=256, split="test")
    writer = imageio_ffmpeg.write_frames(str(path), (256, 256), fps=30, quality=8, macro_block_size=1)
    writer.send(None)
    for t in range(frames):
        ok = visible(march[t % len(march)])
        kps = np.where(ok[:, None], (march[t % len(march), :, :2] - [690.0, 110.0]) * 0.4 + [128.0, 24.0], -1.0)
        writer.send(np.ascontiguousarray(ds.render(3, kps)["image"]))
    writer.close()
    return path


def run(pipe: PGATVideoPipeline, reference, reference_pose, poses, frames: int, batch: int, out: Path, estimator=None) -> dict:
    model_time, pose_time = Stopwatch(), Stopwatch()
    model = pipe.model
    # instance attributes shadow the methods for this run only
    model.encode, model.decode = model_time.wrap(PGATModel.encode.__get__(model)), model_time.wrap(PGATModel.decode.__get__(model))
    if estimator is not None:
        pipe._pose_estimator = pose_time.wrap(estimator)
    try:
        t0 = time.perf_counter()
        result = pipe(reference, poses, output_path=out, reference_pose=reference_pose, max_frames=frames, batch_size=batch)
        wall = time.perf_counter() - t0
    finally:
        del model.encode, model.decode
    t0 = time.perf_counter()
    write_video(result.frames, out.with_name("again.mp4"), result.fps)
    encode = time.perf_counter() - t0
    n = len(result.frames)
    return {
        "frames": n, "batch_size": batch, "seconds": wall, "frames_per_second": n / wall,
        "model_seconds": model_time.seconds, "pose_estimation_seconds": pose_time.seconds, "mp4_encode_seconds": encode,
        "other_seconds": wall - model_time.seconds - pose_time.seconds - encode,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="weights/pgat-synth-256:256:60,1024:256:8",
                   help="MODEL:RESOLUTION:FRAMES, comma-separated; MODEL is a repository or a width (random weights)")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 8])
    p.add_argument("--sources", default="openpose,driving-video")
    p.add_argument("--shared-data", default=os.environ.get("PGAT_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    p.add_argument("--out", default=None)
    args = p.parse_args()

    march_dir = Path(args.shared_data) / MARCH
    march = read_openpose_folder(march_dir)
    item = SynthHumans(resolution=256, split="test")[0]
    reference, reference_pose = item["reference"], item["reference_keypoints"]
    result = {"machine": machine(), "reference_size": list(reference.shape[:2]), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for spec in args.models.split(","):
            model_spec, resolution, frames = spec.rsplit(":", 2)
            resolution, frames = int(resolution), int(frames)
            if model_spec.isdigit():  # a width: random weights, saved as a repository
                channels = int(model_spec)
                torch.manual_seed(0)
                repo = tmp / f"repo-{channels}-{resolution}"
                PGATPipeline(model=PGATModel(resolution=resolution, bottleneck_channels=channels).eval()).save_pretrained(repo)
            else:  # a repository, e.g. the embedded model
                repo = Path(model_spec) if Path(model_spec).is_absolute() else REPO / model_spec
                channels = PGATModel.load_config(repo / stage_folder(resolution))["bottleneck_channels"]
            for source in args.sources.split(","):
                if source == "openpose":
                    poses, estimator = march_dir, None
                    pipe = PGATVideoPipeline.from_pretrained(repo, resolution=resolution, pose_estimator=None)
                elif source == "driving-video":
                    from pgat.pose_estimation import load_estimator

                    poses = driving_video(march, frames, tmp / f"driving-{frames}.mp4")
                    estimator = load_estimator("blazepose")
                    pipe = PGATVideoPipeline.from_pretrained(repo, resolution=resolution, pose_estimator=None)
                else:
                    raise SystemExit(f"--sources: unknown source {source!r}")
                pipe.set_progress_bar_config(disable=True)
                assert pipe.model.is_fused  # the pipelines' default inference form
                for batch in args.batch_sizes:
                    res = run(pipe, reference, reference_pose, poses, frames, batch, tmp / "out.mp4", estimator)
                    res.update({"model": model_spec if not model_spec.isdigit() else "random weights", "bottleneck_channels": channels,
                                "resolution": resolution, "source": source, "fused": True})
                    result["runs"].append(res)
                    print(
                        f"width {channels:>4} {resolution}² {source:13s} batch {batch:>2}: {res['frames']} frames in {res['seconds']:.1f} s = "
                        f"{res['frames_per_second']:.2f} fps (model {res['model_seconds']:.1f} s, poses {res['pose_estimation_seconds']:.1f} s, "
                        f"mp4 {res['mp4_encode_seconds']:.2f} s, other {res['other_seconds']:.1f} s; load {res['load_average'][0]:.1f})",
                        flush=True,
                    )
                    if args.out:
                        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
