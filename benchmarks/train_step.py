"""Training step time and peak memory per stage, through the real training script.

Each stage runs alone in a fresh process (``--stages R``; ``--no_local_discriminator`` so the level trains
with global + local perceptual loss, as every level but the last does), and reports its own peak resident memory
(``ru_maxrss``). The time is the median ``step_seconds`` of
``train_log.jsonl`` without the first step (warm-up) and the last (it also writes the stage's sample and
validation).

    python benchmarks/train_step.py --out benchmarks/results/train-step-cpu.json
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

REPO = Path(__file__).resolve().parents[1]
from model_cost import machine  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def run_stage(resolution: int, batch: int, bottleneck: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        # the child reports its own peak resident memory (ru_maxrss of RUSAGE_SELF) when it ends
        wrapper = (
            "import resource, runpy, sys\n"
            "script = sys.argv[1]; sys.argv = sys.argv[1:]\n"
            "try:\n    runpy.run_path(script, run_name='__main__')\n"
            "finally:\n    print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        )
        cmd = [
            sys.executable, "-c", wrapper, str(REPO / "train" / "progressive.py"), "--stages", str(resolution), "--steps_per_stage", str(steps),
            "--train_batch_size", str(batch), "--bottleneck_channels", str(bottleneck), "--no_local_discriminator",
            "--checkpointing_steps", "0", "--sample_steps", "0", "--num_validation_pairs", "1", "--synth_pairs", "64",
            "--perceptual_network", "vgg19", "--output_dir", tmp,
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        peak_kib = int(proc.stderr.rsplit("MAXRSS_KIB", 1)[1].split()[0])
        log = [json.loads(line) for line in (Path(tmp) / "train_log.jsonl").read_text().splitlines()]
    # the first step builds everything (oneDNN primitives, allocations) and the last one also writes the
    # end-of-stage sample and validation: neither is a training step's cost
    times = sorted(r["step_seconds"] for r in log[1:-1])
    per_step = times[len(times) // 2]
    return {
        "resolution": resolution, "batch_size": batch, "bottleneck_channels": bottleneck, "steps": steps,
        "seconds_per_step": per_step, "steps_per_second": 1 / per_step, "images_per_second": batch / per_step,
        "peak_rss_gib": peak_kib / 2**20, "process_wall_seconds": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the embedded model's width and batch sizes (train/configs/pgat-synth-256.yaml), then the paper-size model
    p.add_argument("--runs", default="64:8:128,128:4:128,256:2:128,64:1:1024,128:1:1024,256:1:1024,512:1:1024:6,1024:1:1024:5",
                   help="resolution:batch:bottleneck_channels[:steps], comma-separated")
    p.add_argument("--steps", type=int, default=12, help="steps per run unless the run names its own (at least 3)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    results = []
    for spec in args.runs.split(","):
        fields = [int(v) for v in spec.split(":")]
        if len(fields) not in (3, 4):
            raise SystemExit(f"--runs: expected resolution:batch:bottleneck_channels[:steps], got {spec!r}")
        r, b, c = fields[:3]
        steps = fields[3] if len(fields) == 4 else args.steps
        if steps < 3:  # the first step (warm-up) and the last (sample, validation) are not counted
            raise SystemExit(f"--runs / --steps: a run needs at least 3 steps, got {steps} for {spec!r}")
        res = run_stage(r, b, c, steps)
        results.append(res)
        print(f"{r:>5}² batch {b} width {c:>4}: {res['seconds_per_step']:.2f} s/step, peak RSS {res['peak_rss_gib']:.2f} GiB", flush=True)
    out = {"machine": {**machine(), "load_average": os.getloadavg()}, "results": results}
    if args.out and Path(args.out).exists():  # runs of other stages / widths from an earlier call are kept
        key = lambda r: (r["resolution"], r["batch_size"], r["bottleneck_channels"])  # noqa: E731
        new = {key(r) for r in results}
        earlier = [r for r in json.loads(Path(args.out).read_text()).get("results", []) if key(r) not in new]
        out["results"] = sorted(earlier + results, key=lambda r: (r["bottleneck_channels"], r["resolution"]))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
