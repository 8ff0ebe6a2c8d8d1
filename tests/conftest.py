import os
from pathlib import Path

# No hub is reachable here: never wait on retries or send telemetry.
for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}.items():
    os.environ.setdefault(_k, _v)

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real pose data beside the checkout (``../shared/data``), or ``$PGAT_SHARED_DATA``."""
    path = Path(os.environ.get("PGAT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(f"real pose data not found at {path}; set PGAT_SHARED_DATA to the shared/data folder")
    return path


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A tiny two-stage PGAT repository written by save_pretrained (64 then 128 into the same folder); read-only."""
    import torch

    from pgat import PGATModel, PGATPipeline

    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16).eval()
    path = tmp_path_factory.mktemp("repo") / "pgat-tiny"
    PGATPipeline(model=model).save_pretrained(path)
    PGATPipeline(model=model.grow().eval()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def portrait():
    """A 100x128 SynthHumans reference (a portrait: not square) and its target keypoints, in its pixels."""
    from pgat.data.synthetic import SynthHumans

    item = SynthHumans(resolution=128, split="test")[0]
    reference = item["reference"][:, 14:114]
    keypoints = item["target_keypoints"].copy()
    ok = keypoints[:, 0] >= 0
    keypoints[ok, 0] -= 14
    keypoints[ok & (keypoints[:, 0] < 0)] = -1
    return reference, keypoints


# ---------------------------------------------------------------------------------------------
# models that take the reference person's own pose (DESIGN.md §1b)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pose_aware_repo(tmp_path_factory) -> Path:
    """A tiny 64² model with part-warped skips and the reference's pose maps, saved as a repository; read-only."""
    import torch

    from pgat import PGATModel, PGATPipeline

    torch.manual_seed(0)
    model = PGATModel(resolution=64, bottleneck_channels=16, warp_skips=True, reference_pose=True).eval()
    assert model.needs_reference_pose
    path = tmp_path_factory.mktemp("pose-aware") / "pgat-tiny-pose-aware"
    PGATPipeline(model=model, pose_estimator=None).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def reference_keypoints():
    """The reference person's own keypoints of `portrait`'s 100x128 picture, in its pixels."""
    from pgat.data.synthetic import SynthHumans

    kps = SynthHumans(resolution=128, split="test")[0]["reference_keypoints"].copy()
    ok = kps[:, 0] >= 0
    kps[ok, 0] -= 14
    kps[ok & (kps[:, 0] < 0)] = -1
    return kps


class CountingEstimator:
    """A fake pose estimator: a fixed ``(18, 2)`` pose (or nobody, for None) as ``(18, 3)``, recording the size of
    every image it is given (``(width, height)``)."""

    def __init__(self, keypoints):
        self.keypoints = keypoints
        self.calls = []

    def __call__(self, image):
        import numpy as np

        self.calls.append(image.size if hasattr(image, "convert") else (image.shape[1], image.shape[0]))
        if self.keypoints is None:
            return np.tile(np.float32([-1, -1, 0]), (18, 1))
        out = np.concatenate([self.keypoints, (self.keypoints[:, :1] >= 0).astype(np.float32)], axis=1)
        out[self.keypoints[:, 0] < 0] = (-1, -1, 0)
        return out


@pytest.fixture(scope="session")
def counting_estimator():
    """`CountingEstimator`, the class: ``counting_estimator(keypoints)`` makes one."""
    return CountingEstimator
