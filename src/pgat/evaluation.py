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

Virtual try-on (``pgat evaluate --task tryon``, `evaluate_tryon`): the try-on pipeline on SynthHumans try-on
triples (`pgat.data.SynthHumansTryOn`: a person, another identity's top in another pose, and the exact ground truth),
scored on the whole image and inside the **garment region** (the person's own top ∪ the ground truth's top), and
outside it beyond a seam band (`tryon_scores`), beside two baselines:

- ``"person_unchanged"``: the person photo returned as it is;
- ``"unwarped_paste"``: the garment photo's top pixels pasted at the same pixel positions on the person photo.

``--category lower_body`` / ``full_body`` (``category=``) scores the triples that swap the bottom garment or both
(`SynthHumansTryOn(category=)`) the same way, with the category's garment everywhere the top is above (its parsing
labels: ``"bottom"``, or ``"top"`` and ``"bottom"``).

Written as ``evaluation-tryon.json`` (+ ``.jsonl``) and ``evaluation-tryon.md``; the other categories as
``evaluation-tryon-lower-body.*`` and ``evaluation-tryon-full-body.*``.
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
# virtual try-on
# ---------------------------------------------------------------------------------------------

TRYON_BASELINES = ("person_unchanged", "unwarped_paste")
TRYON_METRICS = ("ssim", "ssim_region", "l1_region", "psnr_region", "outside_equal", "outside_max_diff")
TRYON_ROW_NAMES = {
    "person_unchanged": "person-unchanged baseline",
    "unwarped_paste": "unwarped-paste baseline",
}
# the best value of the metrics a gap can be measured on
TRYON_BEST = {"ssim": 1.0, "ssim_region": 1.0, "l1_region": 0.0}
TRYON_MODES = ("keep", "canonical")
SEAM_AT_256 = 4  # px of the seam band at 256², scaled with the resolution
PSNR_CAP = 100.0  # dB given to an exact match (an infinite PSNR would not average)


def seam_width(resolution: int) -> int:
    """The seam band's width in pixels: `SEAM_AT_256` at 256², in proportion elsewhere (1 px at 64², 8 px at 512²)."""
    return max(1, round(SEAM_AT_256 * resolution / 256))


def garment_region(person_parsing, ground_truth_parsing, category: str = "upper_body"):
    """The garment region of a try-on triple, ``(H, W)`` bool: the union of the person's own top and the ground
    truth's top (``"top"`` label of each parsing), every pixel try-on must change or may change. Sleeves and top
    length decide which pixels are skin or bottom garment, so neither top alone is the region. Another ``category``
    takes its own garment's labels (`pgat.data.synthetic.CATEGORY_LABELS`: ``"bottom"``; ``"top"`` and ``"bottom"``)."""
    return category_mask(person_parsing, category) | category_mask(ground_truth_parsing, category)


def category_mask(parsing, category: str = "upper_body"):
    """``(H, W)`` bool: the pixels of a SynthHumans parsing that are the garment of ``category`` (its labels,
    `pgat.data.synthetic.CATEGORY_LABELS`)."""
    import numpy as np

    from .data.synthetic import CATEGORY_LABELS, TRYON_CATEGORIES

    if category not in TRYON_CATEGORIES:
        raise ValueError(f"`category` must be one of {list(TRYON_CATEGORIES)}, got {category!r}")
    return np.isin(np.asarray(parsing), CATEGORY_LABELS[category])


def unwarped_paste(person, garment, garment_mask):
    """The unwarped-paste baseline: the garment photo's garment pixels (``garment_mask``: its top, or the garment
    of the category scored) pasted at the same pixel positions on the person photo, no warp; every other pixel the
    person's (uint8 ``(H, W, 3)``)."""
    import numpy as np

    m = np.asarray(garment_mask).astype(bool)[..., None]
    return np.where(m, garment, person).astype(np.uint8)


