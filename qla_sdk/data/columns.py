"""Which classification columns a dev or calibration set is read in, wherever a trained model is scored or calibrated
(``qla eval``, ``qla search``, ``qla export`` / ``qla quantize``): the ones given (flags, a recipe's data section),
else the ones training read, as the model's qla.json records them, else detection by name.

A model scored or calibrated on another column than it learnt from gives no error, only wrong numbers (an accuracy,
the genes a search keeps, int8 scales): so given columns unlike the record are named on stderr, and a recorded
column the data lacks is named with the fix rather than as a bare missing column."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from qla_sdk.errors import ConfigError

#: The label column read where none is given or recorded (``load_classification``'s and ``DataSection``'s default).
DEFAULT_LABEL_COLUMN = "label"


def check_text_columns(text_columns: Sequence[str] | None) -> None:
    """One text column, or two for sentence pairs (None: detected by name)."""
    if text_columns is not None and not 1 <= len(text_columns) <= 2:
        raise ConfigError(f"text_columns={text_columns}: give one column, or two for sentence pairs")


@dataclass(frozen=True)
class DevColumns:
    """The column flags given (None: left out) and the columns a model's qla.json records that training read
    (None: not recorded, e.g. a checkpoint trained before they were recorded, or elsewhere)."""

    given_text: tuple[str, ...] | None = None
    given_label: str | None = None
    recorded_text: tuple[str, ...] | None = None
    recorded_label: str | None = None

    @classmethod
    def of(
        cls, text_columns: Sequence[str] | None, label_column: str | None, record: Mapping[str, object]
    ) -> DevColumns:
        """From the flags and a record as ``modeling.checkpoint.training_columns`` returns it (``{}``: none)."""
        recorded_text = record.get("text_columns")
        recorded_label = record.get("label_column")
        return cls(
            tuple(text_columns) if text_columns is not None else None,
            label_column,
            tuple(recorded_text) if isinstance(recorded_text, (list, tuple)) else None,
            recorded_label if isinstance(recorded_label, str) else None,
        )

    @property
    def given(self) -> bool:
        return self.given_text is not None or self.given_label is not None

    @property
    def text_columns(self) -> list[str] | None:
        """The text columns to read: given, else recorded, else None (detected by name)."""
        columns = self.given_text if self.given_text is not None else self.recorded_text
        return list(columns) if columns is not None else None

    @property
    def label_column(self) -> str:
        """The label column to read: given, else recorded, else ``label``."""
        return self.given_label or self.recorded_label or DEFAULT_LABEL_COLUMN

    def refuse_for_qa(self, task: str, model: str) -> None:
        """Column flags for a question-answering model are refused, not ignored: its data is SQuAD form."""
        if self.given and task == "question-answering":
            raise ConfigError(
                f"--text-columns / --label-column pick classification columns, and {model} is a "
                "question-answering model, whose data is SQuAD form (question, context, answers): drop them"
            )

    def unlike_training(self, command: str, model: str, meaning: str) -> list[str]:
        """A warning for each given flag naming other columns than the record: a dev set may name them otherwise,
        so it is read, but ``meaning`` (e.g. "the accuracy means something") only holds if they hold the same."""
        unlike = []
        if self.recorded_text and self.given_text and self.given_text != self.recorded_text:
            names = (", ".join(map(repr, c)) for c in (self.given_text, self.recorded_text))
            unlike.append(("--text-columns", *names, "text"))
        if self.recorded_label and self.given_label and self.given_label != self.recorded_label:
            unlike.append(("--label-column", repr(self.given_label), repr(self.recorded_label), "labels"))
        return [
            f"qla {command}: warning: {flag} {given}: {model} was trained on {trained} (its qla.json records it); "
            f"{meaning} only if {given} hold(s) the same {what}"
            for flag, given, trained, what in unlike
        ]

    def warn_unlike_training(self, command: str, model: str, meaning: str) -> None:
        """``unlike_training``'s lines, on stderr."""
        for line in self.unlike_training(command, model, meaning):
            print(line, file=sys.stderr)

    @contextlib.contextmanager
    def naming_the_record(self, data: str, model: str) -> Iterator[None]:
        """A recorded column ``data`` lacks is named as the column ``model`` was trained on, with the flag that
        reads another one: a bare "no column 'title'" would not say where the name came from."""
        from qla_sdk.data.classification import MissingColumnsError

        try:
            yield
        except MissingColumnsError as exc:
            recorded_text = self.recorded_text if self.given_text is None else None
            recorded_label = self.recorded_label if self.given_label is None else None
            if recorded_text and set(exc.missing) <= set(recorded_text):
                raise ConfigError(
                    f"{data} has no column {', '.join(map(repr, exc.missing))}, which {model} was trained on (its "
                    f"qla.json records text column(s) {', '.join(map(repr, recorded_text))}); its columns are "
                    f"{exc.columns}: pass the column(s) holding that text, --text-columns <name> [<name>]"
                ) from None
            if recorded_label and exc.missing == [recorded_label]:
                raise ConfigError(
                    f"{data} has no column {recorded_label!r}, the label column {model} was trained on (its qla.json "
                    f"records it); its columns are {exc.columns}: pass the one holding the labels, "
                    "--label-column <name>"
                ) from None
            raise
