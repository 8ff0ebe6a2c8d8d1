import dataclasses
import hashlib
import math

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from pgat.data import PARSING_LABELS, Identity, SynthHumans
from pgat.data.synthetic import (
    BOTTOM,
    FACE,
    HAIR,
    SHOES,
    SKIN,
    TOP,
    Pattern,
    find_pose_file,
    person_id,
    random_pose,
)
from pgat.pose import COCO18_NAMES, read_deepfashion_annotations, visible

# The parsing labels a keypoint may sit on, by joint: the face points on the face, the arm joints on a
# sleeve or skin, the hips on the top or the bottom garment, the ankles on trousers, skin or shoes.
ALLOWED = {
    "nose": {FACE}, "r_eye": {FACE}, "l_eye": {FACE}, "r_ear": {FACE}, "l_ear": {FACE},
    "neck": {SKIN, TOP, FACE, HAIR},
    "r_shoulder": {TOP, SKIN}, "l_shoulder": {TOP, SKIN},
    "r_elbow": {TOP, SKIN}, "l_elbow": {TOP, SKIN}, "r_wrist": {TOP, SKIN}, "l_wrist": {TOP, SKIN},
    "r_hip": {TOP, BOTTOM}, "l_hip": {TOP, BOTTOM},
    "r_knee": {BOTTOM, SKIN}, "l_knee": {BOTTOM, SKIN},
    "r_ankle": {BOTTOM, SKIN, SHOES}, "l_ankle": {BOTTOM, SKIN, SHOES},
}


def front_pose():
    """A hand-made full-body pose facing the camera in a 256 frame (right shoulder on the image's left)."""
    k = np.array([
        [128, 36], [128, 72], [104, 74], [96, 128], [92, 176], [152, 74], [166, 126], [176, 176],
        [114, 178], [112, 232], [110, 250], [142, 178], [144, 232], [146, 250],
        [122, 30], [134, 30], [116, 34], [140, 34],
    ], dtype=np.float32)
    return k


def rotate_about(points, centre, degrees):
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float32)
    return (points - centre) @ rot.T + centre


