"""pgat.pose_estimation: BlazePose on real photos, the OpenPose adapter, backend choice and bad input."""

import importlib.metadata
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import pgat.pose_estimation as pe
from pgat.pose import KEYPOINT_INDEX as K
from pgat.pose_estimation import (
    BlazePoseEstimator,
    OpenPoseEstimator,
    PoseEstimate,
    blazepose_model_dir,
    estimate,
    load_estimator,
)


@pytest.fixture(scope="module")
def blazepose():
    return BlazePoseEstimator()


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()  # 512x512, NASA, public domain: head and shoulders of one person


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A real, empty Hugging Face cache: nothing of lllyasviel/Annotators is on this machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(pe, "_ESTIMATORS", {})
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def random_openpose(tmp_path_factory):
    """A folder with body_pose_model.pth of random weights, keyed as lllyasviel's file is (no block prefix)."""
    from controlnet_aux.open_pose.model import bodypose_model

    torch.manual_seed(0)
    state = bodypose_model().state_dict()
    folder = tmp_path_factory.mktemp("annotators")
    torch.save({k.split(".", 1)[1]: v for k, v in state.items()}, folder / "body_pose_model.pth")
    return folder


def present(kps, name):
    return kps[K[name], 2] > 0


# ---------------------------------------------------------------------------------------------
# BlazePose on real photos
# ---------------------------------------------------------------------------------------------


def test_blazepose_astronaut_face_and_shoulders(blazepose, astronaut):
    result = blazepose(astronaut, return_mask=True)
    assert isinstance(result, PoseEstimate) and result.backend == "blazepose" and result.num_people == 1
    kps = result.keypoints
    assert kps.shape == (18, 3) and kps.dtype == np.float32
    for name in ("nose", "r_eye", "l_eye", "r_ear", "l_ear", "r_shoulder", "l_shoulder", "neck"):
        assert present(kps, name), name
    nose, r_eye, l_eye = kps[K["nose"], :2], kps[K["r_eye"], :2], kps[K["l_eye"], :2]
    r_sho, l_sho = kps[K["r_shoulder"], :2], kps[K["l_shoulder"], :2]
    # her face is the box x 170..270, y 50..180; she faces the camera, so her right side is the image's left
    for p in (nose, r_eye, l_eye):
        assert 170 < p[0] < 270 and 50 < p[1] < 180, p
    assert r_eye[0] < nose[0] < l_eye[0]
    assert max(r_eye[1], l_eye[1]) < nose[1]
    assert r_sho[0] < nose[0] < l_sho[0] and l_sho[0] - r_sho[0] > 120
    assert min(r_sho[1], l_sho[1]) > nose[1] + 60 and max(r_sho[1], l_sho[1]) < 320
    np.testing.assert_allclose(kps[K["neck"], :2], (r_sho + l_sho) / 2, atol=1e-4)
    # the photo ends at her chest: hips, knees and ankles are outside it, hence missing
    for name in ("r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle"):
        assert tuple(kps[K[name]]) == (-1.0, -1.0, 0.0), name
    # the person mask covers her face and suit, not the background (sky-blue top right, flag on the left)
    mask = result.mask
    assert mask.shape == (512, 512) and mask.dtype == np.float32 and 0 <= mask.min() and mask.max() <= 1
    assert mask[60:180, 180:260].mean() > 0.9 and mask[250:400, 100:350].mean() > 0.9
    assert mask[0:150, 330:512].mean() < 0.05 and mask[0:250, 0:60].mean() < 0.05


