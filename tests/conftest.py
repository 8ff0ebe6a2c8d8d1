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
