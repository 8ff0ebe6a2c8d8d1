"""The table of docs/tryon.md's "Lower-body and full-body garments": the embedded try-on pipeline in "keep" mode for
each garment category, on SynthHumans test triples that swap that garment (`SynthHumansTryOn(category=)`), with the
parsing masks and the drawn keypoints, as ``pgat evaluate --task tryon --category`` scores them.

    python docs/tryon_categories.py [--num-triples 100] [--flow FOLDER]
    # writes docs/tryon-evaluation/categories/evaluation-tryon-{upper-body,lower-body,full-body}.{json,jsonl,md}

Rows per category: the default (the part warp corrected by the appearance flow), the rigid part warp alone
(``refine=False``), and the two baselines (the person photo unchanged; the garment's pixels pasted unwarped).
``--flow`` scores another appearance-flow folder (e.g. a retrained one) in place of the repository's ``flow/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pgat.data.synthetic import SynthHumansTryOn
from pgat.evaluation import PipelineTryOn, evaluate_tryon, tryon_gaps, tryon_markdown_table, write_results
from pgat.pipelines.tryon import CATEGORIES, PGATTryOnPipeline

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"keep": {}, "keep_rigid": {"refine": False}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "weights" / "pgat-synth-256"))
    p.add_argument("--flow", default=None, help="an AppearanceFlowModel folder to use instead of the repository's flow/")
    p.add_argument("--num-triples", type=int, default=100)
    p.add_argument("--categories", default=",".join(CATEGORIES))
    p.add_argument("--out", default=str(ROOT / "docs" / "tryon-evaluation" / "categories"))
    args = p.parse_args()
    import hashlib

    flow_folder = Path(args.flow or Path(args.model) / "flow")
    flow_sha256 = hashlib.sha256((flow_folder / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    pipe = PGATTryOnPipeline.from_pretrained(args.model, pose_estimator=None)
    if args.flow:
        from pgat.models import AppearanceFlowModel

        pipe.register_modules(flow=AppearanceFlowModel.from_pretrained(args.flow).eval())
    for category in args.categories.split(","):
        triples = SynthHumansTryOn(resolution=pipe.resolution, split="test", seed=0, length=args.num_triples, category=category)
        rows, seconds = {}, {}
        for i, (name, options) in enumerate(VARIANTS.items()):
            t0 = time.perf_counter()
            tryon = PipelineTryOn(pipe, "keep", category=category, **options)
            result = evaluate_tryon(tryon, triples, args.num_triples, name=name, baselines=i == 0, category=category, progress=False)
            seconds[name] = time.perf_counter() - t0
            rows.update(result)
            print(category, name, {k: round(v, 4) for k, v in result[name].items()}, flush=True)
        record = {"task": "tryon", "model": args.model, "flow": str(flow_folder), "flow_sha256": flow_sha256, "mode": "keep", "category": category,
                  "resolution": pipe.resolution, "seed": 0, "options": VARIANTS,
                  "seconds": seconds, "rows": rows, "gap_closed": tryon_gaps(rows, "keep")}
        table = tryon_markdown_table(rows, "keep", f"{category} · keep mode · {args.num_triples} SynthHumans test triples (seed 0)", category=category)
        print(table)
        write_results(args.out, f"evaluation-tryon-{category.replace('_', '-')}", record, table)


if __name__ == "__main__":
    main()
