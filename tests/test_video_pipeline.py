"""PGATVideoPipeline and the pose-sequence tools behind it (pgat.pose: read_openpose_folder, fill_missing,
smooth_keypoints, retarget), on the real OpenPose BODY_25 sequence of the shared data."""

import json
import shutil

import imageio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from pgat import PGATModel, PGATPipeline, PGATVideoPipeline, PGATVideoPipelineOutput
from pgat.cli import build_parser, main
from pgat.data.synthetic import SynthHumans
from pgat.pose import (
    BODY25_TO_COCO18,
    KEYPOINT_INDEX as K,
    OPENPOSE_LIMBS,
    fill_missing,
    read_deepfashion_annotations,
    read_openpose_folder,
    retarget,
    smooth_keypoints,
    visible,
    write_openpose_json,
)

MARCH = "openpose-sequences/workout_march"


@pytest.fixture(scope="module")
def march_dir(shared_data):
    return shared_data / MARCH


@pytest.fixture(scope="module")
def march(march_dir):
    return read_openpose_folder(march_dir)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    p = PGATVideoPipeline(model=PGATModel(resolution=64, bottleneck_channels=16).eval(), pose_estimator=None)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def reference():
    """A SynthHumans person (128x128) and its keypoints: another body than the marching one."""
    item = SynthHumans(resolution=128, poses="random", split="test")[0]
    return item["reference"], item["reference_keypoints"]


def _jitter(seq, ok):
    """Mean |second difference| over time of the points present in three frames in a row (pixels)."""
    d2 = seq[2:, :, :2] - 2 * seq[1:-1, :, :2] + seq[:-2, :, :2]
    return float(np.abs(d2[ok[2:] & ok[1:-1] & ok[:-2]]).mean())


def _bone_lengths(seq):
    """``(T, 17)`` lengths of the OpenPose limbs, NaN where a joint is missing."""
    ok = visible(seq)
    out = np.full((len(seq), len(OPENPOSE_LIMBS)), np.nan)
    for b, (p, c) in enumerate(OPENPOSE_LIMBS):
        both = ok[:, p] & ok[:, c]
        out[both, b] = np.linalg.norm(seq[both, c, :2] - seq[both, p, :2], axis=-1)
    return out


# ---------------------------------------------------------------------------------------------
# reading OpenPose folders
# ---------------------------------------------------------------------------------------------


def test_read_openpose_folder_real_body25(march_dir, march):
    assert march.shape == (120, 18, 3) and march.dtype == np.float32
    files = sorted(march_dir.glob("*_keypoints.json"))
    for t in (0, 57, 119):  # BODY_25 -> COCO-18: MidHip (8) and the feet dropped
        raw = np.asarray(json.loads(files[t].read_text())["people"][0]["pose_keypoints_2d"], np.float32).reshape(25, 3)
        expect = raw[list(BODY25_TO_COCO18)]
        expect[expect[:, 2] <= 0] = (-1, -1, 0)
        np.testing.assert_array_equal(march[t], expect)
    present = visible(march)
    assert not present[:, K["r_ear"]].any()  # OpenPose never found it in this video
    assert present[:, K["neck"]].all() and (~present[:, K["r_ankle"]]).sum() == 2


