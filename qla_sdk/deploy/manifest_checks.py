"""qla.json against the model files it describes, after they are loaded (``qla_sdk.load``): qla.json is not hashed,
so a hand edit of its task, labels, length config or max_length, or another tokenizer, would otherwise load and give
wrong answers. What a backend's files do not tell is not checked (SECURITY.md lists it per backend)."""

from __future__ import annotations

from qla_sdk.deploy.artifact import MANIFEST, Manifest
from qla_sdk.errors import CheckpointError
from qla_sdk.modeling.heads import max_input_length


def check_manifest_against_model(manifest: Manifest, runner, tokenizer) -> None:
    """``CheckpointError`` where qla.json's task, labels, length config or max_length, or the tokenizer, disagree
    with the model files. qla.json is not hashed, so a hand edit of it would otherwise load and give wrong answers
    (or fail on every long request); what a backend's files do not tell is not checked."""
    model = getattr(runner, "model", None)  # eager backends (fp32, bf16) hold the task model itself
    if model is not None:
        _check_task_model(manifest, model, tokenizer)
    elif hasattr(runner, "compiled_model"):
        _check_openvino(manifest, runner, tokenizer)


def _disagrees(manifest: Manifest, field: str, value: object, says: str) -> CheckpointError:
    return CheckpointError(
        f"{manifest.folder / MANIFEST}: {field} is {value!r}, but {says}; restore the {MANIFEST} written at export, "
        "or export the model again"
    )


def _check_task_model(manifest: Manifest, model, tokenizer) -> None:
    if model.task != manifest.task:
        raise _disagrees(manifest, "task", manifest.task, f"the model files hold a {model.task} model")
    if model.task != "question-answering":
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if manifest.labels != labels:
            raise _disagrees(manifest, "labels", manifest.labels, f"the model files name its classes {labels}")
    if manifest.length_config != model.length_config:
        runs = model.length_config or "none (full length)"
        shown = manifest.length_config and str(manifest.length_config)
        raise _disagrees(manifest, "length_config", shown, f"the model files run length config {runs}")
    positions = max_input_length(model.config)
    if manifest.max_length > positions:
        says = f"its position embeddings cover {positions} tokens"
        raise _disagrees(manifest, "max_length", manifest.max_length, says)
    _check_vocabulary(manifest, tokenizer, model.config.vocab_size)


def _check_openvino(manifest: Manifest, runner, tokenizer) -> None:
    graph = runner.compiled_model(runner.seq_lens[0])  # the batch-1 copy: every shape static
    outputs = len(graph.outputs)
    expected = 2 if manifest.task == "question-answering" else 1  # start and end logits, or class logits
    if outputs != expected:
        task = {2: "question-answering", 1: "text-classification"}.get(outputs, "neither task")
        raise _disagrees(manifest, "task", manifest.task, f"the model's graphs give {outputs} outputs ({task})")
    if manifest.task != "question-answering":
        shape = graph.outputs[0].get_partial_shape()
        width = shape[-1] if shape.rank.is_static else None
        if width is not None and width.is_static and len(manifest.labels or ()) != width.get_length():
            says = f"the model gives {width.get_length()} logits"
            raise _disagrees(manifest, "labels", manifest.labels, says)
    vocab_size = _embedding_rows(graph)
    if vocab_size is not None:
        _check_vocabulary(manifest, tokenizer, vocab_size)


def _embedding_rows(graph) -> int | None:
    """Rows of the word embedding table that input_ids index (through a Convert), where the graph shows one."""
    if "input_ids" not in graph.inputs[0].get_names():
        return None
    runtime = graph.get_runtime_model()  # held: its ports do not keep it alive
    ports = [runtime.inputs[0]]
    for _ in range(2):
        targets = [target for port in ports for target in port.get_target_inputs()]
        for target in targets:
            node = target.get_node()
            table = node.input_value(0).get_partial_shape()
            if (
                node.get_rt_info()["layerType"].astype(str) == "Gather"
                and target.get_index() == 1
                and table.rank.is_static
                and table.rank.get_length() == 2
                and table[0].is_static
            ):
                return table[0].get_length()
        ports = [output for target in targets for output in target.get_node().outputs()]
    return None


def _check_vocabulary(manifest: Manifest, tokenizer, vocab_size: int) -> None:
    # A model may embed more ids than its tokenizer writes (a table padded to a round size): only ids past the
    # table, or a tokenizer of its special tokens alone (tokenizer_config.json without its vocabulary), are
    # certainly not the model's.
    tokens = len(tokenizer)
    if tokens > vocab_size:
        raise CheckpointError(
            f"{manifest.folder}: its tokenizer has {tokens} tokens and its model {vocab_size} word embeddings: the "
            "tokenizer is not the model's; copy the artifact again, or export the model again with the tokenizer "
            "it was trained with"
        )
    if tokens <= len(tokenizer.all_special_ids):
        raise CheckpointError(
            f"{manifest.folder}: its tokenizer has only its {tokens} special tokens, no vocabulary; copy the artifact "
            "again, or export the model again"
        )
