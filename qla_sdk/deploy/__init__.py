"""The exported artifact (write, verify, read) and the deployment API: ``load(path) -> Predictor``."""

from qla_sdk.deploy.artifact import FORMAT_VERSION, Manifest, export_model, read_manifest
from qla_sdk.deploy.predictor import Predictor, load

__all__ = ["FORMAT_VERSION", "Manifest", "Predictor", "export_model", "load", "read_manifest"]
