"""What bf16 costs in quality, on a trained model: the embedded ``weights/pgat-synth-256`` in fp32 and in bf16.

Speed alone is measured by ``fast_path.py`` (``bf16_weights``, ``bf16_autocast``); this script says what the
faster path gives up. On ``--num-pairs`` SynthHumans test pairs (seed 0, as ``pgat evaluate``), the stage runs fused,
once in fp32 and once in bf16 (weights and input cast, i.e. ``PGATPipeline.from_pretrained(...,
torch_dtype=torch.bfloat16)``), and reports:

- the metrics of each against the ground truth (SSIM, MS-SSIM, local-SSIM), and their difference;
- how far the bf16 images are from the fp32 ones, in 8-bit levels (mean and max absolute difference, and the
  share of pixels that differ by more than 2 levels once both are written as PNG);
- the time of each pass over the pairs.

Needs a device with native bf16 (a GPU, or a CPU whose oneDNN has it); elsewhere bf16 is emulated and the script
says so and stops.

    python benchmarks/precision.py --out benchmarks/results/precision-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from model_cost import machine  # benchmarks/ is on sys.path when run as a script
from pgat.evaluation import evaluation_pairs, load_stage_model
from pgat.metrics import evaluate

REPO = Path(__file__).resolve().parents[1]


@torch.inference_mode()
def run(model, pairs, n: int, batch_size: int, dtype: torch.dtype):
    images, rows, counts, seconds = [], [], [], 0.0
    for start in range(0, n, batch_size):
        items = [pairs[i] for i in range(start, min(n, start + batch_size))]
        ref = torch.stack([it["reference"] for it in items])
        tgt = torch.stack([it["target"] for it in items])
        kps = torch.stack([it["target_keypoints"] for it in items])
        # a model that takes the reference person's own pose (the embedded one, DESIGN.md §1b) gets it, as in `pgat evaluate`
        extra = (torch.stack([it["reference_keypoints"] for it in items]),) if model.needs_reference_pose else ()
        t0 = time.perf_counter()
        pred = model(ref.to(dtype), kps, *extra).image.float().clamp(-1, 1)
        seconds += time.perf_counter() - t0
        images.append(pred)
        rows.append(evaluate(pred, tgt, kps, metrics=("ssim", "ms_ssim", "local_ssim")))
        counts.append(len(items))
    metrics = {k: sum(r[k] * c for r, c in zip(rows, counts)) / sum(counts) for k in rows[0]}
    return torch.cat(images), metrics, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "weights" / "pgat-synth-256"))
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--num-pairs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise SystemExit("this CPU has no native bf16 in oneDNN: bf16 here would be emulated, so the comparison says nothing")
    pairs = evaluation_pairs("synthhumans", args.resolution, args.num_pairs)
    n = min(args.num_pairs, len(pairs))
    fp32 = load_stage_model(args.model, args.resolution).fuse()
    bf16 = load_stage_model(args.model, args.resolution).to(torch.bfloat16).fuse()
    run(fp32, pairs, args.batch_size, args.batch_size, torch.float32)  # warm-up
    run(bf16, pairs, args.batch_size, args.batch_size, torch.bfloat16)
    img32, m32, s32 = run(fp32, pairs, n, args.batch_size, torch.float32)
    img16, m16, s16 = run(bf16, pairs, n, args.batch_size, torch.bfloat16)
    levels32 = torch.round((img32 + 1) * 127.5)  # as written to a PNG
    levels16 = torch.round((img16 + 1) * 127.5)
    diff = (levels32 - levels16).abs()
    result = {
        "machine": machine(), "model": os.path.relpath(args.model, REPO), "resolution": args.resolution, "num_pairs": n,
        "fp32": {**m32, "seconds": s32}, "bf16": {**m16, "seconds": s16},
        "metric_change": {k: m16[k] - m32[k] for k in m32},
        "png_levels_mean_abs_difference": diff.mean().item(), "png_levels_max_abs_difference": diff.max().item(),
        "share_of_values_off_by_more_than_2_levels": (diff > 2).float().mean().item(),
        "speedup": s32 / s16, "load_average": os.getloadavg(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
