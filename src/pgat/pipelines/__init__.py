"""What users call: one task per pipeline, diffusers-style."""

from .pose_transfer import PGATPipeline, PGATPipelineOutput

__all__ = ["PGATPipeline", "PGATPipelineOutput"]
from .video import PGATVideoPipeline, PGATVideoPipelineOutput  # noqa: E402
__all__ += ["PGATVideoPipeline", "PGATVideoPipelineOutput"]
from .tryon import PGATTryOnPipeline, PGATTryOnPipelineOutput  # noqa: E402
__all__ += ["PGATTryOnPipeline", "PGATTryOnPipelineOutput"]
