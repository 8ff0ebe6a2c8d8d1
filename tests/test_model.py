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
