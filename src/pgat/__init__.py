"""PGAT: pose-guided high-resolution appearance transfer via progressive training."""

__version__ = "0.1.0"

from .models import PGATModel, PGATModelOutput  # noqa: E402
from .models import LocalDiscriminator  # noqa: E402, F401

__all__ = ["PGATModel", "PGATModelOutput", "__version__"]
