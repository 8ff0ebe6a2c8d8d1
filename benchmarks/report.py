"""Tables for ``benchmarks/BENCHMARKS.md`` and the latency / utilisation plot, from the JSON in ``results/``.

Each table sits between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->`` in BENCHMARKS.md and is rewritten
from the results; the prose around the tables is written by hand.

    python benchmarks/report.py            # rewrites the tables and results/inference-cpu.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def machine_line(m: Dict) -> str:
    bf16 = {True: ", native bf16 in oneDNN", False: ", no native bf16"}.get(m.get("onednn_bf16"), "")
    cpu = f"{m['cpu']}, {m.get('cores', '?')} cores, {m['threads']} threads, torch {m['torch']} ({m.get('cpu_capability', '?')}{bf16})"
    return f"{m['gpu']} ({m['gpu_memory_gib']:.0f} GiB, CUDA {m['cuda']}) on {cpu}" if "gpu" in m else cpu


def _header(*columns: str) -> List[str]:
    """A markdown table's header row and separator."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def aim_table(cost: Dict, aim: float = 0.6) -> str:
    """Issue 10's aim: the paper-size model at >= 60 % of the same-run peak at every stage from 128² up (fp32)."""
    rows = _header("stage", "batch", "utilisation, best / median of the forwards", "aim 60 %")
    for r in cost["runs"]:
        if r["resolution"] < 128:
            continue
        verdict = "met" if r["utilisation_median"] >= aim else ("met by the best forward only" if r["utilisation"] >= aim else "**missed**")
        rows.append(f"| {r['resolution']}² | {r['batch']} | {r['utilisation']:.0%} / {r['utilisation_median']:.0%} | {verdict} |")
    return "\n".join(rows)


def inference_table(cost: Dict) -> str:
    rows = _header("stage", "batch", "GFLOPs / image", "latency best (ms)", "median (ms)", "images/s", "GFLOP/s", "same-run peak",
                   "utilisation (best / median)", "peak memory (GiB)", "load")
    for r in cost["runs"]:
        rows.append(
            f"| {r['resolution']}² | {r['batch']} | {r['forward_gflops'] / r['batch']:.1f} | {_ms(r['seconds_best'])} | "
            f"{_ms(r['seconds_median'])} | {r['images_per_second']:.2f} | {r['gflops_per_second_best']:.1f} | "
            f"{r['peak_gflops_per_second']:.1f} | **{r['utilisation']:.0%}** / {r['utilisation_median']:.0%} | "
            f"{r['peak_memory_gib']:.2f} | {r['load_average']['after'][0]:.1f} |"
        )
    return "\n".join(rows)


def fast_path_table(fast: Dict) -> str:
    rows = _header("stage", "option", "without (ms, best)", "with (ms, best)", "speed-up (best / median of pairs)", "max abs diff", "kept")
    for stage in fast["stages"]:
        for res in stage["results"]:
            extra = ""
            if "compile_seconds" in res:
                extra = f" (compile {res['compile_seconds']:.0f} s)"
            if res["option"].startswith("encode_once"):
                extra = f" ({res['poses']} poses)"
            if "onednn_native_bf16" in res:
                extra = " (native bf16: " + ("yes" if res["onednn_native_bf16"] else "no, emulated") + ")"
                if "measured_on" in res:
                    extra += ", on one 3×3 conv (256 ch, 64²)"
            rows.append(
                f"| {stage['resolution']}² | `{res['option']}`{extra} | {_ms(res['baseline_seconds'])} | {_ms(res['option_seconds'])} | "
                f"×{res['speedup']:.2f} / ×{res['speedup_paired_median']:.2f} | {res['max_abs_difference']:.1e} | {KEPT.get(res['option'], '')} |"
            )
    return "\n".join(rows)


# what the library does with each option (the decision; the numbers are in the table)
KEPT = {
    "fuse": "yes: `PGATModel.fuse()`, pipelines by default",
    "reuse_memory": "yes: `fuse()` on the CPU (process-wide; `PGAT_REUSE_CPU_MEMORY=0` turns it off)",
    "channels_last": "yes: part of `fuse()`",
    "encode_once": "yes: pipelines and videos with one reference",
    "encode_once_batched": "yes, on GPUs (batch 8); a CPU decodes one pose per pass",
    "threads_1": "no: torch's default (all cores)",
    "no_onednn": "no: oneDNN stays on",
    "no_concat": "no: a few per cent, for a second decoder path",
    "bf16_weights": "opt-in: `torch_dtype=torch.bfloat16`, `--dtype bfloat16` (quality below)",
    "bf16_autocast": "no: casting the weights is as fast, without a context",
    "compile": "opt-in: `fuse(compile=True)`",
}


