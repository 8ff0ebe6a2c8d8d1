"""The option rows of docs/tryon.md's table: the embedded try-on pipeline in "keep" mode with each of its options,
on the same SynthHumans test triples as ``pgat evaluate --task tryon`` (the parsing masks, the drawn keypoints).

    python docs/tryon_variants.py [--num-triples 100]   # writes docs/tryon-evaluation/variants/evaluation-tryon.{json,md}

Rows: the default (flow, ``fill="inpaint"``), ``fill="generator"``, ``refine=False`` (the part warp only), the part
warp with ``fill="person"`` (the old garment left showing), and the two baselines. Two oracle rows say what limits
the default: its output with the ground truth put in the invented hole (``oracle_truth_in_hole``), and with the
ground truth put where the moved garment landed (``oracle_truth_in_garment``); ``hole_share`` is the invented
hole's share of the region, ``back_view_share`` the share of garment photos whose wearer is seen from behind (the
right shoulder not left of the left one, in the image). ``pgat evaluate --task tryon``
gives the default and canonical rows by itself (docs/tryon-evaluation/{keep,canonical}/).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pgat.data.synthetic import SynthHumansTryOn
from pgat.evaluation import (PipelineTryOn, category_mask, evaluate_tryon, garment_region, seam_width, tryon_gaps,
                             tryon_markdown_table, tryon_scores, write_results)
from pgat.pipelines.tryon import PGATTryOnPipeline

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "keep": {},
    "keep_fill_generator": {"fill": "generator"},
    "keep_rigid": {"refine": False},
    "keep_rigid_fill_person": {"refine": False, "fill": "person"},
}


def oracles(pipe, triples, n: int):
    """The default's output with the ground truth in its invented hole, and in its moved garment's place."""
    import numpy as np

    seam = seam_width(pipe.resolution)
    rows = {"oracle_truth_in_hole": [], "oracle_truth_in_garment": []}
    hole_share, back = [], []
    for i in range(n):
        item = triples[i]
        person, truth = item["person"], item["ground_truth"]
        out = pipe(person, item["garment"], person_mask=category_mask(item["person_parsing"]),
                   garment_mask=category_mask(item["garment_parsing"]), person_pose=item["person_keypoints"],
                   garment_pose=item["garment_keypoints"], output_type="np", mode="keep")
        image = (np.clip(out.images[0], 0, 1) * 255 + 0.5).astype(np.uint8)
        region = garment_region(item["person_parsing"], item["ground_truth_parsing"])
        hole = np.asarray(out.invented_mask[0]).reshape(*region.shape, -1)[..., 0] > 0.5
        placed = np.asarray(out.garment_mask[0]).reshape(*region.shape, -1)[..., 0] > 0.5
        for name, where in (("oracle_truth_in_hole", hole), ("oracle_truth_in_garment", placed)):
            rows[name].append(tryon_scores(np.where(where[..., None], truth, image), truth, person, region, seam))
        hole_share.append((hole & region).sum() / max(region.sum(), 1))
        kps = item["garment_keypoints"]
        back.append(kps[2, 0] >= kps[5, 0])  # OpenPose 2 = right shoulder, 5 = left shoulder
    means = {name: {k: float(np.mean([r[k] for r in rs])) if k != "outside_max_diff" else float(max(r[k] for r in rs))
                    for k in rs[0]} | {"num_triples": n} for name, rs in rows.items()}
    return means, {"hole_share": float(np.mean(hole_share)), "back_view_share": float(np.mean(back))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "weights" / "pgat-synth-256"))
    p.add_argument("--num-triples", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "docs" / "tryon-evaluation" / "variants"))
    args = p.parse_args()
    pipe = PGATTryOnPipeline.from_pretrained(args.model, pose_estimator=None)
    triples = SynthHumansTryOn(resolution=pipe.resolution, split="test", seed=0, length=args.num_triples)
    rows, seconds = {}, {}
    for i, (name, options) in enumerate(VARIANTS.items()):
        t0 = time.perf_counter()
        result = evaluate_tryon(PipelineTryOn(pipe, "keep", **options), triples, args.num_triples, name=name, baselines=i == 0)
        seconds[name] = time.perf_counter() - t0
        rows.update(result)
        print(name, {k: round(v, 4) for k, v in result[name].items()})
    oracle_rows, shares = oracles(pipe, triples, args.num_triples)
    rows.update(oracle_rows)
    print(shares)
    record = {"task": "tryon", "model": args.model, "mode": "keep", "resolution": pipe.resolution, "seed": 0,
              "options": VARIANTS, "seconds": seconds, "rows": rows, "gap_closed": tryon_gaps(rows, "keep"), **shares}
    table = tryon_markdown_table(rows, "keep", f"keep-mode options · {args.num_triples} SynthHumans test triples (seed 0)")
    table += "\n" + "".join(f"{k}: {v:.3f}. " for k, v in shares.items()) + "\n"
    print(table)
    write_results(args.out, "evaluation-tryon", record, table)


if __name__ == "__main__":
    main()
