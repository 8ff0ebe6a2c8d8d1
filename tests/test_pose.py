import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pgat.pose import (
    BODY_LIMBS,
    COCO18_NAMES,
    FLIP_INDEX,
    KEYPOINT_INDEX,
    OPENPOSE_COLORS,

    draw_skeleton,
    heatmaps,
    letterbox,
    read_deepfashion_annotations,
    read_openpose_json,
    write_openpose_json,
)


def test_names_limbs_flip():
    assert len(COCO18_NAMES) == 18 and COCO18_NAMES[1] == "neck" and COCO18_NAMES[17] == "l_ear"
    assert len(BODY_LIMBS) == 13
    named = [(COCO18_NAMES[a], COCO18_NAMES[b]) for a, b in BODY_LIMBS]
    assert named[2] == ("r_elbow", "r_wrist") and named[12] == ("neck", "nose")
    # the flip map is an involution that swaps every r_ with its l_ and keeps nose / neck
    for i, j in enumerate(FLIP_INDEX):
        assert FLIP_INDEX[j] == i
        a, b = COCO18_NAMES[i], COCO18_NAMES[j]
        assert a == b if a in ("nose", "neck") else a[2:] == b[2:] and a[0] != b[0]


def test_heatmap_values_follow_eq1():
    sigma = 3.2
    kps = torch.tensor([[[20.0, 10.0], [5.25, 30.5]] + [[-1.0, -1.0]] * 16])
    maps = heatmaps(kps, 40, 48, sigma)
    assert maps.shape == (1, 18, 40, 48)
    # exactly 1 at the keypoint's pixel (row = y, column = x) and the maximum of the map
    assert maps[0, 0, 10, 20].item() == pytest.approx(1.0, abs=1e-7)
    assert maps[0, 0].argmax().item() == 10 * 48 + 20
    for dy, dx in [(0, 3), (4, 0), (-2, 5), (7, -6)]:
        d2 = dx * dx + dy * dy
        assert maps[0, 0, 10 + dy, 20 + dx].item() == pytest.approx(math.exp(-d2 / (2 * sigma**2)), rel=1e-5)
    # a sub-pixel point: value at every pixel is the Gaussian of the true distance
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(48.0), indexing="ij")
    expected = torch.exp(-((xs - 5.25) ** 2 + (ys - 30.5) ** 2) / (2 * sigma**2))
    torch.testing.assert_close(maps[0, 1], expected, rtol=1e-5, atol=1e-7)
    # missing points give all-zero maps
    assert maps[0, 2:].abs().sum().item() == 0.0


def test_heatmap_missing_if_any_coordinate_negative_and_bad_input():
    kps = torch.tensor([[[10.0, -1.0], [-1.0, 10.0], [3.0, 3.0]]])
    maps = heatmaps(kps, 16, 16, 2.0)
    assert maps[0, 0].sum() == 0 and maps[0, 1].sum() == 0 and maps[0, 2].max() == 1
    with pytest.raises(ValueError, match="NaN"):
        heatmaps(torch.tensor([[[float("nan"), 1.0]]]), 8, 8, 1.0)
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        heatmaps(torch.zeros(18, 2), 8, 8, 1.0)


def _march_frames(shared_data):
    folder = shared_data / "openpose-sequences" / "workout_march"
    files = sorted(folder.glob("*_keypoints.json"))
    assert len(files) == 120
    return files


def test_body25_to_coco18_on_real_sequence(shared_data):
    files = _march_frames(shared_data)
    neck_between, ankles_below, nose_above = 0, 0, 0
    for f in files:
        raw = json.loads(f.read_text())
        body25 = np.asarray(raw["people"][0]["pose_keypoints_2d"], dtype=np.float32).reshape(25, 3)
        kps = read_openpose_json(f)
        assert kps.shape == (18, 3) and kps.dtype == np.float32
        # BODY_25's MidHip (8) is dropped: COCO r_hip is BODY_25's 9, l_ear its 18
        np.testing.assert_array_equal(kps[KEYPOINT_INDEX["r_hip"], :2], body25[9, :2])
        if body25[18, 2] > 0:
            np.testing.assert_array_equal(kps[KEYPOINT_INDEX["l_ear"], :2], body25[18, :2])
        k = {n: kps[i] for i, n in enumerate(COCO18_NAMES)}
        xs = sorted([k["r_shoulder"][0], k["l_shoulder"][0]])
        neck_between += xs[0] <= k["neck"][0] <= xs[1]
        ankles_below += k["r_ankle"][1] > k["r_knee"][1] and k["l_ankle"][1] > k["l_knee"][1]
        nose_above += k["nose"][1] < k["neck"][1]
    assert neck_between >= 0.9 * len(files)
    assert ankles_below >= 0.9 * len(files)
    assert nose_above == len(files)


