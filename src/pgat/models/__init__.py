"""One network per file: the generator (`PGATModel`), the local discriminator, the try-on flow network."""

from .autoencoder import PGATModel, PGATModelOutput
from .discriminator import LocalDiscriminator, LocalDiscriminatorOutput

__all__ = ["LocalDiscriminator", "LocalDiscriminatorOutput", "PGATModel", "PGATModelOutput"]
from .flow import AppearanceFlowModel, AppearanceFlowModelOutput, warp  # noqa: F401
