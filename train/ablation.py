"""Table 1 of the paper on SynthHumans: the five variants and the pose-aware ones, at equal steps and at equal time.

    python train/ablation.py --config ablation-128 --output_dir runs/ablation --report docs/ablation.md

Each variant is one ``train/progressive.py`` run from the same preset, differing only in the Table 1 switches
and, for the pose-aware rows, in the network options of the embedded model (DESIGN.md §1b, docs/pose-aware.md):

| variant               | network    | progressive training | local perceptual loss | local discriminators |
|-----------------------|------------|----------------------|-----------------------|----------------------|
| Baseline              | the paper's | no                  | no                    | no                   |
| LPL                   | the paper's | no                  | yes                   | no                   |
| PT                    | the paper's | yes                 | no                    | no                   |
| PT+LPL                | the paper's | yes                 | yes                   | no                   |
| PT+LPL+LD             | the paper's | yes                 | yes (LD at the last)  | yes                  |
| Pose-aware LPL        | pose-aware | no                   | yes                   | no                   |
| Pose-aware PT+LPL     | pose-aware | yes                  | yes                   | no                   |
| Pose-aware PT+LPL+LD  | pose-aware | yes                  | yes (LD at the last)  | yes                  |

Two budgets (``--equal``), each a table of the report:

- **steps**: every variant takes the preset's optimizer steps. "No progressive training" trains the last resolution
  alone for the sum of the levels' steps (``--no_progressive``).
- **time**: every variant trains for the same time, ``--minutes`` (default: the median training time of the
  equal-steps runs). Each variant's steps are the equal-steps ones scaled by ``minutes`` over the CPU time that
  variant's equal-steps run took, every level alike, so each run still ends its full schedule (its cosine reaches
  its last rate) instead of being cut off mid-level. The time is the process CPU time of the training steps of one
  thread, which is the wall-clock time on a core of its own, whatever else shares the machine; both are reported.
  This budget needs the equal-steps runs, which measure what a step of each variant costs; ``--time_variants``
  trains only some of the variants on it (the budget is still the median of all the equal-steps runs).

The runs go ``--jobs`` at a time with one thread each (``train/pose_aware.py``'s driver). The driver can be stopped
at any time: a variant with a finished repository (its model card is written last) is skipped, an unfinished one
resumes from its latest checkpoint. Each finished variant is evaluated with ``pgat.evaluation`` on the same
SynthHumans test pairs; the report holds the tables (with the copy-reference and part-warp baselines, PCKh, the gap
closed over copying), the paper's Human3.6M numbers beside them, the validation curves against CPU time, and a sample
strip per budget on fixed test pairs.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

# the embedded model's network (pgat-synth-256.yaml): the options beyond the paper that docs/pose-aware.md measured
POSE_AWARE = ["--reference_pose", "--pose_every_scale", "--warp_skips", "--warp_residual"]
VARIANTS: Dict[str, List[str]] = {
    "Baseline": ["--no_progressive", "--no_local_perceptual", "--no_local_discriminator"],
    "LPL": ["--no_progressive", "--no_local_discriminator"],
    "PT": ["--no_local_perceptual", "--no_local_discriminator"],
    "PT+LPL": ["--no_local_discriminator"],
    "PT+LPL+LD": [],
    "Pose-aware LPL": [*POSE_AWARE, "--no_progressive", "--no_local_discriminator"],
    "Pose-aware PT+LPL": [*POSE_AWARE, "--no_local_discriminator"],
    "Pose-aware PT+LPL+LD": [*POSE_AWARE],
}
PAPER_VARIANTS = ["Baseline", "LPL", "PT", "PT+LPL", "PT+LPL+LD"]
# the paper's Table 1 (Human3.6M): SSIM, local-SSIM, LPIPS
PAPER = {
    "Baseline": (0.909, 0.699, 0.230),
    "LPL": (0.944, 0.744, 0.205),
    "PT": (0.953, 0.759, 0.164),
    "PT+LPL": (0.954, 0.772, 0.145),
    "PT+LPL+LD": (0.959, 0.804, 0.135),
}
BUDGETS = ("steps", "time")


NOTES_MARKER = "<!-- findings: kept when the report is regenerated -->"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="ablation-128", help="train/progressive.py preset shared by all variants")
    p.add_argument("--output_dir", default="runs/ablation")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--equal", default="steps,time", help="budgets, comma-separated: 'steps' (the preset's steps), 'time' (--minutes each)")
    p.add_argument("--minutes", type=float, default=None, help="--equal time: training minutes per variant (default: the median of the equal-steps runs)")
    p.add_argument("--time_variants", default=None, help="--equal time: the variants to train on the time budget (default: all of --variants)")
    p.add_argument("--jobs", type=int, default=2, help="variants trained at once, one thread each")
    p.add_argument("--num_pairs", type=int, default=200, help="test pairs evaluated per variant")
    p.add_argument("--num_samples", type=int, default=4, help="test pairs in the sample strips")
    p.add_argument("--report", default="docs/ablation.md", help="markdown report (sample strips and curves go beside it)")
    p.add_argument("--extra", default="", help="more train/progressive.py flags for every variant, one string")
    return p.parse_args(argv)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", "-")).strip("-")


def parse_variants(text: str, known) -> List[str]:
    """``--variants``, comma-separated, as a list of names of ``known``; an unknown name is an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"`--variants` must name some of {list(known)}, got unknown {unknown}")
    return names


