"""What users call: one task per pipeline, diffusers-style."""

from .pose_transfer import PGATPipeline, PGATPipelineOutput
from .tryon import PGATTryOnPipeline, PGATTryOnPipelineOutput
from .video import PGATVideoPipeline, PGATVideoPipelineOutput

__all__ = [
    "PGATPipeline", "PGATPipelineOutput", "PGATTryOnPipeline", "PGATTryOnPipelineOutput",
    "PGATVideoPipeline", "PGATVideoPipelineOutput",
]
