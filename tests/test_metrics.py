import time

import numpy as np
import pytest
import skimage.data
import skimage.metrics
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as reference_ms_ssim
from torchvision.models import alexnet

from pgat import metrics
from pgat.descriptors import descriptor_points
from pgat.pose import read_deepfashion_annotations

FULL_POSE = "fashionWOMENSweatersid0000393006_7additional.jpg"


@pytest.fixture(scope="module")
def astronaut_u8():
    """(512, 512, 3) uint8, and a noisy copy."""
    img = skimage.data.astronaut()
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(np.int16) + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    return img, noisy


def _tensor(u8):
    return torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def pair256(astronaut_u8):
    img, noisy = astronaut_u8
    return F.interpolate(_tensor(img), size=256, mode="area"), F.interpolate(_tensor(noisy), size=256, mode="area")


@pytest.fixture(scope="module")
def pose256(shared_data):
    kps = read_deepfashion_annotations(shared_data / "deepfashion" / "fasion-annotation-test.csv", frame="256x256")
    return torch.from_numpy(kps[FULL_POSE])[None]


# ---------------------------------------------------------------------------------------------
# SSIM / MS-SSIM
# ---------------------------------------------------------------------------------------------


def test_ssim_agrees_with_scikit_image(astronaut_u8):
    img, noisy = astronaut_u8
    want = skimage.metrics.structural_similarity(
        img, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
    )
    assert 0.2 < want < 0.9  # a real, non-trivial value to agree on
    assert metrics.ssim(noisy, img)["ssim"] == pytest.approx(want, abs=1e-3)  # uint8 arrays (H, W, 3)
    assert metrics.ssim(_tensor(noisy), _tensor(img))["ssim"] == pytest.approx(want, abs=1e-3)  # tensors in [-1, 1]
    assert metrics.ssim(img, img)["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_five_scales_is_pytorch_msssim(pair256):
    x, y = pair256
    want = reference_ms_ssim((y + 1) * 127.5, (x + 1) * 127.5, data_range=255, size_average=False)
    torch.testing.assert_close(metrics.ms_ssim_per_image(y, x), want)
    # our own scale loop, used below 160 px, gives the same number with five scales
    torch.testing.assert_close(metrics.ms_ssim_per_image(y, x, levels=5), want, rtol=1e-5, atol=1e-6)


def test_ms_ssim_small_images_use_fewer_scales(pair256):
    x, y = pair256
    assert [metrics.ms_ssim_levels(s) for s in (64, 128, 161, 256)] == [3, 4, 5, 5]
    values = {}
    for size in (64, 128):
        a, b = F.interpolate(x, size=size, mode="area"), F.interpolate(y, size=size, mode="area")
        assert metrics.ms_ssim(a, a)["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
        values[size] = metrics.ms_ssim(b, a)["ms_ssim"]
        assert 0.5 < values[size] < 1.0
        with pytest.raises(AssertionError):  # what pytorch_msssim itself does at this size
            reference_ms_ssim(a, b, data_range=2)
    with pytest.raises(ValueError, match="MS-SSIM needs images"):
        metrics.ms_ssim(x[..., :20, :20], y[..., :20, :20])


# ---------------------------------------------------------------------------------------------
# local-SSIM
# ---------------------------------------------------------------------------------------------


def test_local_ssim_one_for_identical_and_drops_when_a_crop_changes(pair256, pose256):
    x, _ = pair256
    assert metrics.local_ssim(x, x, pose256)["local_ssim"] == pytest.approx(1.0, abs=1e-6)
    kx, ky = pose256[0, 4].long().tolist()  # right wrist
    y = x.clone()
    y[..., ky - 16 : ky + 16, kx - 16 : kx + 16] = 0.0
    value = metrics.local_ssim(y, x, pose256)["local_ssim"]
    assert value < 0.99
    # local SSIM only looks at the 44 crops: the whole-image SSIM barely moves
    assert metrics.ssim(y, x)["ssim"] > value


def test_local_ssim_masks_missing_points_and_batches(pair256, pose256):
    x, y = pair256
    only_nose = torch.full_like(pose256, -1)
    only_nose[0, 0] = pose256[0, 0]  # one valid descriptor (a limb needs both of its joints)
    assert int(descriptor_points(only_nose, 44)[1].sum()) == 1
    kx, ky = pose256[0, 4].long().tolist()  # right wrist, far from the nose
    z = x.clone()
    z[..., ky - 16 : ky + 16, kx - 16 : kx + 16] = 0.0
    assert metrics.local_ssim(z, x, only_nose)["local_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert metrics.local_ssim(z, x, pose256)["local_ssim"] < 0.99
    # batch of two: the mean of the per-image values; an image without any valid point is left out
    one = metrics.local_ssim(y, x, pose256)["local_ssim"]
    two = metrics.local_ssim(torch.cat([y, y]), torch.cat([x, x]), torch.cat([pose256, torch.full_like(pose256, -1)]))
    assert two["local_ssim"] == pytest.approx(one, abs=1e-6)
    assert np.isnan(metrics.local_ssim(y, x, torch.full_like(pose256, -1))["local_ssim"])
    with pytest.raises(ValueError, match="`target_keypoints`"):
        metrics.local_ssim(y, x, None)


# ---------------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path


def test_lpips_offline_without_alexnet_is_a_clear_error(empty_torch_home, monkeypatch, pair256):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    x, y = pair256
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as info:
        metrics.lpips(y, x)
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(empty_torch_home / "hub" / "checkpoints") in msg
    assert "alexnet_path" in msg
    with pytest.raises(FileNotFoundError, match="alexnet_path"):
        metrics.lpips(y, x, alexnet_path=empty_torch_home / "missing.pth")


def test_lpips_loads_the_alexnet_file_it_is_given(tmp_path, pair256):
    """The AlexNet trunk comes from the file (seeded random weights stand in for torchvision's file here;
    the test is about the loading, not the metric's value)."""
    torch.manual_seed(0)
    net = alexnet()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({k: v for k, v in net.state_dict().items() if k.startswith("features.")}, path)
    x, y = pair256
    assert metrics.lpips(x, x, alexnet_path=path)["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert metrics.lpips(y, x, alexnet_path=path)["lpips"] > 0
    model = metrics._lpips_model(str(path), "cpu")
    torch.testing.assert_close(model.net.slice1._modules["0"].weight, net.features[0].weight)
    torch.testing.assert_close(model.net.slice5._modules["10"].weight, net.features[10].weight)
    assert all(not p.requires_grad for p in model.parameters())
    # the linear layers are LPIPS's own (shipped in its wheel), not random: all non-negative weights
    assert all((lin.model[-1].weight >= 0).all() for lin in model.lins)


# ---------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------


def test_fid_ships_its_weights_and_needs_two_images(pair256):
    path = metrics.fid_inception_file()
    assert path.is_file() and path.stat().st_size > 80e6
    x, y = pair256
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid(y, x)


@pytest.mark.slow
def test_fid_separates_noise(pair256):
    x, y = pair256
    a = torch.cat([x, x.flip(3), x.flip(2)])
    b = torch.cat([y, y.flip(3), y.flip(2)])
    same = metrics.fid(a, a)["fid"]
    noisy = metrics.fid(b, a)["fid"]
    assert abs(same) < 1e-2 < noisy


# ---------------------------------------------------------------------------------------------
# evaluate and the registry
# ---------------------------------------------------------------------------------------------


def test_evaluate_runs_registered_metrics(astronaut_u8, pair256, pose256):
    x, y = pair256
    assert {"ssim", "ms_ssim", "lpips", "local_ssim", "fid"} <= set(metrics.METRICS)
    out = metrics.evaluate(y, x, pose256)
    assert set(out) == {"ssim", "ms_ssim", "local_ssim"} and all(isinstance(v, float) for v in out.values())
    assert out["ssim"] == metrics.ssim(y, x)["ssim"]
    # uint8 arrays (B, H, W, 3) give the tensor result
    to_u8 = lambda t: ((t[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()[None]  # noqa: E731
    xu, yu = to_u8(x), to_u8(y)
    assert metrics.evaluate(yu, xu, pose256[0].numpy(), metrics=["ssim"])["ssim"] == pytest.approx(out["ssim"], abs=2e-3)
    assert metrics.evaluate(y, x, pose256, metrics=["local_ssim"], crop_size=16)["local_ssim"] != out["local_ssim"]

    @metrics.register_metric
    def mean_abs_error(pred, target, target_keypoints=None):
        p, t = metrics._pair(pred, target)
        return {"mae": (p - t).abs().mean().item()}

    try:
        assert metrics.evaluate(y, x, metrics=["mean_abs_error"])["mae"] == pytest.approx((y - x).abs().mean().item())
    finally:
        del metrics.METRICS["mean_abs_error"]


def test_evaluate_bad_inputs(pair256, pose256):
    x, y = pair256
    with pytest.raises(ValueError, match="unknown names"):
        metrics.evaluate(y, x, pose256, metrics=["ssim", "psnr"])
    with pytest.raises(ValueError, match="`metrics`"):
        metrics.evaluate(y, x, pose256, metrics="ssim")
    with pytest.raises(ValueError, match="crop_size"):
        metrics.evaluate(y, x, pose256, metrics=["ssim"], crop_size=16)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.ssim(y * 255, x)
    with pytest.raises(ValueError, match="same size"):
        metrics.ssim(y[..., :128], x)
    with pytest.raises(ValueError, match="uint8"):
        metrics.ssim(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        metrics.ssim(x[0], x[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_metrics_follow_the_device(pair256, pose256):
    x, y = (t.cuda() for t in pair256)
    out = metrics.evaluate(y, x, pose256.cuda(), metrics=["ssim", "ms_ssim", "local_ssim"])
    cpu = metrics.evaluate(*reversed(pair256), pose256, metrics=["ssim", "ms_ssim", "local_ssim"])
    for k in out:
        assert out[k] == pytest.approx(cpu[k], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# PCKh
# ---------------------------------------------------------------------------------------------


class ReplayEstimator:
    """A fake pose estimator: returns the given poses in turn, one per image it is called on."""

    def __init__(self, *poses):
        self.poses = [np.asarray(p, dtype=np.float32) for p in poses]
        self.images = []

    def __call__(self, image):
        self.images.append(image)
        return self.poses[len(self.images) - 1]


def _pose_and_head(pose256):
    kps = pose256[0].numpy()
    return kps, 1.1 * float(np.linalg.norm(kps[1] - kps[0]))


def test_pckh_one_when_the_estimator_finds_the_target_and_drops_beyond_half_a_head(pair256, pose256):
    x, _ = pair256
    kps, head = _pose_and_head(pose256)
    present = int((kps >= 0).all(1).sum())
    assert present == 18  # the full-pose DeepFashion image
    fake = ReplayEstimator(kps)
    assert metrics.pckh(x, x, pose256, estimator=fake) == {"pckh": 1.0}
    assert fake.images[0].shape == (256, 256, 3) and fake.images[0].dtype == np.uint8  # what an estimator is given
    near, far = kps.copy(), kps.copy()
    near[4, 0] += 0.45 * head  # inside 0.5 head segments: still correct
    far[4, 0] += 0.55 * head  # outside: wrong
    far[9, 1] -= 0.55 * head
    assert metrics.pckh(x, x, pose256, estimator=ReplayEstimator(near))["pckh"] == 1.0
    assert metrics.pckh(x, x, pose256, estimator=ReplayEstimator(far))["pckh"] == pytest.approx(16 / 18)
    # the radius is a `threshold` of head segments
    assert metrics.pckh(x, x, pose256, estimator=ReplayEstimator(far), threshold=0.6)["pckh"] == 1.0
    # (18, 3) with a confidence column is accepted; a point the estimator misses is wrong
    missed = np.concatenate([kps, np.ones((18, 1), np.float32)], 1)
    missed[7] = (-1, -1, 0)
    assert metrics.pckh(x, x, pose256, estimator=ReplayEstimator(missed))["pckh"] == pytest.approx(17 / 18)


def test_pckh_does_not_score_missing_target_points_and_nobody_counts_all_wrong(pair256, pose256):
    x, _ = pair256
    kps, head = _pose_and_head(pose256)
    target = kps.copy()
    target[[3, 10]] = -1  # not in the target pose: not scored, whatever the estimator says there
    guess = kps.copy()
    guess[[3, 10]] = (5.0, 5.0)
    assert metrics.pckh(x, x, target, estimator=ReplayEstimator(guess))["pckh"] == 1.0
    correct, scored = metrics.pckh_counts(x, target, ReplayEstimator(guess))
    assert correct.tolist() == [16] and scored.tolist() == [16]
    # a batch of two: the estimator finds the first person and nobody in the second image -> 16 of 32
    nobody = np.full((18, 2), -1.0, np.float32)
    both = torch.stack([torch.from_numpy(target)] * 2)
    assert metrics.pckh(x.repeat(2, 1, 1, 1), x.repeat(2, 1, 1, 1), both, estimator=ReplayEstimator(guess, nobody))["pckh"] == 0.5
    # the fraction is over all keypoints, not a mean of per-image fractions: 16 of 16 + 0 of 2 is 16/18, not 0.5
    two = target.copy()
    two[2:] = -1
    counts = metrics.pckh_counts(x.repeat(2, 1, 1, 1), torch.stack([torch.from_numpy(target), torch.from_numpy(two)]), ReplayEstimator(guess, nobody))
    assert counts[0].tolist() == [16, 0] and counts[1].tolist() == [16, 2]


def test_pckh_head_segment_is_neck_to_nose_with_a_body_unit_fallback(pose256):
    from pgat.parts import body_unit

    kps = pose256.clone()
    assert metrics.head_segment_lengths(kps).item() == pytest.approx(1.1 * (kps[0, 1] - kps[0, 0]).norm().item())
    no_nose = kps.clone()
    no_nose[0, 0] = -1
    assert metrics.head_segment_lengths(no_nose).item() == pytest.approx(0.42 * body_unit(no_nose).item())
    # about the same size either way on a real pose (DeepFashion's proportions)
    assert 0.7 < metrics.head_segment_lengths(no_nose).item() / metrics.head_segment_lengths(kps).item() < 1.4
    # a lone point has no scale: not scored
    lone = torch.full((1, 18, 2), -1.0)
    lone[0, 4] = kps[0, 4]
    assert metrics.head_segment_lengths(lone).item() == 0
    assert np.isnan(metrics.pckh(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256), lone, estimator=ReplayEstimator(lone[0]))["pckh"])


def test_pckh_runs_through_evaluate_with_its_options(pair256, pose256):
    x, y = pair256
    kps, _ = _pose_and_head(pose256)
    out = metrics.evaluate(y, x, pose256, metrics=["ssim", "pckh"], estimator=ReplayEstimator(kps))
    assert set(out) == {"ssim", "pckh"} and out["pckh"] == 1.0
    assert "pckh" in metrics.METRICS and "pckh" not in metrics.DEFAULT_METRICS  # per batch it is asked for


def test_pckh_bad_inputs(pair256, pose256):
    x, _ = pair256
    with pytest.raises(ValueError, match="`target_keypoints` is required by pckh"):
        metrics.pckh(x, x, None, estimator=ReplayEstimator(np.zeros((18, 2))))
    with pytest.raises(ValueError, match=r"`estimator` must return \(18, 2\) or \(18, 3\).*\(17, 2\)"):
        metrics.pckh(x, x, pose256, estimator=ReplayEstimator(np.zeros((17, 2))))
    with pytest.raises(ValueError, match="`estimator` must be a callable or one of .*'posenet'"):
        metrics.pckh(x, x, pose256, estimator="posenet")
    with pytest.raises(ValueError, match="`estimator` must be a callable.*int"):
        metrics.pckh(x, x, pose256, estimator=3)
    with pytest.raises(ValueError, match="`threshold` must be a positive.*0"):
        metrics.pckh(x, x, pose256, estimator=ReplayEstimator(np.zeros((18, 2))), threshold=0)


def test_pckh_with_blazepose_on_synthhumans_ground_truth():
    """The real estimator, offline: SynthHumans' ground truth scores high, a shuffled pose low."""
    from pgat.data.synthetic import SynthHumans

    data = SynthHumans(resolution=128, split="test")
    items = [data[i] for i in range(4)]
    images = np.stack([it["target"] for it in items])  # uint8 (B, H, W, 3)
    kps = np.stack([it["target_keypoints"] for it in items])
    start = time.perf_counter()
    score = metrics.pckh(images, images, kps)["pckh"]
    assert time.perf_counter() - start < 10
    assert score >= 0.6  # ~0.76 over 200 test pairs at 128²
    # the same poses 20 px to the right (several head segments at 128²): wrong
    moved = np.where(kps >= 0, kps + np.array([20.0, 0.0], np.float32), kps)
    assert metrics.pckh(images, images, moved)["pckh"] < 0.1
