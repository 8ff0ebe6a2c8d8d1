"""The benchmark scripts (``benchmarks/``): the counts they report, the runs they make, and the checked-in report.

They are plain scripts, not a package: imported here from their folder, as ``python benchmarks/x.py`` does.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import fast_path  # noqa: E402
import model_cost  # noqa: E402
import report  # noqa: E402

from pgat import PGATModel  # noqa: E402
from pgat.stages import RESOLUTIONS, channels_at  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def conv_flops(resolution: int, width: int) -> float:
    """Forward FLOPs of the model from its layer plan (DESIGN.md §1), a multiply-add being 2 FLOPs."""
    c = lambda s: channels_at(s, width)  # noqa: E731
    sizes = [32 * 2**i for i in range(RESOLUTIONS.index(resolution) + 2)]  # 32 ... R
    conv = lambda cin, cout, k, s: 2 * cin * cout * k * k * s * s  # noqa: E731
    total = conv(3, c(2 * resolution), 1, resolution) + conv(c(resolution), 3, 1, resolution)  # fromRGB, toRGB
    for s in sizes:  # encoder blocks
        total += conv(c(2 * s), c(s), 3, s) + conv(c(s), c(s), 3, s)
    total += conv(c(32) + 18, c(32), 3, 32) + conv(c(32), c(32), 3, 32)  # bottleneck decoder block + pose maps
    for s in sizes[1:]:  # decoder blocks on [up-sampled, skip]
        total += conv(c(s // 2) + c(s), c(s), 3, s) + conv(c(s), c(s), 3, s)
    return total / 1e9


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_counted_flops_match_the_layer_plan(resolution):
    counted = model_cost.count(resolution, 1024)
    assert counted["forward_gflops"] == pytest.approx(conv_flops(resolution, 1024), rel=1e-9)
    assert model_cost.count(resolution, 1024, batch=3)["forward_gflops"] == pytest.approx(3 * counted["forward_gflops"])
    with torch.device("meta"):
        assert counted["parameters"] == sum(p.numel() for p in PGATModel(resolution=resolution).parameters())


def test_one_run_reports_utilisation_against_a_peak_measured_around_it():
    widths = model_cost.model_config(8)
    run = model_cost.run_one(64, widths, batch=2, repeats=2, fused=True)
    assert run["forward_gflops"] == pytest.approx(2 * conv_flops(64, 8))
    assert len(run["seconds_all"]) == 2 and len(run["peaks"]) == 3  # peak, forward, peak, forward, peak
    assert run["seconds_best"] == min(run["seconds_all"]) > 0
    peaks = [p["gflops_per_second"] for p in run["peaks"]]
    expected = [run["forward_gflops"] / t / max(a, b) for t, a, b in zip(run["seconds_all"], peaks, peaks[1:])]
    assert run["utilisation_all"] == pytest.approx(expected)
    assert run["utilisation"] == max(expected) and 0 < run["utilisation"] < 1.5
    assert run["peak_memory_kind"] == "ru_maxrss" and run["peak_memory_gib"] > 0
    assert set(run["peaks"][0]["all"]) >= {"conv3x3 1024ch 32x32 b1", "conv3x3 64ch 512x512 b1 channels_last", "gemm 2048^3"}


def test_script_runs_each_stage_in_its_own_process_and_keeps_earlier_runs(tmp_path):
    out = tmp_path / "cost.json"
    model_cost.main(["--config", str(REPO / "weights" / "pgat-synth-256"), "--batches", "64:1", "--repeats", "1", "--out", str(out)])
    first = json.loads(out.read_text())
    shipped = json.loads((REPO / "weights" / "pgat-synth-256" / "stage-0256" / "config.json").read_text())
    assert first["bottleneck_channels"] == shipped["bottleneck_channels"]
    assert [(r["resolution"], r["batch"]) for r in first["runs"]] == [(64, 1)]
    assert [s["resolution"] for s in first["stages"]] == list(RESOLUTIONS)
    model_cost.main(["--config", str(REPO / "weights" / "pgat-synth-256"), "--batches", "64:2", "--repeats", "1", "--out", str(out)])
    assert [(r["resolution"], r["batch"]) for r in json.loads(out.read_text())["runs"]] == [(64, 1), (64, 2)]


def test_bad_arguments_say_what_was_expected(tmp_path):
    with pytest.raises(SystemExit, match="--batches: expected RESOLUTION:B1,B2,... .*got '64-1'"):
        model_cost.parse_batches(["64-1"])
    with pytest.raises(SystemExit, match=r"resolution must be one of \[64, 128, 256, 512, 1024\], got 96"):
        model_cost.parse_batches(["96:1"])
    with pytest.raises(SystemExit, match="--config: expected a PGAT repository .* got"):
        model_cost.model_config(config=str(tmp_path))
    with pytest.raises(SystemExit, match=r"--precision: expected one of \['fp32', 'bf16', 'bf16-autocast'\], got 'half'"):
        model_cost.check_precision("half", "cpu")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with pytest.raises(SystemExit, match="--precision bf16: this CPU .* has no native bf16"):
            model_cost.check_precision("bf16", "cpu")


def test_forward_without_concat_equals_the_fused_forward():
    torch.manual_seed(0)
    model = PGATModel(resolution=128, bottleneck_channels=16).eval().fuse()
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    k = torch.rand(2, 18, 2) * 127
    with torch.inference_mode():
        torch.testing.assert_close(fast_path.forward_without_concat(model, x, k), model(x, k).image, atol=1e-6, rtol=0)


def test_checked_in_report_is_the_one_the_results_make(tmp_path):
    """BENCHMARKS.md's tables are what report.py makes from results/*.json: regenerating changes nothing."""
    md = tmp_path / "BENCHMARKS.md"
    md.write_text((REPO / "benchmarks" / "BENCHMARKS.md").read_text())
    report.main(["--markdown", str(md), "--plot", str(tmp_path / "plot.png")])
    assert md.read_text() == (REPO / "benchmarks" / "BENCHMARKS.md").read_text()
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no <!-- begin: paper -->"):
        report.fill("no blocks here", "paper", "| table |")


