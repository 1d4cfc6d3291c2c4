"""reidquant: what precision and quantization cost and buy for a person re-ID model."""

__version__ = "0.1.0"
