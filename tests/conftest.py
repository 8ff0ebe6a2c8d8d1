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
