"""Data: SynthHumans, the pair format and readers for the datasets users bring (DESIGN.md §3)."""

from .pairs import ImageRecord, PairDataset, PairSource, PairWriter, flip_pair, read_pair_folder
from .readers import h36m_to_coco18, read_deepfashion, read_human36m, write_synth
from .synthetic import (
    BOTTOM_FIELDS,
    PARSING_LABELS,
    TOP_FIELDS,
    TRYON_CATEGORIES,
    Identity,
    SynthHumans,
    SynthHumansTryOn,
    random_pose,
    render_person,
    wear,
    wear_bottom,
    wear_top,
)

__all__ = [
    "BOTTOM_FIELDS",
    "PARSING_LABELS",
    "Identity",
    "ImageRecord",
    "PairDataset",
    "PairSource",
    "PairWriter",
    "SynthHumans",
    "SynthHumansTryOn",
    "TOP_FIELDS",
    "TRYON_CATEGORIES",
    "flip_pair",
    "h36m_to_coco18",
    "random_pose",
    "read_deepfashion",
    "read_human36m",
    "read_pair_folder",
    "render_person",
    "wear",
    "wear_bottom",
    "wear_top",
    "write_synth",
]
