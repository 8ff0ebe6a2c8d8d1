"""train/progressive.py end to end, as a user runs it: real SynthHumans data, the real VGG-19 perceptual loss,
real processes (one, killed and resumed, and two with DDP)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pgat import PGATModel

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "progressive.py"
TINY = [
    "--dataset", "synthhumans", "--stages", "64,128", "--steps_per_stage", "4", "--train_batch_size", "1",
    "--bottleneck_channels", "16", "--discriminator_channels", "8", "--num_validation_pairs", "2",
    "--sample_steps", "0", "--synth_pairs", "64", "--perceptual_network", "vgg19",
]


def _env():
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="2")
    return env


def _train(out, *extra, launcher=(sys.executable,)):
    cmd = [*launcher, str(SCRIPT), *TINY, "--output_dir", str(out), *extra]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _weights(folder):
    return load_file(str(Path(folder) / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "out"
    _train(out, "--checkpointing_steps", "3")
    return out


def test_dry_run_resolves_preset_and_flags(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--config", "pgat-1024", "--steps_per_stage", "10", "--output_dir", str(tmp_path / "o"), "--dry_run"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert [s["resolution"] for s in config["schedule"]] == [64, 128, 256, 512, 1024]
    assert [s["steps"] for s in config["schedule"]] == [10] * 5  # the flag wins over the preset's 700000
    assert [s["batch_size"] for s in config["schedule"]] == [16, 16, 8, 4, 2]  # from the preset
    assert config["learning_rate"] == 2e-4 and config["adam_weight_decay"] == 5e-4
    assert not (tmp_path / "o").exists()  # a dry run writes nothing

    proc = subprocess.run([*cmd[:-1], "--no_progressive", "--dry_run"], env=_env(), capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout)["schedule"] == [{"resolution": 1024, "steps": 50, "batch_size": 2}]

    cpu = subprocess.run([sys.executable, str(SCRIPT), "--config", "synth-cpu-256", "--dry_run"], env=_env(), capture_output=True, text=True, timeout=120)
    assert [s["resolution"] for s in json.loads(cpu.stdout)["schedule"]] == [64, 128, 256]

    bad = subprocess.run([sys.executable, str(SCRIPT), "--stages", "64,256", "--dry_run"], env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "`--stages` must double" in bad.stderr


def test_tiny_run_writes_a_hub_repository(tiny_run):
    out = tiny_run
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "PGATPipeline" and index["stages"] == [64, 128]
    model = PGATModel.from_pretrained(out, subfolder="stage-0128")
    assert model.config.resolution == 128 and model.config.bottleneck_channels == 16
    assert PGATModel.from_pretrained(out, subfolder="stage-0064").config.resolution == 64
    # the 64² stage was saved before growing: its blocks differ from the trained-on 128² model's copies
    w64, w128 = _weights(out / "stage-0064"), _weights(out / "stage-0128")
    assert set(w64) - {"from_rgb.weight", "from_rgb.bias", "to_rgb.weight", "to_rgb.bias"} < set(w128)
    assert not torch.equal(w64["encoder.b32.conv1.weight"], w128["encoder.b32.conv1.weight"])
    # deployable as it is: the serving files of pgat.hub.write_serving_files (tests/test_serving.py)
    assert "class EndpointHandler" in (out / "handler.py").read_text() and "class PreTrainedPipeline" in (out / "pipeline.py").read_text()
    assert "pgat>=" in (out / "requirements.txt").read_text()
    card = (out / "README.md").read_text()
    assert "library_name: pgat" in card and "stage-0128" in card and "train/progressive.py" in card
    # trained on SynthHumans alone: the card says so plainly
    assert "This model has never seen a real photograph" in card and "## Training the full model" in card
    config = json.loads((out / "training_config.json").read_text())
    assert config["schedule"][1] == {"resolution": 128, "steps": 4, "batch_size": 1}
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["0064-step0000004.png", "0128-step0000008.png"]
    val = [json.loads(l) for l in (out / "validation.jsonl").read_text().splitlines()]
    assert [v["resolution"] for v in val] == [64, 128] and all(0 < v["ssim"] <= 1 for v in val)


def test_schedule_l2_then_l1_and_discriminator_at_last_level(tiny_run):
    log = [json.loads(l) for l in (tiny_run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    # L2 in the first half of each level, L1 in the second
    assert [r["criterion_l1"] for r in log] == [0, 0, 1, 1, 0, 0, 1, 1]
    # Adam's moments restart at the first L1 step of each level (training_utils.reset_adam_moments)
    assert [r["step"] for r in log if r.get("adam_restart")] == [3, 7]
    # local perceptual loss at the first level only; the local discriminator replaces it at the last
    assert all("local" in r and "adversarial" not in r for r in log[:4])
    assert all("adversarial" in r and "d_loss" in r and "local" not in r for r in log[4:])


def test_pixel_loss_and_l1_throughout(tmp_path):
    """The CPU presets' options: --pixel_weight adds an L1 pixel term, --l2_fraction 0 uses L1 from the first step
    (so Adam never restarts)."""
    out = tmp_path / "out"
    _train(out, "--stages", "64", "--steps_per_stage", "3", "--pixel_weight", "100", "--l2_fraction", "0", "--no_local_discriminator",
           "--lr_scheduler", "cosine", "--lr_min_ratio", "0.1")
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["criterion_l1"] for r in log] == [1, 1, 1]
    # --lr_scheduler cosine: from the full rate to 0.1 of it at the level's last step
    assert [r["lr"] for r in log] == pytest.approx([2e-4, 2e-4 * 0.55, 2e-4 * 0.1])
    assert all(r["pixel"] > 0 and "local" in r for r in log) and not any("adam_restart" in r for r in log)
    bad = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--l2_fraction", "1.5", "--output_dir", str(tmp_path / "x")], env=_env(), capture_output=True, text=True)
    assert bad.returncode != 0 and "`--l2_fraction` must be in [0, 1]" in bad.stderr and "1.5" in bad.stderr


def test_pose_aware_options_and_a_cpu_time_budget(tmp_path):
    """--warp_skips / --reference_pose / --pose_every_scale train a pose-aware network (fed the reference keypoints);
    --max_cpu_minutes ends the schedule when the steps have used that CPU time, saving the level it stops in."""
    out = tmp_path / "out"
    _train(out, "--steps_per_stage", "1000", "--warp_skips", "--reference_pose", "--pose_every_scale", "--max_cpu_minutes", "0.03",
           "--l2_fraction", "0", "--checkpointing_steps", "0")
    config = json.loads((out / "stage-0064" / "config.json").read_text())
    assert config["warp_skips"] and config["reference_pose"] and config["pose_every_scale"] and config["warp_keep_unwarped"]
    assert not (out / "stage-0128").exists()  # the budget ran out in the first level: the second is skipped
    (timing,) = [json.loads(l) for l in (out / "timings.jsonl").read_text().splitlines()]
    assert timing["cpu_seconds_total"] >= 0.03 * 60 and 0 < timing["steps"] < 1000
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == timing["steps"] and log[-1]["train_cpu_seconds"] == pytest.approx(timing["cpu_seconds_total"])
    assert (out / "README.md").exists()  # the card, written last: a finished run for train/pose_aware.py
    model = PGATModel.from_pretrained(out / "stage-0064")
    assert model.needs_reference_pose
    # the wall-clock budget, the one for comparing recipes at equal time
    wall = tmp_path / "wall"
    _train(wall, "--stages", "64", "--steps_per_stage", "1000", "--max_train_minutes", "0.02", "--l2_fraction", "0", "--checkpointing_steps", "0")
    (timing,) = [json.loads(l) for l in (wall / "timings.jsonl").read_text().splitlines()]
    assert timing["train_seconds_total"] >= 0.02 * 60 and 0 < timing["steps"] < 1000
    log = [json.loads(l) for l in (wall / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["train_seconds"] == pytest.approx(timing["train_seconds_total"])
    assert all(b["train_seconds"] > a["train_seconds"] for a, b in zip(log, log[1:]))


def test_resume_after_kill_matches_uninterrupted_run(tiny_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, str(SCRIPT), *TINY, "--output_dir", str(out), "--checkpointing_steps", "3"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "checkpoint-3").is_dir():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-stage, without warning
    proc.wait()
    assert not (out / "stage-0128").exists(), "the run finished before it was killed: nothing was resumed"
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state.pop("train_cpu_seconds") > 0 and state.pop("train_seconds") > 0 and state.pop("stage_seconds") > 0
    assert state == {"global_step": 3, "stage_index": 0, "step_in_stage": 3, "num_processes": 1}
    # the kill may land after the killed run logged a step past its last checkpoint (checkpoint-3, or checkpoint-4 at
    # the level boundary if it got that far), or in the middle of a line: the resumed run makes those steps again,
    # and logs each once
    latest = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    with open(out / "train_log.jsonl", "a") as f:
        f.write(json.dumps({"step": latest + 1, "loss": 1.0, "resolution": 64}) + '\n{"step": %d, "lo' % (latest + 2))

    _train(out, "--checkpointing_steps", "3", "--resume_from_checkpoint", "latest")
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, len(log) + 1))  # 1, 2, 3, then the resumed run's 4, 5, ...
    assert len(log) == len((tiny_run / "train_log.jsonl").read_text().splitlines())
    for stage in ("stage-0064", "stage-0128"):
        a, b = _weights(tiny_run / stage), _weights(out / stage)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{stage}/{k} differs from the uninterrupted run"


def test_dataloader_workers_render_the_same_batches(tiny_run, tmp_path):
    """SynthHumans rendered in a DataLoader worker (overlapping the step) trains the very same weights."""
    out = tmp_path / "workers"
    _train(out, "--checkpointing_steps", "3", "--dataloader_num_workers", "1")
    for stage in ("stage-0064", "stage-0128"):
        a, b = _weights(tiny_run / stage), _weights(out / stage)
        assert all(torch.equal(a[k], b[k]) for k in a), stage


NATIVE_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@pytest.mark.skipif(not NATIVE_BF16, reason="bf16 training needs a CPU with native bf16 (AVX-512 BF16 / AMX)")
def test_bf16_channels_last_and_a_downscaled_global_term_train_and_validate_in_fp32(tmp_path):
    """The cheaper step's flags together: the run trains (finite losses, fp32 weights that load), and validation
    is the fp32 forward of the saved weights, whatever precision the steps ran in."""
    sys.path.insert(0, str(REPO / "train"))
    import progressive

    out = tmp_path / "bf16"
    flags = ["--stages", "64", "--steps_per_stage", "3", "--mixed_precision", "bf16", "--channels_last", "--perceptual_resolution", "32",
             "--pixel_weight", "100", "--l2_fraction", "0", "--no_local_discriminator"]
    _train(out, *flags)
    config = json.loads((out / "training_config.json").read_text())
    assert config["mixed_precision"] == "bf16" and config["channels_last"] and config["perceptual_resolution"] == 32
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(torch.isfinite(torch.tensor([r["global"], r["local"], r["pixel"]])).all() for r in log)
    weights = _weights(out / "stage-0064")
    assert {w.dtype for w in weights.values()} == {torch.float32, torch.int64}  # int64: BatchNorm step counts

    args = progressive.parse_args([*TINY, *flags, "--output_dir", str(out)])
    val = progressive.make_dataset(args, 64, "test", length=args.num_validation_pairs)
    batch = progressive._stack([val[i] for i in range(len(val))])
    metrics = progressive.validate(PGATModel.from_pretrained(out / "stage-0064"), batch)
    logged = json.loads((out / "validation.jsonl").read_text().splitlines()[-1])
    assert logged["ssim"] == pytest.approx(metrics["ssim"], abs=1e-5) and logged["local_ssim"] == pytest.approx(metrics["local_ssim"], abs=1e-5)


@pytest.mark.slow
def test_torch_compile_trains_grows_and_saves_the_bare_model(tmp_path):
    """--torch_compile (minutes of compiling per level on a CPU): the stages and checkpoints hold the PGATModel's own
    parameter names, and the grown level carries Adam's state over as without compiling."""
    out = tmp_path / "compiled"
    _train(out, "--torch_compile", "--checkpointing_steps", "3", "--no_local_discriminator", "--l2_fraction", "0")
    plain = PGATModel(resolution=128, bottleneck_channels=16).state_dict()
    assert _weights(out / "stage-0128").keys() == plain.keys()
    assert not any("_orig_mod" in k for k in _weights(out / "checkpoint-6" / "model"))
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and all(r["global"] > 0 for r in log)