def test_checked_in_results_describe_the_models_they_name():
    paper = json.loads((RESULTS / "model-cost-cpu.json").read_text())
    embedded = json.loads((RESULTS / "model-cost-embedded-cpu.json").read_text())
    shipped = json.loads((REPO / "weights" / "pgat-synth-256" / "stage-0256" / "config.json").read_text())
    assert paper["bottleneck_channels"] == 1024 and paper["fused"] and paper["precision"] == "fp32"
    assert embedded["bottleneck_channels"] == shipped["bottleneck_channels"]
    for cost in (paper, embedded):
        assert {r["resolution"] for r in cost["runs"]} == set(RESOLUTIONS)  # every stage, 64 ... 1024
        for run in cost["runs"]:
            flops = model_cost.count(run["resolution"], cost["bottleneck_channels"], run["batch"])["forward_gflops"]
            assert run["forward_gflops"] == pytest.approx(flops)
            assert run["gflops_per_second_best"] == pytest.approx(flops / run["seconds_best"])


def test_pose_aware_benchmark_times_both_networks_and_the_warp(monkeypatch):
    import pose_aware

    # the peak's large convolutions are model_cost's, tested above; here a fixed one keeps the test short
    monkeypatch.setattr(pose_aware, "measure_peak", lambda: {"gflops_per_second": 100.0})
    run = pose_aware.run_stage(64, 16, repeats=1, options=pose_aware.POSE_AWARE)
    assert run["peak_gflops_per_second"] == 100.0
    assert run["paper"]["forward_gflops"] == pytest.approx(conv_flops(64, 16), rel=1e-6)
    # the options add decoder input channels: more FLOPs, and the warp's time is a part of the forward's
    assert run["pose_aware"]["forward_gflops"] > run["paper"]["forward_gflops"]
    assert 0 < run["warp"]["seconds_median"] and 0 < run["warp_share_of_pose_aware_forward"]
    ref, tgt = pose_aware.poses(64)
    assert ref.shape == tgt.shape == (1, 18, 2) and (ref >= 0).all() and (tgt >= 0).all() and (tgt < 64).all()


def test_training_step_accounting_counts_every_part_of_the_real_step():
    """``train_step.py --accounting``: the parts of one step, their counted FLOPs and the MFU against a same-run peak.
    The global term's FLOPs are 3 VGG forwards (the target's, the output's, and the output's input-gradient
    backward: the VGG's weights get none), and a quarter of that with ``--perceptual_resolution`` at half the side."""
    import train_step
    from torch.utils.flop_counter import FlopCounterMode

    from pgat.losses import PerceptualLoss

    preset = {"bottleneck_channels": 16, "pixel_weight": 1.0, "discriminator_last": True}
    counts = {}
    for name, recipe in (("full", {}), ("half", {"perceptual_resolution": 32})):
        step = train_step.StageStep(preset, recipe, 64, 2, last=False)
        counter = train_step._Counter()
        step.run(counter)
        counts[name] = counter.flops
    assert set(counts["full"]) == {"data", "generator forward", "global perceptual", "local perceptual", "pixel", "generator backward", "optimizer"}
    vgg = PerceptualLoss(network="vgg19").vgg
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        vgg(torch.zeros(2, 3, 64, 64))
    assert counts["full"]["global perceptual"] == pytest.approx(3 * counter.get_total_flops(), rel=0.01)
    assert counts["half"]["global perceptual"] == pytest.approx(counts["full"]["global perceptual"] / 4, rel=0.01)
    assert counts["full"]["generator backward"] > counts["full"]["generator forward"] > 0

    # the last level of a preset with discriminators: the adversarial terms replace the local one
    step = train_step.StageStep(preset, {}, 64, 1, last=True)
    counter = train_step._Counter()
    step.run(counter)
    assert {"adversarial (G)", "discriminator"} <= set(counter.flops) and "local perceptual" not in counter.flops

    res = train_step.account_stage("embedded", "fp32", 64, 8, last=False, repeats=1)
    assert sum(p["seconds"] for p in res["parts"].values()) == pytest.approx(res["step_seconds"])
    assert res["images_per_second"] == pytest.approx(8 / res["step_seconds"])
    assert 0 < res["mfu"] < 1.5 and res["peak_gflops_per_second"] == max(res["peaks"])
