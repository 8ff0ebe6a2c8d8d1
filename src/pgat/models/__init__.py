"""One network per file: the generator (`PGATModel`), the local discriminator, the try-on flow network."""

from .autoencoder import PGATModel, PGATModelOutput
from .discriminator import LocalDiscriminator, LocalDiscriminatorOutput
from .flow import AppearanceFlowModel, AppearanceFlowModelOutput, warp

__all__ = [
    "AppearanceFlowModel", "AppearanceFlowModelOutput", "LocalDiscriminator", "LocalDiscriminatorOutput",
    "PGATModel", "PGATModelOutput", "warp",
]
