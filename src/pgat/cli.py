"""The ``pgat`` command line.

Each subcommand is a ``register_<name>(subparsers)`` function that adds its parser and sets
``func``; later commands (transfer, video, tryon, evaluate, synth, prepare-video, serve, personalize) plug in the same way.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__


def _cmd_stages(args: argparse.Namespace) -> int:
    from .stages import RESOLUTIONS, get_stage

    print(f"{'resolution':>10} {'channels':>8} {'descriptors':>11} {'crop':>5}")
    for r in RESOLUTIONS:
        s = get_stage(r, args.bottleneck_channels)
        print(f"{s.resolution:>10} {s.channels:>8} {s.num_descriptors:>11} {s.crop_size:>5}")
    return 0


def register_stages(sub) -> None:
    p = sub.add_parser("stages", help="print the table of resolution stages (channels, local descriptors, crop size)")
    p.add_argument("--bottleneck-channels", type=int, default=1024, help="model width at the 32x32 bottleneck (default: the paper's 1024)")
    p.set_defaults(func=_cmd_stages)


from .data.readers import register_synth  # noqa: E402
from .evaluation import register_evaluate  # noqa: E402
from .pipelines.pose_transfer import register_transfer  # noqa: E402
from .video_dataset import register_prepare_video  # noqa: E402
from .pipelines.video import register_video  # noqa: E402
from .pipelines.tryon import register_tryon  # noqa: E402
from .serving import register_serve  # noqa: E402
from .export_space import register_export_space  # noqa: E402
from .personalize import register_personalize  # noqa: E402

COMMANDS = [register_stages, register_transfer, register_synth, register_prepare_video, register_evaluate, register_video, register_tryon, register_serve, register_export_space, register_personalize]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgat",
        description="PGAT: pose-guided appearance transfer. One photo of a person + a target pose -> that person in that pose.",
    )
    parser.add_argument("--version", action="version", version=f"pgat {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


# how the commands name the pipelines' arguments (`pgat.inputs.InputError.argument`) in their errors
CLI_NAMES = {
    "reference_image": "REF",
    "target_pose": "--pose",
    "reference_pose": "--reference-pose",
    "pose_sequence": "--poses",
    "person_image": "PERSON",
    "garment_image": "GARMENT",
    "person_mask": "--person-mask",
    "garment_mask": "--garment-mask",
    "person_pose": "--person-pose",
    "garment_pose": "--garment-pose",
    "model": "--model",
    "pretrained_model_name_or_path": "--model",
    "resolution": "--resolution",
    "video": "VIDEO",
}


def error_message(error: Exception) -> str:
    """A refusal as the command line says it: an input error names the command's own argument (``--pose``, not
    ``target_pose``); any other message is shown as it is."""
    from .inputs import InputError

    return error.renamed(CLI_NAMES) if isinstance(error, InputError) else str(error)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:  # bad input, missing or unreadable files: a message, not a traceback
        print(f"pgat: error: {error_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
