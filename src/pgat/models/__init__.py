"""One network per file: the generator (`PGATModel`), and later the local discriminator and the try-on flow network."""

from .autoencoder import PGATModel, PGATModelOutput

__all__ = ["PGATModel", "PGATModelOutput"]
