"""Tokenizers without token_type_ids and with a non-zero pad id (RoBERTa), on a byte-level BPE trained here."""

import json
from pathlib import Path

import pytest

from qla_sdk.data import (
    batches,
    classification_features,
    load_classification,
    load_squad,
    load_tokenizer,
    postprocess_qa,
    qa_features,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    squad = json.loads((FIXTURES / "squad_tiny.json").read_text())
    texts = [p["context"] for a in squad["data"] for p in a["paragraphs"]]
    texts += [q["question"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]]
    texts += (FIXTURES / "sst2_tiny.tsv").read_text().splitlines()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts,
        vocab_size=600,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    folder = tmp_path_factory.mktemp("roberta-tokenizer")
    bpe.save_model(str(folder))
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text().splitlines()[1:] if line]
    RobertaTokenizer(vocab=bpe.get_vocab(), merges=merges).save_pretrained(folder)
    return load_tokenizer(folder)


def test_tokenizer_has_no_segments(tokenizer):
    assert "token_type_ids" not in tokenizer.model_input_names and tokenizer.pad_token_id == 1


def test_qa_features_and_labels(tokenizer):
    examples = load_squad(FIXTURES / "squad_tiny.json")
    features = qa_features(examples, tokenizer, 40, 10, training=True)
    assert features.token_type_ids is None and features.pad_token_id == 1
    labelled = 0
    for i, (s, t) in enumerate(zip(features.start_positions, features.end_positions, strict=True)):
        example, offsets = examples[features.example_index[i]], features.offset_mapping[i]
        assert features.input_ids[i][0] == tokenizer.cls_token_id and offsets[0] is None
        if s:
            labelled += 1
            assert example.context[offsets[s][0] : offsets[t][1]].strip() == example.answers[0]["text"]
    assert labelled >= len(examples) and 0 in features.start_positions
    batch = next(batches(features, 3))
    assert set(batch) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    short = min(range(3), key=lambda r: features.lengths[r])
    assert batch["input_ids"][short, features.lengths[short] :].eq(1).all()  # RoBERTa's pad id

    starts, ends = [], []
    for ids, s, t in zip(features.input_ids, features.start_positions, features.end_positions, strict=True):
        starts.append([10.0 if (k == s and s) else 0.0 for k in range(len(ids))])
        ends.append([10.0 if (k == t and t) else 0.0 for k in range(len(ids))])
    predictions = postprocess_qa(examples, features, starts, ends)
    assert {k: v.strip() for k, v in predictions.items()} == {e.id: e.answers[0]["text"] for e in examples}


def test_classification_features(tokenizer):
    data = load_classification(FIXTURES / "sst2_tiny.tsv")
    features = classification_features(data, tokenizer, max_length=12)
    assert features.token_type_ids is None and features.pad_token_id == 1
    assert all(ids[0] == tokenizer.cls_token_id and len(ids) <= 12 for ids in features.input_ids)
    assert set(next(batches(features, 4))) == {"input_ids", "attention_mask", "labels"}
