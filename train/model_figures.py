"""Pictures of a trained PGAT repository: test pairs against the baselines, and its learning curve.

    python train/model_figures.py --model weights/pgat-synth-256 --compare "previous=runs/old-pgat-synth-256" \\
        --out docs/embedded

writes ``<out>-samples.png`` (rows: SynthHumans test pairs, never seen in training, seed 0; columns: reference |
target pose | part-warp baseline | each ``--compare`` model | the model | ground truth, all at the model's highest
stage) and ``<out>-curve.png`` (the training script's validation SSIM and local-SSIM, 16 pairs at each level's own
resolution, against the CPU hours of the training steps, one colour per level; the baselines' values on the
evaluated pairs drawn across when the repository has an ``evaluation.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ablation import sample_strip  # noqa: E402


def learning_curve(repo: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (repo / "validation.jsonl").read_text().splitlines()]
    evaluation = json.loads((repo / "evaluation.json").read_text()) if (repo / "evaluation.json").is_file() else None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in zip(axes, ("ssim", "local_ssim"), ("SSIM", "local-SSIM")):
        for res in sorted({r["resolution"] for r in rows}):
            level = [r for r in rows if r["resolution"] == res]
            ax.plot([r["train_cpu_seconds"] / 3600 for r in level], [r[key] for r in level], marker="o", ms=3, label=f"{res}² (16 pairs)")
        if evaluation:
            n = evaluation["model"]["num_pairs"]
            for name, style in (("copy_reference", ":"), ("part_warp", "--")):
                ax.axhline(evaluation[name][key], color="grey", ls=style, lw=1, label=f"{name.replace('_', '-')}, {evaluation['resolution']}² ({n} pairs)")
            ax.plot([rows[-1]["train_cpu_seconds"] / 3600], [evaluation["model"][key]], "k*", ms=10, label=f"final, {evaluation['resolution']}² ({n} pairs)")
        ax.set_xlabel("training CPU hours (all threads)")
        ax.set_ylabel(f"validation {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_compare(items) -> Dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_dir():
            raise SystemExit(f"--compare: expected NAME=REPOSITORY_FOLDER, got {item!r}")
        out[name] = Path(path)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a PGAT repository folder")
    p.add_argument("--name", default="this model", help="the model's column title")
    p.add_argument("--compare", nargs="*", default=[], help="NAME=FOLDER: other repositories, columns before the model's")
    p.add_argument("--num_pairs", type=int, default=4, help="rows of the sample strip")
    p.add_argument("--out", required=True, help="path prefix of the two PNG files")
    args = p.parse_args(argv)
    from pgat.evaluation import load_stage_model

    model = Path(args.model)
    resolution = load_stage_model(str(model)).config.resolution
    repos = {**parse_compare(args.compare), args.name: model}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample_strip(repos, args.num_pairs, resolution).save(f"{out}-samples.png")
    learning_curve(model, Path(f"{out}-curve.png"))
    print(f"wrote {out}-samples.png and {out}-curve.png (columns: reference | target pose | part-warp | {' | '.join(repos)} | ground truth)")


if __name__ == "__main__":
    main()
