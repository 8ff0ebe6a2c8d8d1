"""What users call: one task per pipeline, diffusers-style."""

from .pose_transfer import PGATPipeline, PGATPipelineOutput

__all__ = ["PGATPipeline", "PGATPipelineOutput"]
