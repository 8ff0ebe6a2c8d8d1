"""`pgat personalize`: a real clip end to end (frames, split by time, fine-tuning, held-out evaluation, card),
resuming a killed run, and the refusals of bad videos.

The clip is tests/data/personalize/cam03-144x256.mp4: pose2sim's single-person demo camera 3, downscaled (see the
README there). The end-to-end run keeps to CI's budget: 12 frames, 64² only, a few steps.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgat.cli import main
from pgat.personalize import crop_box, heldout_references, plan_minutes, sampling_rate, _crop
from test_prepare_video import _write_video  # the same synthetic-video writer

CLIP = Path(__file__).parent / "data" / "personalize" / "cam03-144x256.mp4"
FAST = ["--min-frames", "12", "--stages", "64", "--no-progress"]


def _rows(folder):
    meta = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    with open(folder / "pairs.csv", newline="") as f:
        pairs = [(r["from"], r["to"]) for r in csv.DictReader(f)]
    return meta, pairs


@pytest.fixture(scope="module")
def personalized(tmp_path_factory):
    out = tmp_path_factory.mktemp("personalize") / "cam03"
    t0 = time.perf_counter()
    code = main(["personalize", str(CLIP), "--out", str(out), "--steps", "3", "--license", "BSD-3-Clause", *FAST])
    assert code == 0
    return out, time.perf_counter() - t0


def test_end_to_end_writes_a_loadable_repository(personalized, capsys):
    out, seconds = personalized
    assert (out / "stage-0064" / "config.json").is_file() and (out / "flow" / "config.json").is_file()
    index = json.loads((out / "model_index.json").read_text())
    assert index["stages"] == [64] and index["_class_name"] == "PGATPipeline"
    assert not list(out.glob("checkpoint-*"))  # only for resuming an unfinished run

    from pgat import PGATPipeline

    pipe = PGATPipeline.from_pretrained(out, pose_estimator=None)
    meta, pairs = _rows(out / "data" / "heldout")
    by_name = {m["file_name"]: m for m in meta}
    ref = Image.open(out / "data" / "heldout" / pairs[0][0])
    image = pipe(reference_image=ref, target_pose=np.array(by_name[pairs[0][1]]["keypoints"]),
                 reference_pose=np.array(by_name[pairs[0][0]]["keypoints"])).images[0]
    assert image.size == ref.size

    # the CLI loads it as any other repository
    pose = out / "pose.json"
    pose.write_text(json.dumps(by_name[pairs[0][1]]["keypoints"]))
    ref_pose = out / "ref_pose.json"
    ref_pose.write_text(json.dumps(by_name[pairs[0][0]]["keypoints"]))
    assert main(["transfer", str(out / "data" / "heldout" / pairs[0][0]), "--pose", str(pose), "--reference-pose", str(ref_pose),
                 "--model", str(out), "-o", str(out / "transfer.png")]) == 0
    assert Image.open(out / "transfer.png").size == ref.size


def test_the_space_and_the_tryon_pipeline_load_it(personalized, monkeypatch):
    import importlib

    from pgat import PGATTryOnPipeline

    out, _ = personalized
    assert PGATTryOnPipeline.from_pretrained(out, pose_estimator=None).flow is not None  # the starting model's flow/
    saved = sys.modules.pop("model", None)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "spaces"))
    try:  # as PGAT_MODEL=DIR makes the Space do
        assert importlib.import_module("model").Models(str(out), device="cpu").stages == [64]
    finally:
        sys.modules.pop("model", None)
        if saved is not None:
            sys.modules["model"] = saved


def test_heldout_frames_are_the_end_of_the_video_and_never_trained_on(personalized):
    out, _ = personalized
    split = json.loads((out / "data" / "split.json").read_text())
    frames = json.loads((out / "data" / "frames.json").read_text())
    assert frames["sampled"] == 12  # 1.67 s at 3 fps is 5 frames: sampled evenly to --min-frames instead
    train_meta, train_pairs = _rows(out / "data" / "train")
    held_meta, held_pairs = _rows(out / "data" / "heldout")
    rate = frames["settings"]["rate"]

    def seconds(name):
        return int(Path(name).stem.split("_")[-1]) / rate

    train_names = {m["file_name"] for m in train_meta}
    assert all(seconds(n) < split["cut_seconds"] for n in train_names)
    targets = [b for _, b in held_pairs]
    assert len(targets) == split["heldout_frames"] >= 2
    assert all(seconds(n) >= split["cut_seconds"] for n in targets)
    # no held-out frame is in the training set, as a reference or a target
    held_stems = {Path(n).stem for n in targets}
    assert not held_stems & {Path(n).stem for pair in train_pairs for n in pair}
    # every held-out frame's reference is a training frame
    assert all(Path(a).stem.removeprefix("ref_") in {Path(n).stem for n in train_names} for a, _ in held_pairs)


def test_evaluation_and_card(personalized):
    out, _ = personalized
    record = json.loads((out / "evaluation.json").read_text())
    for row in ("model", "copy_reference", "part_warp", "init_model"):
        assert {"ssim", "ms_ssim", "local_ssim", "pckh"} <= set(record[row]), row
    assert record["model"]["num_pairs"] == json.loads((out / "data" / "split.json").read_text())["heldout_frames"]
    strip = Image.open(out / "heldout-strip.png")
    assert strip.width == 4 * 64  # reference | target pose | output | real frame
    card = (out / "README.md").read_text()
    for text in ("cam03-144x256.mp4", "BSD-3-Clause", "consent", "held-out", "copy-reference baseline", "part-warp baseline",
                 "heldout-strip.png", "pgat personalize"):
        assert text in card, text
    assert "license: other" in card


def test_the_same_command_again_redoes_only_the_evaluation(personalized):
    out, _ = personalized
    log = (out / "train_log.jsonl").read_text()
    trained = (out / "data" / "trained.json").stat().st_mtime
    assert main(["personalize", str(CLIP), "--out", str(out), "--steps", "3", "--license", "BSD-3-Clause", *FAST]) == 0
    assert (out / "train_log.jsonl").read_text() == log
    assert (out / "data" / "trained.json").stat().st_mtime == trained
    # other settings for the same folder are refused, not mixed in
    assert main(["personalize", str(CLIP), "--out", str(out), "--steps", "3", "--holdout", "0.3", *FAST]) == 2


def test_a_killed_run_resumes_where_its_checkpoint_left_off(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pgat.personalize", str(CLIP), "--out", str(out), "--steps", "4", "--checkpoint-every", "2", *FAST]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not [p for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()] and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its first checkpoint"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert done_before and max(done_before) < 4
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 5))  # each step logged once, the killed run's tail replayed
    assert (out / "evaluation.json").is_file()


# ---------------------------------------------------------------------------------------------
# bad videos
# ---------------------------------------------------------------------------------------------


def _error(argv, capsys):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unreadable_and_missing_videos(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    err = _error(["personalize", str(bad), "--out", str(tmp_path / "a")], capsys)
    assert "`VIDEO`" in err and "not a readable video" in err
    err = _error(["personalize", str(tmp_path / "nowhere.mp4"), "--out", str(tmp_path / "b")], capsys)
    assert "`VIDEO`" in err and "does not exist" in err


def test_a_video_without_a_person(tmp_path, capsys):
    empty = _write_video(tmp_path / "wall.mp4", [np.full((96, 96, 3), 120 + k, np.uint8) for k in range(20)], fps=10)
    err = _error(["personalize", str(empty), "--out", str(tmp_path / "c"), "--min-frames", "10", "--no-progress"], capsys)
    assert "none of the 10 sampled frames shows a person" in err


def test_too_few_usable_frames(tmp_path, capsys):
    err = _error(["personalize", str(CLIP), "--out", str(tmp_path / "d"), "--min-frames", "6", "--no-progress"], capsys)
    assert re.search(r"only \d of the 6 sampled frames show a confident person", err) and "at least 10 usable frames" in err


# ---------------------------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------------------------


def test_sampling_rate():
    assert sampling_rate(60.0, 25.0) == 3.0  # the paper's rate
    assert sampling_rate(1.67, 60.0, min_frames=100) == pytest.approx(100 / 1.67)  # short: evenly to the budget
    assert sampling_rate(1.0, 30.0, min_frames=100) == 30.0  # never above the video's own rate
    assert sampling_rate(1000.0, 30.0, max_frames=600) == pytest.approx(0.6)


def test_crop_box_and_keypoints():
    kps = np.full((18, 2), -1.0)
    kps[0], kps[10] = (100, 50), (120, 250)
    left, top, side = crop_box([kps], 400, 300, margin=0.1)
    assert side == 240 and top == 30 and left == 0  # centred at x = 110 it would start at -10: moved into the frame
    image = Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    out, moved = _crop(image, kps, (left, top, side), 120)
    assert out.size == (120, 120)
    # pixel centres: x' = (x - left + 0.5) * s - 0.5
    np.testing.assert_allclose(moved[0], [(100 - left + 0.5) / 2 - 0.5, (50 - top + 0.5) / 2 - 0.5])
    assert (moved[1] == -1).all()
    # a square larger than the frame is centred on it, white beyond it
    left, top, side = crop_box([kps], 100, 300, margin=0.5)
    assert left == (100 - side) // 2 or left == round((100 - side) / 2)
    out, _ = _crop(Image.fromarray(np.zeros((300, 100, 3), np.uint8)), kps, (left, top, side), 64)
    assert np.asarray(out)[32, 0].tolist() == [255, 255, 255]


def test_heldout_references_and_plan():
    assert heldout_references(10, 4) == [0, 3, 6, 9]
    assert heldout_references(10, 1) == [5]
    minutes = plan_minutes([64, 256], [100, 100], [8, 2], 10.0)
    assert sum(minutes) == pytest.approx(10.0) and minutes[1] > minutes[0]


def test_progressive_refuses_another_network_to_fine_tune(tmp_path):
    import importlib.util

    from pgat.personalize import progressive_script

    spec = importlib.util.spec_from_file_location("progressive_for_test", progressive_script())
    prog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prog)
    args = prog.parse_args(["--init_model", "weights/pgat-synth-256", "--bottleneck_channels", "128"])  # the paper's network
    with pytest.raises(ValueError, match="another network than the flags ask for"):
        prog.init_stage(args, 64)
    args = prog.parse_args(["--config", "personalize-256", "--init_model", "weights/pgat-synth-256"])
    assert prog.init_stage(args, 64).config.resolution == 64
    assert prog.init_stage(args, 512) is None  # no such stage: grown as usual
    assert prog.stage_budgets(prog.parse_args(["--stage_minutes", "1,2"]), 2) == [60.0, 120.0]
    with pytest.raises(ValueError, match="one per stage"):
        prog.stage_budgets(prog.parse_args(["--stage_minutes", "1,2"]), 3)
