"""Step recipes at equal wall-clock time: does a cheaper training step buy quality, or only speed?

    python train/recipes.py --config recipes-128 --output_dir runs/recipes-128 --report docs/training-speed.md
    python train/recipes.py --config recipes-256 --output_dir runs/recipes-256 --report docs/training-speed-256.md \\
        --variants "fp32 (main),Fast step"

Each variant is one ``train/progressive.py`` run of the same preset (the embedded model's recipe and network),
differing only in how a step is computed:

| variant              | precision | layout        | global perceptual term |
|----------------------|-----------|---------------|------------------------|
| fp32 (main)          | fp32      | NCHW          | at the level's side    |
| bf16 + channels-last | bf16      | channels-last | at the level's side    |
| Fast step            | bf16      | channels-last | at most 128² (``--perceptual_resolution 128``) |

The preset stops every run when its training steps have taken the same wall-clock time (``--max_train_minutes``:
data waits included, validation and checkpoints not). The runs go two at a time with one thread each, so each
has one core whatever the other does, and neither uses DataLoader workers (a worker would take the other run's
core; ``benchmarks/train_step.py`` measures what workers add on their own). The driver, the evaluation on
SynthHumans test pairs and the curves are those of ``train/pose_aware.py``; stopped, it resumes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ablation import parse_variants  # noqa: E402
from pose_aware import evaluate_variant, figures, train_variants, write_report  # noqa: E402

VARIANTS: Dict[str, List[str]] = {
    "fp32 (main)": [],
    "bf16 + channels-last": ["--mixed_precision", "bf16", "--channels_last"],
    "Fast step": ["--mixed_precision", "bf16", "--channels_last", "--perceptual_resolution", "128"],
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes-128", help="train/progressive.py preset shared by all variants")
    p.add_argument("--output_dir", default="runs/recipes-128")
    p.add_argument("--variants", default="fp32 (main),bf16 + channels-last", help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--jobs", type=int, default=2, help="variants trained at once, one thread each")
    p.add_argument("--num_pairs", type=int, default=200, help="test pairs evaluated per variant")
    p.add_argument("--num_samples", type=int, default=5, help="test pairs in the sample strip")
    p.add_argument("--report", default="docs/training-speed.md")
    p.add_argument("--extra", default="", help="more train/progressive.py flags for every variant, one string")
    return p.parse_args(argv)


def report(records: Dict[str, Dict], strip: str, curve_png: str, args) -> str:
    first = next(iter(records.values()))
    base = first["model"]
    lines = [
        f"# Step recipes at equal wall-clock time, {first['resolution']}²",
        "",
        f"Made by `python train/recipes.py --config {args.config} --variants \"{args.variants}\"` (preset "
        f"`train/configs/{args.config}.yaml`" + (f", extra flags `{args.extra}`" if args.extra else "") + "). Every variant "
        "trains until its training steps have taken the same wall-clock time, one thread each, two at a time, and is "
        f"evaluated on the same {base['num_pairs']} SynthHumans test pairs (seed 0).",
        "",
        "| recipe | steps | train minutes (wall) | images/s | SSIM | MS-SSIM | local-SSIM | PCKh |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in records.items():
        m = r["model"]
        lines.append(
            f"| {name} | {r['steps']} | {r['train_seconds'] / 60:.1f} | {r['images'] / r['train_seconds']:.2f} | {m['ssim']:.4f} | "
            f"{m['ms_ssim']:.4f} | {m['local_ssim']:.4f} | {m['pckh']:.3f} |"
        )
    copy, warp = first["copy_reference"], first["part_warp"]
    for label, b in (("copy-reference baseline", copy), ("part-warp baseline (no training)", warp)):
        lines.append(f"| {label} | | | | {b['ssim']:.4f} | {b['ms_ssim']:.4f} | {b['local_ssim']:.4f} | {b['pckh']:.3f} |")
    lines += [
        "",
        "Images/s: training images over the wall-clock time of the training steps, on one core each (so about half of "
        "a 2-core run's rate).",
        "",
        *figures(records, strip, curve_png, "wall-clock training time"),
    ]
    return "\n".join(lines)


def images_trained(repo: Path) -> int:
    """Training images the run saw: steps × batch size of each level (``training_config.json``'s schedule)."""
    schedule = json.loads((repo / "training_config.json").read_text())["schedule"]
    batch = {level["resolution"]: level["batch_size"] for level in schedule}
    timings = [json.loads(line) for line in (repo / "timings.jsonl").read_text().splitlines()]
    return sum(t["steps"] * batch[t["resolution"]] for t in timings)


def main(args) -> None:
    names = parse_variants(args.variants, VARIANTS)
    repos = train_variants(names, args, variants=VARIANTS, slug=slug)
    records = {name: {**evaluate_variant(name, repo, args), "images": images_trained(repo)} for name, repo in repos.items()}
    write_report(repos, records, args, report, "recipes.json", clock="train_seconds")


if __name__ == "__main__":
    main(parse_args())
