"""Table 1 of the paper on SynthHumans: five variants, equal step budgets, one test split.

    python train/ablation.py --config ablation-128 --output_dir runs/ablation --report docs/ablation.md

Each variant is one ``train/progressive.py`` run from the same preset, differing only in the Table 1 switches:

| variant      | progressive training | local perceptual loss | local discriminators |
|--------------|----------------------|-----------------------|----------------------|
| Baseline     | no                   | no                    | no                   |
| LPL          | no                   | yes                   | no                   |
| PT           | yes                  | no                    | no                   |
| PT+LPL       | yes                  | yes                   | no                   |
| PT+LPL+LD    | yes                  | yes (LD at the last)  | yes                  |

"No progressive training" trains the last resolution alone for the sum of the levels' steps (`--no_progressive`),
so every variant takes the same number of optimizer steps. The driver can be stopped at any time: a variant with a
finished repository (its model card is written last) is skipped, an unfinished one resumes from its latest checkpoint. Each finished variant is
evaluated with ``pgat.evaluation`` on the same SynthHumans test pairs; the report holds the table (with the
copy-reference and part-warp baselines, and PCKh where the records have it), the paper's Human3.6M numbers beside
it, and one sample strip per variant on fixed test pairs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

VARIANTS: Dict[str, List[str]] = {
    "Baseline": ["--no_progressive", "--no_local_perceptual", "--no_local_discriminator"],
    "LPL": ["--no_progressive", "--no_local_discriminator"],
    "PT": ["--no_local_perceptual", "--no_local_discriminator"],
    "PT+LPL": ["--no_local_discriminator"],
    "PT+LPL+LD": [],
}
# the paper's Table 1 (Human3.6M): SSIM, local-SSIM, LPIPS
PAPER = {
    "Baseline": (0.909, 0.699, 0.230),
    "LPL": (0.944, 0.744, 0.205),
    "PT": (0.953, 0.759, 0.164),
    "PT+LPL": (0.954, 0.772, 0.145),
    "PT+LPL+LD": (0.959, 0.804, 0.135),
}


NOTES_MARKER = "<!-- findings: kept when the report is regenerated -->"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="ablation-128", help="train/progressive.py preset shared by all variants")
    p.add_argument("--output_dir", default="runs/ablation")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--num_pairs", type=int, default=200, help="test pairs evaluated per variant")
    p.add_argument("--num_samples", type=int, default=4, help="test pairs in the sample strips")
    p.add_argument("--report", default="docs/ablation.md", help="markdown report (sample strips go beside it)")
    p.add_argument("--extra", default="", help="more train/progressive.py flags for every variant, one string")
    return p.parse_args(argv)


def slug(name: str) -> str:
    return name.lower().replace("+", "-")


def parse_variants(text: str, known) -> List[str]:
    """``--variants``, comma-separated, as a list of names of ``known``; an unknown name is an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"`--variants` must name some of {list(known)}, got unknown {unknown}")
    return names


def train_variant(name: str, args) -> Path:
    out = Path(args.output_dir) / slug(name)
    if (out / "README.md").exists():  # the card is written last; model_index.json already exists after a level
        return out
    cmd = [sys.executable, str(HERE / "progressive.py"), "--config", args.config, "--output_dir", str(out), *VARIANTS[name], *args.extra.split()]
    if any(out.glob("checkpoint-*")):
        cmd += ["--resume_from_checkpoint", "latest"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def evaluate_variant(name: str, repo: Path, args) -> Dict:
    from pgat.evaluation import evaluation_pairs, evaluate_model, load_stage_model

    path = repo / "evaluation.json"
    if path.exists():
        return json.loads(path.read_text())
    model = load_stage_model(str(repo))
    dataset = evaluation_pairs("synthhumans", model.config.resolution, args.num_pairs, seed=0)
    results = evaluate_model(model, dataset, num_pairs=args.num_pairs, progress=False)
    timings = [json.loads(line) for line in (repo / "timings.jsonl").read_text().splitlines()] if (repo / "timings.jsonl").exists() else []
    record = {"variant": name, "resolution": model.config.resolution, "train_seconds": sum(t["seconds"] for t in timings), **results}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


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


def report(records: Dict[str, Dict], strip: str, args) -> str:
    first = next(iter(records.values()))
    # PCKh and the part-warp row are there when the records have them (an evaluation.json of an older run may not)
    metrics = [("ssim", "SSIM"), ("ms_ssim", "MS-SSIM"), ("local_ssim", "local-SSIM")]
    if all("pckh" in r["model"] for r in records.values()):
        metrics.append(("pckh", "PCKh"))

    def cells(row: Dict) -> str:
        return " | ".join(f"{row[k]:.4f}" if k in row else "—" for k, _ in metrics)

    blank = " |" * 4
    lines = [
        "# Table 1 on SynthHumans",
        "",
        f"Made by `python train/ablation.py --config {args.config}` (preset `train/configs/{args.config}.yaml`"
        + (f", extra flags `{args.extra}`" if args.extra else "") + "). "
        f"Every variant trains for the same number of optimizer steps and is evaluated at {first['resolution']}² on the "
        f"same {first['model']['num_pairs']} SynthHumans test pairs (identities and poses never seen in training, seed 0).",
        "",
        "| variant | " + " | ".join(t for _, t in metrics) + " | training time | paper (Human3.6M) SSIM | paper local-SSIM | paper LPIPS |",
        "|---|" + "---|" * (len(metrics) + 4),
    ]
    for name, r in records.items():
        p = PAPER[name]
        seconds = f"{r['train_seconds']:.0f} s" if r.get("train_seconds") else ""
        lines.append(f"| {name} | {cells(r['model'])} | {seconds} | {p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} |")
    lines.append(f"| copy-reference baseline | {cells(first['copy_reference'])} |{blank}")
    if "part_warp" in first:
        lines.append(f"| part-warp baseline (no training) | {cells(first['part_warp'])} |{blank}")
    if "pckh" in dict(metrics) and "ground_truth" in first:
        lines.append(f"| ground truth (PCKh: the pose estimator's ceiling) | {cells(first['ground_truth'])} |{blank}")
    lines += [
        "",
        "Training time is the wall-clock of the training loops (`timings.jsonl`), on the machine and load of that run.",
        "",
        "LPIPS is not measured here: its AlexNet weights cannot be downloaded on this machine (`pgat evaluate --metrics lpips"
        " --alexnet-path FILE` adds it).",
        "",
        f"Columns: reference | target pose | part-warp baseline | {' | '.join(records)} | ground truth.",
        "",
        f"![sample strip]({strip})",
        "",
    ]
    return "\n".join(lines)


def main(args) -> None:
    names = parse_variants(args.variants, VARIANTS)
    repos = {name: train_variant(name, args) for name in names}
    records = {name: evaluate_variant(name, repo, args) for name, repo in repos.items()}
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    strip_path = report_path.with_name(report_path.stem + "-samples.png")
    sample_strip(repos, args.num_samples, next(iter(records.values()))["resolution"]).save(strip_path)
    (Path(args.output_dir) / "ablation.json").write_text(json.dumps(records, indent=2) + "\n")
    # what a person wrote below the marker (the reading of the numbers) survives a regenerated table
    notes = report_path.read_text().partition(NOTES_MARKER)[2] if report_path.exists() else ""
    report_path.write_text(report(records, strip_path.name, args) + "\n" + NOTES_MARKER + notes)
    print(report_path.read_text())


if __name__ == "__main__":
    main(parse_args())
