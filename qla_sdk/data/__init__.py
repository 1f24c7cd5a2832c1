"""Datasets in, features out: SQuAD v1.1 QA and GLUE-style classification, tokenizers, metrics, dynamic batches."""

from qla_sdk.data.batching import batch_indices, batches, collate
from qla_sdk.data.classification import (
    ClassificationData,
    ClassificationFeatures,
    classification_features,
    load_classification,
)
from qla_sdk.data.metrics import accuracy, exact_match, f1, normalize_answer, squad_scores, token_f1
from qla_sdk.data.qa_postprocess import AnswerSpan, best_spans, nbest_spans, postprocess_qa
from qla_sdk.data.squad import (
    QAExample,
    QAFeatures,
    load_squad,
    qa_doc_stride,
    qa_features,
    split_squad_by_article,
)
from qla_sdk.data.tokenizer import load_tokenizer

__all__ = [
    "AnswerSpan",
    "ClassificationData",
    "ClassificationFeatures",
    "QAExample",
    "QAFeatures",
    "accuracy",
    "batch_indices",
    "batches",
    "best_spans",
    "classification_features",
    "collate",
    "exact_match",
    "f1",
    "load_classification",
    "load_squad",
    "load_tokenizer",
    "nbest_spans",
    "normalize_answer",
    "postprocess_qa",
    "qa_doc_stride",
    "qa_features",
    "split_squad_by_article",
    "squad_scores",
    "token_f1",
]