def precision_table(prec: Dict) -> str:
    rows = _header("", "SSIM", "MS-SSIM", "local-SSIM", "time for the pairs (s)")
    for name in ("fp32", "bf16"):
        m = prec[name]
        rows.append(f"| {name} | {m['ssim']:.4f} | {m['ms_ssim']:.4f} | {m['local_ssim']:.4f} | {m['seconds']:.2f} |")
    c = prec["metric_change"]
    rows.append(f"| bf16 − fp32 | {c['ssim']:+.4f} | {c['ms_ssim']:+.4f} | {c['local_ssim']:+.4f} | ×{prec['speedup']:.2f} faster |")
    rows.append("")
    rows.append(
        f"`{prec['model']}` at {prec['resolution']}², {prec['num_pairs']} SynthHumans test pairs. As 8-bit images, bf16 differs "
        f"from fp32 by {prec['png_levels_mean_abs_difference']:.2f} levels on average and {prec['png_levels_max_abs_difference']:.0f} at most; "
        f"{100 * prec['share_of_values_off_by_more_than_2_levels']:.2f} % of the values differ by more than 2 levels."
    )
    return "\n".join(rows)


def profile_table(profile: Dict) -> str:
    groups = ["convolution", "concatenation", "up-sampling", "pooling", "activation", "batchnorm", "copies"]
    rows = _header("stage", "form", "forward (s)", "convolutions at (GFLOP/s)", *groups, "other")
    for st in profile["stages"]:
        share = st["share_by_group"]
        other = 1 - sum(share.get(g, 0.0) for g in groups)
        rows.append(
            f"| {st['resolution']}² | {'fused' if st['fused'] else 'unfused'} | {st['seconds']:.2f} | {st['conv_gflops_per_second']:.1f} | "
            + " | ".join(f"{100 * share.get(g, 0.0):.1f} %" for g in groups) + f" | {100 * other:.1f} % |"
        )
    peaks = [round(p["gflops_per_second"]) for p in profile["peaks"]]
    rows.append("")
    rows.append(f"Peaks measured between the stages: {peaks} GFLOP/s.")
    return "\n".join(rows)


def video_table(video: Dict) -> str:
    rows = _header("model", "width", "stage", "poses from", "frames", "batch", "fps", "model (s)", "pose estimation (s)",
                   "mp4 encode (s)", "other (s)", "load")
    for r in video["runs"]:
        rows.append(
            f"| {r.get('model', 'random weights')} | {r['bottleneck_channels']} | {r['resolution']}² | {r['source']} | {r['frames']} | {r['batch_size']} | **{r['frames_per_second']:.2f}** | "
            f"{r['model_seconds']:.1f} | {r['pose_estimation_seconds']:.1f} | {r['mp4_encode_seconds']:.2f} | {r['other_seconds']:.1f} | {r['load_average'][0]:.1f} |"
        )
    return "\n".join(rows)


def train_table(train: Dict) -> str:
    rows = _header("width", "stage", "batch", "recipe", "s / step", "images/s", "× fp32", "peak RSS (GiB)")
    fp32 = {(r["bottleneck_channels"], r["resolution"], r["batch_size"]): r["images_per_second"]
            for r in train["results"] if r.get("recipe", "fp32") == "fp32"}
    for r in train["results"]:
        base = fp32.get((r["bottleneck_channels"], r["resolution"], r["batch_size"]))
        ratio = f"{r['images_per_second'] / base:.2f}" if base else "–"
        rows.append(
            f"| {r['bottleneck_channels']} | {r['resolution']}² | {r['batch_size']} | {r.get('recipe', 'fp32')} | {r['seconds_per_step']:.2f} | "
            f"{r['images_per_second']:.2f} | {ratio} | {r['peak_rss_gib']:.2f} |"
        )
    return "\n".join(rows)


