"""PGAT: pose-guided high-resolution appearance transfer via progressive training."""

__version__ = "0.1.0"

from .models import LocalDiscriminator, PGATModel, PGATModelOutput  # noqa: E402
from .pipelines import PGATPipeline, PGATPipelineOutput  # noqa: E402

__all__ = ["LocalDiscriminator", "PGATModel", "PGATModelOutput", "PGATPipeline", "PGATPipelineOutput", "__version__"]
from .pipelines import PGATVideoPipeline, PGATVideoPipelineOutput  # noqa: E402
__all__ += ["PGATVideoPipeline", "PGATVideoPipelineOutput"]
from .pipelines import PGATTryOnPipeline, PGATTryOnPipelineOutput  # noqa: E402
__all__ += ["PGATTryOnPipeline", "PGATTryOnPipelineOutput"]
