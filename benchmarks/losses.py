"""Time and peak memory of one training-loss evaluation: global + local perceptual loss, forward + backward.

One step = ``PerceptualLoss(X̂, X') + LocalPerceptualLoss(X̂, X', target pose)`` and ``.backward()``, batch 1,
with X̂ a leaf tensor that stands in for the generator output (so the generator's own cost is not in it).
The pose is a real one (DeepFashion test annotation, every joint present, scaled to the resolution), so
every descriptor is valid: 31 at 256², 44 at 1024².

Memory, two ways, each resolution in a fresh process:

- ``peak_rss_delta_mib``: the process's resident set size sampled by psutil every 2 ms in a thread during
  the first (cold) step, peak minus the RSS just before it (VGG loaded, inputs made). It counts everything
  the step made the process touch: tensors, oneDNN scratch, allocator slack. Later steps reuse the freed
  heap, so their RSS barely moves; the cold step is the one that shows the need.
- ``peak_tensor_mib``: the peak of torch.profiler's memory timeline (``profile_memory=True``,
  ``export_memory_timeline``) over one step: live tensor bytes on the CPU, all categories (the VGG's own
  parameters, ~42 MiB up to relu4_4, included).

Time is the median of ``--repeats`` steps after the cold one.

    python benchmarks/losses.py --out benchmarks/results/losses-cpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import torch

from model_cost import machine  # the sibling benchmark's machine description (benchmarks/ is on sys.path when run)
from pgat.losses import LocalPerceptualLoss, PerceptualLoss
from pgat.pose import read_deepfashion_annotations
from pgat.stages import get_stage

POSE = "fashionWOMENSweatersid0000393006_7additional.jpg"  # every joint present, 256x256 frame


class PeakRSS:
    """Peak resident set size of this process while the context is open, sampled in a thread."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.process = interval, psutil.Process()

    def __enter__(self):
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def step(global_loss, local_loss, pred, target, keypoints):
    loss = global_loss(pred, target) + local_loss(pred, target, keypoints)
    loss.backward()
    pred.grad = None
    return loss.item()


def peak_tensor_mib(fn) -> float:
    """Peak of live CPU tensor memory over ``fn()``, from torch.profiler's memory timeline."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of the CUDA-only snapshot API
        path = os.path.join(tmp, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        _, sizes = json.load(open(path))
    return max(sum(s) for s in sizes) / 2**20


def measure(resolution: int, network: str, keypoints256: torch.Tensor, repeats: int) -> dict:
    """One resolution, run in its own process (see ``main``)."""
    global_loss = PerceptualLoss(network=network)
    local_loss = LocalPerceptualLoss(perceptual=global_loss)  # one VGG in memory
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, resolution, resolution, generator=g) * 2 - 1
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(-1, 1).requires_grad_()
    scale = resolution / 256
    keypoints = ((keypoints256 + 0.5) * scale - 0.5)[None]  # pixel centres at whole numbers on both grids
    stage = get_stage(resolution)

    def run():
        return step(global_loss, local_loss, pred, target, keypoints)

    load_before = os.getloadavg()[0]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        value = run()
        cold = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "resolution": resolution,
        "descriptors": stage.num_descriptors,
        "crop_size": stage.crop_size,
        "batch": 1,
        "network": global_loss.network,
        "seconds": {"median": statistics.median(times), "min": min(times), "all": times, "cold_step": cold},
        "peak_rss_delta_mib": (mem.peak - mem.start) / 2**20,
        "peak_tensor_mib": peak_tensor_mib(run),
        "loss": value,
        # other processes on a shared machine slow the steps down; the 1-minute load average says how busy it was
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--network", default="vgg19", choices=["vgg16", "vgg19", "auto"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    kps = read_deepfashion_annotations(args.shared_data / "deepfashion" / "fasion-annotation-test.csv", frame="256x256")
    keypoints256 = torch.from_numpy(kps[POSE])
    results = {
        "what": "PerceptualLoss + LocalPerceptualLoss, forward + backward, batch 1, all descriptors valid",
        "memory": {
            "peak_rss_delta_mib": "psutil RSS sampled every 2 ms during the first step of a fresh process, peak minus RSS before it",
            "peak_tensor_mib": "peak of torch.profiler's CPU memory timeline over one step (live tensors, VGG parameters included)",
        },
        "machine": {**machine(), "cores": os.cpu_count(), "device": "cpu"},
        "runs": [],
    }
    # a fresh process per resolution: a step's freed memory stays in the heap and would hide the next one's need
    with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in args.resolutions:
            run = pool.submit(measure, r, args.network, keypoints256, args.repeats).result()
            results["runs"].append(run)
            print(
                f"{r}²: {run['descriptors']} descriptors, {run['seconds']['median']:.2f} s, "
                f"peak RSS +{run['peak_rss_delta_mib']:.0f} MiB, peak tensors {run['peak_tensor_mib']:.0f} MiB",
                flush=True,
            )
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