def test_read_openpose_folder_order_empty_frames_and_errors(march_dir, tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    src = sorted(march_dir.glob("*_keypoints.json"))
    for i in (0, 1, 2, 10):  # natural order: 2 before 10
        shutil.copy(src[i], folder / f"clip_{i}_keypoints.json")
    (folder / "clip_5_keypoints.json").write_text(json.dumps({"version": 1.3, "people": []}))
    (folder / "notes.json").write_text("{}")  # not an OpenPose frame: *_keypoints.json are preferred
    seq, info = read_openpose_folder(folder, return_info=True)
    assert [f.name for f in info["files"]] == [f"clip_{i}_keypoints.json" for i in (0, 1, 2, 5, 10)]
    assert info["empty_frames"] == [3] and info["canvas_size"] is None
    assert not visible(seq[3]).any() and (seq[3, :, 2] == 0).all()
    np.testing.assert_array_equal(seq[4], read_openpose_folder(march_dir)[10])

    # a canvas recorded by the writer is reported
    other = tmp_path / "canvas"
    other.mkdir()
    for t in range(2):
        write_openpose_json(np.full((18, 2), 5.0 + t), other / f"{t}.json", canvas_size=(640, 480))
    assert read_openpose_folder(other, return_info=True)[1]["canvas_size"] == (640, 480)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*no JSON file"):
        read_openpose_folder(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_openpose_folder(tmp_path / "nowhere")
    (folder / "clip_11_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 60}]}))
    with pytest.raises(ValueError, match="clip_11_keypoints.json.*60 values.*54.*75"):
        read_openpose_folder(folder)


# ---------------------------------------------------------------------------------------------
# fill_missing
# ---------------------------------------------------------------------------------------------


def test_fill_missing_carries_points_but_never_invents(march):
    seq = march.copy()
    w = K["r_wrist"]
    seq[10:15, w] = (-1, -1, 0)  # a 5-frame gap inside
    seq[0:3, w] = (-1, -1, 0)  # a 3-frame gap at the start
    seq[40, K["l_knee"], 2] = 0.05  # a low-confidence point
    seq[60:90, K["nose"]] = (-1, -1, 0)  # a 30-frame gap: longer than max_gap
    out = fill_missing(seq, max_gap=15)

    for t in range(10, 15):  # linear between frames 9 and 15
        a = (t - 9) / 6
        np.testing.assert_allclose(out[t, w], (1 - a) * seq[9, w] + a * seq[15, w], rtol=1e-5)
    np.testing.assert_array_equal(out[0:3, w], np.repeat(seq[3:4, w], 3, axis=0))  # held at the start
    np.testing.assert_allclose(out[40, K["l_knee"], :2], (seq[39, K["l_knee"], :2] + seq[41, K["l_knee"], :2]) / 2, rtol=1e-5)
    assert out[40, K["l_knee"], 2] >= 0.1
    assert not visible(out[60:90, K["nose"]]).any()  # too long a gap: left missing
    assert not visible(out[:, K["r_ear"]]).any()  # never seen: never invented
    assert visible(out[:, K["r_ankle"]]).all()  # the real sequence's own two gaps are filled
    untouched = visible(seq) & (seq[..., 2] >= 0.1)
    np.testing.assert_array_equal(out[untouched], seq[untouched])
    # every filled value lies between seen values of its point
    for k in range(18):
        seen = seq[untouched[:, k], k, :2]
        if len(seen):
            filled = out[visible(out[:, k]), k, :2]
            assert (filled >= seen.min(0) - 1e-4).all() and (filled <= seen.max(0) + 1e-4).all()

    assert not visible(fill_missing(seq, max_gap=0)[10:15, w]).any()
    assert visible(fill_missing(seq, max_gap=None)[60:90, K["nose"]]).all()
    with pytest.raises(ValueError, match="max_gap"):
        fill_missing(seq, max_gap=-1)
    with pytest.raises(ValueError, match=r"`sequence` must have shape.*got shape \(120, 17, 3\)"):
        fill_missing(seq[:, :17])


# ---------------------------------------------------------------------------------------------
# smooth_keypoints (One-Euro)
# ---------------------------------------------------------------------------------------------


def test_smoothing_reduces_jitter_of_a_noisy_real_sequence(march):
    clean = fill_missing(march)
    ok = visible(clean)
    noisy = clean.copy()
    noisy[..., :2] += np.random.default_rng(0).normal(0, 2.0, noisy[..., :2].shape) * ok[..., None]

    def error(seq):
        return float(np.abs(seq[..., :2] - clean[..., :2])[ok].mean())

    causal = smooth_keypoints(noisy, fps=30, min_cutoff=1.0, beta=0.1)
    both = smooth_keypoints(noisy, fps=30, min_cutoff=1.0, beta=0.1, bidirectional=True)
    # measured: jitter 4.65 noisy -> 2.04 causal -> 1.16 forward-backward; distance to clean 1.61 -> 1.58 -> 1.19 px
    assert _jitter(causal, ok) < 0.5 * _jitter(noisy, ok)
    assert _jitter(both, ok) < 0.3 * _jitter(noisy, ok)
    assert error(both) < 0.8 * error(noisy)
    # no speed term and a high cut-off: barely smoothed; a still point is left where it is
    light = smooth_keypoints(noisy, fps=30, min_cutoff=1000.0, beta=0.0)
    assert error(light) > 0.95 * error(noisy)
    still = np.repeat(clean[:1], 20, axis=0)
    np.testing.assert_allclose(smooth_keypoints(still, fps=30, bidirectional=True), still, atol=1e-4)
    # missing points stay missing, the confidence column passes through
    assert not visible(both[:, K["r_ear"]]).any()
    np.testing.assert_array_equal(both[..., 2], noisy[..., 2])
    with pytest.raises(ValueError, match="`fps` must be a positive number, got 0"):
        smooth_keypoints(noisy, fps=0)
    with pytest.raises(ValueError, match="`beta`"):
        smooth_keypoints(noisy, fps=30, beta=-1)


# ---------------------------------------------------------------------------------------------
# retarget
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deepfashion_pose(shared_data):
    """A real DeepFashion person with the neck and all 13 body joints (256x176 frame)."""
    table = read_deepfashion_annotations(shared_data / "deepfashion" / "fasion-annotation-test.csv")
    for kps in table.values():
        if visible(kps)[:14].all():
            return kps
    raise AssertionError("no complete DeepFashion pose")


def test_retarget_gives_the_reference_bone_lengths(march, deepfashion_pose):
    drive = fill_missing(march)
    ref = deepfashion_pose
    ref_len = _bone_lengths(ref[None])[0]
    drive_len = _bone_lengths(drive)
    common = np.isfinite(ref_len) & np.isfinite(drive_len).any(0)
    drive_med = np.array([np.nanmedian(col) if np.isfinite(col).any() else np.nan for col in drive_len.T])
    # before: the driving body (a 720p video) has nothing like the reference's bone lengths
    assert np.nanmedian(np.abs(drive_med[common] / ref_len[common] - 1)) > 0.5

    out = retarget(drive, ref)
    out_len = _bone_lengths(out)
    np.testing.assert_allclose(np.median(out_len[:, common], 0), ref_len[common], rtol=1e-4)
    # the driving foreshortening is kept: each bone's length over time is the driving one's, rescaled
    np.testing.assert_allclose(out_len[:, common] / ref_len[common], drive_len[:, common] / drive_med[common], rtol=1e-4)
    exact = _bone_lengths(retarget(drive, ref, preserve_foreshortening=False))
    np.testing.assert_allclose(exact[:, common], np.broadcast_to(ref_len[common], exact[:, common].shape), rtol=1e-4)

    # directions are the driving ones; the neck starts on the reference's and moves by s x the driving motion
    for p, c in OPENPOSE_LIMBS:
        m = visible(drive[:, p]) & visible(drive[:, c])
        if not m.any():
            continue
        u = drive[m, c, :2] - drive[m, p, :2]
        v = out[m, c, :2] - out[m, p, :2]
        cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        assert cos.min() > 0.9999
    neck = K["neck"]
    np.testing.assert_allclose(out[0, neck, :2], ref[neck], atol=1e-3)
    s = ref_len[common].sum() / drive_med[common].sum()
    np.testing.assert_allclose(out[:, neck, :2] - ref[neck], s * (drive[:, neck, :2] - drive[0, neck, :2]), atol=1e-3)
    assert not visible(out[:, K["r_ear"]]).any()

    # a bone the reference lacks keeps the driving length times the global ratio s
    no_wrist = ref.copy()
    no_wrist[K["l_wrist"]] = -1
    forearm = OPENPOSE_LIMBS.index((6, 7))
    lengths = _bone_lengths(retarget(drive, no_wrist))[:, forearm]
    s2 = np.delete(ref_len, forearm)[np.delete(common, forearm)].sum() / np.delete(drive_med, forearm)[np.delete(common, forearm)].sum()
    np.testing.assert_allclose(lengths, s2 * drive_len[:, forearm], rtol=1e-4)

    # a frame without the driving neck: its shoulders are placed by the global map, their children by bones
    gap = drive.copy()
    gap[5, neck] = (-1, -1, 0)
    moved = retarget(gap, ref)
    assert not visible(moved[5, neck])
    gap_len = _bone_lengths(gap)
    gap_med = np.array([np.nanmedian(col) if np.isfinite(col).any() else np.nan for col in gap_len.T])
    s3 = ref_len[common].sum() / gap_med[common].sum()
    for j in (K["r_shoulder"], K["l_shoulder"], K["nose"]):
        np.testing.assert_allclose(moved[5, j, :2], ref[neck] + s3 * (drive[5, j, :2] - drive[0, neck, :2]), atol=1e-3)
    elbow = OPENPOSE_LIMBS.index((2, 3))
    np.testing.assert_allclose(_bone_lengths(moved)[5, elbow], ref_len[elbow] * gap_len[5, elbow] / gap_med[elbow], rtol=1e-4)

    headless = ref.copy()
    headless[neck] = -1
    with pytest.raises(ValueError, match="`reference_pose` has no neck"):
        retarget(drive, headless)
    no_neck = drive.copy()
    no_neck[:, neck] = (-1, -1, 0)
    with pytest.raises(ValueError, match="never shows the neck"):
        retarget(no_neck, ref)


# ---------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------


def _read_video(path):
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frames = [np.asarray(f) for f in reader]
        return frames, reader.get_meta_data()
    finally:
        reader.close()


def test_real_sequence_to_mp4(pipe, march_dir, reference, tmp_path):
    image, kps = reference
    out = pipe(image, march_dir, fps=25, output_path=tmp_path / "march.mp4", reference_pose=kps)
    assert isinstance(out, PGATVideoPipelineOutput) and out.video_path == str(tmp_path / "march.mp4")
    assert len(out.frames) == 120 and out.frames[0].size == (128, 128) and out.fps == 25
    assert out.poses.shape == (120, 18, 3)
    np.testing.assert_allclose(out.poses[0, K["neck"], :2], kps[K["neck"]], atol=1.0)  # retargeted onto the reference

    frames, meta = _read_video(out.video_path)
    assert len(frames) == 120 and frames[0].shape == (128, 128, 3)
    assert meta["fps"] == 25 and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    for t in (0, 60, 119):  # the file holds the frames, up to H.264 loss (measured 3.7 / 255 mean)
        assert np.abs(frames[t].astype(float) - np.asarray(out.frames[t], float)).mean() < 6

    # batching keeps the order: frame t is PGATPipeline on pose t (up to float rounding of other batch sizes)
    single = PGATPipeline(model=pipe.model, pose_estimator=None)
    single.set_progress_bar_config(disable=True)
    frames = np.stack([np.asarray(f, float) for f in out.frames])
    for t in (0, 9, 119):
        again = np.asarray(single(image, out.poses[t]).images[0], float)
        diffs = np.abs(frames - again).mean(axis=(1, 2, 3))
        assert np.abs(frames[t] - again).max() <= 1 and diffs.argmin() == t


@pytest.mark.parametrize("batch_size", [None, 4])
def test_a_video_encodes_its_reference_once(pipe, march, reference, batch_size, monkeypatch):
    """One encoder pass for the whole video, whatever the batch size (the default is 1 frame per pass on a CPU)."""
    image, kps = reference
    calls = {"encode": 0, "decode": []}
    encode, decode = pipe.model.encode, pipe.model.decode

    def counting_encode(x):
        calls["encode"] += 1
        return encode(x)

    def counting_decode(features, keypoints):
        calls["decode"].append(len(keypoints))
        return decode(features, keypoints)

    monkeypatch.setattr(pipe.model, "encode", counting_encode)
    monkeypatch.setattr(pipe.model, "decode", counting_decode)
    out = pipe(image, march[:10], reference_pose=kps, batch_size=batch_size)
    assert len(out.frames) == 10 and calls["encode"] == 1
    assert calls["decode"] == ([1] * 10 if batch_size is None else [4, 4, 2])


def test_pipeline_smoothing_and_switches(pipe, march, reference):
    image, kps = reference
    noisy = fill_missing(march[:40])
    ok = visible(noisy)
    noisy[..., :2] += np.random.default_rng(1).normal(0, 2.0, noisy[..., :2].shape) * ok[..., None]
    smooth = pipe(image, noisy, reference_pose=kps, output_type="np")
    rough = pipe(image, noisy, reference_pose=kps, smooth=False, output_type="np")
    assert smooth.frames.shape == (40, 128, 128, 3) and 0 <= smooth.frames.min() and smooth.frames.max() <= 1
    ok = visible(smooth.poses) & visible(rough.poses)
    assert _jitter(smooth.poses, ok) < 0.5 * _jitter(rough.poses, ok)
    np.testing.assert_allclose(rough.poses, retarget(noisy, kps), atol=1e-4)

    # without retargeting, an array is in the reference's pixels as it is
    local = np.repeat(kps[None], 5, axis=0)
    local[2:4, K["l_wrist"]] = -1
    plain = pipe(image, local, retarget=False, smooth=False, fill_missing=False, output_type="pt", return_dict=False)
    frames, path, poses, fps = plain
    assert frames.shape == (5, 3, 128, 128) and path is None and fps == 30
    assert not visible(poses[2:4, K["l_wrist"]]).any()
    filled = pipe(image, local, retarget=False, smooth=False).poses
    np.testing.assert_allclose(filled[2:4, K["l_wrist"], :2], np.repeat(kps[None, K["l_wrist"]], 2, axis=0), atol=1e-5)
    assert len(pipe(image, local, retarget=False, max_frames=2).frames) == 2
    # a point outside the reference image cannot be shown: it is left out
    local[1, K["r_wrist"]] = (500.0, 40.0)
    assert not visible(pipe(image, local, retarget=False, smooth=False).poses[1, K["r_wrist"]])


def test_pipeline_maps_a_json_canvas_without_retargeting(pipe, reference, tmp_path):
    image, kps = reference
    folder = tmp_path / "canvas"
    folder.mkdir()
    pose = np.full((18, 2), -1.0, np.float32)
    pose[K["neck"]] = (319.5, 239.5)  # the centre of a 640x480 canvas
    pose[K["nose"]] = (0.0, 239.5)  # its left edge
    pose[K["r_hip"]] = (319.5, 10.0)  # near its top edge
    for t in range(3):
        write_openpose_json(pose, folder / f"frame_{t}_keypoints.json", canvas_size=(640, 480))
    out = pipe(image, folder, retarget=False, smooth=False)
    # both frames are fitted into the model's square: the canvas's centre and left edge land on the reference's
    np.testing.assert_allclose(out.poses[:, K["neck"], :2], np.tile([63.5, 63.5], (3, 1)), atol=0.5)
    np.testing.assert_allclose(out.poses[:, K["nose"], :2], np.tile([0.0, 63.5], (3, 1)), atol=0.5)
    np.testing.assert_allclose(out.poses[:, K["r_hip"], 1], 63.5 + (10.0 - 239.5) * 128 / 640, atol=0.5)


def test_odd_sized_reference_makes_an_even_mp4(pipe, reference, tmp_path):
    image, kps = reference
    odd = image[:127, :95]
    out = pipe(odd, np.repeat(kps[None], 3, axis=0), output_path=tmp_path / "odd.mp4", reference_pose=kps, fps=8)
    assert out.frames[0].size == (95, 127)
    frames, meta = _read_video(out.video_path)
    assert len(frames) == 3 and frames[0].shape == (128, 96, 3) and meta["fps"] == 8


@pytest.fixture(scope="module")
def driving_video(march, tmp_path_factory):
    """6 frames at 10 fps of a SynthHumans person marching (real poses mapped into 256x256), and their keypoints."""
    ds = SynthHumans(resolution=256, poses="random", split="test")
    frames, truth = [], []
    for t in range(0, 60, 10):
        kps = march[t, :, :2].copy()
        ok = visible(march[t])
        kps = np.where(ok[:, None], (kps - [690.0, 110.0]) * 0.4 + [128.0, 24.0], -1.0)
        drawn = ds.render(3, kps)
        frames.append(drawn["image"])
        truth.append(drawn["keypoints"])
    path = tmp_path_factory.mktemp("driving") / "march.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (256, 256), fps=10, quality=9, macro_block_size=1)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path, np.stack(truth), ds.render(7, truth[0])


def test_driving_video_through_blazepose(pipe, driving_video, tmp_path):
    from pgat.pose_estimation import BlazePoseEstimator

    path, truth, ref = driving_video
    video_pipe = PGATVideoPipeline(model=pipe.model, pose_estimator=BlazePoseEstimator())
    video_pipe.set_progress_bar_config(disable=True)
    # the reference is another person in the video's own 256x256 frame: without retargeting the poses stay put
    out = video_pipe(ref["image"], path, output_path=tmp_path / "out.mp4", retarget=False, smooth=False, fill_missing=False)
    assert out.fps == 10 and len(out.frames) == 6 and out.frames[0].size == (256, 256)
    both = visible(out.poses) & visible(truth)
    assert both.sum() >= 60 and visible(out.poses).any(1).sum() >= 5
    err = np.linalg.norm(out.poses[..., :2] - truth, axis=-1)[both]
    assert np.median(err) < 8  # measured: median 4.5 px (3.0-5.5 per frame); BlazePose misses the person in 1 of the 6
    frames, meta = _read_video(out.video_path)
    assert len(frames) == 6 and meta["fps"] == 10

    # a frame where the estimator found nobody is filled from its neighbours (on by default)
    filled = video_pipe(ref["image"], path, retarget=False, smooth=False).poses
    for t in np.flatnonzero(~visible(out.poses).any(1)):
        if 0 < t < 5:
            seen = visible(out.poses[t - 1]) & visible(out.poses[t + 1])
            np.testing.assert_allclose(filled[t, seen, :2], (out.poses[t - 1, seen, :2] + out.poses[t + 1, seen, :2]) / 2, atol=1e-3)

    # retargeted onto the reference's pose, estimated from the reference image by the same estimator
    moved = video_pipe(ref["image"], path, fps=5)
    assert moved.fps == 5 and len(moved.frames) == 3  # sampled at 5 fps
    ref_pose = video_pipe.pose_estimator(ref["image"])
    np.testing.assert_allclose(moved.poses[0, K["neck"], :2], ref_pose[K["neck"], :2], atol=1.0)

    with pytest.raises(ValueError, match="`fps`=10.2 is above the 10 frames per second"):
        video_pipe(ref["image"], path, fps=10.2)
    near = video_pipe(ref["image"], path, fps=10.05, retarget=False)  # within 1%: every frame, at the rate asked
    assert len(near.frames) == 6 and near.fps == 10.05
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ValueError, match="`pose_sequence`.*broken.mp4.*not a readable video"):
        video_pipe(ref["image"], broken)
    with pytest.raises(ValueError, match="`pose_sequence`: the video '.*march.mp4', which needs a pose estimator"):
        pipe(ref["image"], path)


def test_bad_inputs(pipe, reference, march_dir, tmp_path):
    image, kps = reference
    seq = np.repeat(kps[None], 4, axis=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="`pose_sequence`: the folder .*empty', which holds no JSON file"):
        pipe(image, empty)
    with pytest.raises(FileNotFoundError, match="`pose_sequence`: '.*nowhere', which does not exist"):
        pipe(image, tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"`pose_sequence` must have shape.*got shape \(4, 17, 2\)"):
        pipe(image, seq[:, :17])
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "000_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 57}]}))
    with pytest.raises(ValueError, match="000_keypoints.json.*57 values"):
        pipe(image, wrong)
    one = sorted(march_dir.glob("*.json"))[0]
    with pytest.raises(ValueError, match="the single JSON file .*; expected the folder holding one OpenPose JSON file per frame"):
        pipe(image, one)
    with pytest.raises(ValueError, match=r"`pose_sequence`: a sequence of 3 frames in none of which a body is placed \(frame 0: no visible keypoint"):
        pipe(image, np.full((3, 18, 2), -1.0), retarget=False)
    with pytest.raises(ValueError, match="`output_path` must end in .mp4"):
        pipe(image, seq, output_path=tmp_path / "out.gif", reference_pose=kps)
    with pytest.raises(FileNotFoundError, match="`output_path` folder .*nowhere' does not exist"):
        pipe(image, seq, output_path=tmp_path / "nowhere" / "out.mp4", reference_pose=kps)
    with pytest.raises(ValueError, match="`fps` must be"):
        pipe(image, seq, fps=0, reference_pose=kps)
    with pytest.raises(ValueError, match="`batch_size` must be"):
        pipe(image, seq, batch_size=0, reference_pose=kps)
    with pytest.raises(ValueError, match="`max_frames` must be"):
        pipe(image, seq, max_frames=0, reference_pose=kps)
    with pytest.raises(ValueError, match=r"`smoothing` has unknown keys \['cutoff'\]"):
        pipe(image, seq, smoothing={"cutoff": 2.0}, reference_pose=kps)
    with pytest.raises(ValueError, match="`reference_image` must be one image"):
        pipe([image, image], seq, reference_pose=kps)
    with pytest.raises(ValueError, match="a photo, which needs a pose estimator"):
        pipe(image, seq)  # retargeting needs the reference pose, and this pipeline cannot estimate it
    blank = np.full((64, 64, 3), 255, np.uint8)
    nobody = PGATVideoPipeline(model=pipe.model, pose_estimator=lambda im: np.tile(np.float32([-1, -1, 0]), (18, 1)))
    with pytest.raises(ValueError, match="`reference_image`: the 64x64 reference photo, in which no person was found"):
        nobody(blank, seq)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def test_cli_video_end_to_end(pipe, reference, march, tmp_path, monkeypatch, capsys):
    image, kps = reference
    repo = tmp_path / "model"
    pipe.save_pretrained(repo)
    loaded = PGATVideoPipeline.from_pretrained(repo, pose_estimator=None)
    assert isinstance(loaded, PGATVideoPipeline) and loaded.resolution == 64

    Image.fromarray(image).save(tmp_path / "ref.png")
    write_openpose_json(kps, tmp_path / "ref.json")
    np.save(tmp_path / "poses.npy", march[:20])
    out = tmp_path / "new" / "out.mp4"  # the CLI makes the folder
    rc = main(["video", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "poses.npy"), "-o", str(out), "--model", str(repo),
               "--fps", "12", "--max-frames", "6", "--reference-pose", str(tmp_path / "ref.json")])
    assert rc == 0 and "wrote 6 frames at 12 fps" in capsys.readouterr().out
    frames, meta = _read_video(out)
    assert len(frames) == 6 and frames[0].shape == (128, 128, 3) and meta["fps"] == 12

    args = build_parser().parse_args(["video", "r.png", "--poses", "d", "-o", "o.mp4", "--no-retarget", "--no-smooth"])
    assert args.no_retarget and args.no_smooth and args.model is None and args.fps is None

    import pgat.pipelines.utils as utils

    monkeypatch.setattr(utils, "default_model_path", lambda: None)
    rc = main(["video", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "poses.npy"), "-o", str(out)])
    assert rc == 2 and "pass --model" in capsys.readouterr().err
    rc = main(["video", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "missing"), "-o", str(out), "--model", str(repo)])
    assert rc == 2 and "pgat: error: `--poses`: '" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# models that take the reference person's own pose (DESIGN.md §1b)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pose_aware():
    """A tiny 64² model with part-warped skips and the reference's pose maps."""
    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16, warp_skips=True, reference_pose=True).eval()
    assert model.needs_reference_pose
    return model


