"""Sentence and sentence-pair classification in GLUE form, from TSV/CSV/JSON(L) files or a `datasets` name.

Text columns are found by their names (``sentence``; ``sentence1``/``sentence2``; ``question``/``sentence``; ...),
never by a task list, so any dataset with those column names works; other names go through ``column_map``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qla_sdk.data.rows import TokenRows
from qla_sdk.errors import ConfigError

# Pairs first: a QNLI row has both "question" and "sentence" and is a pair task.
TEXT_COLUMN_PAIRS = (
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("question", "passage"),
    ("text_a", "text_b"),
    ("text1", "text2"),
)
TEXT_COLUMNS = ("sentence", "text", "content", "review")
# Column names GLUE's own TSVs use (MRPC); applied unless column_map renames them otherwise.
GLUE_COLUMN_ALIASES = {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"}
FILE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
# GLUE folders name the validation split dev.tsv.
SPLIT_FILE_NAMES = {"validation": ("validation", "dev"), "train": ("train",), "test": ("test",)}


class UnknownLabelsError(ConfigError):
    """Labels in the data that match none of the given label names (``unknown``, ``label_names``), so a caller can
    say what to fix from its own side (a model's labels, a training set's)."""

    def __init__(self, message: str, unknown: list[str], label_names: list[str]) -> None:
        super().__init__(message)
        self.unknown = unknown
        self.label_names = label_names


class MissingColumnsError(ConfigError):
    """Named text or label columns the data lacks (``missing``), with the columns it has (``columns``), so a caller
    can say where the names came from (e.g. the columns an artifact records that training read)."""

    def __init__(self, message: str, missing: list[str], columns: list[str]) -> None:
        super().__init__(message)
        self.missing = missing
        self.columns = columns


@dataclass
class ClassificationData:
    texts: list[tuple[str] | tuple[str, str]]
    labels: list[int]  # empty for unlabelled data (e.g. a GLUE test split)
    label_names: list[str]
    text_columns: tuple[str, ...] = ()
    # Columns that hold text too, which detection passed over (empty when text columns were given): a caller can
    # say which it read, since a model trained on another column scores wrongly without any error.
    other_text_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != len(self.texts):
            raise ConfigError(f"{len(self.labels)} labels for {len(self.texts)} texts: give one label per text")
        bad = [y for y in self.labels if not 0 <= y < len(self.label_names)]
        if bad:
            raise ConfigError(
                f"label ids {sorted(set(bad))[:5]} are outside 0..{len(self.label_names) - 1} "
                f"(label names {self.label_names})"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_pair(self) -> bool:
        return bool(self.texts) and len(self.texts[0]) == 2


@dataclass
class ClassificationFeatures(TokenRows):
    """Unpadded token ids per row; tensors are made per batch."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] | None = None
    pad_token_id: int = 0
    label_names: list[str] = field(default_factory=list)

    def row(self, i: int) -> dict:
        out = self.inputs(i)
        if self.labels is not None:
            out["labels"] = self.labels[i]
        return out

    def subset(self, indices: Sequence[int]) -> ClassificationFeatures:
        return ClassificationFeatures(
            input_ids=[self.input_ids[i] for i in indices],
            token_type_ids=None if self.token_type_ids is None else [self.token_type_ids[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            pad_token_id=self.pad_token_id,
            label_names=self.label_names,
        )


def load_classification(
    path_or_name: str | Path,
    split: str = "train",
    text_columns: Sequence[str] | None = None,
    label_column: str | None = "label",
    *,
    column_map: Mapping[str, str] | None = None,
    label_names: Sequence[str] | None = None,
    subset: str | None = None,
    cache_dir: str | None = None,
) -> ClassificationData:
    """Texts and label ids from a file, a GLUE-style folder (``{split}.tsv``; ``dev.tsv`` for validation) or a
    ``datasets`` name or dataset folder without top-level data files (``subset`` is its configuration, e.g.
    ``load_classification("nyu-mll/glue", "validation", subset="sst2")``).

    ``column_map`` renames columns first (``{"#1 String": "sentence1"}``). ``label_names`` fixes the id of each
    label: pass the training set's (or the model's) names when loading an evaluation set so ids agree; without it
    integer labels are kept and string labels are numbered in sorted order. ``label_column=None`` loads no labels.
    """
    columns, source, names_from_source = _read_columns(path_or_name, split, subset, cache_dir)
    columns = _rename(columns, column_map, source)
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows == 0:
        raise ConfigError(f"{source} holds no rows: pass a file with a header and at least one example")
    chosen = _text_columns(columns, text_columns, source)
    others = () if text_columns is not None else _other_text_columns(columns, chosen, label_column)
    texts = []
    for i in range(rows):
        values = []
        for name in chosen:
            value = columns[name][i]
            if not isinstance(value, str):
                raise ConfigError(f"{source} row {i + 1}: column {name!r} holds {value!r}, expected text")
            values.append(value.strip())
        texts.append(tuple(values))

    if label_column is None:
        return ClassificationData(texts, [], list(label_names or names_from_source or []), tuple(chosen), others)
    if label_column not in columns:
        raise MissingColumnsError(
            f"{source} has no label column {label_column!r}; its columns are {list(columns)}: pass "
            "label_column=<name> (qla finetune/distill/lat-train/eval: --label-column <name>), column_map={<name>: "
            "'label'}, or label_column=None for unlabelled data; or name the file's label column 'label'",
            [label_column],
            list(columns),
        )
    labels, names = _label_ids(columns[label_column], label_names or names_from_source, source, label_column)
    return ClassificationData(texts, labels, names, tuple(chosen), others)


def classification_features(data: ClassificationData, tokenizer, max_length: int = 128) -> ClassificationFeatures:
    """Token ids of every text (pairs as ``[CLS] a [SEP] b [SEP]``), truncated to ``max_length``; one batched call."""
    if len(data) == 0:
        raise ConfigError("classification_features got no texts")
    widths = {len(t) for t in data.texts}
    if len(widths) != 1:
        raise ConfigError(f"texts mix single sentences and pairs (tuple sizes {sorted(widths)}): use one kind")
    specials = tokenizer.num_special_tokens_to_add(pair=data.is_pair)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= specials:
        # The tokenizer ignores a max_length below its special tokens and returns untruncated rows.
        raise ConfigError(
            f"max_length {max_length!r} leaves no room for text besides the {specials} special tokens: use e.g. 128"
        )
    with_segments = "token_type_ids" in tokenizer.model_input_names
    first = [t[0] for t in data.texts]
    second = [t[1] for t in data.texts] if data.is_pair else None
    encoded = tokenizer(
        first,
        second,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_token_type_ids=with_segments,
        return_attention_mask=False,
    )
    return ClassificationFeatures(
        input_ids=encoded["input_ids"],
        token_type_ids=encoded["token_type_ids"] if with_segments else None,
        labels=list(data.labels) if data.labels else None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        label_names=list(data.label_names),
    )


# ---------------------------------------------------------------------------------------------------- reading


def _read_columns(
    path_or_name: str | Path, split: str, subset: str | None, cache_dir: str | None
) -> tuple[dict, str, list[str] | None]:
    path = Path(path_or_name)
    text = str(path_or_name)
    if path.is_dir():
        if not any(p.suffix in FILE_SUFFIXES for p in path.iterdir()):  # a hub snapshot: data under subfolders
            return _read_datasets(text, split, subset, cache_dir)
        path = _split_file(path, split)
    if path.is_file():
        return _read_file(path), str(path), None
    if text.endswith(FILE_SUFFIXES) or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ConfigError(f"data file {path} does not exist: check the path (or pass a `datasets` name)")
    return _read_datasets(text, split, subset, cache_dir)


def _split_file(folder: Path, split: str) -> Path:
    stems = SPLIT_FILE_NAMES.get(split, (split,))
    for stem in stems:
        for suffix in FILE_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    present = sorted(p.name for p in folder.iterdir() if p.suffix in FILE_SUFFIXES)
    raise ConfigError(
        f"no {split!r} file in {folder} (looked for {', '.join(s + '.tsv/.csv/.jsonl/.json' for s in stems)}); "
        f"data files there: {present or 'none'}"
    )


def _read_file(path: Path) -> dict[str, list]:
    try:
        if path.suffix in (".tsv", ".csv"):
            return _read_delimited(path)
        if path.suffix in (".json", ".jsonl"):
            return _read_json_records(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason}): save it as UTF-8") from exc
    raise ConfigError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def _read_delimited(path: Path) -> dict[str, list]:
    # GLUE TSVs hold raw quote characters inside sentences, so TSVs are read with quoting off; CSVs use quotes.
    tsv = path.suffix == ".tsv"
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{path} is empty: expected a header row (e.g. 'sentence\\tlabel') and data rows")
        header = [name.strip() for name in header]
        columns: dict[str, list] = {name: [] for name in header}
        for row in reader:
            if not row or row == [""]:
                continue
            if len(row) != len(header):
                raise ConfigError(
                    f"{path} line {reader.line_num} has {len(row)} fields, the header has {len(header)} "
                    f"({header}): each row needs one {'tab' if tsv else 'comma'}-separated value per column"
                )
            for name, value in zip(header, row, strict=True):
                columns[name].append(value)
    return columns


def _read_json_records(path: Path) -> dict[str, list]:
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    try:
        data = json.loads(text) if path.suffix == ".json" else None
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":  # "Extra data": JSON lines in a .json file (datasets' to_json writes those)
            raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
        data = None
    if data is None:
        data = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path} line {number} is not a JSON object: {exc.msg}") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ConfigError(f"{path}: its column lists have different lengths {sorted(lengths)}")
        return {str(k): list(v) for k, v in data.items()}
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError(
            f"{path}: expected a list of records ([{{'sentence': ..., 'label': ...}}, ...]), JSON lines, or a "
            "dict of column lists"
        )
    names: dict[str, None] = {}
    for record in data:
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in data] for name in names}


