"""Parameter count and forward FLOPs of PGATModel at every stage, and CPU forward latency.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no memory,
no time), so the paper-size 1024² model can be counted anywhere. FlopCounterMode counts a multiply-add
as 2 FLOPs and counts convolutions and matmuls only (BatchNorm, activations, pooling are not counted).

    python benchmarks/model_cost.py --bottleneck-channels 1024 --time 256 --out benchmarks/results/model-cost-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from pgat import PGATModel
from pgat.stages import RESOLUTIONS


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def count(resolution: int, bottleneck_channels: int) -> dict:
    with torch.device("meta"):
        model = PGATModel(resolution=resolution, bottleneck_channels=bottleneck_channels).eval()
        reference = torch.empty(1, 3, resolution, resolution)
        keypoints = torch.empty(1, 18, 2)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(reference, keypoints)
    return {
        "resolution": resolution,
        "parameters": sum(p.numel() for p in model.parameters()),
        "forward_gflops": counter.get_total_flops() / 1e9,
    }


def latency(resolution: int, bottleneck_channels: int, batch: int, repeats: int) -> dict:
    model = PGATModel(resolution=resolution, bottleneck_channels=bottleneck_channels).eval()
    reference = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    keypoints = torch.rand(batch, 18, 2) * (resolution - 1)
    times = []
    with torch.inference_mode():
        model(reference, keypoints)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(reference, keypoints)
            times.append(time.perf_counter() - t0)
    return {"resolution": resolution, "batch": batch, "seconds_median": sorted(times)[len(times) // 2], "seconds_all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bottleneck-channels", type=int, default=1024)
    parser.add_argument("--time", type=int, nargs="*", default=[256], help="stages to time on this machine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {
        "machine": machine(),
        "bottleneck_channels": args.bottleneck_channels,
        "stages": [count(r, args.bottleneck_channels) for r in RESOLUTIONS],
        "latency": [latency(r, args.bottleneck_channels, 1, args.repeats) for r in args.time],
    }
    for s in result["stages"]:
        print(f"{s['resolution']:>5}²  {s['parameters'] / 1e6:8.2f} M params  {s['forward_gflops']:9.1f} GFLOPs")
    for t in result["latency"]:
        print(f"{t['resolution']:>5}²  forward {t['seconds_median'] * 1000:.0f} ms (batch {t['batch']}, median of {args.repeats})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
