"""`pgat prepare-video`: frames sampled from a real-photo video, posed by BlazePose, written as pairs."""

import csv
import json

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from skimage import data

from pgat.cli import main
from pgat.data import PairDataset
from pgat.pose import KEYPOINT_INDEX as K
from pgat.pose_estimation import BlazePoseEstimator
from pgat.video_dataset import prepare_video, sample_frames, video_info

W, H = 384, 288


@pytest.fixture(scope="module")
def estimator():
    return BlazePoseEstimator()


def _astronaut_frame(x, background=90):
    """The astronaut photo (halved to 256x256) at column ``x`` of a grey 384x288 frame."""
    frame = np.full((H, W, 3), background, np.uint8)
    frame[16:272, x : x + 256] = data.astronaut()[::2, ::2]
    return frame


def _write_video(path, frames, fps=6):
    writer = imageio_ffmpeg.write_frames(str(path), (frames[0].shape[1], frames[0].shape[0]), fps=fps, quality=8, macro_block_size=1)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path


@pytest.fixture(scope="module")
def walking_video(tmp_path_factory):
    """2 s at 6 fps: the astronaut slides right 8 px a frame; frames 4 and 5 are empty grey."""
    frames = [np.full((H, W, 3), 90, np.uint8) if k in (4, 5) else _astronaut_frame(10 + 8 * k) for k in range(12)]
    return _write_video(tmp_path_factory.mktemp("video") / "walk.mp4", frames)


def _metadata(folder):
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    with open(folder / "pairs.csv", newline="") as f:
        pairs = [(r["from"], r["to"]) for r in csv.DictReader(f)]
    return rows, pairs


def test_sample_frames_at_the_requested_rate(walking_video):
    assert video_info(walking_video)["fps"] == 6 and video_info(walking_video)["size"] == (W, H)
    samples = list(sample_frames(walking_video, fps=3))
    assert [i for i, _, _ in samples] == list(range(6))
    np.testing.assert_allclose([t for _, t, _ in samples], np.arange(6) / 3)
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for _, _, f in samples)
    # frames 0, 2, 4, ... of the video: sample 2 is the empty frame 4, the others show the astronaut
    frames = [f for _, _, f in samples]
    assert frames[2].std() < 3 and all(f.std() > 20 for k, f in enumerate(frames) if k != 2)
    assert len(list(sample_frames(walking_video, fps=30))) == 12  # never more frames than the video has


def test_prepare_video_writes_a_dataset_pair_dataset_loads(walking_video, tmp_path, estimator):
    out = prepare_video(walking_video, tmp_path / "ds", fps=3, estimator=estimator, remove_background=True, progress=False)
    assert (out.sampled, out.kept, dict(out.skipped), out.several_people) == (6, 5, {"no person": 1}, 0)
    assert out.pairs == 5 * 4 and out.frames_per_second > 0
    assert "6 frames sampled, 5 kept, skipped: 1 no person" in out.summary()

    rows, pairs = _metadata(tmp_path / "ds")
    names = [r["file_name"] for r in rows]
    assert names == [f"images/v000_walk_{k:05d}.png" for k in (0, 1, 3, 4, 5)]
    assert len(set(pairs)) == 20 and all(a != b and a in names and b in names for a, b in pairs)
    # the pose follows the person: 16 px to the right per sample (8 px a video frame, every 2nd frame)
    nose_x = np.array([r["keypoints"][K["nose"]][0] for r in rows])
    np.testing.assert_allclose(np.diff(nose_x) / np.diff([0, 1, 3, 4, 5]), 16, atol=3)
    # the background was blanked to white; the person is kept
    image = np.asarray(Image.open(tmp_path / "ds" / names[0]))
    assert image.shape == (H, W, 3) and (image[:10, -60:] > 250).all() and (image[:, :8] > 250).all()
    nx, ny = (round(v) for v in rows[0]["keypoints"][K["nose"]])
    assert np.abs(image[ny, nx].astype(int) - _astronaut_frame(10)[ny, nx]).max() < 40

    ds = PairDataset(tmp_path / "ds", resolution=64)
    assert len(ds) == 20
    item = ds[0]
    assert item["reference"].shape == (3, 64, 64) and item["target_keypoints"].shape == (18, 2)
    assert item["reference"].min() >= -1 and item["reference"].max() <= 1


def test_pairs_stay_inside_each_video_and_can_be_limited(walking_video, tmp_path, estimator):
    other = _write_video(tmp_path / "other clip.mp4", [_astronaut_frame(100 - 8 * k) for k in range(6)])
    out = prepare_video([walking_video, other], tmp_path / "ds", fps=3, estimator=estimator, pairs_per_frame=2, progress=False)
    assert [v.kept for v in out.videos] == [5, 3] and [v.pairs for v in out.videos] == [5 * 2, 3 * 2]
    rows, pairs = _metadata(tmp_path / "ds")
    video_of = lambda name: name.split("/")[1][:4]  # noqa: E731
    assert {video_of(r["file_name"]) for r in rows} == {"v000", "v001"}
    assert any(r["file_name"].startswith("images/v001_other_clip_") for r in rows)
    assert len(pairs) == 16 and all(video_of(a) == video_of(b) for a, b in pairs)


