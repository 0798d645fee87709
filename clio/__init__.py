"""clio: privacy-preserving conversation insights."""

__version__ = "0.1.0"