def test_blazepose_same_pose_from_every_input_type(blazepose, astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    reference = blazepose(astronaut)
    tensor = torch.from_numpy(astronaut).permute(2, 0, 1).float() / 127.5 - 1
    for image in (str(path), path, Image.fromarray(astronaut), astronaut.astype(np.float32) / 255, tensor, tensor[None]):
        np.testing.assert_allclose(blazepose(image), reference, atol=1e-3)


def test_blazepose_follows_rotation_and_letterbox(blazepose, astronaut):
    """The rotated-ROI and letterbox geometry: the face must move with the picture (body points of her bulky
    suit are left out: with another crop the model may place them elsewhere within the suit)."""
    face = [K[n] for n in ("nose", "r_eye", "l_eye", "r_ear", "l_ear")]
    upright = blazepose(astronaut)
    # rot90 turns pixel (x, y) of a 512-wide image into (y, 511 - x)
    turned = blazepose(np.ascontiguousarray(np.rot90(astronaut)))
    expected = np.stack([upright[:, 1], 511 - upright[:, 0]], axis=1)
    assert (turned[face, 2] > 0).all()
    assert np.abs(turned[face, :2] - expected[face]).max() < 8
    # the photo inside a black 1280x720 frame: the detector letterboxes a wide image
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[100:612, 600:1112] = astronaut
    moved = blazepose(frame)
    assert (moved[face, 2] > 0).all()
    assert np.abs(moved[face, :2] - (upright[face, :2] + (600, 100))).max() < 8


def test_blazepose_several_people_largest_first(astronaut):
    # the astronaut and her mirror image at 7/8 size: the detector scores the smaller one higher, yet the
    # largest person comes first
    side = 448
    small = np.asarray(Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).resize((side, side), Image.BICUBIC))
    frame = np.full((512, 576 + side, 3), 255, np.uint8)
    frame[:, :512] = astronaut
    frame[32 : 32 + side, 576:] = small
    estimator = BlazePoseEstimator(min_detection_confidence=0.3)
    scores = [d["score"] for d in estimator.detect(frame)]
    assert len(scores) == 2 and scores[0] > scores[1]
    result = estimator(frame, return_all=True)
    assert result.num_people == 2
    big, little = result.people
    assert big[K["nose"], 0] < 512 < little[K["nose"], 0]
    np.testing.assert_array_equal(result.keypoints, big)
    np.testing.assert_array_equal(estimator(frame), big)
    # the second is the first mirrored (x -> 511 - x) and scaled by 7/8 into its place
    s = side / 512
    expected = ((511 - big[K["nose"], 0] + 0.5) * s - 0.5 + 576, (big[K["nose"], 1] + 0.5) * s - 0.5 + 32)
    np.testing.assert_allclose(little[K["nose"], :2], expected, atol=6)


def test_blazepose_nobody_in_a_real_photo(blazepose):
    coffee = data.coffee()  # a cup of coffee, CC0: no person
    kps = blazepose(coffee)
    assert kps.shape == (18, 3) and (kps[:, :2] == -1).all() and (kps[:, 2] == 0).all()
    result = blazepose(coffee, return_all=True, return_mask=True)
    assert result.num_people == 0 and result.people == []
    assert result.mask.shape == coffee.shape[:2] and result.mask.max() == 0


def _installed_file(distribution, path):
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    file = dist.locate_file(path)
    return file if os.path.isfile(file) else None


def test_blazepose_full_body_photo(blazepose):
    """A real full-body photo from a registry package: Ultralytics' ``assets/bus.jpg`` (810x1080, people
    walking in front of a bus; the package is AGPL-3.0). Only the file is read; the package is never imported."""
    path = _installed_file("ultralytics", "ultralytics/assets/bus.jpg")
    if path is None:
        pytest.skip("needs the bus.jpg photo of the `ultralytics` wheel: pip install --no-deps ultralytics")
    result = blazepose(path, return_all=True, return_mask=True)
    kps = result.keypoints
    assert (kps[:, 2] > 0).all(), "every COCO-18 point of the man in front is visible"
    y = {n: kps[K[n], 1] for n in ("nose", "neck", "r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle")}
    # head above neck above hips above knees above ankles, and the ankles at his shoes (y ~ 850-890)
    assert y["nose"] < y["neck"] < min(y["r_hip"], y["l_hip"])
    assert max(y["r_hip"], y["l_hip"]) < min(y["r_knee"], y["l_knee"])
    assert max(y["r_knee"], y["l_knee"]) < min(y["r_ankle"], y["l_ankle"])
    assert 380 < y["nose"] < 480 and 800 < min(y["r_ankle"], y["l_ankle"]) and max(y["r_ankle"], y["l_ankle"]) < 910
    # the man in the beige coat stands left of x = 250; his height spans about half the photo
    assert kps[kps[:, 2] > 0, 0].max() < 250 and y["r_ankle"] - y["nose"] > 350
    # his mask covers his coat, not the bus behind him
    assert result.mask[550:650, 90:180].mean() > 0.9 and result.mask[400:600, 450:650].mean() < 0.05


