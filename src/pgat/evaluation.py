"""``pgat evaluate``: a model stage on a test split, next to two baselines and, for PCKh, the estimator's ceiling.

Every table holds, beside the model (``"model"``):

- ``"copy_reference"``: "what if the model just returned the reference image?", the floor;
- ``"part_warp"``: the reference moved part by part to the target pose with no training (`pgat.parts.warp_image`,
  from the pair's reference and target keypoints), what a network that moves appearance must beat;
- ``"ground_truth"`` (PCKh only): PCKh of the ground-truth images, the most the pose estimator can give.

A number says how much of the gap to a perfect score the model closes over a baseline,
``(model - baseline) / (best - baseline)``. The model is always called with the pair's reference keypoints too
(``model(reference, target_keypoints, reference_keypoints)``): a pose-aware model needs them, the paper's network
ignores them.

Results are written as ``evaluation.json`` (appended as a line to ``evaluation.jsonl`` too, so several
checkpoints can be compared) and ``evaluation.md`` (a markdown table). PCKh runs a pose estimator (BlazePose,
offline) on every image: 200 pairs at 256² take 30-50 s more on one CPU core (93 s on a core shared with training),
so it is in the default list; its ceiling on SynthHumans' ground truth is 0.76 at 128² and 0.74 at 256².
LPIPS and FID are added when asked for (``--metrics``), and fail with their own message when their weights are not
on disk.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

DEFAULT_METRICS = ("ssim", "ms_ssim", "local_ssim", "pckh")
# metrics that compare two sets of images, not pairs: computed once over the whole split
SET_METRICS = ("fid",)
# metrics counted over keypoints, not averaged over pairs: the share of all scored keypoints of the split
KEYPOINT_METRICS = ("pckh",)
BASELINES = ("copy_reference", "part_warp")
ROW_NAMES = {
    "model": "PGAT",
    "copy_reference": "copy-reference baseline",
    "part_warp": "part-warp baseline",
    "ground_truth": "ground truth (estimator ceiling)",
}
LOWER_IS_BETTER = ("lpips", "fid")
METRIC_NAMES = {"ssim": "SSIM", "ms_ssim": "MS-SSIM", "local_ssim": "local-SSIM", "lpips": "LPIPS", "fid": "FID", "pckh": "PCKh"}


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
    """Metrics of ``model``, of the copy-reference and part-warp baselines, over the first ``num_pairs`` pairs.

    Per-pair metrics are averaged over pairs; set metrics (FID) are computed once over all pairs; PCKh is the share
    of all scored keypoints of all pairs, and also gets a ``"ground_truth"`` row (PCKh of the ground-truth images).

    Args:
        model: a ``PGATModel`` (or any module called as ``model(reference, target_keypoints,
            reference_keypoints=...)`` returning ``.image``); it gets the reference keypoints always.
        dataset: pairs with ``reference``, ``target``, ``reference_keypoints`` and ``target_keypoints`` (`PairDataset`).
        metrics (`Sequence[str]`, *optional*, defaults to `DEFAULT_METRICS`): names in `pgat.metrics.METRICS`.
        baseline (`bool`, *optional*, defaults to `True`): add the ``copy_reference`` and ``part_warp`` rows.
        metric_options: options of the metrics (``alexnet_path=``, ``crop_size=``, ``estimator=`` for PCKh).

    Returns:
        ``{"model": {...}, "copy_reference": {...}, "part_warp": {...}, "ground_truth": {"pckh": ...}}``: the
        baselines only with ``baseline``, the ground truth only with ``"pckh"``; every row has ``num_pairs``.
    """
    from tqdm.auto import tqdm

    from .metrics import METRICS, evaluate, pckh_counts, pose_estimator
    from .parts import warp_image

    n = len(dataset) if num_pairs is None else min(num_pairs, len(dataset))
    if n < 1:
        raise ValueError(f"`dataset` has no pairs to evaluate (len {len(dataset)}, num_pairs {num_pairs})")
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"`metrics` must be a sequence of metric names from {sorted(METRICS)}, got {metrics!r}")
    device = device or next(model.parameters()).device
    model = model.to(device).eval()
    per_pair = [m for m in metrics if m not in SET_METRICS and m not in KEYPOINT_METRICS]
    set_metrics = [m for m in metrics if m in SET_METRICS]
    use_pckh = "pckh" in metrics
    pckh_options = {k: metric_options.pop(k) for k in ("estimator", "threshold") if k in metric_options}
    if pckh_options and not use_pckh:
        raise ValueError(f"options {sorted(pckh_options)} are taken by pckh only, which is not in the metrics {list(metrics)}")
    if use_pckh:  # load it once, not per batch
        pckh_options["estimator"] = pose_estimator(pckh_options.get("estimator"))
    names = ["model", *(BASELINES if baseline else ())]
    rows: Dict[str, List[Dict[str, float]]] = {name: [] for name in names}
    hits = {name: [0, 0] for name in [*names, "ground_truth"]}  # PCKh: correct, scored
    counts: List[int] = []
    keep: Dict[str, List[torch.Tensor]] = {k: [] for k in [*names, "target", "keypoints"]}
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="evaluate"):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        ref = torch.stack([it["reference"] for it in items]).to(device)
        tgt = torch.stack([it["target"] for it in items]).to(device)
        kps = torch.stack([it["target_keypoints"] for it in items]).to(device)
        ref_kps = torch.stack([it["reference_keypoints"] for it in items]).to(device)
        images = {"model": model(ref, kps, reference_keypoints=ref_kps).image.float().clamp(-1, 1)}
        if baseline:
            images["copy_reference"] = ref
            images["part_warp"] = warp_image(ref.float(), ref_kps.float(), kps.float()).clamp(-1, 1)
        counts.append(len(items))
        for name, pred in images.items():
            if per_pair:
                rows[name].append(evaluate(pred, tgt, kps, metrics=per_pair, **metric_options))
            if set_metrics:
                keep[name].append(pred.cpu())
        if use_pckh:
            for name, pred in [*images.items(), ("ground_truth", tgt)]:
                correct, scored = pckh_counts(pred, kps, **pckh_options)
                hits[name][0] += int(correct.sum())
                hits[name][1] += int(scored.sum())
        if set_metrics:
            keep["target"].append(tgt.cpu())
            keep["keypoints"].append(kps.cpu())
    results = {name: _weighted(rows[name], counts) if rows[name] else {} for name in names}
    if set_metrics:
        target, kps = torch.cat(keep["target"]), torch.cat(keep["keypoints"])
        for name in names:
            results[name].update(evaluate(torch.cat(keep[name]), target, kps, metrics=set_metrics))
    if use_pckh:
        results["ground_truth"] = {}
        for name, (correct, scored) in hits.items():
            if name in results:
                results[name]["pckh"] = correct / scored if scored else float("nan")
    # the order the metrics were asked for, in every row
    for name, r in results.items():
        results[name] = {**{m: r[m] for m in _columns(metrics, r)}, "num_pairs": n}
    return results


def _columns(metrics: Sequence[str], row: Dict[str, float]) -> List[str]:
    """The keys of ``row`` in the order of the ``metrics`` that produced them (a metric may give several keys)."""
    keys = [k for k in row if k != "num_pairs"]
    order = {m: i for i, m in enumerate(metrics)}
    return sorted(keys, key=lambda k: order.get(k, len(order)))


def _gap(value: float, base: float, metric: str) -> str:
    best = 0.0 if metric in LOWER_IS_BETTER else 1.0
    if metric == "fid" or base == best or value != value or base != base:
        return "n/a"
    return f"{(value - base) / (best - base):.2f}"


def markdown_table(results: Dict[str, Dict[str, float]], title: str = "") -> str:
    """Rows: model, the copy-reference and part-warp baselines, the ground truth (PCKh's ceiling), and the fraction
    of the gap to a perfect score the model closes over each baseline. A metric a row does not have shows "—"."""
    metrics = [k for k in results["model"] if k != "num_pairs"]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for key, row in results.items():
        cells = [f"{row[m]:.4f}" if m in row else "—" for m in metrics]
        lines.append(f"| {ROW_NAMES.get(key, key)} | " + " | ".join(cells) + " |")
    for key in BASELINES:
        if key in results:
            gap = [_gap(results["model"][m], results[key][m], m) if m in results[key] else "n/a" for m in metrics]
            label = "gap closed (model − baseline) / (best − baseline)" if key == "copy_reference" else "gap closed over part-warp (model − part-warp) / (best − part-warp)"
            lines.append(f"| {label} | " + " | ".join(gap) + " |")
    lines.append("")
    lines.append(f"{results['model']['num_pairs']} pairs.")
    return "\n".join(lines) + "\n"


def eval_results(record: Dict) -> list:
    """The model's metrics of an ``evaluation.json`` record as ``huggingface_hub.EvalResult`` entries for card metadata.

    Only the model's row: the Hub reads ``model-index`` as the model's own results, so the baselines and the
    estimator's ceiling stay in the card's table (`update_model_card`), not in its metadata.
    """
    from huggingface_hub import EvalResult

    dataset = record.get("dataset", "synthhumans")
    name = "SynthHumans (test split)" if dataset == "synthhumans" else str(dataset)
    return [
        EvalResult(
            task_type="image-to-image", task_name="Pose transfer",
            dataset_type=dataset if dataset == "synthhumans" else "custom", dataset_name=name,
            dataset_split="test", dataset_config=f"{record['resolution']}px, seed {record.get('seed', 0)}",
            metric_type=metric, metric_name=METRIC_NAMES.get(metric, metric.replace("_", "-").upper()),
            metric_value=round(float(value), 4),
        )
        for metric, value in record["model"].items()
        if metric != "num_pairs" and value == value  # a NaN (nothing to score) is no result
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
    if "pckh" in metrics:
        options["estimator"] = args.pose_estimator
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
    p = sub.add_parser(
        "evaluate",
        help="metrics of a model stage on a test split, beside the copy-reference and part-warp baselines",
        description=(
            "Metrics of a model stage on a test split. Rows: the model; the copy-reference baseline (the reference "
            "image returned as it is); the part-warp baseline (the reference moved part by part to the target pose, "
            "no training); with pckh, the ground truth (PCKh of the real target images: the pose estimator's "
            "ceiling); and the gap the model closes over each baseline."
        ),
    )
    p.add_argument("--model", required=True, help="a model repository folder or Hub id")
    p.add_argument("--resolution", type=int, default=None, help="the stage to evaluate (default: the highest present)")
    p.add_argument("--dataset", default="synthhumans", help="'synthhumans' (its test split) or a pair-format folder")
    p.add_argument("--num-pairs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="SynthHumans seed (fixes identities and pairs)")
    p.add_argument(
        "--metrics", default=",".join(DEFAULT_METRICS),
        help=f"comma-separated: ssim, ms_ssim, local_ssim, pckh (pose estimator on every image), lpips, fid (default {','.join(DEFAULT_METRICS)})",
    )
    p.add_argument("--pose-estimator", default="blazepose", choices=["blazepose", "openpose", "auto"], help="the pose estimator of pckh (blazepose: offline)")
    p.add_argument("--alexnet-path", default=None, help="torchvision's alexnet-owt-7be5be79.pth for LPIPS")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--no-baseline", action="store_true", help="skip the copy-reference and part-warp baselines")
    p.add_argument("--out", default=None, help="folder for evaluation.json / .jsonl / .md")
    p.add_argument("--update-card", action="store_true", help="write the table and metrics into the README.md card of --model (a local repository)")
    p.set_defaults(func=_cmd_evaluate)
