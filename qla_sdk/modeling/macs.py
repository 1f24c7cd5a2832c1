"""Multiply-accumulates of the encoder's matmuls for a given length config.

Counts Q/K/V, attention scores, context, attention output, the feed-forward block and the task head, as the
Length-Adaptive Transformer reports them (layer norms, softmax and embeddings are left out). A layer's attention
runs on its input length; its feed-forward block on its output length (selection sits between the two).
The runtime does a little less than this count: it projects the attention output of the tokens that stay only
(``Layer.attention_output``), since a token that leaves keeps the layer's input. For MiniLM-L6-H384 with
(269,253,252,202,104,34) at 384 that is 51.6M of the 2,484M MACs counted here.
"""

from __future__ import annotations

import numbers

from qla_sdk.errors import ConfigError
from qla_sdk.modeling.heads import TASKS
from qla_sdk.modeling.length import LengthConfig


def count_macs(
    config, seq_len: int, length_config: LengthConfig | str | None = None, task: str = "question-answering"
) -> int:
    """MACs of one sequence of ``seq_len`` tokens through a model with transformers ``config``."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, numbers.Integral) or seq_len < 1:
        raise ConfigError(f"seq_len {seq_len!r}: give the input length in tokens, an integer >= 1")
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(TASKS)}")
    try:
        hidden, ffn = config.hidden_size, config.intermediate_size
        layers = config.num_hidden_layers
    except AttributeError as err:
        raise ConfigError(
            f"count_macs needs a model config (hidden_size, intermediate_size, num_hidden_layers); got "
            f"{type(config).__name__}: pass model.config or transformers.AutoConfig.from_pretrained(path)"
        ) from err
    length_config = LengthConfig.parse(length_config)
    if length_config is not None:
        length_config.check(layers, seq_len)
        outputs = length_config.resolve(seq_len)
    else:
        outputs = (seq_len,) * layers
    total, length_in = 0, int(seq_len)
    for length_out in outputs:
        length_out = min(length_out, length_in)
        total += 4 * length_in * hidden * hidden  # q, k, v, attention output
        total += 2 * length_in * length_in * hidden  # scores and context
        total += 2 * length_out * hidden * ffn  # feed-forward in and out
        length_in = length_out
    if task == "question-answering":
        total += seq_len * hidden * 2  # restored: the span head scores every position
    else:
        total += hidden * hidden + hidden * getattr(config, "num_labels", 2)
    return total