def tryon_scores(output, ground_truth, person, region, seam: int) -> Dict[str, float]:
    """Try-on metrics of one output (uint8 ``(H, W, 3)`` arrays, ``region`` the garment region, `garment_region`).

    - ``ssim``: SSIM of the whole image against the ground truth (`pgat.metrics.ssim_per_image`);
    - ``ssim_region``: the mean of the SSIM map over the region's pixels (`pgat.metrics.masked_ssim_per_image`);
    - ``l1_region``: mean absolute difference over the region's pixels and channels, intensities in [0, 1];
    - ``psnr_region``: PSNR (dB, peak 255) of the region's pixels, `PSNR_CAP` for an exact match;
    - ``outside_equal``: the share of the pixels outside the region grown by the seam band (every pixel more
      than ``seam`` px away from it in x or y: a ``(2 seam + 1)²`` square dilation) where the output equals the
      **person photo** exactly, all three channels; ``outside_max_diff``: the largest absolute difference there (0-255).
    """
    import numpy as np
    import torch.nn.functional as F

    from .metrics import masked_ssim_per_image, ssim_per_image, to_tensor

    out_t, gt_t = to_tensor(output, "output"), to_tensor(ground_truth, "ground_truth")
    m = torch.from_numpy(np.asarray(region, bool))
    diff = np.abs(output.astype(np.float64) - ground_truth.astype(np.float64))[np.asarray(region, bool)]
    mse = float((diff**2).mean()) if diff.size else float("nan")
    grown = F.max_pool2d(m[None, None].float(), 2 * seam + 1, stride=1, padding=seam)[0, 0].bool().numpy()
    outside = ~grown
    off = np.abs(output.astype(np.int16) - person.astype(np.int16)).max(-1)[outside]
    return {
        "ssim": float(ssim_per_image(out_t, gt_t)[0]),
        "ssim_region": float(masked_ssim_per_image(out_t, gt_t, m[None])[0]),
        "l1_region": float(diff.mean() / 255.0) if diff.size else float("nan"),
        "psnr_region": PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * float(np.log10(255.0**2 / mse))),
        "outside_equal": float((off == 0).mean()) if off.size else float("nan"),
        "outside_max_diff": float(off.max()) if off.size else 0.0,
    }


