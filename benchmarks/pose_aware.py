"""What the pose-aware options (DESIGN.md §1b) cost on top of the paper's network, at every stage.

For each stage, batch 1, fused inference form (what the pipelines run), in this process:

- the paper's network (every option off) and the pose-aware one (``reference_pose``, ``warp_skips``,
  ``pose_every_scale``; ``--replace`` for ``warp_keep_unwarped=False``): counted forward FLOPs (convolutions only;
  ``grid_sample`` and the part geometry are not counted by ``FlopCounterMode``) and the best / median time of
  ``--repeats`` forwards after two warm-ups;
- the warp alone: the part geometry (`pgat.parts.composite_grid`) and the ``grid_sample`` of the bottleneck and
  every skip, as the decoder does it, timed the same way; its share of the pose-aware forward;
- a convolution peak measured in the same run before and after the stage (`model_cost.measure_peak`), so that each
  forward's FLOP/s can be read as a fraction of what the machine did at that moment.

    python benchmarks/pose_aware.py --out benchmarks/results/pose-aware-cpu.json                 # paper size
    python benchmarks/pose_aware.py --bottleneck-channels 128 --out benchmarks/results/pose-aware-embedded-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from model_cost import machine, measure_peak  # benchmarks/ is on sys.path when run as a script

from pgat import PGATModel
from pgat.parts import warp
from pgat.stages import RESOLUTIONS

POSE_AWARE = dict(reference_pose=True, warp_skips=True, pose_every_scale=True)
# a standing person in a 256 square; scaled to each stage
_POSE_256 = torch.tensor(
    [[128, 44], [128, 76], [104, 78], [96, 116], [92, 152], [152, 78], [160, 116], [164, 152], [112, 148], [110, 196],
     [110, 240], [144, 148], [146, 196], [146, 240], [122, 38], [134, 38], [116, 42], [140, 42]], dtype=torch.float32)


def poses(resolution: int):
    scale = resolution / 256
    ref = (_POSE_256 + 0.5) * scale - 0.5
    # the target: the arms raised and the body shifted, a pose a warp has to move far
    tgt = ref.clone()
    tgt[[3, 4, 6, 7]] = tgt[[3, 4, 6, 7]] + torch.tensor([[-10.0, -40.0], [-4.0, -90.0], [10.0, -40.0], [4.0, -90.0]]) * scale
    tgt = tgt + torch.tensor([12.0, 4.0]) * scale
    return ref[None], tgt[None]


def _time(fn, repeats: int) -> List[float]:
    fn(), fn()  # warm-up: oneDNN's kernels, the allocator settling
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _flops(model: PGATModel, resolution: int, ref_kps, tgt_kps) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, resolution, resolution), tgt_kps, ref_kps)
    return counter.get_total_flops() / 1e9


def run_stage(resolution: int, bottleneck_channels: int, repeats: int, options: Dict[str, bool]) -> Dict:
    torch.manual_seed(0)
    ref_kps, tgt_kps = poses(resolution)
    reference = torch.rand(1, 3, resolution, resolution) * 2 - 1
    out = {"resolution": resolution, "bottleneck_channels": bottleneck_channels, "batch": 1, "options": options}
    peak_before = measure_peak()["gflops_per_second"]
    for name, opts in (("paper", {}), ("pose_aware", options)):
        model = PGATModel(resolution=resolution, bottleneck_channels=bottleneck_channels, **opts).eval()
        gflops = _flops(model, resolution, ref_kps, tgt_kps)
        model.fuse()
        with torch.inference_mode():
            times = _time(lambda: model(reference, tgt_kps, ref_kps), repeats)
            if name == "pose_aware":
                features = model.encode(reference)
                warp_times = _time(lambda: [warp(f, ref_kps, tgt_kps, resolution) for f in features.values()], repeats)
        out[name] = {"forward_gflops": gflops, "seconds_best": min(times), "seconds_median": sorted(times)[len(times) // 2], "seconds_all": times}
    out["warp"] = {"seconds_best": min(warp_times), "seconds_median": sorted(warp_times)[len(warp_times) // 2]}
    out["warp_share_of_pose_aware_forward"] = out["warp"]["seconds_median"] / out["pose_aware"]["seconds_median"]
    out["pose_aware_over_paper_time"] = out["pose_aware"]["seconds_median"] / out["paper"]["seconds_median"]
    out["pose_aware_over_paper_flops"] = out["pose_aware"]["forward_gflops"] / out["paper"]["forward_gflops"]
    peak = max(peak_before, measure_peak()["gflops_per_second"])
    out["peak_gflops_per_second"] = peak
    for name in ("paper", "pose_aware"):
        r = out[name]
        r["utilisation_median"] = r["forward_gflops"] / r["seconds_median"] / peak
    out["load_average"] = os.getloadavg()
    return out


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bottleneck-channels", type=int, default=1024, help="1024: the paper's size; 128: the embedded preset's")
    p.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--replace", action="store_true", help="warp_keep_unwarped=False: the warped skips replace the unwarped ones")
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args(argv)
    options = {**POSE_AWARE, "warp_keep_unwarped": not args.replace}
    runs = []
    for r in args.resolutions:
        run = run_stage(r, args.bottleneck_channels, args.repeats, options)
        runs.append(run)
        print(
            f"{r:>5}²  paper {run['paper']['seconds_median'] * 1e3:8.1f} ms  pose-aware {run['pose_aware']['seconds_median'] * 1e3:8.1f} ms "
            f"(x{run['pose_aware_over_paper_time']:.2f} time, x{run['pose_aware_over_paper_flops']:.2f} FLOPs)  "
            f"warp {run['warp']['seconds_median'] * 1e3:7.1f} ms = {run['warp_share_of_pose_aware_forward']:.1%} of the forward",
            flush=True,
        )
    result = {"benchmark": "pose_aware", "machine": machine(), "runs": runs}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
