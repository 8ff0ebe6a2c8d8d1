"""PGAT: pose-guided high-resolution appearance transfer via progressive training."""

__version__ = "0.1.0"

from .models import AppearanceFlowModel, LocalDiscriminator, PGATModel, PGATModelOutput  # noqa: E402
from .pipelines import (  # noqa: E402
    PGATPipeline,
    PGATPipelineOutput,
    PGATTryOnPipeline,
    PGATTryOnPipelineOutput,
    PGATVideoPipeline,
    PGATVideoPipelineOutput,
)

__all__ = [
    "AppearanceFlowModel", "LocalDiscriminator", "PGATModel", "PGATModelOutput",
    "PGATPipeline", "PGATPipelineOutput", "PGATTryOnPipeline", "PGATTryOnPipelineOutput",
    "PGATVideoPipeline", "PGATVideoPipelineOutput", "__version__",
]