def _read_datasets(
    name: str, split: str, subset: str | None, cache_dir: str | None
) -> tuple[dict, str, list[str] | None]:
    from qla_sdk.data.hub import load_dataset

    instead = f"a TSV/CSV/JSON(L) file, a GLUE folder ({split}.tsv) or a dataset name"
    dataset = load_dataset(name, split, subset, cache_dir, instead)
    import datasets  # loaded by then

    source = f"dataset {name!r}" + (f" ({subset})" if subset else "") + f" split {split!r}"
    names = None
    for feature_name, feature in dataset.features.items():
        if isinstance(feature, datasets.ClassLabel) and feature_name in ("label", "labels"):
            names = list(feature.names)
    return dataset.to_dict(), source, names


def _rename(columns: dict[str, list], column_map: Mapping[str, str] | None, source: str) -> dict[str, list]:
    mapping = {k: v for k, v in GLUE_COLUMN_ALIASES.items() if k in columns and v not in columns}
    for old in column_map or {}:
        if old not in columns:
            raise ConfigError(f"column_map names column {old!r}, but {source} has columns {list(columns)}")
    mapping.update(column_map or {})
    return {mapping.get(name, name): values for name, values in columns.items()}


def _text_columns(columns: dict[str, list], text_columns: Sequence[str] | None, source: str) -> list[str]:
    if text_columns is not None:
        chosen = [text_columns] if isinstance(text_columns, str) else list(text_columns)
        missing = [c for c in chosen if c not in columns]
        if not 1 <= len(chosen) <= 2 or missing:
            message = f"text_columns {chosen}: need 1 or 2 columns of {source}, whose columns are {list(columns)}"
            if missing:
                raise MissingColumnsError(f"{message} (missing {missing})", missing, list(columns))
            raise ConfigError(message)
        return chosen
    for pair in TEXT_COLUMN_PAIRS:
        if all(c in columns for c in pair):
            return list(pair)
    for name in TEXT_COLUMNS:
        if name in columns:
            return [name]
    expected = " | ".join([*TEXT_COLUMNS, *("+".join(p) for p in TEXT_COLUMN_PAIRS)])
    raise ConfigError(
        f"no text columns found in {source}: it has columns {list(columns)}, expected one of {expected}; "
        "pass text_columns=[...] (qla finetune/distill/lat-train/eval: --text-columns <name> [<name>]) or "
        "column_map={'<your column>': 'sentence'}; or name the file's text column 'sentence'"
    )


