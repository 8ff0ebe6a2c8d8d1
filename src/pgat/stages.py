"""The one table of resolution stages.

PGAT grows from 64² to 1024² (§3.1, progressive training). Everything that depends on the stage, the
width of the blocks, the number of local descriptors and their crop side, is read from here.

Channels: the paper's bottleneck is 32² with 1024 channels, and channels halve each time the spatial
size doubles (64²: 512, 128²: 256, 256²: 128, 512²: 64, 1024²: 32). A smaller ``bottleneck_channels``
scales the whole plan for small models; ``min_channels`` keeps the outermost blocks of tiny models
from reaching zero width (it never binds for the paper-size model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

RESOLUTIONS: Tuple[int, ...] = (64, 128, 256, 512, 1024)
BOTTLENECK_SIZE = 32
BOTTLENECK_CHANNELS = 1024
MIN_CHANNELS = 4

# §3.2: 18 descriptors (the keypoints) at 64² and 128², 31 (+ limb midpoints) at 256² and 512²,
# 44 (+ limb quarter points) at 1024².
_DESCRIPTORS: Dict[int, int] = {64: 18, 128: 18, 256: 31, 512: 31, 1024: 44}


@dataclass(frozen=True)
class Stage:
    """One resolution level: ``channels`` of its encoder/decoder block, ``num_descriptors`` local
    descriptors, each a square crop of side ``crop_size`` (R/8)."""

    resolution: int
    channels: int
    num_descriptors: int
    crop_size: int


def check_resolution(resolution, name: str = "resolution") -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution not in RESOLUTIONS:
        raise ValueError(f"`{name}` must be one of the stage resolutions {list(RESOLUTIONS)}, got {resolution!r}")
    return resolution


def channels_at(
    size: int,
    bottleneck_channels: int = BOTTLENECK_CHANNELS,
    bottleneck_size: int = BOTTLENECK_SIZE,
    min_channels: int = MIN_CHANNELS,
) -> int:
    """Feature channels at spatial ``size`` (any power-of-two multiple of the bottleneck, or half of it)."""
    return max(int(bottleneck_channels * bottleneck_size // size), min_channels)


def get_stage(resolution: int, bottleneck_channels: int = BOTTLENECK_CHANNELS, min_channels: int = MIN_CHANNELS) -> Stage:
    """The table row for ``resolution`` (one of ``RESOLUTIONS``)."""
    check_resolution(resolution)
    return Stage(
        resolution=resolution,
        channels=channels_at(resolution, bottleneck_channels, BOTTLENECK_SIZE, min_channels),
        num_descriptors=_DESCRIPTORS[resolution],
        crop_size=resolution // 8,
    )


STAGES: Dict[int, Stage] = {r: get_stage(r) for r in RESOLUTIONS}


def stage_folder(resolution: int) -> str:
    """Name of a stage's folder in a model repository: ``stage-0064`` ... ``stage-1024``."""
    return f"stage-{check_resolution(resolution):04d}"