def parse_budgets(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in BUDGETS for n in names):
        raise ValueError(f"`--equal` must be 'steps', 'time' or 'steps,time', got {text!r}")
    return names


def stage_steps(repo: Path) -> List[int]:
    """The run's ``--steps_per_stage`` (``training_config.json``): per level, before --no_progressive sums them."""
    return [int(s) for s in str(json.loads((repo / "training_config.json").read_text())["steps_per_stage"]).split(",")]


def equal_time_steps(records: Dict[str, Dict], repos: Dict[str, Path], minutes: float) -> Dict[str, List[int]]:
    """Each variant's steps per level for ``minutes`` of training: its equal-steps schedule scaled by ``minutes``
    over the CPU time that run took (a step of one variant at one level costs the same all along)."""
    out = {}
    for name, record in records.items():
        scale = 60 * minutes / record["train_cpu_seconds"]
        out[name] = [max(1, round(s * scale)) for s in stage_steps(repos[name])]
    return out


def sample_strip(models: Dict[str, Path], num: int, resolution: int) -> Image.Image:
    """Rows: test pairs; columns: reference | target pose | part-warp baseline | each variant | ground truth."""
    import torch

    from pgat.evaluation import evaluation_pairs, load_stage_model
    from pgat.parts import warp_image
    from pgat.pose import draw_skeleton

    data = evaluation_pairs("synthhumans", resolution, num, seed=0)
    batch = [data[i] for i in range(num)]
    ref = torch.stack([b["reference"] for b in batch])
    kps = torch.stack([b["target_keypoints"] for b in batch])
    ref_kps = torch.stack([b["reference_keypoints"] for b in batch])

    def u8(x):
        return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    columns = [u8(ref), np.stack([np.asarray(draw_skeleton((resolution, resolution), k.numpy())) for k in kps])]
    columns.append(u8(warp_image(ref, ref_kps, kps)))
    for repo in models.values():
        with torch.no_grad():
            columns.append(u8(load_stage_model(str(repo)).eval()(ref, kps, ref_kps).image))
    columns.append(u8(torch.stack([b["target"] for b in batch])))
    rows = [np.concatenate([c[i] for c in columns], axis=1) for i in range(num)]
    return Image.fromarray(np.concatenate(rows, axis=0))


def _gap(value: float, base: float) -> str:
    return f"{(value - base) / (1 - base):+.2f}"


def table(records: Dict[str, Dict]) -> List[str]:
    """One budget's rows: each variant, both baselines, the estimator's ceiling; the paper's numbers beside."""
    first = next(iter(records.values()))
    copy, warp, truth = first["copy_reference"], first["part_warp"], first.get("ground_truth", {})
    lines = [
        "| variant | steps | CPU min | wall min | SSIM | MS-SSIM | local-SSIM | PCKh | SSIM gap closed over copy | "
        "local-SSIM gap closed over copy | paper (Human3.6M) SSIM | paper local-SSIM | paper LPIPS |",
        "|---|" + "---|" * 12,
    ]
    for name, r in records.items():
        m = r["model"]
        paper = " | ".join(f"{v:.3f}" for v in PAPER[name]) if name in PAPER else "— | — | —"
        lines.append(
            f"| {name} | {r['steps']} | {r['train_cpu_seconds'] / 60:.1f} | {r['train_seconds'] / 60:.1f} | {m['ssim']:.4f} | "
            f"{m['ms_ssim']:.4f} | {m['local_ssim']:.4f} | {m['pckh']:.3f} | {_gap(m['ssim'], copy['ssim'])} | "
            f"{_gap(m['local_ssim'], copy['local_ssim'])} | {paper} |"
        )
    for label, b in (("copy-reference baseline", copy), ("part-warp baseline (no training)", warp)):
        lines.append(f"| {label} | | | | {b['ssim']:.4f} | {b['ms_ssim']:.4f} | {b['local_ssim']:.4f} | {b['pckh']:.3f} | "
                     f"{_gap(b['ssim'], copy['ssim'])} | {_gap(b['local_ssim'], copy['local_ssim'])} | | | |")
    if "pckh" in truth:
        lines.append(f"| ground truth (PCKh: the pose estimator's ceiling) | | | | | | | {truth['pckh']:.3f} | | | | | |")
    return lines