def test_pose_aware_video_gets_the_reference_pose_once(pose_aware, reference, monkeypatch, counting_estimator):
    image, kps = reference
    seq = np.repeat(kps[None], 4, axis=0)
    seq[:, :, 0] = np.where(seq[:, :, 0] >= 0, seq[:, :, 0] + np.arange(4)[:, None], -1)  # stepping right
    estimator = counting_estimator(kps)
    pipe = PGATVideoPipeline(model=pose_aware, pose_estimator=estimator)
    pipe.set_progress_bar_config(disable=True)
    seen = []
    decode = pose_aware.decode

    def recording_decode(features, keypoints, reference_keypoints=None):
        seen.append(None if reference_keypoints is None else tuple(reference_keypoints.shape))
        return decode(features, keypoints, reference_keypoints)

    monkeypatch.setattr(pose_aware, "decode", recording_decode)
    # estimated from the reference photo, once for the whole video, with or without retargeting
    out = pipe(image, seq, retarget=False, smooth=False, output_type="np")
    assert len(estimator.calls) == 1 and seen == [(1, 18, 2)] * 4
    ok = visible(kps)
    np.testing.assert_allclose(out.reference_pose[ok, :2], kps[ok], atol=1e-3)
    retargeted = pipe(image, seq, smooth=False)
    assert len(estimator.calls) == 2 and retargeted.reference_pose is not None  # one more video, one more estimate
    # given: used as it is, nothing estimated; another reference pose, other frames
    given = pipe(image, seq, reference_pose=kps, retarget=False, smooth=False, output_type="np")
    assert len(estimator.calls) == 2
    np.testing.assert_allclose(given.frames, out.frames, atol=1e-6)
    moved = kps.copy()
    moved[ok] += (10.0, -8.0)
    other = pipe(image, seq, reference_pose=moved, retarget=False, smooth=False, output_type="np")
    assert np.abs(other.frames - given.frames).mean() > 0.01
    np.testing.assert_allclose(other.reference_pose[ok, :2], moved[ok], atol=1e-3)
    # the tuple form keeps its four items
    assert len(pipe(image, seq, reference_pose=kps, retarget=False, return_dict=False)) == 4


