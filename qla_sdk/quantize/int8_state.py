"""Int8 weights that stay int8 on disk, and torch programs saved without pickle.

A PT2E-converted graph computes in int8 but ``torch.export.save`` writes its sample inputs (and some tensors)
with pickle, and keeps the fp32 weights it no longer reads. Here a program is stored as the JSON graph of
``torch._export.serde`` plus its tensors in one ``safetensors`` file shared by all programs of an artifact
(identical tensors, e.g. the int8 weights of several sequence-length buckets, are stored once).

The word embedding is the largest matrix of a small encoder (half of MiniLM) and no int8 kernel reads it; it is
stored as int8 rows with one fp32 scale per row and dequantized after the lookup (weight-only, symmetric).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qla_sdk.errors import CheckpointError

TENSORS_FILE = "tensors.safetensors"
PROGRAM_SUFFIX = ".program.json"
PROGRAM_FORMAT = "torch.export.serde+safetensors"


class Int8Embedding(nn.Module):
    """An embedding table held as int8 rows and per-row fp32 scales (symmetric, weight-only)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        scale = weight.detach().abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("qweight", torch.round(weight.detach() / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.float32))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.qweight[input_ids].to(torch.float32) * self.scale[input_ids].unsqueeze(-1)


def with_int8_embeddings(model: nn.Module) -> nn.Module:
    """A copy of a ``TaskModel``/``FixedLengthModel`` whose word embedding is an ``Int8Embedding``."""
    model = copy.deepcopy(model)
    task_model = getattr(model, "model", model)
    embeddings = task_model.encoder.embeddings
    embeddings.word = Int8Embedding(embeddings.word.weight)
    return model


def _tensor_key(tensor: torch.Tensor) -> str:
    data = tensor.detach().contiguous().cpu()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:40]


def save_programs(programs: dict[str, torch.export.ExportedProgram], folder: str | Path) -> list[str]:
    """Write ``<name>.program.json`` per program and one ``tensors.safetensors``; return the file names."""
    from torch._export.serde.serialize import serialize

    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    written = []
    for name, program in programs.items():
        artifact = serialize(
            program, serialize_state_dict=False, serialize_constants=False, serialize_example_inputs=False
        )
        refs: dict[str, dict[str, str]] = {"state_dict": {}, "constants": {}}
        for kind, mapping in (("state_dict", program.state_dict), ("constants", program.constants)):
            for tensor_name, tensor in mapping.items():
                if not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(
                        f"program {name}: constant {tensor_name!r} is a {type(tensor).__name__}, not a tensor; "
                        "only tensor constants can be saved without pickle"
                    )
                key = _tensor_key(tensor)
                tensors.setdefault(key, tensor.detach().contiguous().cpu().clone())
                refs[kind][tensor_name] = key
        payload = {
            "format": PROGRAM_FORMAT,
            "torch": torch.__version__,
            "tensors": refs,
            "parameters": [n for n, t in program.state_dict.items() if isinstance(t, nn.Parameter)],
            "program": _without_debug_metadata(json.loads(artifact.exported_program)),
        }
        file = f"{name}{PROGRAM_SUFFIX}"
        (folder / file).write_text(json.dumps(payload))
        written.append(file)
    save_file(tensors, str(folder / TENSORS_FILE), metadata={"format": "pt"})
    return [*written, TENSORS_FILE]


# Per-node debug metadata torch.export records: the Python stack of every op (absolute paths of the machine that
# built the artifact) and the trace history. Half of a program file (1.6 of 2.5 MB for MiniLM); nothing reads it
# back to run the graph, and an artifact should not carry the builder's file system.
_DEBUG_METADATA = ("stack_trace", "from_node")


def _without_debug_metadata(program: dict) -> dict:
    for node in program.get("graph_module", {}).get("graph", {}).get("nodes", []):
        for key in _DEBUG_METADATA:
            node.get("metadata", {}).pop(key, None)
    return program


def load_program(folder: str | Path, name: str, tensors: dict[str, torch.Tensor] | None = None):
    """The ``ExportedProgram`` saved as ``name``; ``tensors`` (from ``load_tensors``) is shared between calls."""
    # Registers torch.ops.quantized_decomposed (the q/dq ops of int8 graphs); torch alone, no INC needed.
    import torch.ao.quantization.fx._decomposed  # noqa: F401
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    folder = Path(folder)
    file = folder / f"{name}{PROGRAM_SUFFIX}"
    payload = json.loads(file.read_text())
    if payload.get("format") != PROGRAM_FORMAT:
        raise CheckpointError(f"{file}: format {payload.get('format')!r} is not {PROGRAM_FORMAT!r}")
    tensors = load_tensors(folder) if tensors is None else tensors
    try:
        # Parameters must come back as nn.Parameter (the program's verifier checks); buffers as tensors.
        params = set(payload.get("parameters", []))
        state_dict = {
            n: nn.Parameter(tensors[k], requires_grad=False) if n in params else tensors[k]
            for n, k in payload["tensors"]["state_dict"].items()
        }
        constants = {n: tensors[k] for n, k in payload["tensors"]["constants"].items()}
    except KeyError as exc:
        raise CheckpointError(f"{file} refers to tensor {exc} missing from {TENSORS_FILE}") from None
    artifact = SerializedArtifact(json.dumps(payload["program"]).encode(), state_dict, constants, None)
    return deserialize(artifact)


def load_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / TENSORS_FILE))
