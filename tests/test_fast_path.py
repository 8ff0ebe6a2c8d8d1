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
    layouts = []  # every decoder block must get channels-last input, the broadcast skips included
    for block in model.decoder.values():
        block.register_forward_pre_hook(lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        features = model.encode(one)
        assert sorted(features) == [32, 64, 128] and features[32].shape == (1, 16, 32, 32)
        assert features[128].is_contiguous(memory_format=torch.channels_last)
        shared = model.decode(features, keypoints)  # one reference broadcast to three poses
        assert layouts == [True, True, True]
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
    with pytest.raises(ValueError, match="`compile=True` compiles the fused inference form; it needs `fuse=True`"):
        pipeline_class.from_pretrained(tiny_repo, resolution=64, fuse=False, compile=True)


@pytest.mark.slow
def test_compiled_model_equals_eager(tiny_repo, portrait):
    """torch.compile needs a C++ compiler and takes tens of seconds on a CPU: slow."""
    torch.manual_seed(0)
    model = _trained_looking(PGATModel(resolution=64, bottleneck_channels=16))
    reference, keypoints = _inputs(64)
    with torch.no_grad():
        eager = model.fuse()(reference, keypoints).image
        compiled = model.fuse(compile=True)(reference, keypoints).image
    assert "encode" in model.__dict__ and "decode" in model.__dict__
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)
    pipe = PGATPipeline.from_pretrained(tiny_repo, resolution=64, pose_estimator=None, compile=True)
    plain = PGATPipeline.from_pretrained(tiny_repo, resolution=64, pose_estimator=None)
    ref, kps = portrait
    np.testing.assert_allclose(pipe(ref, kps, output_type="np").images, plain(ref, kps, output_type="np").images, atol=1.5 / 255)


_FAULTS = r"""
import json, resource, threading, torch

def faults():  # fewest page faults while a freed 128 MB block is allocated and written again, over 5 tries
    out = []
    for _ in range(5):
        torch.ones(2**25)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(2**25).fill_(1.0)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return min(out)

from pgat import PGATModel
from pgat.cpu_memory import is_reusing_freed_memory
before = faults()
PGATModel(resolution=64, bottleneck_channels=8).fuse()
in_thread = []
after = faults()
t = threading.Thread(target=lambda: in_thread.append(faults())); t.start(); t.join()
print(json.dumps({"before": before, "after": after, "thread": in_thread[0], "applied": is_reusing_freed_memory()}))
"""


@pytest.mark.parametrize("setting", ["default", "off"])
def test_fused_model_makes_the_process_reuse_freed_memory(setting):
    """fuse() on the CPU: a freed 128 MB block is reused without page faults, in the main thread and in a thread made
    afterwards (a server's worker); ``PGAT_REUSE_CPU_MEMORY=0`` leaves malloc as it was. In a fresh process, since the
    setting is process-wide."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PGAT_REUSE_CPU_MEMORY", None)
    if setting == "off":
        env["PGAT_REUSE_CPU_MEMORY"] = "0"
    proc = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["before"] > 20_000  # 128 MB / 4 KiB pages = 32,768 when every page is new
    if setting == "default":
        assert got["applied"] and got["after"] < 2_000 and got["thread"] < 2_000, got
    else:
        assert not got["applied"] and got["after"] > 20_000 and got["thread"] > 20_000, got


def test_reuse_setting_must_be_on_or_off(monkeypatch):
    from pgat import cpu_memory

    monkeypatch.setenv("PGAT_REUSE_CPU_MEMORY", "maybe")
    with pytest.raises(ValueError, match="`PGAT_REUSE_CPU_MEMORY` must be 1 or 0 \\(on or off\\), got 'maybe'"):
        cpu_memory.reuse_freed_memory()