def limb_patch(image, a, b, unit, steps=(17, 11)):
    """Sample ``image`` in the limb's own frame around its midpoint (bilinear): from 35 % to 65 % of the
    way along the limb, and 0.05 body units either side of its axis."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = b - a
    e = d / np.linalg.norm(d)
    n = np.array([e[1], -e[0]])
    t, c = np.meshgrid(np.linspace(0.35, 0.65, steps[0]), np.linspace(-0.05, 0.05, steps[1]) * unit, indexing="ij")
    x = a[0] + t * d[0] + c * n[0]
    y = a[1] + t * d[1] + c * n[1]
    return np.stack([map_coordinates(image[..., ch].astype(np.float64), [y, x], order=1) for ch in range(3)], -1)


def correlation(p, q):
    return float(np.corrcoef(p.ravel(), q.ravel())[0, 1])


def test_items_shapes_and_labels():
    ds = SynthHumans(resolution=128, split="train", seed=0)
    item = ds[0]
    assert item["reference"].shape == item["target"].shape == (128, 128, 3)
    assert item["reference"].dtype == np.uint8
    assert item["reference_keypoints"].shape == (18, 2) and item["reference_keypoints"].dtype == np.float32
    for side in ("reference", "target"):
        parsing = item[f"{side}_parsing"]
        assert parsing.shape == (128, 128) and parsing.dtype == np.uint8
        assert parsing.max() < len(PARSING_LABELS)
        # a person in a fashion photo: a figure, but mostly plain background
        assert 0.05 < (parsing > 0).mean() < 0.7
        assert parsing[0, 0] == 0
    assert PARSING_LABELS[0] == "background" and len(PARSING_LABELS) == 7


def test_deterministic_by_seed_and_index():
    a, b = SynthHumans(resolution=96, seed=3), SynthHumans(resolution=96, seed=3)
    x, y = a[5], b[5]
    for key in ("reference", "target", "reference_keypoints", "target_keypoints", "reference_parsing", "target_parsing"):
        np.testing.assert_array_equal(x[key], y[key])
    # reading other indices first changes nothing
    _ = a[7]
    np.testing.assert_array_equal(a[5]["reference"], x["reference"])
    # another seed: another person
    z = SynthHumans(resolution=96, seed=4)[5]
    assert not np.array_equal(z["reference"], x["reference"])


@pytest.mark.parametrize("resolution", [64, 200, 1024])
def test_any_square_resolution(resolution):
    ds = SynthHumans(resolution=resolution)
    item = ds[2]
    assert item["reference"].shape == (resolution, resolution, 3)
    ok = visible(item["reference_keypoints"])
    assert ok.sum() >= 4
    assert (item["reference_keypoints"][ok] <= resolution - 1).all()


def test_same_pose_scales_with_resolution():
    small, large = SynthHumans(resolution=128)[1], SynthHumans(resolution=512)[1]
    ok = visible(small["reference_keypoints"]) & visible(large["reference_keypoints"])
    assert ok.sum() >= 4
    # pixel centres: x_512 = (x_128 + 0.5) * 4 - 0.5
    np.testing.assert_allclose((small["reference_keypoints"][ok] + 0.5) * 4 - 0.5, large["reference_keypoints"][ok], atol=1e-3)


@pytest.mark.parametrize("split", ["train", "test"])
def test_visible_keypoints_lie_on_their_body_part(split):
    ds = SynthHumans(resolution=192, split=split, seed=1)
    checked = hidden = 0
    for i in range(12):
        item = ds[i]
        for side in ("reference", "target"):
            kps, parsing, image = item[f"{side}_keypoints"], item[f"{side}_parsing"], item[side]
            for j in np.flatnonzero(visible(kps)):
                x, y = np.round(kps[j]).astype(int)
                label = int(parsing[y, x])
                assert label != 0, f"{COCO18_NAMES[j]} of item {i} ({side}) is on the background"
                assert label in ALLOWED[COCO18_NAMES[j]], (
                    f"{COCO18_NAMES[j]} of item {i} ({side}) lies on '{PARSING_LABELS[label]}'"
                )
                checked += 1
            hidden += int((~visible(kps)[1:14]).sum())
    assert checked > 200
    assert hidden > 0  # some joints are hidden by occlusion or the frame, and reported missing


def test_texture_follows_the_limb():
    """A garment pattern around the upper-arm midpoint reappears at the same limb after the arm moves."""
    base = Identity.sample(0)
    checks = Pattern("checks", (0.85, 0.15, 0.1), (0.1, 0.15, 0.8), period=0.1, angle=0.3)
    ident = dataclasses.replace(base, sleeves="long", top_front=checks, top_back=checks, print_kind="none")
    ds = SynthHumans(resolution=256)
    pose_a = front_pose()
    pose_b = pose_a.copy()
    pose_b[[6, 7]] = rotate_about(pose_a[[6, 7]], pose_a[5], -40.0)  # raise the left arm outwards
    a, b = ds.render(ident, pose_a), ds.render(ident, pose_b)
    # the arm really moved in the image
    assert np.linalg.norm(a["keypoints"][6] - b["keypoints"][6]) > 30
    unit = 106.0  # neck to mid-hip of front_pose()
    patch_a = limb_patch(a["image"], pose_a[5], pose_a[6], unit)
    patch_b = limb_patch(b["image"], pose_b[5], pose_b[6], unit)
    assert patch_a.std() > 20  # a real pattern, not a flat colour
    same = correlation(patch_a, patch_b)
    # control: a different fabric on the same limb does not correlate
    other = dataclasses.replace(ident, top_front=dataclasses.replace(checks, period=0.17, angle=-0.5))
    patch_c = limb_patch(ds.render(other, pose_b)["image"], pose_b[5], pose_b[6], unit)
    assert same > 0.9, same
    assert correlation(patch_a, patch_c) < 0.5


def test_texture_follows_limb_across_real_pose_pairs():
    """The same holds across DeepFashion pose pairs: the pattern is attached in body units, so the patch
    is sampled at fractions of the limb's length and in the figure's body units across."""
    from pgat.data.synthetic import _complete

    ds = SynthHumans(resolution=256, seed=0)
    stripes = Pattern("stripes", (0.9, 0.9, 0.2), (0.1, 0.2, 0.5), period=0.09, angle=1.2)
    scores = []
    for i in range(60):
        item = ds[i]
        ra, ta = ds.pose(item["reference_pose"]), ds.pose(item["target_pose"])
        if not (visible(ra)[[2, 3]].all() and visible(ta)[[2, 3]].all()):
            continue
        if min(np.linalg.norm(ra[3] - ra[2]), np.linalg.norm(ta[3] - ta[2])) < 30:
            continue  # too foreshortened to sample
        fa, fb = _complete(ra), _complete(ta)
        if (fa.frontness >= 0) != (fb.frontness >= 0):
            continue  # seen from the other side, the sleeve shows its back
        units = [fa.unit, fb.unit]
        ident = dataclasses.replace(ds.identity(i), sleeves="long", top_front=stripes, top_back=stripes)
        a, b = ds.render(ident, ra), ds.render(ident, ta)
        if not (visible(a["keypoints"])[[2, 3]].all() and visible(b["keypoints"])[[2, 3]].all()):
            continue  # the upper arm must be seen in both
        pa = limb_patch(a["image"], ra[2], ra[3], units[0], (9, 5))
        pb = limb_patch(b["image"], ta[2], ta[3], units[1], (9, 5))
        scores.append(correlation(pa, pb))
    assert len(scores) >= 10
    assert np.median(scores) > 0.95, scores
    assert np.mean(np.asarray(scores) > 0.8) > 0.75, scores


def test_depth_order_from_facing():
    """A forearm crossing the torso is in front of it when the person faces the camera, behind it from the back."""
    ident = dataclasses.replace(Identity.sample(1), sleeves="none", print_kind="none")
    ds = SynthHumans(resolution=256)
    front = front_pose()
    front[4] = (140, 140)  # right hand across the belly
    # the same body seen from behind: every joint keeps its name, mirrored in x (the right shoulder
    # is now on the image's right), and the face is gone
    back = front.copy()
    back[:, 0] = 255 - front[:, 0]
    back[[0, 14, 15]] = -1
    mid_front = (front[3] + front[4]) / 2
    mid_back = (back[3] + back[4]) / 2
    f, b = ds.render(ident, front), ds.render(ident, back)
    xf, yf = np.round(mid_front).astype(int)
    xb, yb = np.round(mid_back).astype(int)
    assert f["parsing"][yf, xf] == SKIN  # the bare forearm covers the top
    assert b["parsing"][yb, xb] == TOP  # the top covers the forearm
    assert visible(f["keypoints"])[4] and not visible(b["keypoints"])[4]
    # from behind, the head is hair (the ears are all that is left of the face)
    assert (b["parsing"] == FACE).sum() < 0.2 * (f["parsing"] == FACE).sum()
    assert (b["parsing"] == HAIR).sum() > (f["parsing"] == HAIR).sum()


def test_splits_are_disjoint_in_poses_and_identities():
    train, test = SynthHumans(split="train"), SynthHumans(split="test")
    assert len(train) > 1000 and len(test) > 50
    assert not set(train.pose_names) & set(test.pose_names)
    assert not {person_id(n) for n in train.pose_names} & {person_id(n) for n in test.pose_names}
    for ds in (train, test):
        # every pose of every pair comes from the split's own pool
        for i in range(0, len(ds), max(1, len(ds) // 30)):
            item = ds[i] if i < 3 else None
            if item is not None:
                assert item["reference_pose"] in ds.pose_names and item["target_pose"] in ds.pose_names
    ids_train = {train[i]["identity"] for i in range(6)}
    ids_test = {test[i]["identity"] for i in range(6)}
    assert len(ids_train) == 6 and not ids_train & ids_test
    # identities of the two splits are different people, not just different numbers
    assert train.identity(0) != test.identity(0)
    # random poses are split by stream as well
    r_train, r_test = SynthHumans(64, "train", poses="random"), SynthHumans(64, "test", poses="random")
    assert not np.array_equal(r_train[0]["reference_keypoints"], r_test[0]["reference_keypoints"])


def test_deepfashion_pool_skips_empty_rows(shared_data):
    table = read_deepfashion_annotations(shared_data / "deepfashion" / "fasion-annotation-test.csv", frame="256x256")
    empty = sum(not visible(k).any() for k in table.values())
    assert empty == 619  # as documented in shared/data/README.md
    train, test = SynthHumans(split="train"), SynthHumans(split="test")
    assert train.skipped_poses >= empty
    assert train.num_poses + test.num_poses + train.skipped_poses == len(table)


def test_pose_files_are_shipped_in_the_package(shared_data):
    from pgat.data.synthetic import _PACKAGED_POSES

    for name in ("fasion-annotation-test.csv", "fashion-pairs-test.csv"):
        shipped = (_PACKAGED_POSES / name).read_bytes()
        assert hashlib.sha256(shipped).hexdigest() == hashlib.sha256((shared_data / "deepfashion" / name).read_bytes()).hexdigest()
        assert find_pose_file(name).is_file()


def test_random_and_given_poses():
    rng = np.random.default_rng(0)
    poses = [random_pose(rng) for _ in range(3)]
    for p in poses:
        assert visible(p)[1:14].all()
        assert (p[visible(p)] >= 0).all() and (p[visible(p)] < 256).all()
    ds = SynthHumans(resolution=128, poses=poses, length=5)
    assert len(ds) == 5
    item = ds[4]
    assert item["reference_pose"] in {"0", "1", "2"}
    # the given pose, scaled from its 256 frame into the 128 square, is what was drawn
    drawn = item["reference_keypoints"]
    expected = (poses[int(item["reference_pose"])] + 0.5) / 2 - 0.5
    ok = visible(drawn)
    np.testing.assert_allclose(drawn[ok], expected[ok], atol=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match="resolution"):
        SynthHumans(resolution=32)
    with pytest.raises(ValueError, match="split"):
        SynthHumans(split="val")
    with pytest.raises(ValueError, match="poses"):
        SynthHumans(poses="imaginary")
    with pytest.raises(ValueError, match="empty"):
        SynthHumans(poses=[])
    few = np.full((18, 2), -1.0, np.float32)
    few[0] = (10, 10)
    with pytest.raises(ValueError, match=r"poses\[0\]"):
        SynthHumans(poses=[few])
    ds = SynthHumans(resolution=64)
    with pytest.raises(IndexError):
        ds[len(ds)]
    out = front_pose()  # a 256-frame pose does not fit a 64 frame
    with pytest.raises(ValueError, match="outside the 64x64 frame"):
        ds.render(0, out)
    with pytest.raises(ValueError, match=r"shape \(18, 2\)"):
        ds.render(0, np.zeros((17, 2)))