def report(phases: Dict[str, Dict[str, Dict]], pictures: Dict[str, Dict[str, str]], args) -> str:
    any_phase = next(iter(phases.values()))
    first = next(iter(any_phase.values()))
    lines = [
        "# Table 1 on SynthHumans",
        "",
        f"Made by `python train/ablation.py --config {args.config}` (preset `train/configs/{args.config}.yaml`"
        + (f", extra flags `{args.extra}`" if args.extra else "") + "). "
        f"Every variant trains from scratch and is evaluated at {first['resolution']}² on the same "
        f"{first['model']['num_pairs']} SynthHumans test pairs (identities and poses never seen in training, seed 0). "
        "Gap closed: (variant − copy) / (1 − copy); 1 is a perfect score, 0 is no better than copying the reference.",
        "",
    ]
    titles = {
        "steps": "## Equal optimizer steps",
        "time": "## Equal training time",
    }
    intros = {
        "steps": "Every variant takes the preset's steps; a variant without progressive training takes them all at the last resolution.",
        "time": ("Every variant trains for the same time, each with its full schedule: the equal-steps schedule scaled by "
                 "that budget over the CPU time the variant's equal-steps run took (so a cheaper step buys more steps)."),
    }
    for budget, records in phases.items():
        lines += [titles[budget], "", intros[budget], "", *table(records), "",
                  f"Columns of the strip: reference | target pose | part-warp baseline | {' | '.join(records)} | ground truth.", "",
                  f"![sample strip, {budget}]({pictures[budget]['strip']})", "",
                  "Validation SSIM and local-SSIM on the training script's 16 pairs against training CPU time:", "",
                  f"![validation curves, {budget}]({pictures[budget]['curve']})", ""]
    lines += [
        "CPU minutes: the process CPU time of the training steps (`timings.jsonl`), one thread per run, so equal to the "
        "wall-clock time on a core of its own; wall minutes: the wall-clock time of the same steps, two runs at a time "
        "on this machine's two cores beside whatever else ran (validation, samples and checkpoints not counted in either). "
        "PCKh: BlazePose on every image, a keypoint correct within half the head segment of the target keypoint.",
        "",
        "LPIPS is not measured here: its AlexNet weights cannot be downloaded on this machine (`pgat evaluate --metrics lpips"
        " --alexnet-path FILE` adds it).",
        "",
    ]
    return "\n".join(lines)


def main(args) -> None:
    from pose_aware import curve, evaluate_variant, train_variants  # here: pose_aware imports this module

    names = parse_variants(args.variants, VARIANTS)
    budgets = parse_budgets(args.equal)
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    phases: Dict[str, Dict[str, Dict]] = {}
    pictures: Dict[str, Dict[str, str]] = {}
    steps_args = argparse.Namespace(**{**vars(args), "output_dir": str(Path(args.output_dir))})
    for budget in budgets:
        if budget == "steps":
            run_args = steps_args
        else:
            # the equal-steps runs measure what a step of each variant costs; they must exist first
            steps_repos = train_variants(names, steps_args, variants=VARIANTS, slug=slug)
            steps_records = {n: evaluate_variant(n, r, args) for n, r in steps_repos.items()}
            minutes = args.minutes or statistics.median(r["train_cpu_seconds"] for r in steps_records.values()) / 60
            timed = parse_variants(args.time_variants, names) if args.time_variants else names
            plan = equal_time_steps({n: steps_records[n] for n in timed}, steps_repos, minutes)
            run_args = argparse.Namespace(**{**vars(args), "output_dir": str(Path(args.output_dir) / "equal-time")})
            # after --extra, so that the budget's steps win over an --extra --steps_per_stage
            late = {n: ["--steps_per_stage", ",".join(map(str, plan[n]))] for n in timed}
            print(f"equal time: {minutes:.2f} CPU minutes per variant; steps per level {plan}", flush=True)
        repos = train_variants(names if budget == "steps" else timed, run_args, variants=VARIANTS, slug=slug, late=late if budget == "time" else None)
        records = {n: evaluate_variant(n, r, args) for n, r in repos.items()}
        phases[budget] = records
        stem = report_path.stem + ("" if budget == "steps" else "-equal-time")
        strip_path = report_path.with_name(stem + "-samples.png")
        sample_strip(repos, args.num_samples, next(iter(records.values()))["resolution"]).save(strip_path)
        curve_path = report_path.with_name(stem + "-curves.png")
        curve(repos, records, curve_path)
        pictures[budget] = {"strip": strip_path.name, "curve": curve_path.name}
        (Path(run_args.output_dir) / "ablation.json").write_text(json.dumps(records, indent=2) + "\n")
    # what a person wrote below the marker (the reading of the numbers) survives a regenerated table
    notes = report_path.read_text().partition(NOTES_MARKER)[2] if report_path.exists() else ""
    report_path.write_text(report(phases, pictures, args) + "\n" + NOTES_MARKER + notes)
    print(report_path.read_text())


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main(parse_args())
