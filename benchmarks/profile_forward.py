"""Where a forward pass spends its time, per stage: ``torch.profiler`` operator self-times, grouped.

Utilisation (``model_cost.py``) splits into two factors: how fast the convolutions themselves run against the
peak, and how much of the time goes to everything else (concatenation copies, up-sampling, pooling, activations,
BatchNorm, allocation). This script measures both for the fused model (what the pipelines run) and, with
``--unfused``, the model with its BatchNorm layers, at batch 1 after one warm-up pass.

    python benchmarks/profile_forward.py --out benchmarks/results/profile-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from model_cost import count, machine, measure_peak  # benchmarks/ is on sys.path when run as a script
from pgat import PGATModel
from pgat.stages import RESOLUTIONS

# aten operator -> the group it is reported under
GROUPS = {
    "aten::mkldnn_convolution": "convolution", "aten::_convolution": "convolution", "aten::convolution": "convolution",
    "aten::conv2d": "convolution", "aten::thnn_conv2d": "convolution", "aten::_slow_conv2d_forward": "convolution",
    "aten::cat": "concatenation", "aten::upsample_nearest2d": "up-sampling", "aten::avg_pool2d": "pooling",
    "aten::leaky_relu": "activation", "aten::leaky_relu_": "activation", "aten::tanh": "activation",
    "aten::batch_norm": "batchnorm", "aten::_batch_norm_impl_index": "batchnorm", "aten::native_batch_norm": "batchnorm",
    "aten::_native_batch_norm_legit_no_training": "batchnorm", "aten::copy_": "copies", "aten::contiguous": "copies",
    "aten::clone": "copies", "aten::empty": "allocation", "aten::empty_strided": "allocation", "aten::resize_": "allocation",
}


def profile_stage(resolution: int, bottleneck_channels: int, fused: bool) -> dict:
    torch.manual_seed(0)
    model = PGATModel(resolution=resolution, bottleneck_channels=bottleneck_channels).eval()
    if fused:
        model.fuse()
    x = torch.rand(1, 3, resolution, resolution) * 2 - 1
    k = torch.rand(1, 18, 2) * (resolution - 1)
    with torch.inference_mode():
        model(x, k)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x, k)
    groups = defaultdict(float)
    for event in prof.key_averages():
        groups[GROUPS.get(event.key, "other")] += event.self_cpu_time_total / 1e6
    total = sum(groups.values())
    flops = count(resolution, bottleneck_channels)["forward_gflops"]
    return {
        "resolution": resolution, "fused": fused, "seconds": total, "forward_gflops": flops,
        "seconds_by_group": dict(groups), "share_by_group": {g: t / total for g, t in groups.items()},
        "conv_gflops_per_second": flops / groups["convolution"], "load_average": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bottleneck-channels", type=int, default=1024)
    p.add_argument("--resolutions", type=int, nargs="*", default=list(RESOLUTIONS))
    p.add_argument("--unfused", action="store_true", help="also profile the model with its BatchNorm layers")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    result = {"machine": machine(), "bottleneck_channels": args.bottleneck_channels, "peaks": [measure_peak()], "stages": []}
    for r in args.resolutions:
        for fused in (True, False) if args.unfused else (True,):
            res = profile_stage(r, args.bottleneck_channels, fused)
            result["stages"].append(res)
            shares = ", ".join(f"{g} {s:.1%}" for g, s in sorted(res["share_by_group"].items(), key=lambda kv: -kv[1]))
            print(f"{r:>5}² {'fused' if fused else 'unfused'}: {res['seconds']:.2f} s, convolutions at {res['conv_gflops_per_second']:.1f} GFLOP/s; {shares}", flush=True)
        result["peaks"].append(measure_peak())
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"peaks {[round(q['gflops_per_second'], 1) for q in result['peaks']]} GFLOP/s")


if __name__ == "__main__":
    main()
