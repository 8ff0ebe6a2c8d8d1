"""train/ablation.py: Table 1 variants (the paper's and the pose-aware ones) at equal steps and at equal time,
evaluated on one test split, reported in markdown."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = (
    "--stages 64,128 --steps_per_stage 2 --train_batch_size 1 --bottleneck_channels 16 --discriminator_channels 8 "
    "--num_validation_pairs 2 --synth_pairs 32 --checkpointing_steps 0"
)


def _run(tmp_path, variants, equal="steps", extra="", time_variants=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [
        sys.executable, str(REPO / "train" / "ablation.py"), "--config", "ablation-128", "--output_dir", str(tmp_path / "runs"),
        "--variants", variants, "--equal", equal, "--num_pairs", "3", "--num_samples", "2", "--report", str(tmp_path / "docs" / "ablation.md"),
        f"--extra={TINY} --mixed_precision no {extra}",
    ] + (["--time_variants", time_variants] if time_variants else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_two_variants_equal_budget_report_and_strip(tmp_path):
    _run(tmp_path, "Baseline,PT+LPL+LD")
    runs = tmp_path / "runs"
    logs = {v: [json.loads(l) for l in (runs / v / "train_log.jsonl").read_text().splitlines()] for v in ("baseline", "pt-lpl-ld")}
    # equal step budgets: the baseline trains 4 steps at 128² alone, PT+LPL+LD 2 at 64² then 2 at 128²
    assert [r["resolution"] for r in logs["baseline"]] == [128] * 4
    assert [r["resolution"] for r in logs["pt-lpl-ld"]] == [64, 64, 128, 128]
    assert all("local" not in r and "adversarial" not in r for r in logs["baseline"])
    assert "adversarial" in logs["pt-lpl-ld"][-1]
    report = (tmp_path / "docs" / "ablation.md").read_text()
    records = json.loads((runs / "ablation.json").read_text())
    for name in ("Baseline", "PT+LPL+LD"):
        r = records[name]
        assert f"| {name} | {r['steps']} | {r['train_cpu_seconds'] / 60:.1f} | {r['train_seconds'] / 60:.1f} | {r['model']['ssim']:.4f} |" in report
    assert "0.909" in report and "0.959" in report  # the paper's column
    assert records["Baseline"]["copy_reference"] == records["PT+LPL+LD"]["copy_reference"]  # one test split
    # beside the copy-reference floor: the part-warp baseline, and PCKh with the estimator's ceiling
    assert records["Baseline"]["part_warp"] == records["PT+LPL+LD"]["part_warp"]
    assert records["Baseline"]["part_warp"]["local_ssim"] != records["Baseline"]["copy_reference"]["local_ssim"]
    warp = records["Baseline"]["part_warp"]
    assert f"| part-warp baseline (no training) | | | | {warp['ssim']:.4f} | {warp['ms_ssim']:.4f} |" in report
    assert "| SSIM | MS-SSIM | local-SSIM | PCKh |" in report and "| ground truth (PCKh: the pose estimator's ceiling) |" in report
    assert "## Equal optimizer steps" in report and "## Equal training time" not in report
    assert 0 <= records["Baseline"]["model"]["pckh"] <= 1
    strip = Image.open(tmp_path / "docs" / "ablation-samples.png")
    assert strip.size == (128 * (2 + 1 + 2 + 1), 128 * 2)  # reference | pose | part-warp | 2 variants | ground truth; 2 rows
    # a finished variant is not trained again
    mtime = (runs / "baseline" / "stage-0128" / "diffusion_pytorch_model.safetensors").stat().st_mtime
    with open(tmp_path / "docs" / "ablation.md", "a") as f:
        f.write("\nour reading of the numbers\n")
    _run(tmp_path, "Baseline")
    # the hand-written part below the marker survives the regenerated table
    regenerated = (tmp_path / "docs" / "ablation.md").read_text()
    assert regenerated.endswith("\nour reading of the numbers\n") and "| PT+LPL+LD |" not in regenerated
    assert (runs / "baseline" / "stage-0128" / "diffusion_pytorch_model.safetensors").stat().st_mtime == mtime


def test_equal_time_scales_each_variant_by_its_own_step_cost(tmp_path):
    """--equal time gives each variant the equal-steps schedule scaled by (budget / its measured CPU time), every
    level alike, and a pose-aware variant has the network options switched on."""
    _run(tmp_path, "Baseline,Pose-aware PT+LPL", equal="steps,time", extra="--steps_per_stage 3")
    runs = tmp_path / "runs"
    steps = json.loads((runs / "ablation.json").read_text())
    timed = json.loads((runs / "equal-time" / "ablation.json").read_text())
    budget = sorted(r["train_cpu_seconds"] for r in steps.values())
    minutes = (budget[0] + budget[1]) / 2 / 60  # the median of two
    assert set(timed) == {"Baseline", "Pose-aware PT+LPL"}
    for name, slug, levels in (("Baseline", "baseline", 1), ("Pose-aware PT+LPL", "pose-aware-pt-lpl", 2)):
        scale = 60 * minutes / steps[name]["train_cpu_seconds"]
        config = json.loads((runs / "equal-time" / slug / "training_config.json").read_text())
        assert config["steps_per_stage"] == str(max(1, round(3 * scale))), (name, config["steps_per_stage"], scale)
        assert timed[name]["steps"] == sum(level["steps"] for level in config["schedule"]) and len(config["schedule"]) == levels
    stage = json.loads((runs / "equal-time" / "pose-aware-pt-lpl" / "stage-0128" / "config.json").read_text())
    assert stage["warp_skips"] and stage["warp_residual"] and stage["reference_pose"] and stage["pose_every_scale"]
    assert not json.loads((runs / "baseline" / "stage-0128" / "config.json").read_text())["warp_skips"]
    report = (tmp_path / "docs" / "ablation.md").read_text()
    assert "## Equal optimizer steps" in report and "## Equal training time" in report
    assert (tmp_path / "docs" / "ablation-equal-time-samples.png").exists() and (tmp_path / "docs" / "ablation-equal-time-curves.png").exists()
    assert f"| Pose-aware PT+LPL | {timed['Pose-aware PT+LPL']['steps']} |" in report and "| — | — | — |" in report

    # --time_variants: only some on the time budget, which stays the median of all the equal-steps runs
    import shutil

    shutil.rmtree(runs / "equal-time")
    _run(tmp_path, "Baseline,Pose-aware PT+LPL", equal="steps,time", extra="--steps_per_stage 3", time_variants="Pose-aware PT+LPL")
    assert set(json.loads((runs / "equal-time" / "ablation.json").read_text())) == {"Pose-aware PT+LPL"}
    assert not (runs / "equal-time" / "baseline").exists()
    config = json.loads((runs / "equal-time" / "pose-aware-pt-lpl" / "training_config.json").read_text())
    assert config["steps_per_stage"] == str(max(1, round(3 * 60 * minutes / steps["Pose-aware PT+LPL"]["train_cpu_seconds"])))
