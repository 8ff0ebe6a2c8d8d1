"""``pgat evaluate``: a model stage on a test split, next to the copy-reference baseline.

The baseline answers "what if the model just returned the reference image?": every table gets that floor,
so a number says how much of the gap to a perfect score the model closes, ``(model - baseline) / (1 - baseline)``.

Results are written as ``evaluation.json`` (appended as a line to ``evaluation.jsonl`` too, so several
checkpoints can be compared) and ``evaluation.md`` (a markdown table). LPIPS and FID are added when asked
for (``--metrics``), and fail with their own message when their weights are not on disk.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

DEFAULT_METRICS = ("ssim", "ms_ssim", "local_ssim")
# metrics that compare two sets of images, not pairs: computed once over the whole split
SET_METRICS = ("fid",)


def load_stage_model(model: str, resolution: Optional[int] = None, **hub_kwargs):
    """``PGATModel`` of one stage of a local repository or Hub id (only that stage is downloaded)."""
    from .hub import load_model_folder, resolve_stage
    from .stages import stage_folder

    repo, resolution = resolve_stage(model, resolution, **hub_kwargs)
    return load_model_folder(repo / stage_folder(resolution)).eval()


def evaluation_pairs(dataset: str, resolution: int, num_pairs: Optional[int] = None, seed: int = 0):
    """A `PairDataset` of the test split: ``"synthhumans"`` (its test identities and poses) or a pair-format folder."""
    from .data.pairs import PairDataset
    from .data.synthetic import SynthHumans

    if dataset == "synthhumans":
        source = SynthHumans(resolution=resolution, split="test", seed=seed, length=num_pairs)
    elif Path(dataset).is_dir():
        source = dataset
    else:
        raise ValueError(f"`dataset` must be 'synthhumans' or a pair-format folder, got {dataset!r} (no such folder)")
    return PairDataset(source, resolution=resolution, flip_prob=0.0)


def _weighted(rows: List[Dict[str, float]], counts: List[int]) -> Dict[str, float]:
    total = sum(counts)
    return {k: float(sum(r[k] * n for r, n in zip(rows, counts)) / total) for k in rows[0]}


@torch.no_grad()
def evaluate_model(
    model,
    dataset,
    metrics: Sequence[str] = DEFAULT_METRICS,
    num_pairs: Optional[int] = None,
    batch_size: int = 8,
    baseline: bool = True,
    device: Optional[str] = None,
    progress: bool = True,
    **metric_options,
) -> Dict[str, Dict[str, float]]:
    """Metrics of ``model`` (and of the copy-reference baseline) over the first ``num_pairs`` pairs.

    Per-pair metrics are averaged over pairs; set metrics (FID) are computed once over all pairs.

    Returns:
        ``{"model": {...}, "copy_reference": {...}}`` (the second only with ``baseline``).
    """
    from tqdm.auto import tqdm

    from .metrics import evaluate

    n = len(dataset) if num_pairs is None else min(num_pairs, len(dataset))
    if n < 1:
        raise ValueError(f"`dataset` has no pairs to evaluate (len {len(dataset)}, num_pairs {num_pairs})")
    device = device or next(model.parameters()).device
    model = model.to(device).eval()
    per_pair = [m for m in metrics if m not in SET_METRICS]
    set_metrics = [m for m in metrics if m in SET_METRICS]
    rows = {"model": [], "copy_reference": []}
    counts: List[int] = []
    keep = {"pred": [], "reference": [], "target": [], "keypoints": []}
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="evaluate"):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        ref = torch.stack([it["reference"] for it in items]).to(device)
        tgt = torch.stack([it["target"] for it in items]).to(device)
        kps = torch.stack([it["target_keypoints"] for it in items]).to(device)
        pred = model(ref, kps).image.float().clamp(-1, 1)
        counts.append(len(items))
        if per_pair:
            rows["model"].append(evaluate(pred, tgt, kps, metrics=per_pair, **metric_options))
            if baseline:
                rows["copy_reference"].append(evaluate(ref, tgt, kps, metrics=per_pair, **metric_options))
        if set_metrics:
            for k, v in (("pred", pred), ("reference", ref), ("target", tgt), ("keypoints", kps)):
                keep[k].append(v.cpu())
    results = {name: _weighted(r, counts) if r else {} for name, r in rows.items() if name == "model" or baseline}
    if set_metrics:
        target, kps = torch.cat(keep["target"]), torch.cat(keep["keypoints"])
        results["model"].update(evaluate(torch.cat(keep["pred"]), target, kps, metrics=set_metrics))
        if baseline:
            results["copy_reference"].update(evaluate(torch.cat(keep["reference"]), target, kps, metrics=set_metrics))
    for r in results.values():
        r["num_pairs"] = n
    return results


def markdown_table(results: Dict[str, Dict[str, float]], title: str = "") -> str:
    """Rows: model, copy-reference baseline, and the fraction of the gap to a perfect score the model closes."""
    metrics = [k for k in results["model"] if k != "num_pairs"]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    names = {"model": "PGAT", "copy_reference": "copy-reference baseline"}
    for key, row in results.items():
        lines.append(f"| {names.get(key, key)} | " + " | ".join(f"{row[m]:.4f}" for m in metrics) + " |")
    if "copy_reference" in results:
        gap = []
        for m in metrics:
            b, v = results["copy_reference"][m], results["model"][m]
            lower_better = m in ("lpips", "fid")
            best = 0.0 if lower_better else 1.0
            gap.append("n/a" if m == "fid" or b == best else f"{(v - b) / (best - b):.2f}")
        lines.append("| gap closed (model − baseline) / (best − baseline) | " + " | ".join(gap) + " |")
    lines.append("")
    lines.append(f"{results['model']['num_pairs']} pairs.")
    return "\n".join(lines) + "\n"


def eval_results(record: Dict) -> list:
    """The model's metrics of an ``evaluation.json`` record as ``huggingface_hub.EvalResult`` entries for card metadata."""
    from huggingface_hub import EvalResult

    dataset = record.get("dataset", "synthhumans")
    name = "SynthHumans (test split)" if dataset == "synthhumans" else str(dataset)
    return [
        EvalResult(
            task_type="image-to-image", task_name="Pose transfer",
            dataset_type=dataset if dataset == "synthhumans" else "custom", dataset_name=name,
            dataset_split="test", dataset_config=f"{record['resolution']}px, seed {record.get('seed', 0)}",
            metric_type=metric, metric_name=metric.replace("_", "-").upper() if metric != "local_ssim" else "local-SSIM",
            metric_value=round(float(value), 4),
        )
        for metric, value in record["model"].items()
        if metric != "num_pairs"
    ]