def _other_text_columns(columns: dict[str, list], chosen: list[str], label_column: str | None) -> tuple[str, ...]:
    """Columns besides the chosen and the label one whose every value is text and not a number (ids, scores)."""
    return tuple(
        name
        for name, values in columns.items()
        if name not in chosen
        and name != label_column
        and all(isinstance(v, str) for v in values)
        and not all(_is_number(v) for v in values)
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_ids(
    values: list, label_names: Sequence[str] | None, source: str, column: str
) -> tuple[list[int], list[str]]:
    if any(v is None or isinstance(v, (float, bool)) for v in values):
        bad = next(v for v in values if v is None or isinstance(v, (float, bool)))
        raise ConfigError(f"{source}: label column {column!r} holds {bad!r}; labels must be ints or label names")
    values = [v.strip() if isinstance(v, str) else v for v in values]
    if "" in values:
        row = values.index("")
        raise ConfigError(
            f"{source}: data row {row + 1} has no label (an empty {column!r} cell): fill it in or drop the row"
        )
    as_int = [_to_int(v) for v in values]
    if all(v == -1 for v in as_int):  # datasets marks unlabelled test splits with -1
        return [], list(label_names or [])
    if label_names:
        names = [str(n) for n in label_names]
        index = {name: i for i, name in enumerate(names)}
        ids = [index[v] if isinstance(v, str) and v in index else n for v, n in zip(values, as_int, strict=True)]
        unknown = sorted({str(v) for v, i in zip(values, ids, strict=True) if i is None or not 0 <= i < len(names)})
        if unknown:
            raise UnknownLabelsError(
                f"{source}: labels {unknown[:10]} match none of the label names {names} (nor their ids "
                f"0..{len(names) - 1}): pass the label_names this data uses (for a model: record its labels, in id "
                "order, as 'labels' in its qla.json or as id2label in its config.json)",
                unknown,
                names,
            )
        return ids, names
    if all(i is not None for i in as_int):
        if min(as_int) < 0:
            raise ConfigError(f"{source}: label {min(as_int)} is negative; integer labels must be 0..num_labels-1")
        return as_int, [str(i) for i in range(max(as_int) + 1)]
    names = sorted({str(v) for v in values})
    index = {name: i for i, name in enumerate(names)}
    return [index[str(v)] for v in values], names


def _to_int(value) -> int | None:
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
