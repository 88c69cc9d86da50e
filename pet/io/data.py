"""Reading labelled and unlabeled examples through `datasets` (JSON Lines, CSV, Parquet).

A config maps each pattern placeholder to a data column (``fields: {text: sentence}``). Rows are
identified by an id column; files without one get ids ``row-<n>`` (0-based row number). Labels are
names compared as text with the verbalizer's labels, never positions.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from pet.errors import PetError

BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


@dataclass
class Examples:
    """A batch of examples in column form: ids, the text of each pattern field, and class indices
    (single-label tasks: one per example) or label sets (multi-label tasks: the indices of every
    label that applies, possibly none)."""

    ids: list[str]
    fields: dict[str, list[str]]
    labels: list[int] | None = None
    label_sets: list[tuple[int, ...]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int]) -> "Examples":
        return Examples(
            ids=[self.ids[i] for i in indices],
            fields={name: [values[i] for i in indices] for name, values in self.fields.items()},
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            label_sets=None if self.label_sets is None else [self.label_sets[i] for i in indices],
        )

    @property
    def gold(self) -> list[int] | list[tuple[int, ...]] | None:
        """The gold labels, whichever kind the task has: class indices, or label sets."""
        return self.label_sets if self.label_sets is not None else self.labels


ROLE_KEYS = {"labelled": "data.train", "unlabeled": "data.unlabeled", "test": "data.test"}


def role_hint(role: str) -> str:
    """What to change, for messages about a file: the config key that names it, if any."""
    key = ROLE_KEYS.get(role)
    return f"fix {key} in the run config" if key else "pass another file"


def open_dataset(path: Path, role: str):
    """Open a data file as a `datasets.Dataset` (memory-mapped Arrow, so large files stay on disk)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise PetError(f"{path}: {role} file has unsupported extension '{path.suffix}'; use .jsonl, .csv, .tsv or .parquet")
    if not path.exists():
        raise PetError(f"{path}: {role} file not found; {role_hint(role)}")
    if path.is_dir():
        raise PetError(f"{path}: {role} file is a folder; {role_hint(role)}")
    if path.stat().st_size == 0:
        raise PetError(f"{path}: {role} file has no rows (it is empty); add examples or {role_hint(role)}")
    if builder != "parquet":
        check_text_file(path, role)
    kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as err:  # datasets wraps parser errors in many types; find the real cause
        header = csv_header(path) if builder == "csv" else None
        if header is not None:  # a header and no rows: an empty table, which the caller judges
            return datasets.Dataset.from_dict({name: [] for name in header})
        raise PetError(f"{path}: cannot read {role} file: {describe_read_error(path, builder, err)}") from None


def csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV/TSV file that has a header line and no data rows, else None."""
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",") if row]
    return rows[0] if len(rows) == 1 else None


def check_text_file(path: Path, role: str) -> None:
    """UTF-8 and (for JSON Lines) per-line JSON checks, so errors can name the line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PetError(f"{path}:{number}: {role} file is not valid UTF-8; re-save it as UTF-8") from None
            if path.suffix.lower() == ".jsonl" and line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as err:
                    raise PetError(f"{path}:{number}: malformed JSON line ({err.msg} at column {err.colno})") from None
                if not isinstance(value, dict):
                    raise PetError(f"{path}:{number}: each JSON line must be an object, got {type(value).__name__}")


def describe_read_error(path: Path, builder: str, err: Exception) -> str:
    cause: BaseException | None = err
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    return str(cause).splitlines()[0] if str(cause) else type(cause).__name__