def test_several_people_use_the_largest_and_say_so(tmp_path, estimator):
    astronaut = data.astronaut()
    small = np.asarray(Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).resize((448, 448), Image.BICUBIC))
    frame = np.full((512, 1024, 3), 255, np.uint8)
    frame[:, :512] = astronaut
    frame[32:480, 576:] = small
    video = _write_video(tmp_path / "two.mp4", [frame] * 3, fps=3)
    two = BlazePoseEstimator(min_detection_confidence=0.3)
    out = prepare_video(video, tmp_path / "ds", estimator=two, progress=False)
    assert out.kept == 3 and out.several_people == 3
    assert "3 kept frame(s) showed several people: the largest person was used" in out.summary()
    rows, _ = _metadata(tmp_path / "ds")
    assert all(r["keypoints"][K["nose"]][0] < 512 for r in rows)  # the full-size astronaut on the left


def test_max_size_scales_frames_and_keypoints(walking_video, tmp_path, estimator):
    full = prepare_video(walking_video, tmp_path / "full", estimator=estimator, progress=False)
    half = prepare_video(walking_video, tmp_path / "half", estimator=estimator, max_size=192, progress=False)
    (rows_full, _), (rows_half, _) = _metadata(tmp_path / "full"), _metadata(tmp_path / "half")
    assert Image.open(tmp_path / "half" / rows_half[0]["file_name"]).size == (192, 144)
    a, b = np.array(rows_full[0]["keypoints"]), np.array(rows_half[0]["keypoints"])
    ok = a[:, 0] >= 0
    np.testing.assert_allclose(b[ok], (a[ok] + 0.5) / 2 - 0.5, atol=0.01)
    assert half.pairs == full.pairs


def test_cli_prints_the_counts(walking_video, tmp_path, capsys):
    code = main(["prepare-video", str(walking_video), "--out", str(tmp_path / "ds"), "--backend", "blazepose", "--no-progress", "--pairs-per-frame", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "6 frames sampled, 5 kept, skipped: 1 no person" in printed and "20 same-video pairs written" in printed
    assert len(PairDataset(tmp_path / "ds", resolution=32)) == 20


def test_no_person_anywhere_is_an_error_not_an_empty_dataset(tmp_path, estimator):
    video = _write_video(tmp_path / "empty.mp4", [np.full((H, W, 3), 90, np.uint8)] * 6, fps=3)
    with pytest.raises(ValueError, match=r"(?s)no pair to write.*6 frames sampled, 0 kept, skipped: 6 no person"):
        prepare_video(video, tmp_path / "ds", estimator=estimator, progress=False)
    code = main(["prepare-video", str(video), "--out", str(tmp_path / "ds2"), "--backend", "blazepose", "--no-progress"])
    assert code == 2


def test_too_few_keypoints_are_counted(walking_video, tmp_path, estimator):
    # the astronaut's elbows and wrists are not in the photo: at most 14 of 18 points, so 17 drops every frame
    with pytest.raises(ValueError, match="skipped: 1 no person, 5 too few keypoints"):
        prepare_video(walking_video, tmp_path / "ds", estimator=estimator, min_keypoints=17, progress=False)


def test_bad_videos_and_arguments(walking_video, tmp_path, estimator, capsys):
    with pytest.raises(FileNotFoundError, match="`videos` path .*nothing.mp4' does not exist"):
        prepare_video(tmp_path / "nothing.mp4", tmp_path / "ds", estimator=estimator)
    (tmp_path / "notes.mp4").write_text("this is not a video")
    with pytest.raises(ValueError, match="`video` .*notes.mp4' is not a readable video"):
        prepare_video(tmp_path / "notes.mp4", tmp_path / "ds", estimator=estimator)
    assert main(["prepare-video", str(tmp_path / "notes.mp4"), "--out", str(tmp_path / "ds")]) == 2
    assert "is not a readable video" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()  # checked before anything is written
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no video file"):
        prepare_video(tmp_path / "empty_folder", tmp_path / "ds", estimator=estimator)
    with pytest.raises(ValueError, match="`remove_background` needs the person mask of backend='blazepose'"):
        prepare_video(walking_video, tmp_path / "ds", backend="openpose", remove_background=True)
    for kwargs, message in (
        ({"fps": 0}, "`fps` must be positive, got 0"),
        ({"min_keypoints": 19}, "`min_keypoints` must be between 1 and 18, got 19"),
        ({"pairs_per_frame": -1}, r"`pairs_per_frame` must be >= 0 \(0 = every pair\), got -1"),
        ({"backend": "yolo"}, "`backend` must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            prepare_video(walking_video, tmp_path / "ds", estimator=estimator, **kwargs)
