"""qla-sdk: quantized length-adaptive transformers (QuaLA-MiniLM) for Intel Xeon CPUs."""

__version__ = "0.1.0"


def load(path, **kw):
    """Load an exported artifact as a ``Predictor`` (see ``qla_sdk.deploy.load``)."""
    from qla_sdk.deploy import load as _load

    return _load(path, **kw)


__all__ = ["__version__", "load"]