def update_model_card(repo_dir, record: Dict, table: str) -> Path:
    """Put an evaluation into the ``README.md`` card of a local repository: the ``## Evaluation`` section becomes
    ``table`` and the metadata's ``model-index`` gets the metrics. The rest of the card is left as it is.

    Raises:
        FileNotFoundError: when ``repo_dir`` has no ``README.md`` (a repository written by ``train/progressive.py``
            or ``save_pretrained`` always has one).
    """
    from huggingface_hub import ModelCard

    path = Path(repo_dir) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"`--update-card` needs the model card {path}, which does not exist; the model must be a local repository with a README.md")
    card = ModelCard.load(path)
    head, sep, tail = card.text.partition("## Evaluation\n")
    if not sep:
        raise ValueError(f"the model card {path} has no '## Evaluation' section to update")
    rest = tail[tail.find("\n## ") + 1:] if "\n## " in tail else ""  # the next section on
    card.text = head + sep + "\n" + table + ("\n" + rest if rest else "")
    card.data.eval_results = eval_results(record)
    card.data.model_name = card.data.model_name or Path(repo_dir).name
    card.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .stages import stage_folder

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    model = load_stage_model(args.model, args.resolution)
    resolution = model.config.resolution
    dataset = evaluation_pairs(args.dataset, resolution, args.num_pairs, args.seed)
    t0 = time.perf_counter()
    options = {"alexnet_path": args.alexnet_path} if args.alexnet_path else {}
    results = evaluate_model(model, dataset, metrics, args.num_pairs, args.batch_size, baseline=not args.no_baseline, device=args.device, **options)
    seconds = time.perf_counter() - t0
    record = {
        "model": str(args.model), "stage": stage_folder(resolution), "resolution": resolution, "dataset": args.dataset,
        "seed": args.seed, "seconds": seconds, **results,
    }
    table = markdown_table(results, f"{args.model} · {stage_folder(resolution)} · {args.dataset} test split (seed {args.seed})")
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(record, indent=2) + "\n")
        with open(out / "evaluation.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        (out / "evaluation.md").write_text(table)
    if args.update_card:
        print(f"model card updated: {update_model_card(args.model, record, table)}")
    return 0


def register_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a model stage on a test split, with the copy-reference baseline")
    p.add_argument("--model", required=True, help="a model repository folder or Hub id")
    p.add_argument("--resolution", type=int, default=None, help="the stage to evaluate (default: the highest present)")
    p.add_argument("--dataset", default="synthhumans", help="'synthhumans' (its test split) or a pair-format folder")
    p.add_argument("--num-pairs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="SynthHumans seed (fixes identities and pairs)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated: ssim, ms_ssim, local_ssim, lpips, fid")
    p.add_argument("--alexnet-path", default=None, help="torchvision's alexnet-owt-7be5be79.pth for LPIPS")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--no-baseline", action="store_true", help="skip the copy-reference baseline")
    p.add_argument("--out", default=None, help="folder for evaluation.json / .jsonl / .md")
    p.add_argument("--update-card", action="store_true", help="write the table and metrics into the README.md card of --model (a local repository)")
    p.set_defaults(func=_cmd_evaluate)
