import pytest
import torch

from pgat import PGATModel
from pgat.stages import RESOLUTIONS, get_stage

TINY = dict(bottleneck_channels=16)


def _inputs(resolution, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1
    keypoints = torch.rand(batch, 18, 2, generator=g) * (resolution - 1)
    keypoints[:, 14:] = -1  # no eyes / ears, as for a person seen from behind
    return reference, keypoints


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_output_shape_every_stage(resolution):
    model = PGATModel(resolution=resolution, **TINY).eval()
    reference, keypoints = _inputs(resolution, batch=1)
    with torch.no_grad():
        out = model(reference, keypoints)
    assert out.image.shape == (1, 3, resolution, resolution)
    assert out.image.abs().max() <= 1
    (image,) = model(reference, keypoints, return_dict=False)
    assert image.shape == out.image.shape


def test_paper_size_model_on_meta():
    with torch.device("meta"):
        model = PGATModel(resolution=1024)
        reference = torch.empty(1, 3, 1024, 1024)
        keypoints = torch.empty(1, 18, 2)
    shapes = {}
    for name, module in list(model.encoder.items()) + [("to_rgb", model.to_rgb)]:
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    pose_in = {}
    model.decoder["b32"].register_forward_pre_hook(lambda m, args: pose_in.__setitem__("x", tuple(args[0].shape)))
    out = model(reference, keypoints).image
    assert out.shape == (1, 3, 1024, 1024)
    assert shapes["b32"] == (1, 1024, 32, 32)  # the bottleneck
    assert pose_in["x"] == (1, 1024 + 18, 32, 32)  # + the 18 pose maps
    plan = {64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    for r, c in plan.items():
        assert shapes[f"b{r}"] == (1, c, r, r)
        assert model.decoder[f"b{r}"].conv2.out_channels == c
    assert model.from_rgb.in_channels == 3 and model.to_rgb.out_channels == 3


def test_grow_keeps_old_parameters_bit_identical():
    model = PGATModel(resolution=64, **TINY)
    # make old parameters and BatchNorm statistics non-trivial first
    model.train()
    reference, keypoints = _inputs(64)
    model(reference, keypoints).image.mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    grown = model.grow()
    assert grown.config.resolution == 128 and model.config.resolution == 64
    old, new = model.state_dict(), grown.state_dict()
    kept = [k for k in old if not k.startswith(("from_rgb", "to_rgb"))]
    assert len(kept) > 0
    for k in kept:
        assert torch.equal(old[k], new[k]), k
    added = sorted({k.split(".")[1] for k in new if k not in old and k.split(".")[0] in ("encoder", "decoder")})
    assert added == ["b128"]
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in new if k not in old} == {"encoder.b128", "decoder.b128"}
    assert new["from_rgb.weight"].shape[0] == get_stage(256, 16).channels  # feeds the next block out
    assert grown.training
    ref128, kps128 = _inputs(128)
    assert grown(ref128, kps128).image.shape == (2, 3, 128, 128)


def test_grow_past_last_stage_and_bad_config():
    with pytest.raises(ValueError, match="cannot grow past 1024"):
        PGATModel(resolution=1024, **TINY).grow()
    with pytest.raises(ValueError, match=r"`resolution` must be one of .* got 96"):
        PGATModel(resolution=96)


def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = PGATModel(resolution=128, **TINY).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    model.save_pretrained(tmp_path / "stage-0128")
    files = sorted(p.name for p in (tmp_path / "stage-0128").iterdir())
    assert files == ["config.json", "diffusion_pytorch_model.safetensors"]  # safetensors only, no pickle
    loaded = PGATModel.from_pretrained(tmp_path / "stage-0128").eval()
    assert loaded.config.resolution == 128 and loaded.config.bottleneck_channels == 16
    reference, keypoints = _inputs(128)
    with torch.no_grad():
        assert torch.equal(model(reference, keypoints).image, loaded(reference, keypoints).image)


def test_every_parameter_gets_a_gradient():
    model = PGATModel(resolution=128, **TINY).train()
    reference, keypoints = _inputs(128)
    target = torch.rand_like(reference) * 2 - 1
    loss = (model(reference, keypoints).image - target).abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_output_depends_on_the_target_pose():
    model = PGATModel(resolution=64, **TINY).eval()
    reference, keypoints = _inputs(64, batch=1)
    moved = keypoints.clone()
    moved[0, :14] = (moved[0, :14] + 20) % 63
    with torch.no_grad():
        a, b = model(reference, keypoints).image, model(reference, moved).image
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize(
    "reference, keypoints, message",
    [
        (torch.zeros(1, 3, 64, 64), torch.zeros(1, 17, 2), r"`target_keypoints` must be a \(1, 18, 2\)"),
        (torch.zeros(1, 3, 64, 64), torch.zeros(2, 18, 2), r"`target_keypoints` must be a \(1, 18, 2\)"),
        (torch.zeros(1, 3, 64, 64), torch.full((1, 18, 2), float("nan")), "NaN"),
        (torch.zeros(1, 3, 64, 64), torch.zeros(1, 18, 2, dtype=torch.long), "floating point"),
        (torch.zeros(1, 4, 64, 64), torch.zeros(1, 18, 2), "must have 3 channels, got 4"),
        (torch.zeros(1, 3, 64, 48), torch.zeros(1, 18, 2), "must be square"),
        (torch.zeros(1, 3, 128, 128), torch.zeros(1, 18, 2), "must be 64x64 for this stage-64 model, got 128x128"),
        (torch.zeros(3, 64, 64), torch.zeros(1, 18, 2), r"`reference` must be a \(B, 3, 64, 64\)"),
    ],
)
def test_bad_inputs_name_the_argument(reference, keypoints, message):
    model = PGATModel(resolution=64, **TINY)
    with pytest.raises(ValueError, match=message):
        model(reference, keypoints)


def test_bf16_model_makes_pose_maps_in_float32():
    """A bf16 model must not round the keypoints to bf16 (8 significant bits: 100.25 -> 100) before Eq. (1)."""
    model = PGATModel(resolution=128, **TINY).eval().to(torch.bfloat16)
    reference, keypoints = _inputs(128, batch=1)
    keypoints[0, 0] = torch.tensor([100.25, 90.75])  # not representable in bf16
    seen = {}
    model.decoder["b32"].register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    with torch.no_grad():
        model(reference.to(torch.bfloat16), keypoints)
    pose = seen["x"][:, -18:]
    assert pose.dtype == torch.bfloat16
    torch.testing.assert_close(pose, model.pose_maps(keypoints).to(torch.bfloat16), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# the options beyond the paper (DESIGN.md §1b): reference pose, part-warped skips, pose at every scale
# ---------------------------------------------------------------------------------------------

POSE_AWARE = dict(reference_pose=True, warp_skips=True, pose_every_scale=True)
OPTION_SETS = [
    dict(reference_pose=True),
    dict(warp_skips=True),
    dict(warp_skips=True, warp_keep_unwarped=False),
    dict(pose_every_scale=True),
    POSE_AWARE,
]


def _person(resolution, batch=2, seed=0):
    """References and plausible poses (SynthHumans test pairs): part transforms need real bodies."""
    from pgat.data.pairs import PairDataset
    from pgat.data.synthetic import SynthHumans

    data = PairDataset(SynthHumans(resolution=resolution, split="test", seed=seed, length=batch), resolution=resolution, flip_prob=0.0)
    items = [data[i] for i in range(batch)]
    return tuple(torch.stack([it[k] for it in items]) for k in ("reference", "target_keypoints", "reference_keypoints"))


def test_paper_network_is_unchanged_by_the_options():
    """All options off is the paper's network: same config defaults, state-dict keys and shapes, and outputs (pinned
    from the model before the options existed: the same seed, inputs and slice)."""
    import hashlib

    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16).eval()
    assert not model.needs_reference_pose
    assert (model.config.reference_pose, model.config.warp_skips, model.config.pose_every_scale) == (False, False, False)
    keys = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    assert hashlib.sha256(keys.encode()).hexdigest() == "8ddf658a44375ae970fc2ca3d0aadaebd9f3fed5b9739ff66ba7945f553b3f58"
    g = torch.Generator().manual_seed(1)
    reference = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    keypoints = torch.rand(2, 18, 2, generator=g) * 63
    keypoints[:, 14:] = -1
    with torch.no_grad():
        out = model(reference, keypoints).image
        again = model(reference, keypoints, keypoints.flip(0)).image  # a reference pose is accepted and unused
    expected = torch.tensor([-0.7547, -0.36778, 0.16497, 0.48492, 0.16353, -0.63017, -0.42966, -0.44332, -0.42486])
    torch.testing.assert_close(out[0, :, 30, 28:31].flatten(), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1, 1, 10, 40:44], torch.tensor([0.60929, -0.14037, 0.94934, 0.17705]), atol=1e-4, rtol=0)
    assert torch.equal(out, again)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(k for k, v in o.items() if v) or "replace")