ACCOUNTING_PARTS = (("generator forward", "G fwd"), ("generator backward", "G bwd"), ("global perceptual", "global"),
                    ("local perceptual", "local"), ("pixel", "pixel"), ("adversarial (G)", "adv. G"),
                    ("discriminator", "D"), ("optimizer", "Adam"), ("data", "data"))


def accounting_table(result: Dict) -> str:
    """One step taken apart (``train_step.py --accounting``): per part, its share of the step's time and its GFLOPs."""
    rows = [f"{machine_line(result['machine'])}. Each part: share of the step's time · counted GFLOP.", ""]
    rows += _header("preset", "width", "stage", "batch", "recipe", "GFLOP / step", "s / step", "images/s", "MFU",
                    *(short for _, short in ACCOUNTING_PARTS), "load")
    for r in result["results"]:
        cells = []
        for name, _ in ACCOUNTING_PARTS:
            part = r["parts"].get(name)
            cells.append("–" if part is None else f"{part['seconds'] / r['step_seconds']:.0%} · {part['gflop']:.1f}")
        rows.append(
            f"| {r['preset']} | {r['bottleneck_channels']} | {r['resolution']}² | {r['batch_size']} | {r['recipe']} | {r['step_gflop']:.1f} | "
            f"{r['step_seconds']:.3f} | {r['images_per_second']:.2f} | {r['mfu']:.2f} | " + " | ".join(cells) + f" | {r['load_average'][0]:.1f} |"
        )
    return "\n".join(rows)


def pose_aware_table(result: Dict) -> str:
    """The pose-aware options' cost over the paper's network (``pose_aware.py``), one result file."""
    rows = [f"Width {result['runs'][0]['bottleneck_channels']}; {machine_line(result['machine'])}.", ""]
    rows += _header("stage", "paper (ms)", "pose-aware (ms)", "time ×", "counted FLOPs ×", "warp (ms)", "warp share of the pose-aware forward", "load")
    for r in result["runs"]:
        rows.append(
            f"| {r['resolution']}² | {_ms(r['paper']['seconds_median'])} | {_ms(r['pose_aware']['seconds_median'])} | "
            f"{r['pose_aware_over_paper_time']:.2f} | {r['pose_aware_over_paper_flops']:.2f} | {_ms(r['warp']['seconds_median'])} | "
            f"{r['warp_share_of_pose_aware_forward']:.1%} | {r['load_average'][0]:.1f} |"
        )
    return "\n".join(rows)


def serve_memory_table(records: List[Dict]) -> str:
    """``pgat serve``'s RSS over sequential requests (``serve_memory.py``), one row per run. The bound is on the growth
    after the warm-up: half of what a leak of one output image (its RGB pixels) per request would add."""
    m = records[0]["machine"]
    rows = [f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}, Python {m['python']}.", ""]
    rows += _header("model", "stage", "reference", "requests (warm-up)", "RSS at start (MiB)", "after warm-up", "at the end", "peak",
                    "growth after warm-up (MiB)", "bound (MiB)", "growth / 100 requests (difference; fit)", "requests/s", "load")
    for r in records:
        rows.append(
            f"| `{r['model']}` | {r['resolution']}² | {r['reference_size'][0]}×{r['reference_size'][1]} | {r['requests']} ({r['warmup']}) | "
            f"{r['rss_mib_start']:.0f} | {r['rss_mib_after_warmup']:.1f} | {r['rss_mib_end']:.1f} | {r['rss_mib_peak']:.1f} | "
            f"**{r['rss_mib_end'] - r['rss_mib_after_warmup']:+.2f}** | {r['leak_bound_mib']:.1f} | "
            f"{r['growth_mib_per_100_requests']:+.2f}; {r['growth_mib_per_100_requests_fit']:+.2f} | {r['requests_per_second']:.2f} | "
            f"{r['load_average_1min_before']:.1f}–{r['load_average_1min_after']:.1f} |"
        )
    return "\n".join(rows)


