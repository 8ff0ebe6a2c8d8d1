"""What one PGATModel forward costs at every stage, and how close it runs to what this machine can do.

For each stage and batch size, in a fresh process (so that its peak memory is its own):

- forward FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no memory, no
  time; a multiply-add is 2 FLOPs; convolutions and matmuls only: BatchNorm, activations, pooling are not
  counted);
- latency (best and median of ``--repeats`` forwards after two warm-ups) and throughput in images per second;
- peak memory: on a CPU the process's peak resident memory (``ru_maxrss``: weights, activations, allocator
  caches), on a GPU ``torch.cuda.max_memory_allocated``;
- achieved FLOP/s as a fraction of the **peak measured in the same process**, interleaved with the model
  (peak, forward, peak, forward, ..., peak): the best of a few large 3x3 convolutions (NCHW and channels-last) and
  a large GEMM, each the best of 3 runs, in the precision the model runs in. Each forward is set against the
  higher of the peaks on either side of it. The machine may be shared; the interleaving, and
  ``os.getloadavg()`` recorded with every result, say how far the numbers can be trusted.

The model runs in its inference form (``PGATModel.fuse()``, what the pipelines use) unless ``--unfused``; the
weights are random (speed does not depend on them). ``--config REPO`` takes the widths from a PGAT repository
(e.g. the embedded model ``weights/pgat-synth-256``) and builds every stage with them, trained or not.

Precision (``--precision``): ``fp32``; ``bf16`` (weights and inputs cast to bfloat16, what
``PGATPipeline.from_pretrained(..., torch_dtype=torch.bfloat16)`` runs); ``bf16-autocast`` (fp32 weights under
``torch.autocast``). A CPU without native bf16 (oneDNN emulates it, hundreds of times slower; ``fast_path.py``
measures one convolution) is refused with that reason rather than left running for hours.

    python benchmarks/model_cost.py --bottleneck-channels 1024 --out benchmarks/results/model-cost-cpu.json
    python benchmarks/model_cost.py --config weights/pgat-synth-256 --batches 64:1,8,32 128:1,8,32 256:1,8 512:1,4 1024:1 \\
        --out benchmarks/results/model-cost-embedded-cpu.json
    # on a GPU: the same script, e.g.
    python benchmarks/model_cost.py --device cuda --precision bf16 --batches 256:1,8,32 512:1,8,32 1024:1,8,32 \\
        --out benchmarks/results/model-cost-cuda-h100-bf16.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pgat import PGATModel
from pgat.hub import list_stages
from pgat.stages import BOTTLENECK_SIZE, MIN_CHANNELS, RESOLUTIONS, stage_folder

# (channels, side): one shape per kind of layer the model has (wide and small, narrow and large), 19 GFLOPs per
# image each; a GPU runs them at a batch large enough to fill it
PEAK_CONVS = [(1024, 32), (512, 64), (256, 128), (64, 512)]
PEAK_BATCH = {"cpu": 1, "cuda": 16}
PEAK_GEMM = {"cpu": 2048, "cuda": 8192}
DEFAULT_BATCHES = {64: [1, 4, 8], 128: [1, 4], 256: [1, 2], 512: [1, 2], 1024: [1]}
PRECISIONS = ("fp32", "bf16", "bf16-autocast")


def machine(device: str = "cpu") -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update({"device": device, "gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30,
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return out


def model_config(bottleneck_channels: int = 1024, config: Optional[str] = None) -> dict:
    """The widths to build every stage with: ``bottleneck_channels``, or those of the repository ``config``."""
    if config is None:
        return {"bottleneck_channels": bottleneck_channels, "bottleneck_size": BOTTLENECK_SIZE, "min_channels": MIN_CHANNELS}
    stages = list_stages(config)
    if not stages:
        raise SystemExit(f"--config: expected a PGAT repository with stage-*/config.json files, got {config!r} (no stages there)")
    c = PGATModel.load_config(Path(config) / stage_folder(stages[-1]))
    return {k: c[k] for k in ("bottleneck_channels", "bottleneck_size", "min_channels")}


def count(resolution: int, bottleneck_channels: int = 1024, batch: int = 1, **widths) -> dict:
    """Parameters and counted forward FLOPs of one stage (``widths``: `model_config`'s other keys)."""
    with torch.device("meta"):
        model = PGATModel(resolution=resolution, bottleneck_channels=bottleneck_channels, **widths).eval()
        reference = torch.empty(batch, 3, resolution, resolution)
        keypoints = torch.empty(batch, 18, 2)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(reference, keypoints)
    return {
        "resolution": resolution,
        "parameters": sum(p.numel() for p in model.parameters()),
        "forward_gflops": counter.get_total_flops() / 1e9,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable, device: torch.device, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):  # the first run also builds oneDNN's / cuDNN's kernel for the shape; best-of hides it
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.inference_mode()
def measure_peak(device: str = "cpu", dtype: torch.dtype = torch.float32) -> Dict:
    """The best FLOP/s this process gets from torch on ``device`` now, in ``dtype``: large 3x3 convolutions
    (NCHW and channels-last) and a GEMM."""
    dev = torch.device(device)
    results = {}
    g = torch.Generator().manual_seed(0)
    b = PEAK_BATCH[dev.type]
    for c, s in PEAK_CONVS:
        x = torch.randn(b, c, s, s, generator=g).to(dev, dtype)
        w = torch.randn(c, c, 3, 3, generator=g).to(dev, dtype)
        flops = 2 * b * c * c * 9 * s * s
        results[f"conv3x3 {c}ch {s}x{s} b{b}"] = flops / _best_seconds(lambda: F.conv2d(x, w, padding=1), dev) / 1e9
        xc, wc = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
        results[f"conv3x3 {c}ch {s}x{s} b{b} channels_last"] = flops / _best_seconds(lambda: F.conv2d(xc, wc, padding=1), dev) / 1e9
        del x, w, xc, wc
    n = PEAK_GEMM[dev.type]
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    results[f"gemm {n}^3"] = 2 * n**3 / _best_seconds(lambda: a @ a, dev) / 1e9
    best = max(results, key=results.get)
    return {"gflops_per_second": results[best], "best": best, "all": results, "load_average": os.getloadavg()}


def check_precision(precision: str, device: str) -> None:
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if precision != "fp32" and dev.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise SystemExit(
            f"--precision {precision}: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 in oneDNN, "
            "so bf16 convolutions are emulated, hundreds of times slower than fp32 (benchmarks/fast_path.py measures one); "
            "run fp32 here, bf16 on a GPU or a CPU with AVX512-BF16 / AMX"
        )
    if dev.type == "cuda" and precision != "fp32" and not torch.cuda.is_bf16_supported():
        raise SystemExit(f"--precision {precision}: {torch.cuda.get_device_name(dev)} does not support bf16")


def run_one(resolution: int, widths: dict, batch: int, repeats: int, fused: bool, device: str = "cpu", precision: str = "fp32") -> dict:
    """One stage and batch size in this process: peak, forward, peak, forward, ..., peak.

    Each forward is set against the higher of the two peaks measured right before and right after it, so that a
    change in a neighbour's load between the two is charged to the model, never credited to it.
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    model = PGATModel(resolution=resolution, **widths).eval()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = model.to(dev, dtype)
    if fused:
        model.fuse()
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    reference = (torch.rand(batch, 3, resolution, resolution) * 2 - 1).to(dev, dtype)
    keypoints = (torch.rand(batch, 18, 2) * (resolution - 1)).to(dev)
    flops = count(resolution, batch=batch, **widths)["forward_gflops"]
    peak_dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16-autocast" else nullcontext()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, loads, peaks = [], [], []
    with torch.inference_mode(), autocast:
        for _ in range(2):  # warm-up: oneDNN's kernels, and malloc's heap settling to the forward's sizes
            model(reference, keypoints)
        _sync(dev)
        peaks.append(measure_peak(device, peak_dtype))
        for _ in range(repeats):
            _sync(dev)
            t0 = time.perf_counter()
            model(reference, keypoints)
            _sync(dev)
            times.append(time.perf_counter() - t0)
            loads.append(os.getloadavg())
            peaks.append(measure_peak(device, peak_dtype))
    local_peaks = [max(peaks[i]["gflops_per_second"], peaks[i + 1]["gflops_per_second"]) for i in range(repeats)]
    ratios = [flops / t / p for t, p in zip(times, local_peaks)]
    best, median = min(times), sorted(times)[len(times) // 2]
    if dev.type == "cuda":
        memory = {"peak_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30, "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    else:
        memory = {"peak_memory_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak_memory_kind": "ru_maxrss"}
    return {
        "resolution": resolution, "batch": batch, **widths, "fused": fused, "device": device, "precision": precision,
        "threads": torch.get_num_threads(), "forward_gflops": flops,
        "seconds_best": best, "seconds_median": median, "seconds_all": times,
        "images_per_second": batch / median, "images_per_second_best": batch / best,
        "gflops_per_second_best": flops / best, "gflops_per_second_median": flops / median,
        "peak_gflops_per_second": max(p["gflops_per_second"] for p in peaks),
        # each forward against the peak around it; the best and the median of those ratios
        "utilisation": max(ratios), "utilisation_median": sorted(ratios)[len(ratios) // 2], "utilisation_all": ratios,
        **memory, "weights_gib": weights / 2**30,
        "peaks": peaks, "load_average": {"during": loads, "after": os.getloadavg()},
    }


def parse_batches(specs: List[str]) -> Dict[int, List[int]]:
    """``["64:1,4,8", "256:1"]`` -> ``{64: [1, 4, 8], 256: [1]}``."""
    out = {}
    for spec in specs:
        try:
            r, bs = spec.split(":")
            out[int(r)] = [int(b) for b in bs.split(",")]
        except ValueError:
            raise SystemExit(f"--batches: expected RESOLUTION:B1,B2,... (e.g. 64:1,4,8), got {spec!r}") from None
        if int(r) not in RESOLUTIONS:
            raise SystemExit(f"--batches: resolution must be one of {list(RESOLUTIONS)}, got {r}")
        if any(b < 1 for b in out[int(r)]):
            raise SystemExit(f"--batches: batch sizes must be positive, got {spec!r}")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bottleneck-channels", type=int, default=1024)
    parser.add_argument("--config", default=None, metavar="REPO", help="take the widths from this PGAT repository (overrides --bottleneck-channels)")
    parser.add_argument("--batches", nargs="*", default=None, help="RESOLUTION:B1,B2,... per stage (default: 64:1,4,8 128:1,4 256:1,2 512:1,2 1024:1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--precision", default="fp32", help=f"one of {list(PRECISIONS)}")
    parser.add_argument("--unfused", action="store_true", help="time the training form (BatchNorm layers) instead of PGATModel.fuse()")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, all cores)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # RESOLUTION:BATCH, run in this process (a child)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    check_precision(args.precision, args.device)
    widths = model_config(args.bottleneck_channels, args.config)
    if args.one:
        r, b = (int(v) for v in args.one.split(":"))
        print(json.dumps(run_one(r, widths, b, args.repeats, not args.unfused, args.device, args.precision)))
        return

    batches = parse_batches(args.batches) if args.batches else DEFAULT_BATCHES
    result = {
        "machine": machine(args.device),
        **widths,
        "config": args.config,
        "device": args.device,
        "precision": args.precision,
        "fused": not args.unfused,
        "stages": [count(r, **widths) for r in RESOLUTIONS],
        "runs": [],
    }
    same = ("bottleneck_channels", "min_channels", "fused", "device", "precision")
    if args.out and Path(args.out).exists():  # runs of other stages / batch sizes from an earlier call are kept
        earlier = json.loads(Path(args.out).read_text())
        if all(earlier.get(k) == result[k] for k in same):
            result["runs"] = [r for r in earlier.get("runs", []) if r["batch"] not in batches.get(r["resolution"], [])]
    for s in result["stages"]:
        print(f"{s['resolution']:>5}²  {s['parameters'] / 1e6:8.2f} M params  {s['forward_gflops']:9.2f} GFLOPs", flush=True)
    for r, bs in batches.items():
        for b in bs:
            cmd = [sys.executable, __file__, "--one", f"{r}:{b}", "--bottleneck-channels", str(args.bottleneck_channels),
                   "--repeats", str(args.repeats), "--device", args.device, "--precision", args.precision]
            cmd += (["--config", args.config] if args.config else []) + (["--unfused"] if args.unfused else [])
            cmd += ["--threads", str(args.threads)] if args.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            result["runs"] = sorted(result["runs"] + [run], key=lambda q: (q["resolution"], q["batch"]))
            print(
                f"{r:>5}² batch {b:>2}: {run['seconds_best'] * 1000:9.1f} ms best, {run['seconds_median'] * 1000:9.1f} ms median, "
                f"{run['images_per_second']:7.2f} img/s, {run['gflops_per_second_best']:8.1f} GFLOP/s, "
                f"{run['utilisation']:.0%} of the peak around it (median {run['utilisation_median']:.0%}; peaks "
                f"{[round(q['gflops_per_second']) for q in run['peaks']]}), memory {run['peak_memory_gib']:.2f} GiB, "
                f"load {run['load_average']['after'][0]:.1f}",
                flush=True,
            )
            if args.out:  # written after every run: a long benchmark interrupted keeps what it measured
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