def test_options_keep_block_names_and_fused_equals_unfused(options):
    model = PGATModel(resolution=128, **TINY, **options)
    assert set(model.state_dict()) == set(PGATModel(resolution=128, **TINY).state_dict())  # channels, not modules
    reference, target, ref_kps = _person(128)
    model.train()
    model(reference, target, ref_kps).image.mean().backward()  # BatchNorm statistics that are not the identity
    model.eval()
    with torch.no_grad():
        plain = model(reference, target, ref_kps).image
        model.fuse()
        fused = model(reference, target, ref_kps).image
    assert plain.shape == (2, 3, 128, 128)
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-4)


def test_pose_aware_model_needs_the_reference_pose():
    model = PGATModel(resolution=64, **TINY, warp_skips=True)
    assert model.needs_reference_pose
    reference, target, ref_kps = _person(64, batch=1)
    with pytest.raises(ValueError, match=r"warp_skips=True, so it needs `reference_keypoints`.*got None"):
        model(reference, target)
    with pytest.raises(ValueError, match=r"`reference_keypoints` must be a \(1 or 1, 18, 2\)"):
        model(reference, target, ref_kps[:, :17])
    with pytest.raises(ValueError, match="pass `return_dict=` by name"):
        model(reference, target, False)
    with pytest.raises(ValueError, match="`warp_skips` must be True or False"):
        PGATModel(resolution=64, warp_skips="yes")