def plot(costs: List[Dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_util) = plt.subplots(1, 2, figsize=(11, 4.2))
    for cost in costs:
        label = "paper size (1024 ch)" if cost["bottleneck_channels"] == 1024 else f"embedded config ({cost['bottleneck_channels']} ch)"
        ones = [r for r in cost["runs"] if r["batch"] == 1]
        res = [r["resolution"] for r in ones]
        ax_lat.plot(res, [r["seconds_best"] * 1000 for r in ones], "o-", label=f"{label}, batch 1")
        ax_util.plot(res, [100 * r["utilisation"] for r in ones], "o-", label=f"{label}, batch 1")
        best = {}
        for r in cost["runs"]:
            if r["utilisation"] > best.get(r["resolution"], {"utilisation": -1})["utilisation"]:
                best[r["resolution"]] = r
        if any(b["batch"] > 1 for b in best.values()):
            ax_util.plot(sorted(best), [100 * best[k]["utilisation"] for k in sorted(best)], "s--", alpha=0.7, label=f"{label}, best batch")
    for ax in (ax_lat, ax_util):
        ax.set_xscale("log", base=2)
        ax.set_xticks([64, 128, 256, 512, 1024], ["64²", "128²", "256²", "512²", "1024²"])
        ax.set_xlabel("stage")
        ax.grid(alpha=0.3)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("forward latency, ms (best of 3)")
    ax_lat.set_title("Latency per image")
    ax_util.axhline(60, color="grey", ls=":", label="aim: 60 %")
    ax_util.set_ylim(0, 105)
    ax_util.set_ylabel("% of the same-run conv/GEMM peak")
    ax_util.set_title("FLOP/s utilisation")
    ax_util.legend(fontsize=8, loc="lower right")
    ax_lat.legend(fontsize=8)
    m = costs[0]["machine"]
    fig.suptitle(f"PGATModel.fuse() forward, fp32, {m['cpu']} ({m['threads']} threads, torch {m['torch']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def fill(markdown: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- begin: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
    if not pattern.search(markdown):
        raise SystemExit(f"BENCHMARKS.md has no <!-- begin: {name} --> ... <!-- end: {name} --> block")
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), markdown)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--markdown", default=str(HERE / "BENCHMARKS.md"))
    p.add_argument("--plot", default=str(RESULTS / "inference-cpu.png"), help="where the latency / utilisation plot goes")
    args = p.parse_args(argv)
    md = Path(args.markdown).read_text()
    paper, embedded = _load("model-cost-cpu.json"), _load("model-cost-embedded-cpu.json")
    costs = [c for c in (paper, embedded) if c and c.get("runs")]
    if paper:
        md = fill(md, "machine", f"Machine: {machine_line(paper['machine'])}.")
        md = fill(md, "paper", inference_table(paper))
        md = fill(md, "aim", aim_table(paper))
    if embedded:
        md = fill(md, "embedded", inference_table(embedded))
    gpu = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("model-cost-cuda-*.json"))]
    md = fill(md, "gpu", "\n\n".join(
        f"{machine_line(g['machine'])}, {g['precision']}, width {g['bottleneck_channels']}:\n\n{inference_table(g)}" for g in gpu
    ) or "No GPU result yet (`results/model-cost-cuda-*.json`).")
    bf16 = _load("model-cost-cpu-bf16.json")
    md = fill(md, "paper-bf16", inference_table(bf16) if bf16 else "Not measured: this CPU has no native bf16.")
    for name, loader, table in (("fast-path", "fast-path-cpu.json", fast_path_table), ("video", "video-cpu.json", video_table),
                                ("precision", "precision-cpu.json", precision_table),
                                ("train", "train-step-cpu.json", train_table), ("profile", "profile-cpu.json", profile_table)):
        data = _load(loader)
        if data:
            md = fill(md, name, table(data))
    accounting = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("train-accounting-*.json"))]
    if accounting:
        md = fill(md, "train-accounting", "\n\n".join(accounting_table(r) for r in accounting))
    pose_aware = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("pose-aware-*.json"))]
    if pose_aware:
        md = fill(md, "pose-aware", "\n\n".join(pose_aware_table(r) for r in pose_aware))
    serve_memory = _load("serve-memory-cpu.json")
    if serve_memory:
        md = fill(md, "serve-memory", serve_memory_table(serve_memory))
    Path(args.markdown).write_text(md)
    print(f"wrote {args.markdown}")
    if costs:
        plot(costs, Path(args.plot))


if __name__ == "__main__":
    main()
