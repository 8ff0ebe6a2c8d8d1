"""Each step of the fast inference path measured alone, against the same model without it, in one process.

The options, each compared with its baseline in interleaved rounds (A, B, A, B, ...: the best of each side and the
median of the paired ratios), so that a neighbour's load hits both sides alike; the conv/GEMM peak of
``model_cost.measure_peak`` is measured before the first option and after each, and the load average is recorded.
Unless said otherwise the baseline is what the pipelines run, ``PGATModel.fuse()`` with its defaults:

- ``fuse``: `PGATModel.fuse(channels_last=False)` (BatchNorm folded into the convolutions, in-place LeakyReLU) vs
  the eval-mode model, both NCHW;
- ``reuse_memory``: ``fuse()`` in a process that keeps and reuses freed memory (`pgat.cpu_memory`, what ``fuse()``
  sets up on the CPU) vs one with malloc's defaults (``PGAT_REUSE_CPU_MEMORY=0``), each in its own processes, taking
  turns, since the setting is process-wide; this script's own process has it, like every pipeline;
- ``channels_last``: ``fuse()`` (its default: channels-last weights and features) vs ``fuse(channels_last=False)``;
- ``threads_1``: one intra-op thread vs the default (all cores);
- ``no_onednn``: ``torch.backends.mkldnn`` disabled (ATen's own convolution) vs enabled;
- ``no_concat``: decoder inputs written straight into one buffer (the up-sampled features and the skip,
  no ``torch.cat`` copies) vs ``torch.cat``;
- ``bf16_autocast``: ``torch.autocast(dtype=torch.bfloat16)`` vs fp32, recorded with whether oneDNN has native
  bf16 on this CPU; without it (emulated, hundreds of times slower) on one 3x3 convolution instead of the model;
- ``bf16_weights``: the fused model cast to bfloat16 (weights and input; what
  ``PGATPipeline.from_pretrained(..., torch_dtype=torch.bfloat16)`` runs) vs fp32, only where oneDNN has native bf16;
- ``compile``: ``fuse(compile=True)`` (``torch.compile`` of `PGATModel.encode` and `decode`) vs eager, with the
  compile time;
- ``encode_once``: ``--poses`` poses of one reference, one at a time: `PGATModel.encode` once, then
  `PGATModel.decode` per pose, vs a whole forward per pose (what `PGATPipeline` and `PGATVideoPipeline` do for one
  reference on a CPU, where they decode one pose per pass);
- ``encode_once_batched``: the same poses in one batch: `encode` once + one batched `decode` (the encoded
  reference broadcast to the batch) vs one batched forward of the repeated reference (the pipelines on a GPU).

    python benchmarks/fast_path.py --out benchmarks/results/fast-path-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

import torch
import torch.nn.functional as F

from model_cost import count, machine, measure_peak  # benchmarks/ is on sys.path when run as a script
from pgat import PGATModel
from pgat.cpu_memory import ENV as REUSE_ENV


def forward_without_concat(model: PGATModel, reference: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """A fused model's forward where each decoder input is one buffer that the encoder block's activation (the
    skip) and the nearest up-sampling write into directly, instead of ``torch.cat`` copying both."""
    sizes = model._sizes()
    b = reference.shape[0]
    layout = torch.channels_last if model._channels_last else torch.contiguous_format
    x = model.from_rgb(reference.contiguous(memory_format=layout))
    buffers = {}
    for s in reversed(sizes):
        block = model.encoder[f"b{s}"]
        if s == sizes[0]:
            x = block(x)
            continue
        up = model._channels(s // 2)
        y = block.conv2(block.act(block.conv1(x)))
        buffers[s] = torch.empty(b, up + y.shape[1], s, s, dtype=y.dtype, memory_format=layout)
        skip = buffers[s][:, up:]
        torch._C._nn.leaky_relu(y, block.act.negative_slope, out=skip)
        x = F.avg_pool2d(skip, 2)
    pose = model.pose_maps(keypoints.float()).to(x.dtype).contiguous(memory_format=layout)
    x = model.decoder[f"b{sizes[0]}"](torch.cat([x, pose], dim=1))
    for s in sizes[1:]:
        buf, c, h = buffers.pop(s), x.shape[1], s // 2
        buf[:, :c].view(b, c, h, 2, h, 2).copy_(x[:, :, :, None, :, None].expand(b, c, h, 2, h, 2))
        x = model.decoder[f"b{s}"](buf)
    return torch.tanh(model.to_rgb(x)).contiguous()


def compare(name: str, baseline: Callable, option: Callable, rounds: int, flops: float) -> Dict:
    with torch.inference_mode():
        a, b = baseline(), option()  # warm-up, and the two must agree
        err = (a.float() - b.float()).abs().max().item()
        times_a, times_b = [], []
        for _ in range(rounds):
            for fn, times in ((baseline, times_a), (option, times_b)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    return summary(name, times_a, times_b, flops, err)


def summary(name: str, times_a, times_b, flops: float, err: float, where: str = "") -> Dict:
    """The record of one option: best times and speed-up, and the median of the paired ratios (each round's pair ran
    back to back, so their ratio follows a drifting load better than the bests); printed as a line."""
    best_a, best_b = min(times_a), min(times_b)
    paired = sorted(ta / tb for ta, tb in zip(times_a, times_b))[len(times_a) // 2]
    out = {
        "option": name, "baseline_seconds": best_a, "option_seconds": best_b, "speedup": best_a / best_b,
        "speedup_paired_median": paired, "baseline_seconds_all": times_a, "option_seconds_all": times_b,
        "baseline_gflops_per_second": flops / best_a, "option_gflops_per_second": flops / best_b,
        "max_abs_difference": err, "load_average": os.getloadavg(),
    }
    print(
        f"  {name:14s} {best_a * 1000:9.1f} ms -> {best_b * 1000:9.1f} ms  x{out['speedup']:.3f} best, x{paired:.3f} paired median "
        f"(max |diff| {err:.1e}, load {out['load_average'][0]:.1f}{where})",
        flush=True,
    )
    return out


def forward_in_child(resolution: int, bottleneck_channels: int, repeats: int, out: str) -> None:
    """(A child process) the fused model's best forward time of ``repeats`` after one warm-up, printed as JSON; the
    image saved to ``out`` (.npy). Process-wide settings, such as ``PGAT_REUSE_CPU_MEMORY``, come from the
    environment."""
    import numpy as np

    from pgat.cpu_memory import is_reusing_freed_memory

    torch.manual_seed(0)
    model = PGATModel(resolution=resolution, bottleneck_channels=bottleneck_channels).eval().fuse()
    x = torch.rand(1, 3, resolution, resolution) * 2 - 1
    k = torch.rand(1, 18, 2) * (resolution - 1)
    times = []
    with torch.inference_mode():
        image = model(x, k).image
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x, k)
            times.append(time.perf_counter() - t0)
    np.save(out, image.numpy())
    print(json.dumps({"seconds": min(times), "reusing_freed_memory": is_reusing_freed_memory()}))


def compare_processes(name: str, resolution: int, bottleneck_channels: int, env_a: Dict, env_b: Dict, rounds: int, flops: float) -> Dict:
    """`compare` for a process-wide setting: each side in its own processes (A, B, A, B, ...), each the best of 3."""
    import numpy as np

    times = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for side, env in (("a", env_a), ("b", env_b)):
                cmd = [sys.executable, __file__, "--child-forward", str(resolution), "--bottleneck-channels", str(bottleneck_channels),
                       "--out", str(Path(tmp) / f"{side}.npy")]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr[-3000:])
                times[side].append(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
        err = float(np.abs(np.load(Path(tmp) / "a.npy") - np.load(Path(tmp) / "b.npy")).max())
    return {**summary(name, times["a"], times["b"], flops, err, "; separate processes"), "baseline_env": env_a, "option_env": env_b}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bottleneck-channels", type=int, default=1024)
    p.add_argument("--resolutions", type=int, nargs="*", default=[128, 512])
    p.add_argument("--options", default="fuse,reuse_memory,channels_last,threads_1,no_onednn,no_concat,bf16_autocast,bf16_weights,compile,encode_once,encode_once_batched")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--poses", type=int, default=8, help="poses per reference for encode_once")
    p.add_argument("--out", default=None)
    p.add_argument("--child-forward", type=int, default=None, help=argparse.SUPPRESS)  # RESOLUTION: forward_in_child
    args = p.parse_args()
    if args.child_forward:
        forward_in_child(args.child_forward, args.bottleneck_channels, 3, args.out)
        return
    options = args.options.split(",")

    # stages measured by an earlier run (e.g. other options at another resolution) are kept
    previous = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
    result = {"machine": machine(), "bottleneck_channels": args.bottleneck_channels, "stages": previous.get("stages", [])}
    for r in args.resolutions:
        torch.manual_seed(0)
        plain = PGATModel(resolution=r, bottleneck_channels=args.bottleneck_channels).eval()

        def copy(**fuse_kwargs):
            model = PGATModel.from_config(plain.config).eval()
            model.load_state_dict(plain.state_dict())
            return model.fuse(**fuse_kwargs)

        fused = copy()  # what the pipelines run: fuse() with its defaults (channels-last)
        nchw = copy(channels_last=False)
        x = torch.rand(1, 3, r, r) * 2 - 1
        k = torch.rand(1, 18, 2) * (r - 1)
        flops = count(r, args.bottleneck_channels)["forward_gflops"]
        base = lambda: fused(x, k).image  # noqa: E731
        print(f"{r}² ({flops:.1f} GFLOPs per image)", flush=True)
        # the peak before the first option and after each one
        stage = {"resolution": r, "forward_gflops": flops, "peaks": [measure_peak()], "results": []}
        print(f"  peak {stage['peaks'][0]['gflops_per_second']:.1f} GFLOP/s ({stage['peaks'][0]['best']})", flush=True)
        for name in options:
            if name == "fuse":  # the folding alone, both in NCHW
                res = compare(name, lambda: plain(x, k).image, lambda: nchw(x, k).image, args.rounds, flops)
            elif name == "reuse_memory":  # process-wide: one process without it, one with it, in turns
                res = compare_processes(name, r, args.bottleneck_channels, {REUSE_ENV: "0"}, {REUSE_ENV: "1"}, args.rounds, flops)
            elif name == "channels_last":
                res = compare(name, lambda: nchw(x, k).image, base, args.rounds, flops)
            elif name == "threads_1":
                n = torch.get_num_threads()

                def one_thread():
                    torch.set_num_threads(1)
                    try:
                        return fused(x, k).image
                    finally:
                        torch.set_num_threads(n)

                res = compare(name, base, one_thread, args.rounds, flops)
            elif name == "no_onednn":
                def aten_conv():
                    with torch.backends.mkldnn.flags(enabled=False):
                        return fused(x, k).image

                res = compare(name, base, aten_conv, args.rounds, flops)
            elif name == "no_concat":
                res = compare(name, base, lambda: forward_without_concat(fused, x, k), args.rounds, flops)
            elif name == "bf16_autocast":
                def bf16():
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return fused(x, k).image

                if result["machine"]["onednn_bf16"]:
                    res = compare(name, base, bf16, args.rounds, flops)
                else:
                    # emulated bf16 runs a few hundred times slower: one 3x3 convolution says so in seconds,
                    # where the whole model would take many minutes
                    xs, ws = torch.randn(1, 256, 64, 64), torch.randn(256, 256, 3, 3)

                    def conv_bf16():
                        with torch.autocast("cpu", dtype=torch.bfloat16):
                            return F.conv2d(xs, ws, padding=1)

                    res = compare(name, lambda: F.conv2d(xs, ws, padding=1), conv_bf16, 1, 2 * 256 * 256 * 9 * 64 * 64 / 1e9)
                    res["measured_on"] = "one 3x3 convolution, 256 channels at 64x64 (the model is not run in emulated bf16)"
                res["onednn_native_bf16"] = result["machine"]["onednn_bf16"]
            elif name == "bf16_weights":
                if not result["machine"]["onednn_bf16"]:
                    print(f"  {name:14s} skipped: no native bf16 on this CPU", flush=True)
                    continue
                half = copy()
                half.to(torch.bfloat16)  # what PGATPipeline.from_pretrained(..., torch_dtype=torch.bfloat16) runs
                xh = x.to(torch.bfloat16)
                res = compare(name, base, lambda: half(xh, k).image, args.rounds, flops)
                del half
            elif name == "compile":
                compiled = copy(compile=True)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    compiled(x, k)
                compile_seconds = time.perf_counter() - t0
                res = compare(name, base, lambda: compiled(x, k).image, args.rounds, flops)
                res["compile_seconds"] = compile_seconds
                print(f"  {'':14s} compile + first call {compile_seconds:.1f} s", flush=True)
                del compiled
                torch._dynamo.reset()
            elif name == "encode_once":
                n = args.poses
                ks = torch.rand(n, 18, 2) * (r - 1)

                def each_pose():
                    return torch.cat([fused(x, ks[i : i + 1]).image for i in range(n)])

                def encoded_once():
                    features = fused.encode(x)
                    return torch.cat([fused.decode(features, ks[i : i + 1]) for i in range(n)])

                res = compare(name, each_pose, encoded_once, args.rounds, n * flops)
                res["poses"] = n
            elif name == "encode_once_batched":
                n = args.poses
                xs = x.expand(n, -1, -1, -1).contiguous()
                ks = torch.rand(n, 18, 2) * (r - 1)
                res = compare(name, lambda: fused(xs, ks).image, lambda: fused.decode(fused.encode(x), ks), args.rounds, n * flops)
                res["poses"] = n
            else:
                raise SystemExit(f"--options: unknown option {name!r}")
            stage["results"].append(res)
            stage["peaks"].append(measure_peak())
            result["stages"] = sorted([s for s in result["stages"] if s["resolution"] != r] + [stage], key=lambda s: s["resolution"])
            if args.out:  # written after every option: an interrupted run keeps what it measured
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"  peaks {[round(q['gflops_per_second'], 1) for q in stage['peaks']]} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
