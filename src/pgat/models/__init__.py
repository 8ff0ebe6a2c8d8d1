"""One network per file: the generator (`PGATModel`), and later the local discriminator and the try-on flow network."""

from .autoencoder import PGATModel, PGATModelOutput
from .discriminator import LocalDiscriminator, LocalDiscriminatorOutput  # noqa: F401

__all__ = ["PGATModel", "PGATModelOutput"]
