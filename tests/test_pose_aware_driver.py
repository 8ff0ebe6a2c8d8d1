"""train/pose_aware.py: the paper's network and the pose-aware options trained on one CPU-time budget, evaluated
on one test split with both baselines, reported with curves and a strip."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = "--stages 64 --train_batch_size 1 --bottleneck_channels 8 --num_validation_pairs 2 --validation_steps 2 --synth_pairs 16 --max_cpu_minutes 0.05 --checkpointing_steps 0"


def test_equal_cpu_time_variants_report(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [
        sys.executable, str(REPO / "train" / "pose_aware.py"), "--output_dir", str(tmp_path / "runs"), "--variants", "Paper,Warped skips",
        "--num_pairs", "3", "--num_samples", "2", "--report", str(tmp_path / "docs" / "pose-aware.md"), f"--extra={TINY}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = tmp_path / "runs"
    records = json.loads((runs / "pose-aware.json").read_text())
    for name, slug, warped in (("Paper", "paper", False), ("Warped skips", "warp", True)):
        config = json.loads((runs / slug / "stage-0064" / "config.json").read_text())
        assert config["warp_skips"] is warped and config["reference_pose"] is warped and config["pose_every_scale"] is warped
        # the same CPU budget, whatever each network's step costs
        assert records[name]["train_cpu_seconds"] >= 0.05 * 60 and records[name]["steps"] > 0
    assert records["Paper"]["part_warp"] == records["Warped skips"]["part_warp"]  # one test split
    report = (tmp_path / "docs" / "pose-aware.md").read_text()
    m = records["Warped skips"]["model"]
    assert f"| Warped skips | {records['Warped skips']['steps']} |" in report and f"{m['ssim']:.4f} | {m['ms_ssim']:.4f}" in report
    assert "| part-warp baseline (no training) |" in report and "the pose estimator's ceiling" in report
    assert Image.open(tmp_path / "docs" / "pose-aware-samples.png").size == (64 * (3 + 2 + 1), 64 * 2)
    assert Image.open(tmp_path / "docs" / "pose-aware-curves.png").size[0] > 300