def check_columns(dataset, path: Path, role: str, columns: list[str]) -> None:
    present = list(dataset.column_names)
    for column in columns:
        if column not in present:
            import difflib

            close = difflib.get_close_matches(column, present, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PetError(f"{path}: {role} file has no column '{column}' (columns: {', '.join(present)}){hint}; "
                           f"map the right columns with data.fields and data.label_column in the run config")


ID_BLOCK = 8_192  # ids read at a time for the duplicate check
# Rows read (and then encoded and scored) at a time: memory holds one chunk's texts and token ids.
# (PET_CHUNK_ROWS: tests of multi-process labelling use tiny chunks, so that a small file still spans ranks.)
CHUNK = int(os.environ.get("PET_CHUNK_ROWS", "4096"))


def _id_hash(value) -> int:
    return int.from_bytes(hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class MultiLabelRule:
    """How a multi-label task's label lists are read (from the run config's ``task`` section)."""

    allow_empty: bool = True  # an empty list: none of the labels applies
    separator: str | None = None  # labels given as one text ("a|b") are split at this


@dataclass(frozen=True)
class Columns:
    """What a data file's rows must hold: a column per pattern field, an optional id column and, for a
    labelled file, the label column and the verbalizer's labels (in class-index order)."""

    fields: dict[str, str]  # pattern placeholder -> column
    id_column: str = "id"  # files without it get ids "row-<n>"
    label_column: str | None = None  # None: an unlabeled file (labels are then ignored)
    labels: tuple[str, ...] | None = None
    multi_label: MultiLabelRule | None = None  # None: single-label (one label per row)

    @property
    def labelled(self) -> bool:
        return self.label_column is not None and self.labels is not None


class Table:
    """One data file, validated against the run's fields and labels, read in chunks on demand."""

    def __init__(self, path: Path, role: str, columns: Columns, allow_empty: bool = False):
        self.path, self.role, self.fields = path, role, dict(columns.fields)
        self.dataset = open_dataset(path, role)
        if len(self.dataset) == 0 and not allow_empty:
            raise PetError(f"{path}: {role} file has no rows; add examples or {role_hint(role)}")
        self.label_column = columns.label_column if columns.labelled else None
        check_columns(self.dataset, path, role, list(self.fields.values()) + ([self.label_column] if self.label_column else []))
        self.id_column = columns.id_column if columns.id_column in self.dataset.column_names else None
        self.label_index = {name: i for i, name in enumerate(columns.labels)} if columns.labelled else None
        self.multi_label = columns.multi_label
        self._check_ids()

    def __len__(self) -> int:
        return len(self.dataset)

    def _check_ids(self) -> None:
        if self.id_column is None:
            return
        # 8 bytes per row (a hash of each id), not a set of every id string: large unlabeled files
        # stay cheap. Only ids whose hashes collide are compared as text, in a second pass.
        import numpy as np

        digests = np.empty(len(self.dataset), dtype=np.uint64)
        for start, values in self._id_blocks():
            digests[start : start + len(values)] = [_id_hash(value) for value in values]
        ordered = np.sort(digests)
        colliding = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
        if not colliding:
            return
        seen: set[str] = set()
        for _, values in self._id_blocks():
            for value in values:
                key = str(value)
                if _id_hash(value) in colliding:
                    if key in seen:
                        raise PetError(f"{self.path}: duplicate id '{key}' in column '{self.id_column}'; ids must be unique")
                    seen.add(key)

    def _id_blocks(self) -> Iterator[tuple[int, list]]:
        column = self.dataset.data.column(self.id_column)  # memory-mapped Arrow: read a block at a time
        for start in range(0, len(column), ID_BLOCK):
            yield start, column.slice(start, ID_BLOCK).to_pylist()

    def chunks(self, size: int | None = None, select: Callable[[int], bool] | None = None) -> Iterator[Examples]:
        """The rows in chunks of ``size``; with ``select``, only the chunks whose index it accepts (a rank's share)."""
        size = size or CHUNK
        for index, start in enumerate(range(0, len(self.dataset), size)):
            if select is not None and not select(index):
                continue
            stop = min(start + size, len(self.dataset))
            yield self._convert(self.dataset[start:stop], range(start, stop))

    def read_all(self) -> Examples:
        return self._convert(self.dataset[:], range(len(self.dataset)))

    def take(self, indices: Sequence[int]) -> Examples:
        """The rows at ``indices`` (any order, repeats allowed), read from disk: the file is never all in memory."""
        positions = [int(i) for i in indices]
        if not positions:
            return self._convert({column: [] for column in self.dataset.column_names}, positions)
        return self._convert(self.dataset[positions], positions)

    def _convert(self, rows: dict[str, list], positions: Sequence[int]) -> Examples:
        ids = [str(v) for v in rows[self.id_column]] if self.id_column else [f"row-{i}" for i in positions]
        fields: dict[str, list[str]] = {}
        for name, column in self.fields.items():
            values = rows[column]
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    shown = "missing" if value is None else f"not text ({type(value).__name__})"
                    raise PetError(f"{self.path}: example '{ids[i]}': column '{column}' is {shown}; give it a text or remove the row")
            fields[name] = list(values)
        if self.label_index is None:
            return Examples(ids, fields)
        values = rows[self.label_column]
        if self.multi_label is not None:
            return Examples(ids, fields, label_sets=[self._label_set(ids[i], value) for i, value in enumerate(values)])
        return Examples(ids, fields, [self._label(ids[i], value) for i, value in enumerate(values)])

    def _label(self, example_id: str, value) -> int:
        if isinstance(value, (list, tuple)):
            raise PetError(f"{self.path}: example '{example_id}' has a list of labels {list(value)!r}, but the task is "
                           f"single-label; give one label, or set task.type: multi_label in the run config")
        return self._index(example_id, value)

    def _index(self, example_id: str, value) -> int:
        key = str(value) if value is not None and not isinstance(value, bool) else value
        if key not in self.label_index:
            valid = ", ".join(self.label_index)
            raise PetError(f"{self.path}: example '{example_id}' has label {value!r}, which the verbalizer does not define (labels: {valid})")
        return self.label_index[key]

    def _label_set(self, example_id: str, value) -> tuple[int, ...]:
        """The sorted label indices of a multi-label row: a list (JSON Lines, Parquet) of known labels, or
        with task.label_separator a text such as "food|price" ("" for none)."""
        separator = self.multi_label.separator
        if separator is not None and (value is None or isinstance(value, str)):  # an empty CSV cell: no label
            value = [part.strip() for part in (value or "").split(separator) if part.strip()]
        if not isinstance(value, (list, tuple)):
            shown = "missing" if value is None else repr(value)
            raise PetError(f"{self.path}: example '{example_id}' has label {shown}, but the task is multi-label: give a "
                           f"list of labels, e.g. [\"a\", \"b\"] (or [] for none), in a .jsonl or .parquet file, or set "
                           f"task.label_separator to split a text such as \"a|b\"")
        if not value and not self.multi_label.allow_empty:
            raise PetError(f"{self.path}: example '{example_id}' has an empty label list, and task.allow_empty is false; "
                           f"give it at least one label, or set task.allow_empty: true")
        indices = [self._index(example_id, item) for item in value]
        if len(set(indices)) != len(indices):
            repeated = next(item for item in value if list(value).count(item) > 1)
            raise PetError(f"{self.path}: example '{example_id}' lists label {repeated!r} twice; list each label once")
        return tuple(sorted(indices))


def check_label_coverage(examples: Examples, labels: Sequence[str], path: Path, verbalizer_file: Path) -> None:
    """Every verbalizer label should occur in the labelled set: otherwise that class is never trained."""
    if examples.label_sets is not None:
        present = {index for label_set in examples.label_sets for index in label_set}
    else:
        present = set(examples.labels or [])
    missing = [label for i, label in enumerate(labels) if i not in present]
    if missing:
        raise PetError(
            f"{verbalizer_file}: label '{missing[0]}' has no example in the labelled set {path}; "
            f"add examples or remove the label"
        )


def run_columns(config, labels: Sequence[str] | None, labelled: bool) -> Columns:
    """The columns of a run's data files, from its config (``RunConfig``); unlabeled when ``labelled`` is false."""
    data = config.data
    return Columns(data.fields, data.id_column, data.label_column if labelled else None,
                   tuple(labels) if labelled and labels is not None else None, multi_label_rule(config))


def open_table(config, path: Path, role: str, labels: Sequence[str] | None, labelled: bool, allow_empty: bool = False) -> Table:
    """A data file of a run, read with the run config's (``RunConfig``) column mapping."""
    return Table(path, role, run_columns(config, labels, labelled), allow_empty)


def multi_label_rule(config) -> MultiLabelRule | None:
    """The label-list rule of a multi-label run config, or None for a single-label one."""
    return MultiLabelRule(config.task.allow_empty, config.task.label_separator) if config.task.multi_label else None
