"""qla-sdk: quantized length-adaptive transformers (QuaLA-MiniLM) for Intel Xeon CPUs."""

__version__ = "0.1.0"