def test_pose_aware_video_without_a_person_or_an_estimator(pose_aware, reference, counting_estimator):
    image, kps = reference
    seq = np.repeat(kps[None], 3, axis=0)
    nobody = PGATVideoPipeline(model=pose_aware, pose_estimator=counting_estimator(None))
    with pytest.raises(ValueError, match=r"`reference_image`: the 128x128 reference photo, in which no person was found; expected a photo of one person "
                                         r"for this model .* Or pass `reference_pose=`") as info:
        nobody(image, seq, retarget=False)
    assert "retarget=False" not in str(info.value)  # not a way out: the model itself needs the pose
    blind = PGATVideoPipeline(model=pose_aware, pose_estimator=None)
    with pytest.raises(ValueError, match=r"pose_estimator=None.*expected the reference person's pose, which this model .* needs: pass `reference_pose=`"):
        blind(image, seq, retarget=False)


def test_paper_model_video_only_looks_for_the_person_without_retargeting(pipe, reference, counting_estimator):
    """Without retargeting the paper's model uses no reference pose; the estimator looks once, on the reference
    photo, for a person (`pgat.inputs.check_person`), not once per frame."""
    image, kps = reference
    estimator = counting_estimator(kps)
    paper = PGATVideoPipeline(model=pipe.model, pose_estimator=estimator)
    paper.set_progress_bar_config(disable=True)
    out = paper(image, np.repeat(kps[None], 3, axis=0), retarget=False)
    assert estimator.calls == [image.shape[1::-1]] and out.reference_pose is None
    estimator.calls.clear()
    nobody = PGATVideoPipeline(model=pipe.model, pose_estimator=counting_estimator(None))
    with pytest.raises(ValueError, match="`reference_image`: .* reference photo, in which no person was found"):
        nobody(image, np.repeat(kps[None], 3, axis=0), retarget=False)
    assert paper(image, np.repeat(kps[None], 3, axis=0)).reference_pose is not None and len(estimator.calls) == 1  # retargeting uses it


