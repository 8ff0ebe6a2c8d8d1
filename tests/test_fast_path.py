"""The inference form of PGATModel (fuse, encode once / decode per pose) and its use by the pipelines."""

import numpy as np
import pytest
import torch

from pgat import PGATModel, PGATPipeline, PGATVideoPipeline


def _trained_looking(model: PGATModel, seed: int = 0) -> PGATModel:
    """BatchNorms with statistics and affine parameters far from their init, so that folding them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def _inputs(resolution, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1
    keypoints = torch.rand(batch, 18, 2, generator=g) * (resolution - 1)
    keypoints[:, 15:] = -1
    return reference, keypoints


@pytest.mark.parametrize("bottleneck_channels", [16, 1024], ids=["tiny", "paper-width"])
def test_fused_equals_unfused(bottleneck_channels):
    torch.manual_seed(0)
    model = _trained_looking(PGATModel(resolution=64, bottleneck_channels=bottleneck_channels))
    reference, keypoints = _inputs(64)
    with torch.no_grad():
        before = model(reference, keypoints).image
        assert model.fuse() is model and model.is_fused
        after = model(reference, keypoints).image
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert before.abs().max() > 0.1  # a real image, not a saturated or empty one
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)
    assert after.is_contiguous()  # channels-last inside, the usual layout out
    model.fuse(channels_last=False)  # a second call only changes the memory format
    with torch.no_grad():
        torch.testing.assert_close(model(reference, keypoints).image, after, atol=1e-4, rtol=0)


def test_encode_once_decode_many_equals_forward():
    torch.manual_seed(0)
    model = _trained_looking(PGATModel(resolution=128, bottleneck_channels=16)).fuse()
    reference, keypoints = _inputs(128, batch=3)
    one = reference[:1]
    with torch.no_grad():
        features = model.encode(one)
        assert sorted(features) == [32, 64, 128] and features[32].shape == (1, 16, 32, 32)
        assert features[128].is_contiguous(memory_format=torch.channels_last)
        shared = model.decode(features, keypoints)  # one reference broadcast to three poses
        each = model(one.expand(3, -1, -1, -1), keypoints).image
    torch.testing.assert_close(shared, each, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="`features` hold 2 references for 3 target poses"):
        model.decode(model.encode(reference[:2]), keypoints)
    with pytest.raises(ValueError, match=r"`features` must be this model's encode\(\) output"):
        model.decode({32: features[32]}, keypoints)
    with pytest.raises(ValueError, match=r"`target_keypoints` must be a \(B, 18, 2\) tensor"):
        model.decode(features, keypoints[:, :, 0])


def test_fused_model_refuses_training_growing_and_saving(tmp_path):
    model = PGATModel(resolution=64, bottleneck_channels=16).fuse()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="`channels_last` must be True or False, got 1"):
        model.fuse(channels_last=1)
    for attempt in (model.train, model.grow, lambda: model.save_pretrained(tmp_path / "fused")):
        with pytest.raises(RuntimeError, match=r"fused for inference.*fuse=False"):
            attempt()
    assert not (tmp_path / "fused").exists()
    assert model.eval() is model  # eval mode stays allowed
    # a pipeline holding a fused model cannot save either, and writes nothing
    with pytest.raises(RuntimeError, match="cannot be saved"):
        PGATPipeline(model=model).save_pretrained(tmp_path / "repo")
    assert not (tmp_path / "repo" / "stage-0064").exists()


@pytest.mark.parametrize("pipeline_class", [PGATPipeline, PGATVideoPipeline])
def test_pipelines_load_fused_by_default(tiny_repo, portrait, pipeline_class):
    fast = pipeline_class.from_pretrained(tiny_repo, resolution=64, pose_estimator=None)
    plain = pipeline_class.from_pretrained(tiny_repo, resolution=64, pose_estimator=None, fuse=False)
    assert fast.model.is_fused and not plain.model.is_fused
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.model.modules())
    reference, keypoints = portrait
    moved = np.where(keypoints >= 0, keypoints + 3, -1.0).astype(np.float32)
    a = PGATPipeline.__call__(fast, reference, [keypoints, moved], output_type="np").images
    b = PGATPipeline.__call__(plain, reference, [keypoints, moved], output_type="np").images
    np.testing.assert_allclose(a, b, atol=1.5 / 255)
    # one reference for two poses is encoded once; the same reference given twice is encoded twice
    c = PGATPipeline.__call__(fast, [reference, reference], [keypoints, moved], output_type="np").images
    np.testing.assert_allclose(a, c, atol=1.5 / 255)
    with pytest.raises(ValueError, match="`fuse` must be True or False, got 'yes'"):
        pipeline_class.from_pretrained(tiny_repo, resolution=64, fuse="yes")