class PipelineTryOn:
    """`PGATTryOnPipeline` as the try-on callable of `evaluate_tryon`: the parsing masks and poses it is given go
    to the pipeline as ``person_mask`` / ``garment_mask`` / ``person_pose`` / ``garment_pose``, and the output comes
    back as uint8 ``(H, W, 3)``.

    Args:
        pipe (`PGATTryOnPipeline`): the pipeline.
        mode (`str`, *optional*): ``"keep"`` or ``"canonical"``, passed as the pipeline's ``mode=`` argument;
            the pipeline's own default when omitted. A pipeline without a ``mode`` argument always goes through
            the canonical pose: ``"canonical"`` then runs it as it is, ``"keep"`` is an error.
        category (`str`, *optional*, defaults to ``"upper_body"``): the pipeline's ``category=`` (the garment it
            is given masks of); only passed when it is not the default, and then the pipeline must take it.
        masks (`str`, *optional*, defaults to ``"parsing"``): ``"parsing"`` passes the masks it is given (the
            triples' parsing labels) to the pipeline; ``"automatic"`` passes none, so the pipeline makes its own
            (BlazePose's person mask within the category's parts), as it does for a user who draws none. Where
            BlazePose finds no person in a photo, the pipeline refuses, as it does in the Space; that triple's
            output is then the person photo unchanged (what the user is left with), counted in ``refused``.
        options (*optional*): more keyword arguments of the pipeline (e.g. ``refine=False``).

    Attributes:
        mode (`str` or `None`): the mode the outputs were made in (the output's ``mode`` when the pipeline reports one).
        category (`str`): the garment category it dresses.
        refused (`int`): the calls the pipeline refused for want of an automatic mask (``masks="automatic"``).
    """

    def __init__(self, pipe, mode: Optional[str] = None, category: str = "upper_body", masks: str = "parsing", **options):
        import inspect

        from .data.synthetic import TRYON_CATEGORIES

        if mode is not None and mode not in TRYON_MODES:
            raise ValueError(f"`mode` must be one of {TRYON_MODES} or None, got {mode!r}")
        if category not in TRYON_CATEGORIES:
            raise ValueError(f"`category` must be one of {list(TRYON_CATEGORIES)}, got {category!r}")
        if masks not in TRYON_MASKS:
            raise ValueError(f"`masks` must be one of {list(TRYON_MASKS)}, got {masks!r}")
        self.pipe = pipe
        self.masks = masks
        self.refused = 0
        parameters = inspect.signature(pipe.__call__).parameters
        self.takes_mode = "mode" in parameters
        if mode == "keep" and not self.takes_mode:
            raise ValueError("`mode`='keep' needs a PGATTryOnPipeline with a `mode` argument; this one always goes through the canonical pose (mode='canonical')")
        if category != "upper_body" and "category" not in parameters:
            raise ValueError(f"`category`={category!r} needs a PGATTryOnPipeline with a `category` argument; this one dresses tops only")
        self.requested = mode
        self.mode = mode if (mode is not None or self.takes_mode) else "canonical"
        self.category = category
        self.options = dict(options, category=category) if category != "upper_body" else dict(options)

    def __call__(self, person, garment, person_mask, garment_mask, person_keypoints, garment_keypoints):
        import numpy as np

        from .pipelines.tryon import NoPersonFoundError

        options = {"mode": self.requested} if (self.requested is not None and self.takes_mode) else {}
        options.update(self.options)
        if self.masks == "automatic":
            person_mask = garment_mask = None
        try:
            out = self.pipe(
                person, garment, person_mask=person_mask, garment_mask=garment_mask,
                person_pose=person_keypoints, garment_pose=garment_keypoints, output_type="np", **options,
            )
        except NoPersonFoundError:  # the pipeline's refusal to make a mask: the user gets an error and keeps the photo
            if self.masks != "automatic":
                raise
            self.refused += 1
            return np.asarray(person, np.uint8).copy()
        if getattr(out, "mode", None) is not None:
            self.mode = str(out.mode)
        return (np.clip(np.asarray(out.images[0]), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


TRYON_MASKS = ("parsing", "automatic")


def evaluate_tryon(
    tryon,
    triples,
    num_triples: Optional[int] = None,
    name: str = "model",
    baselines: bool = True,
    seam: Optional[int] = None,
    progress: bool = True,
    category: Optional[str] = None,
) -> Dict[str, Dict[str, float]]:
    """Try-on metrics (`tryon_scores`) of ``tryon`` and of the two baselines over the first ``num_triples`` triples.

    Args:
        tryon: any callable ``(person, garment, person_mask, garment_mask, person_keypoints, garment_keypoints) ->
            output``: uint8 ``(R, R, 3)`` photos, the masks uint8 ``(R, R)`` 0/255 (the person's own ``"top"`` and
            the garment photo's ``"top"`` parsing labels; the category's garment for another ``category``), the
            keypoints float ``(18, 2)`` pixels (-1 missing, as drawn); the output uint8 ``(R, R, 3)``.
            `PipelineTryOn` adapts a `PGATTryOnPipeline`; ``None`` scores the baselines only.
        triples: try-on triples with the items of `pgat.data.SynthHumansTryOn`.
        name (`str`, *optional*, defaults to ``"model"``): the row of ``tryon``.
        baselines (`bool`, *optional*, defaults to `True`): add the rows ``"person_unchanged"`` (the person photo
            as it is) and ``"unwarped_paste"`` (`unwarped_paste`).
        seam (`int`, *optional*): the seam band in px; `seam_width` of the resolution when omitted.
        category (`str`, *optional*): the garment scored, ``"upper_body"``, ``"lower_body"`` or ``"full_body"``:
            the masks ``tryon`` gets, the pasted garment and the region are its parsing labels (`category_mask`,
            `garment_region`). Defaults to the triples' own (``triples.category``, else ``"upper_body"``); another
            than the triples' or than ``tryon``'s own ``category`` (a `PipelineTryOn`'s) is an error.

    Returns:
        ``{row: {metric: value, "num_triples": n}}``: every metric the mean over triples, but ``outside_max_diff``,
        the largest over all of them.
    """
    import numpy as np
    from tqdm.auto import tqdm

    own = getattr(triples, "category", "upper_body")
    category = own if category is None else category
    if category != own:
        raise ValueError(f"`category` is {category!r} but the triples swap {own!r} garments; make them with SynthHumansTryOn(category={category!r})")
    if tryon is not None and getattr(tryon, "category", category) != category:
        raise ValueError(f"`tryon` dresses {tryon.category!r} garments and the triples swap {category!r} ones; build it with category={category!r}")
    n = len(triples) if num_triples is None else min(num_triples, len(triples))
    if n < 1:
        raise ValueError(f"`triples` has none to evaluate (len {len(triples)}, num_triples {num_triples})")
    if tryon is None and not baselines:
        raise ValueError("nothing to evaluate: `tryon` is None and `baselines` is False")
    names = ([name] if tryon is not None else []) + (list(TRYON_BASELINES) if baselines else [])
    scores: Dict[str, List[Dict[str, float]]] = {k: [] for k in names}
    for i in tqdm(range(n), disable=not progress, desc="evaluate try-on"):
        item = triples[i]
        person, garment, truth = item["person"], item["garment"], item["ground_truth"]
        r = person.shape[0]
        seam_px = seam_width(r) if seam is None else int(seam)
        person_mask = category_mask(item["person_parsing"], category).astype(np.uint8) * 255
        garment_mask = category_mask(item["garment_parsing"], category).astype(np.uint8) * 255
        region = garment_region(item["person_parsing"], item["ground_truth_parsing"], category)
        outputs = {}
        if tryon is not None:
            out = tryon(person, garment, person_mask, garment_mask, item["person_keypoints"], item["garment_keypoints"])
            out = np.asarray(out)
            if out.dtype != np.uint8 or out.shape != person.shape:
                raise ValueError(f"`tryon` must return a uint8 array of the person photo's shape {person.shape}, got {out.dtype} of shape {out.shape}")
            outputs[name] = out
        if baselines:
            outputs["person_unchanged"] = person
            outputs["unwarped_paste"] = unwarped_paste(person, garment, garment_mask)
        for key, out in outputs.items():
            scores[key].append(tryon_scores(out, truth, person, region, seam_px))
    results = {}
    for key, rows in scores.items():
        row = {m: float(np.nanmean([r[m] for r in rows])) for m in TRYON_METRICS if m != "outside_max_diff"}
        row["outside_max_diff"] = float(max(r["outside_max_diff"] for r in rows))
        results[key] = {**{m: row[m] for m in TRYON_METRICS}, "num_triples": n}
    return results


def tryon_gaps(results: Dict[str, Dict[str, float]], model: str) -> Dict[str, Dict[str, float]]:
    """The share of the gap to a perfect score the ``model`` row closes over each baseline row,
    ``(model - baseline) / (best - baseline)``, for the metrics with a best value (`TRYON_BEST`); NaN when the
    baseline is already perfect. The issue's aim: at least 0.5 on ``ssim_region`` over ``"unwarped_paste"``."""
    gaps = {}
    for base in TRYON_BASELINES:
        if base in results and model in results:
            gaps[base] = {}
            for m, best in TRYON_BEST.items():
                b, v = results[base][m], results[model][m]
                gaps[base][m] = float("nan") if b == best else float((v - b) / (best - b))
    return gaps


CATEGORY_GARMENTS = {"upper_body": "top", "lower_body": "bottom garment", "full_body": "top and bottom garment"}


def tryon_markdown_table(results: Dict[str, Dict[str, float]], model: Optional[str] = None, title: str = "",
                         category: str = "upper_body") -> str:
    """Rows: the model (``model``), the person-unchanged and unwarped-paste baselines, and the gap the model closes
    over each (`tryon_gaps`). ``category`` names the garment of the region in the footnote."""
    lines = [f"**{title}**", ""] if title else []
    lines += ["| | " + " | ".join(TRYON_METRICS) + " |", "|---|" + "---|" * len(TRYON_METRICS)]
    for key, row in results.items():
        cells = [f"{row[m]:.0f}" if m == "outside_max_diff" else f"{row[m]:.4f}" for m in TRYON_METRICS]
        label = TRYON_ROW_NAMES.get(key) or (key.replace("pgat_", "PGAT (") + ")" if key.startswith("pgat_") else key)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if model is not None:
        for base, gap in tryon_gaps(results, model).items():
            cells = [("n/a" if gap[m] != gap[m] else f"{gap[m]:.2f}") if m in gap else "" for m in TRYON_METRICS]
            lines.append(f"| gap closed over {base.replace('_', '-')} (model − baseline) / (best − baseline) | " + " | ".join(cells) + " |")
    n = next(iter(results.values()))["num_triples"]
    garment = CATEGORY_GARMENTS[category]
    lines += ["", f"{n} triples. Region: the person's {garment} ∪ the ground truth's {garment}. Outside: beyond the region grown by the seam band."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def write_results(folder, stem: str, record: Dict, table: str) -> None:
    """``STEM.json`` (this run), a line appended to ``STEM.jsonl`` (every run) and ``STEM.md`` (the table) in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    with open(out / f"{stem}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    (out / f"{stem}.md").write_text(table)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .stages import stage_folder

    if args.task == "tryon":
        return _cmd_evaluate_tryon(args)
    if args.mode is not None:
        raise ValueError("`--mode` is an option of `--task tryon`; the pose-transfer evaluation has no mode")
    if args.category is not None:
        raise ValueError("`--category` is an option of `--task tryon`; the pose-transfer evaluation has no garment category")
    if args.masks is not None:
        raise ValueError("`--masks` is an option of `--task tryon`; the pose-transfer evaluation has no garment masks")
    metrics = [m.strip() for m in (args.metrics or ",".join(DEFAULT_METRICS)).split(",") if m.strip()]
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
        write_results(args.out, "evaluation", record, table)
    if args.update_card:
        print(f"model card updated: {update_model_card(args.model, record, table)}")
    return 0


def _cmd_evaluate_tryon(args: argparse.Namespace) -> int:
    from .data.synthetic import SynthHumansTryOn
    from .pipelines.tryon import PGATTryOnPipeline
    from .stages import stage_folder

    refused = [flag for flag, given in (("--metrics", args.metrics is not None), ("--update-card", args.update_card),
                                        ("--dataset", args.dataset != "synthhumans")) if given]
    if refused:
        raise ValueError(f"`--task tryon` scores SynthHumans try-on triples with its own metrics; it takes no {', '.join(refused)}")
    pipe = PGATTryOnPipeline.from_pretrained(args.model, resolution=args.resolution, pose_estimator=None)
    if args.device:
        pipe.to(args.device)
    category, masks = args.category or "upper_body", args.masks or "parsing"
    tryon = PipelineTryOn(pipe, args.mode, category=category, masks=masks)
    resolution = pipe.resolution
    triples = SynthHumansTryOn(resolution=resolution, split="test", seed=args.seed, length=args.num_pairs, category=category)
    t0 = time.perf_counter()
    results = evaluate_tryon(tryon, triples, args.num_pairs, name="model", baselines=not args.no_baseline, category=category)
    seconds = time.perf_counter() - t0
    row = f"pgat_{tryon.mode or 'default'}"  # the model's row is named by the mode it ran in
    results = {(row if k == "model" else k): v for k, v in results.items()}
    gaps = tryon_gaps(results, row)
    record = {
        "task": "tryon", "model": str(args.model), "mode": tryon.mode, "category": category, "masks": masks, "refused": tryon.refused, "stage": stage_folder(resolution),
        "resolution": resolution, "dataset": "synthhumans-tryon", "seed": args.seed, "seam_px": seam_width(resolution), "seconds": seconds,
        "rows": results, "gap_closed": gaps,
    }
    what = ("" if category == "upper_body" else f", {category.replace('_', ' ')} garments") + (", automatic masks" if masks == "automatic" else "")
    table = tryon_markdown_table(
        results, row, f"{args.model} · {stage_folder(resolution)} · try-on{what}, SynthHumans test triples (seed {args.seed}, seam {seam_width(resolution)} px)",
        category=category,
    )
    if masks == "automatic":
        table += (f"\nAutomatic masks: BlazePose found no person in a photo of {tryon.refused} of the {results[row]['num_triples']} triples; "
                  "the pipeline refused them, and they are scored as the person photo unchanged.\n")
    print(table)
    if args.out:
        write_results(args.out, tryon_results_stem(category, masks), record, table)
    return 0


def tryon_results_stem(category: str = "upper_body", masks: str = "parsing") -> str:
    """The file stem of a try-on evaluation: ``evaluation-tryon`` (tops), ``evaluation-tryon-lower-body``, ``-full-body``;
    ``-automatic-masks`` appended when the pipeline made its own masks."""
    stem = "evaluation-tryon" if category == "upper_body" else f"evaluation-tryon-{category.replace('_', '-')}"
    return stem + ("-automatic-masks" if masks == "automatic" else "")


def register_evaluate(sub) -> None:
    from .parts import GARMENT_CATEGORIES

    p = sub.add_parser(
        "evaluate",
        help="metrics of a model stage on a test split, beside the copy-reference and part-warp baselines",
        description=(
            "Metrics of a model stage on a test split. Rows: the model; the copy-reference baseline (the reference "
            "image returned as it is); the part-warp baseline (the reference moved part by part to the target pose, "
            "no training); with pckh, the ground truth (PCKh of the real target images: the pose estimator's "
            "ceiling); and the gap the model closes over each baseline. With --task tryon: the try-on pipeline on "
            "SynthHumans try-on triples beside the person-unchanged and unwarped-paste baselines (evaluation-tryon.json/.md)."
        ),
    )
    p.add_argument("--task", choices=["pose-transfer", "tryon"], default="pose-transfer",
                   help="pose-transfer (default): the model stage on pairs; tryon: the try-on pipeline (needs the repository's flow/)")
    p.add_argument("--mode", choices=list(TRYON_MODES), default=None,
                   help="--task tryon: the try-on pipeline's mode (default: the pipeline's own)")
    p.add_argument("--category", choices=list(GARMENT_CATEGORIES), default=None,
                   help="--task tryon: the garment swapped and scored: upper_body (tops, default), lower_body (trousers, shorts, skirts) or "
                        "full_body (both); written as evaluation-tryon.* for upper_body, evaluation-tryon-lower-body.* / -full-body.* otherwise")
    p.add_argument("--masks", choices=list(TRYON_MASKS), default=None,
                   help="--task tryon: the triples' parsing masks (default), or automatic: none given, the pipeline makes its own from "
                        "BlazePose's person mask, as for a user who draws none (written as ...-automatic-masks.*)")
    p.add_argument("--model", required=True, help="a model repository folder or Hub id")
    p.add_argument("--resolution", type=int, default=None, help="the stage to evaluate (default: the highest present)")
    p.add_argument("--dataset", default="synthhumans", help="'synthhumans' (its test split) or a pair-format folder")
    p.add_argument("--num-pairs", type=int, default=200, help="pairs (try-on triples with --task tryon) to score (default 200)")
    p.add_argument("--seed", type=int, default=0, help="SynthHumans seed (fixes identities and pairs)")
    p.add_argument(
        "--metrics", default=None,
        help=f"pose-transfer, comma-separated: ssim, ms_ssim, local_ssim, pckh (pose estimator on every image), lpips, fid (default {','.join(DEFAULT_METRICS)})",
    )
    p.add_argument("--pose-estimator", default="blazepose", choices=["blazepose", "openpose", "auto"], help="the pose estimator of pckh (blazepose: offline)")
    p.add_argument("--alexnet-path", default=None, help="torchvision's alexnet-owt-7be5be79.pth for LPIPS")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--no-baseline", action="store_true", help="skip the copy-reference and part-warp baselines")
    p.add_argument("--out", default=None, help="folder for evaluation.json / .jsonl / .md (evaluation-tryon.* with --task tryon)")
    p.add_argument("--update-card", action="store_true", help="write the table and metrics into the README.md card of --model (a local repository)")
    p.set_defaults(func=_cmd_evaluate)