# ---------------------------------------------------------------------------------------------
# OpenPose adapter (random weights: plumbing only, never results)
# ---------------------------------------------------------------------------------------------


def test_openpose_loads_local_folder_and_returns_pose(random_openpose, astronaut):
    folder = random_openpose
    estimator = load_estimator("openpose", model_path=folder)
    assert isinstance(estimator, OpenPoseEstimator) and estimator.weights_path == folder / "body_pose_model.pth"
    small = np.ascontiguousarray(astronaut[::4, ::4][:, 40:88])  # narrow: OpenPose runs at 184 px height
    result = estimator(small, return_all=True)
    assert result.keypoints.shape == (18, 3) and result.keypoints.dtype == np.float32 and result.backend == "openpose"
    for person in [result.keypoints] + result.people:  # whatever random weights find lies on the image
        ok = person[:, 2] > 0
        assert ((person[ok, :2] >= 0) & (person[ok, :2] <= (47, 127))).all() and (person[~ok] == (-1, -1, 0)).all()
    with pytest.raises(ValueError, match="return_mask.*blazepose"):
        estimator(small, return_mask=True)


def test_openpose_maps_peaks_back_to_the_original_pixels(random_openpose):
    """A body network whose peaks are known: the adapter must undo ``detect_resolution`` downscaling."""
    from controlnet_aux.open_pose.body import Body

    estimator = OpenPoseEstimator(random_openpose, detect_resolution=256, min_keypoint_confidence=0.3)

    class KnownPeaks:
        format_body_result = staticmethod(Body.format_body_result)

        def __call__(self, bgr):
            self.shape = bgr.shape
            # candidates: x, y, score, id (pixels of the 256-wide image); one person using 0 (nose) and 2
            candidate = np.array([[100.0, 50.0, 0.9, 0], [127.5, 60.0, 0.8, 1], [10.0, 10.0, 0.2, 2]])
            person = -np.ones(20)
            person[[0, 2, 5]] = [0, 1, 2]
            person[18:] = [3.0, 3]
            return candidate, person[None]

    estimator._detector.body_estimation = KnownPeaks()
    kps = estimator(np.zeros((600, 1024, 3), np.uint8))
    assert estimator._detector.body_estimation.shape == (150, 256, 3)
    s = 256 / 1024
    np.testing.assert_allclose(kps[0], ((100 + 0.5) / s - 0.5, (50 + 0.5) / s - 0.5, 0.9), rtol=1e-6)
    np.testing.assert_allclose(kps[2], ((127.5 + 0.5) / s - 0.5, (60 + 0.5) / s - 0.5, 0.8), rtol=1e-6)
    assert tuple(kps[5]) == (-1, -1, 0)  # score 0.2 < min_keypoint_confidence
    assert (kps[[1, 3, 4] + list(range(6, 18))] == (-1, -1, 0)).all()


def test_openpose_without_weights_says_how_to_get_them(tmp_path, empty_hub_cache):
    with pytest.raises(FileNotFoundError, match=r"body_pose_model\.pth.*\n.*lllyasviel/Annotators"):
        OpenPoseEstimator(tmp_path)  # a folder without the file
    with pytest.raises(FileNotFoundError, match="huggingface-cli download lllyasviel/Annotators"):
        OpenPoseEstimator("lllyasviel/Annotators")  # offline, not in the cache
    torch.save({"not": torch.zeros(1)}, tmp_path / "body_pose_model.pth")
    with pytest.raises(ValueError, match="could not be loaded as the body network"):
        OpenPoseEstimator(tmp_path)


# ---------------------------------------------------------------------------------------------
# backends: auto, the override, none available
# ---------------------------------------------------------------------------------------------


def test_auto_is_openpose_when_cached_else_blazepose(empty_hub_cache, random_openpose, astronaut):
    assert isinstance(load_estimator("auto"), BlazePoseEstimator)
    assert estimate(astronaut, backend="auto").shape == (18, 3)
    # put the weights in the cache layout huggingface_hub itself reads: refs/main -> snapshots/<commit>/file
    repo = empty_hub_cache / "models--lllyasviel--Annotators"
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "body_pose_model.pth").symlink_to(random_openpose / "body_pose_model.pth")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    assert pe.openpose_available()
    assert isinstance(load_estimator("auto"), OpenPoseEstimator)
    # a mask can only come from BlazePose, so "auto" with return_mask means BlazePose
    assert estimate(astronaut, backend="auto", return_mask=True).backend == "blazepose"