def test_cli_video_reference_pose(pose_aware, reference, tmp_path, capsys):
    image, kps = reference
    repo = tmp_path / "model"
    PGATVideoPipeline(model=pose_aware, pose_estimator=None).save_pretrained(repo)
    Image.fromarray(image).save(tmp_path / "ref.png")
    np.save(tmp_path / "ref.npy", kps)
    np.save(tmp_path / "poses.npy", np.repeat(kps[None], 4, axis=0))
    out = tmp_path / "out.mp4"
    rc = main(["video", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "poses.npy"), "-o", str(out), "--model", str(repo),
               "--no-retarget", "--no-smooth", "--reference-pose", str(tmp_path / "ref.npy")])
    assert rc == 0 and "wrote 4 frames" in capsys.readouterr().out
    frames, _ = _read_video(out)
    api = PGATVideoPipeline.from_pretrained(repo, pose_estimator=None)
    api.set_progress_bar_config(disable=True)
    expected = api(image, np.repeat(kps[None], 4, axis=0), reference_pose=kps, retarget=False, smooth=False).frames
    assert len(frames) == 4 and np.abs(frames[0].astype(float) - np.asarray(expected[0], float)).mean() < 6
    rc = main(["video", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "poses.npy"), "-o", str(out), "--model", str(repo),
               "--no-retarget", "--reference-pose", str(tmp_path / "nope.json")])
    assert rc == 2 and "pgat: error: `--reference-pose`: '" in capsys.readouterr().err
