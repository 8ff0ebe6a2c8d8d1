"""The paper's network against the pose-aware options (DESIGN.md §1b), at equal CPU time, one test split.

    python train/pose_aware.py --config pose-aware-128 --output_dir runs/pose-aware-128 --report docs/pose-aware.md

Each variant is one ``train/progressive.py`` run of the same preset, differing only in the `PGATModel` options:

| variant           | reference pose at the bottleneck | pose maps at every scale | part-warped skips           |
|-------------------|----------------------------------|--------------------------|-----------------------------|
| Paper             | no                               | no                       | no                          |
| Pose maps         | yes                              | yes                      | no                          |
| Warped skips      | yes                              | yes                      | yes, beside the unwarped    |
| Warped (replace)  | yes                              | yes                      | yes, instead of the unwarped |
| Warped + residual | yes                              | yes                      | yes, beside the unwarped; the output added to the part-warped reference (`warp_residual`) |

The preset stops every run when its training steps have used the same CPU time (``--max_cpu_minutes``); the runs
go ``--jobs`` at a time with one thread each, so each has one core's worth of time whatever the others do. The
driver can be stopped at any time: a finished variant (its model card is written last) is skipped, an unfinished
one resumes from its latest checkpoint. Each is evaluated with ``pgat.evaluation`` on the same SynthHumans test
pairs, with the copy-reference and part-warp baselines and PCKh; the report holds the table, the validation curve
against CPU time, and a sample strip (reference | target pose | part-warp | each network | ground truth).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ablation import parse_variants, sample_strip  # noqa: E402  (the same strip: reference | pose | part-warp | networks | truth)

VARIANTS: Dict[str, List[str]] = {
    "Paper": [],
    "Pose maps": ["--reference_pose", "--pose_every_scale"],
    "Warped skips": ["--reference_pose", "--pose_every_scale", "--warp_skips"],
    "Warped (replace)": ["--reference_pose", "--pose_every_scale", "--warp_skips", "--no_warp_keep_unwarped"],
    "Warped + residual": ["--reference_pose", "--pose_every_scale", "--warp_skips", "--warp_residual"],
}
NOTES_MARKER = "<!-- findings: kept when the report is regenerated -->"


def slug(name: str) -> str:
    return {"Paper": "paper", "Pose maps": "pose-maps", "Warped skips": "warp", "Warped (replace)": "warp-replace", "Warped + residual": "warp-residual"}[name]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="pose-aware-128", help="train/progressive.py preset shared by all variants")
    p.add_argument("--output_dir", default="runs/pose-aware-128")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--jobs", type=int, default=2, help="variants trained at once, one thread each (default: this machine's 2 cores)")
    p.add_argument("--num_pairs", type=int, default=200, help="test pairs evaluated per variant")
    p.add_argument("--num_samples", type=int, default=5, help="test pairs in the sample strip")
    p.add_argument("--report", default="docs/pose-aware.md", help="markdown report (the strip and the curve go beside it)")
    p.add_argument("--extra", default="", help="more train/progressive.py flags for every variant, one string")
    return p.parse_args(argv)


def train_variants(names: List[str], args, variants: Dict[str, List[str]] = VARIANTS, slug=slug, late=None) -> Dict[str, Path]:
    """Train each variant (flags of ``variants``, then ``--extra``, then those of ``late`` if given) into
    ``output_dir/slug(name)``, ``--jobs`` at a time, one thread each."""
    repos, running = {}, []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in names:
        out = Path(args.output_dir) / slug(name)
        repos[name] = out
        if (out / "README.md").exists():  # the card is written last
            continue
        cmd = [sys.executable, str(HERE / "progressive.py"), "--config", args.config, "--output_dir", str(out),
               "--resume_from_checkpoint", "latest", *variants[name], *args.extra.split(), *(late or {}).get(name, [])]
        print("+", " ".join(cmd), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        running.append(subprocess.Popen(cmd, env=env, stdout=open(out.with_suffix(".log"), "a"), stderr=subprocess.STDOUT))
        while len(running) >= args.jobs:
            running.pop(0).wait()
    for proc in running:
        proc.wait()
    failed = [n for n, r in repos.items() if not (r / "README.md").exists()]
    if failed:
        raise SystemExit(f"training did not finish for {failed}; see their .log files in {args.output_dir}")
    return repos


def evaluate_variant(name: str, repo: Path, args) -> Dict:
    from pgat.evaluation import evaluate_model, evaluation_pairs, load_stage_model

    path = repo / "evaluation.json"
    if path.exists():
        return json.loads(path.read_text())
    model = load_stage_model(str(repo))
    dataset = evaluation_pairs("synthhumans", model.config.resolution, args.num_pairs, seed=0)
    results = evaluate_model(model, dataset, num_pairs=args.num_pairs, progress=False)
    timings = [json.loads(line) for line in (repo / "timings.jsonl").read_text().splitlines()]
    steps = sum(t["steps"] for t in timings)
    record = {"variant": name, "resolution": model.config.resolution, "steps": steps,
              "train_cpu_seconds": timings[-1].get("cpu_seconds_total"),
              "train_seconds": timings[-1].get("train_seconds_total", sum(t["seconds"] for t in timings)),
              "parameters": sum(p.numel() for p in model.parameters()), **results}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def curve(repos: Dict[str, Path], records: Dict[str, Dict], path: Path, clock: str = "train_cpu_seconds") -> None:
    """Validation SSIM and local-SSIM (the training script's 16 pairs) against training CPU minutes
    (``clock="train_seconds"``: wall-clock minutes of the training steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, repo in repos.items():
        rows = [json.loads(line) for line in (repo / "validation.jsonl").read_text().splitlines()]
        rec = records[name]
        # runs that predate the per-record CPU time: the CPU time of a step is constant for one network
        per_step = rec[clock] / rec["steps"]
        minutes = [r.get(clock, r["step"] * per_step) / 60 for r in rows]
        for ax, key in zip(axes, ("ssim", "local_ssim")):
            ax.plot(minutes, [r[key] for r in rows], marker="o", ms=3, label=name)
    for ax, key in zip(axes, ("SSIM", "local-SSIM")):
        ax.set_xlabel("training CPU minutes" if clock == "train_cpu_seconds" else "training minutes (wall clock)")
        ax.set_ylabel(f"validation {key} (16 pairs)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gap(value: float, base: float) -> str:
    return f"{(value - base) / (1 - base):+.2f}"


def report(records: Dict[str, Dict], strip: str, curve_png: str, args) -> str:
    first = next(iter(records.values()))
    copy, warp = first["copy_reference"], first["part_warp"]
    truth = first.get("ground_truth", {})
    lines = [
        "# The paper's network and the pose-aware options, at equal CPU time",
        "",
        f"Made by `python train/pose_aware.py --config {args.config}` (preset `train/configs/{args.config}.yaml`"
        + (f", extra flags `{args.extra}`" if args.extra else "") + "). "
        f"Every variant trains at {first['resolution']}² from scratch until its training steps have used the same CPU "
        f"time, and is evaluated on the same {first['model']['num_pairs']} SynthHumans test pairs (identities and poses "
        "never seen in training, seed 0). Gap closed: (network − baseline) / (1 − baseline).",
        "",
        "| network | steps | CPU min | SSIM | MS-SSIM | local-SSIM | PCKh | SSIM gap closed over copy | local-SSIM gap over copy | local-SSIM gap over part-warp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in records.items():
        m = r["model"]
        lines.append(
            f"| {name} | {r['steps']} | {r['train_cpu_seconds'] / 60:.1f} | {m['ssim']:.4f} | {m['ms_ssim']:.4f} | {m['local_ssim']:.4f} | "
            f"{m['pckh']:.3f} | {_gap(m['ssim'], copy['ssim'])} | {_gap(m['local_ssim'], copy['local_ssim'])} | "
            f"{_gap(m['local_ssim'], warp['local_ssim'])} |"
        )
    for label, b in (("copy-reference baseline", copy), ("part-warp baseline (no training)", warp)):
        lines.append(f"| {label} | | | {b['ssim']:.4f} | {b['ms_ssim']:.4f} | {b['local_ssim']:.4f} | {b['pckh']:.3f} | | | |")
    if "pckh" in truth:
        lines.append(f"| ground truth (the pose estimator's ceiling) | | | | | | {truth['pckh']:.3f} | | | |")
    lines += [
        "",
        "CPU minutes: the process CPU time of the training steps (`timings.jsonl`, one thread per run; validation and "
        "samples not counted). PCKh: BlazePose run on every image, a keypoint correct within half the head segment "
        "of the target keypoint (`pgat.metrics.pckh`).",
        "",
        *figures(records, strip, curve_png, "CPU time"),
    ]
    return "\n".join(lines)


def figures(records: Dict[str, Dict], strip: str, curve_png: str, clock: str) -> List[str]:
    """The report's last lines: the validation curves, then the sample strip."""
    return [
        f"Validation on the training script's 16 pairs against {clock}:",
        "",
        f"![validation curves]({curve_png})",
        "",
        f"Columns: reference | target pose | part-warp baseline | {' | '.join(records)} | ground truth.",
        "",
        f"![sample strip]({strip})",
        "",
    ]


def write_report(repos: Dict[str, Path], records: Dict[str, Dict], args, make_report, json_name: str, clock: str = "train_cpu_seconds") -> None:
    """The sample strip, the curves, ``output_dir/json_name`` and the markdown report (``make_report(records, strip,
    curve, args)``), keeping the hand-written findings below `NOTES_MARKER` of an earlier report."""
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    strip_path = report_path.with_name(report_path.stem + "-samples.png")
    curve_path = report_path.with_name(report_path.stem + "-curves.png")
    sample_strip(repos, args.num_samples, next(iter(records.values()))["resolution"]).save(strip_path)
    curve(repos, records, curve_path, clock=clock)
    (Path(args.output_dir) / json_name).write_text(json.dumps(records, indent=2) + "\n")
    notes = report_path.read_text().partition(NOTES_MARKER)[2] if report_path.exists() else ""
    report_path.write_text(make_report(records, strip_path.name, curve_path.name, args) + "\n" + NOTES_MARKER + notes)
    print(report_path.read_text())


def main(args) -> None:
    names = parse_variants(args.variants, VARIANTS)
    repos = train_variants(names, args)
    records = {name: evaluate_variant(name, repo, args) for name, repo in repos.items()}
    write_report(repos, records, args, report, "pose-aware.json")


if __name__ == "__main__":
    main(parse_args())