def test_blazepose_dir_override(tmp_path, monkeypatch):
    copy = tmp_path / "bp"
    shutil.copytree(blazepose_model_dir(), copy)
    monkeypatch.setenv("PGAT_BLAZEPOSE_DIR", str(copy))
    assert blazepose_model_dir() == copy and BlazePoseEstimator().model_dir == copy
    (copy / "pose_landmark_full.tflite").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing pose_landmark_full\.tflite.*PGAT_BLAZEPOSE_DIR"):
        BlazePoseEstimator()


def test_no_backend_available_is_one_error_naming_both(tmp_path, monkeypatch, empty_hub_cache, astronaut):
    monkeypatch.setenv("PGAT_BLAZEPOSE_DIR", str(tmp_path / "nothing-here"))
    for call in (lambda: load_estimator("auto"), lambda: estimate(astronaut)):
        with pytest.raises(FileNotFoundError) as info:
            call()
        message = str(info.value)
        assert "No pose estimation backend is available" in message
        assert "openpose: weights 'body_pose_model.pth' of lllyasviel/Annotators are not in the Hub cache" in message
        assert "blazepose: BlazePose model files not found" in message
        assert "huggingface-cli download lllyasviel/Annotators body_pose_model.pth" in message
        assert "PGAT_BLAZEPOSE_DIR" in message and "mediapipe==0.10.21" in message


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_images_are_clear_errors(blazepose, tmp_path, astronaut):
    with pytest.raises(FileNotFoundError, match="`image`: '.*missing.png', which does not exist"):
        blazepose(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="`image`: the file '.*notes.png', which is not an image"):
        blazepose(tmp_path / "notes.png")
    with pytest.raises(ValueError, match=r"`image`: an array of shape \(512, 512, 5\); expected an \(H, W\), \(H, W, 3\) or \(H, W, 4\) array"):
        blazepose(np.zeros((512, 512, 5), np.uint8))
    with pytest.raises(ValueError, match=r"`image`: a float array with values in \[0, 255\]; expected uint8, or float values in \[0, 1\]"):
        blazepose(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match=r"`image`: a tensor with values in \[0, 255\]; expected a float tensor in \[-1, 1\]"):
        blazepose(torch.from_numpy(astronaut).permute(2, 0, 1).float())
    with pytest.raises(ValueError, match=r"`image`: a torch.float32 tensor of shape \(4, 64, 64\); expected a float \(3, H, W\)"):
        blazepose(torch.zeros(4, 64, 64))
    with pytest.raises(ValueError, match="`image`: a list of 1 items; expected an image file"):
        blazepose([[0, 0, 0]])


def test_bad_arguments_are_clear_errors(astronaut):
    with pytest.raises(ValueError, match=r"`backend` must be one of \['auto', 'openpose', 'blazepose'\], got 'mediapipe'"):
        estimate(astronaut, backend="mediapipe")
    with pytest.raises(ValueError, match="`backend` must be one of"):
        load_estimator("yolo")
    with pytest.raises(ValueError, match=r"`min_keypoint_confidence` must be in \[0, 1\], got 2"):
        BlazePoseEstimator(min_keypoint_confidence=2)
    with pytest.raises(ValueError, match="`max_people` must be at least 1, got 0"):
        BlazePoseEstimator(max_people=0)
    with pytest.raises(ValueError, match="`model_path` needs an explicit `backend`"):
        load_estimator("auto", model_path="somewhere")


def test_min_keypoint_confidence_drops_points(astronaut):
    strict = BlazePoseEstimator(min_keypoint_confidence=0.999)(astronaut)
    loose = BlazePoseEstimator(min_keypoint_confidence=0.0)(astronaut)
    assert (strict[:, 2] > 0).sum() < (loose[:, 2] > 0).sum()
    kept = strict[:, 2] > 0
    assert (strict[kept, 2] >= 0.999).all() and (strict[~kept] == (-1, -1, 0)).all()