def test_openpose_json_variants(tmp_path):
    small = np.zeros((18, 3), np.float32)
    small[:, :2] = np.arange(36).reshape(18, 2) % 7 + 100
    small[:, 2] = 0.9
    big = small.copy()
    big[:, :2] = np.arange(36).reshape(18, 2) * 10.0
    big[5, 2] = 0.0  # OpenPose writes an undetected point as 0, 0, 0
    big[5, :2] = 0.0
    data = {"people": [{"pose_keypoints": small.reshape(-1).tolist()}, {"pose_keypoints_2d": big.reshape(-1).tolist()}]}
    kps = read_openpose_json(data)
    np.testing.assert_array_equal(kps[:, :2][np.arange(18) != 5], big[:, :2][np.arange(18) != 5])  # the largest person
    np.testing.assert_array_equal(kps[5], [-1, -1, 0])
    assert len(read_openpose_json(data, return_all=True)) == 2
    # write -> read round trip through a file, with the canvas recorded
    path = tmp_path / "pose.json"
    written = write_openpose_json(kps[:, :2], path, canvas_size=(640, 480))
    assert written["canvas_width"] == 640 and len(written["people"][0]["pose_keypoints_2d"]) == 54
    back = read_openpose_json(path)
    np.testing.assert_allclose(back[:, :2], kps[:, :2], atol=1e-3)
    assert back[5, 2] == 0 and (back[np.arange(18) != 5, 2] == 1).all()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"people": []}, "no people"),
        ({"persons": []}, "'people'"),
        ({"people": [{"pose_keypoints_2d": [1.0] * 51}]}, "51 values"),
        ({"people": [{"face_keypoints_2d": []}]}, "pose_keypoints_2d"),
    ],
)
def test_openpose_json_errors(payload, message):
    with pytest.raises(ValueError, match=message):
        read_openpose_json(payload)


def test_openpose_json_unreadable_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_openpose_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_openpose_json(tmp_path / "missing.json")


def test_deepfashion_reader_on_real_annotations(shared_data):
    path = shared_data / "deepfashion" / "fasion-annotation-test.csv"
    full = read_deepfashion_annotations(path, frame="256x256")
    crop = read_deepfashion_annotations(path)  # 256x176 by default
    assert len(full) == 4038 and len(crop) == 4038
    all_missing = sum(bool((k < 0).all()) for k in full.values())
    assert all_missing == 619
    name = "fashionWOMENTees_Tanksid0000508545_1front.jpg"  # the second row of the file
    # file: y = [40, 85, ...], x = [128, 129, ...]; (x, y) out, x - 40 in the 256x176 crop
    np.testing.assert_array_equal(full[name][0], [128, 40])
    np.testing.assert_array_equal(crop[name][0], [88, 40])
    np.testing.assert_array_equal(crop[name][9], [-1, -1])  # r_knee missing stays missing, not -41
    ok = (crop[name] >= 0).all(1)
    np.testing.assert_array_equal(crop[name][ok, 0], full[name][ok, 0] - 40)


def test_deepfashion_reader_bad_header(tmp_path):
    bad = tmp_path / "ann.csv"
    bad.write_text("name,y,x\nfoo,1,2\n")
    with pytest.raises(ValueError, match="name:keypoints_y:keypoints_x"):
        read_deepfashion_annotations(bad)
    with pytest.raises(ValueError, match="`frame`"):
        read_deepfashion_annotations(bad, frame="176x256")


def test_draw_skeleton_colours_limbs():
    kps = np.full((18, 2), -1.0, np.float32)
    kps[1] = (50, 20)  # neck
    kps[2] = (30, 22)  # r_shoulder
    out = draw_skeleton((100, 100), kps)
    assert isinstance(out, Image.Image) and out.size == (100, 100)
    arr = np.asarray(out).astype(int)
    mid = arr[21, 40]  # on the neck-r_shoulder limb, OpenPose's first colour blended at 0.6 over black
    np.testing.assert_allclose(mid, np.array(OPENPOSE_COLORS[0]) * 0.6, atol=3)
    assert arr[80, 80].sum() == 0  # nothing drawn where no limb is
    base = np.full((60, 60, 3), 255, np.uint8)
    drawn = draw_skeleton(base, kps * 0.5)
    assert isinstance(drawn, np.ndarray) and drawn.shape == base.shape and (base == 255).all()


def test_letterbox_round_trip():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 120, 3), dtype=np.uint8))
    kps = np.array([[0, 0], [119, 199], [59.5, 99.5]] + [[-1, -1]] * 15, np.float32)
    square, sq_kps, box = letterbox(img, kps, 256)
    assert square.size == (256, 256) and box.new_height == 256 and box.new_width == round(120 * 256 / 200)
    # the picture sits centred, the pad is white
    assert np.asarray(square)[:, 0].min() == 255 and np.asarray(square)[:, -1].min() == 255
    # the image centre maps to the square's centre, (255 / 2, 255 / 2) with pixel centres at whole numbers
    np.testing.assert_allclose(sq_kps[2], [127.5, 127.5], atol=1e-4)
    # corner pixels land inside the pasted picture's first / last pixel (each spans index +- 0.5)
    assert abs(sq_kps[0, 0] - box.left) <= 0.5 and abs(sq_kps[0, 1] - 0) <= 0.5
    assert abs(sq_kps[1, 0] - (box.left + box.new_width - 1)) <= 0.5 and abs(sq_kps[1, 1] - 255) <= 0.5
    np.testing.assert_array_equal(sq_kps[3:], -1)
    np.testing.assert_allclose(box.keypoints_from_square(sq_kps)[1:], kps[1:], atol=1e-4)
    back = box.image_from_square(square)
    assert back.size == img.size
    err = np.abs(np.asarray(back, float) - np.asarray(img, float)).mean()
    assert err < 40  # resampled twice, but the same picture (random noise averages ~85 apart)
    with pytest.raises(ValueError, match="outside the image frame"):
        box.keypoints_from_square(np.array([[2.0, 100.0]] + [[-1, -1]] * 17))  # in the left pad