def test_pose_aware_output_follows_both_poses_and_every_parameter_learns():
    model = PGATModel(resolution=64, **TINY, **POSE_AWARE).train()
    reference, target, ref_kps = _person(64)
    loss = (model(reference, target, ref_kps).image - reference).abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name  # the encoder learns through the warp
    model.eval()
    with torch.no_grad():
        a = model(reference, target, ref_kps).image
        b = model(reference, target, ref_kps.flip(0)).image  # another reference pose moves other features
    assert (a - b).abs().max() > 1e-3


def test_pose_aware_encode_once_decode_many_grow_and_bf16():
    model = PGATModel(resolution=64, **TINY, **POSE_AWARE).eval()
    reference, target, ref_kps = _person(64)
    with torch.no_grad():
        shared = model.decode(model.encode(reference[:1]), target, ref_kps[:1])
        each = model(reference[:1].expand(2, -1, -1, -1), target, ref_kps[:1].expand(2, -1, -1)).image
    torch.testing.assert_close(shared, each, atol=1e-5, rtol=0)
    grown = model.grow()
    assert grown.config.warp_skips and grown.config.resolution == 128
    r128, t128, k128 = _person(128)
    with torch.no_grad():
        assert grown(r128, t128, k128).image.shape == (2, 3, 128, 128)
        half = model.to(torch.bfloat16)(reference.bfloat16(), target, ref_kps).image
    assert half.dtype == torch.bfloat16
    with torch.no_grad():
        full = model.float()(reference, target, ref_kps).image
    assert (half.float() - full).abs().mean() < 0.05


def test_warp_residual_starts_from_the_part_warp_and_learns_on_top_of_it():
    from pgat.parts import warp_image

    model = PGATModel(resolution=64, **TINY, **POSE_AWARE, warp_residual=True)
    assert model.needs_reference_pose and not model.to_rgb.weight.any()
    reference, target, ref_kps = _person(64)
    features = model.eval().encode(reference)
    assert sorted(features) == [0, 32, 64] and features[0] is reference  # the picture itself, for the warp
    with torch.no_grad():
        untrained = model.decode(features, target, ref_kps)
    # an untrained network returns the training-free baseline
    torch.testing.assert_close(untrained, warp_image(reference, ref_kps, target).clamp(-0.999, 0.999), atol=1e-5, rtol=0)
    model.train()
    (model(reference, target, ref_kps).image - reference).abs().mean().backward()
    assert model.to_rgb.weight.grad.abs().sum() > 0  # the correction learns from the first step
    with torch.no_grad():
        model.to_rgb.weight.normal_(0, 0.1)
        moved = model.eval()(reference, target, ref_kps).image
    assert (moved - untrained).abs().max() > 1e-3
    grown = model.grow()
    assert grown.config.warp_residual and not grown.to_rgb.weight.any()  # each new level starts at the warp again
    with pytest.raises(ValueError, match=r"keyed by \[0, 32, 64\]"):
        model.decode({k: v for k, v in features.items() if k}, target, ref_kps)
    with pytest.raises(ValueError, match="warp_residual=True, so it needs `reference_keypoints`"):
        PGATModel(resolution=64, **TINY, warp_residual=True)(reference, target)