def test_mixed_precision_the_device_cannot_run_is_refused(monkeypatch):
    from pgat.training_utils import check_mixed_precision

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="`--mixed_precision bf16` needs a GPU or a CPU with native bf16"):
        check_mixed_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="`--mixed_precision fp16` is for GPUs"):
        check_mixed_precision("fp16", "cpu")
    check_mixed_precision("no", "cpu")


def test_two_process_cpu_ddp_keeps_ranks_identical(tmp_path):
    out = tmp_path / "ddp"
    env = _env()
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533"]
    cmd = [*launcher, str(SCRIPT), *TINY, "--steps_per_stage", "2", "--output_dir", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    prints = sorted((out / "logs").glob("fingerprint-rank*.txt"))
    assert [p.name for p in prints] == ["fingerprint-rank0.txt", "fingerprint-rank1.txt"]
    assert prints[0].read_text() == prints[1].read_text()
    timings = [json.loads(l) for l in (out / "timings.jsonl").read_text().splitlines()]
    assert all(t["num_processes"] == 2 for t in timings)
    assert (out / "stage-0128" / "diffusion_pytorch_model.safetensors").is_file()


def test_pgat_evaluate_on_trained_model_with_baseline(tiny_run, tmp_path, capsys):
    from pgat.cli import main
    from pgat.evaluation import evaluation_pairs
    from pgat.metrics import evaluate

    repo = tmp_path / "repo"
    shutil.copytree(tiny_run, repo, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert main(["evaluate", "--model", str(repo), "--num-pairs", "4", "--batch-size", "3", "--out", str(tmp_path), "--update-card"]) == 0
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert record["stage"] == "stage-0128" and record["model"]["num_pairs"] == 4
    # the baseline row is the metrics of the reference image itself, on the same 4 pairs
    pairs = evaluation_pairs("synthhumans", 128, 4, 0)
    items = [pairs[i] for i in range(4)]
    ref, tgt = torch.stack([i["reference"] for i in items]), torch.stack([i["target"] for i in items])
    kps = torch.stack([i["target_keypoints"] for i in items])
    direct = evaluate(ref, tgt, kps)
    for m in ("ssim", "ms_ssim", "local_ssim"):
        assert record["copy_reference"][m] == pytest.approx(direct[m], abs=1e-6)
        assert 0 <= record["model"][m] <= 1
    table = (tmp_path / "evaluation.md").read_text()
    assert "copy-reference baseline" in table and "gap closed" in table
    assert "| PGAT |" in capsys.readouterr().out
    # --update-card: the card's Evaluation section is the table, its metadata carries the metrics, the rest stays
    from huggingface_hub import ModelCard

    card = ModelCard.load(repo / "README.md")
    assert table in card.text and "## Intended use" in card.text and "## Training\n" in card.text
    assert card.text.count("## Evaluation") == 1
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["ssim"] == pytest.approx(record["model"]["ssim"], abs=1e-4) and set(values) == {"ssim", "ms_ssim", "local_ssim", "pckh"}
    # a stage the repository does not have: the error lists the ones it has
    assert main(["evaluate", "--model", str(tiny_run), "--resolution", "256"]) == 2
    assert "pgat: error: `--resolution`: 256, a stage that" in (err := capsys.readouterr().err) and "expected one of its stages: 64, 128" in err


def test_resume_from_the_checkpoint_at_a_level_boundary(tiny_run, tmp_path):
    """checkpoint-4 is written at the end of the 64² level: resuming from it grows the model and goes on exactly."""
    state = json.loads((tiny_run / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["stage_index"] == 1 and state["step_in_stage"] == 0
    out = tmp_path / "boundary"
    out.mkdir()
    shutil.copytree(tiny_run / "checkpoint-4", out / "checkpoint-4")
    _train(out, "--checkpointing_steps", "3", "--resume_from_checkpoint", "latest")
    a, b = _weights(tiny_run / "stage-0128"), _weights(out / "stage-0128")
    for k in a:
        assert torch.equal(a[k], b[k]), f"stage-0128/{k} differs from the uninterrupted run"


def test_reset_adam_moments_makes_the_next_update_full_size():
    """After the L2 → L1 switch the gradient is ~1e3 times smaller; without the restart Adam's old second moment
    shrinks the update by as much, with it the first L1 update moves each weight by ~lr again."""
    from pgat.training_utils import reset_adam_moments

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(100))
    opt = torch.optim.Adam([w], lr=1e-3)
    for _ in range(20):  # the "L2" phase: large gradients
        opt.zero_grad()
        (1e3 * w.square()).sum().backward()
        opt.step()

    def small_steps(n=60):
        """mean |update| per step over the last 10 of n steps of an "L1" phase with tiny gradients"""
        for i in range(n):
            if i == n - 10:
                before = w.detach().clone()
            opt.zero_grad()
            (1e-3 * w.abs()).sum().backward()
            opt.step()
        return (w.detach() - before).abs().mean().item() / 10

    saved_w, saved_state = w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}
    frozen = small_steps()
    with torch.no_grad():
        w.copy_(saved_w)
    opt.state[w] = saved_state
    assert reset_adam_moments(opt) == 1
    assert opt.state[w]["exp_avg"].abs().sum() == 0 and int(opt.state[w]["step"]) == 0
    restarted = small_steps()
    assert restarted == pytest.approx(1e-3, rel=0.05)
    assert frozen < restarted / 20
