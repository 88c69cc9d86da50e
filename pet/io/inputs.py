"""In-memory inputs of the Python API, written to disk so that every stage reads files as the CLI does.

Stages talk only through artifacts on disk, and a downstream stage re-reads the files an upstream
stage recorded (stage B reads the unlabeled set, stage C the labelled set for gold_weight). So rows
given as a list, a pandas DataFrame or a ``datasets.Dataset``, and patterns or verbalizers given as
objects or YAML text, are written once under ``<stage folder>/inputs/`` with a content hash in the
name: the same data gives the same file (a rerun resumes), other data a new file (never overwritten
under a finished run). A file path is used as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import yaml

from pet.errors import PetError
from pet.io.patterns import MultiLabelVerbalizer, Pattern, PatternFile, Verbalizer, VerbalizerFile
from pet.io.yamlfile import validate

INPUTS = "inputs"


class InputWriter:
    """Writes the inputs of one API call under ``folder``; :meth:`discard` removes what it created."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.created: list[Path] = []

    def write(self, role: str, suffix: str, chunks: Iterable[str]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=f".{role}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    digest.update(chunk.encode("utf-8"))
            final = self.folder / f"{role}-{digest.hexdigest()[:12]}{suffix}"
            if final.exists():
                Path(tmp).unlink()
            else:
                os.replace(tmp, final)
                self.created.append(final)
            return final
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        self.created.clear()


def as_path(value: str | os.PathLike) -> Path:
    return Path(value).expanduser().resolve()


def is_file_reference(value: Any) -> bool:
    """A Path, or a one-line string naming a file (anything else that is a string is YAML text)."""
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and "\n" not in value and (value.lower().endswith((".yaml", ".yml")) or Path(value).exists())


def data_rows(data: Any, role: str, text_column: str) -> Iterator[dict[str, Any]]:
    """Rows of a list of dicts, a list of strings (texts, for unlabeled data), a DataFrame or a Dataset."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        yield from data.to_dict(orient="records")
        return
    if hasattr(data, "column_names") and hasattr(data, "features"):  # datasets.Dataset
        yield from iter(data)
        return
    if hasattr(data, "keys") and hasattr(data, "values"):
        raise PetError(f"{role}: got a mapping; give a list of rows, a DataFrame, a datasets.Dataset or a file path"
                       + ("; did you mean dataset['train']?" if "train" in data else ""))
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise PetError(f"{role}: expected a file path, a list of rows, a DataFrame or a datasets.Dataset, got {type(data).__name__}")
    for number, row in enumerate(data):
        if isinstance(row, str):
            yield {text_column: row}
        elif isinstance(row, dict):
            yield row
        else:
            raise PetError(f"{role}: row {number} is a {type(row).__name__}; each row must be a dict of columns (or a text)")


def jsonable(value: Any) -> Any:
    """numpy scalars and arrays (DataFrame cells, e.g. a multi-label row's labels) as plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def data_file(data: Any, role: str, writer: InputWriter, text_column: str) -> Path:
    """The file to read ``data`` from: the path given, or the rows written as JSON Lines."""
    if isinstance(data, (str, os.PathLike)):
        return as_path(data)
    lines = (json.dumps(row, ensure_ascii=False, default=jsonable) + "\n" for row in data_rows(data, role, text_column))
    path = writer.write(role, ".jsonl", lines)
    if path.stat().st_size == 0:
        raise PetError(f"{role}: no rows given; pass at least one example")
    return path


def yaml_text_file(text: str, what: str, schema, writer: InputWriter) -> Path:
    """YAML text, checked against ``schema`` before it is written."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise PetError(f"{what} (YAML text){where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    validate(schema, data, f"{what} (YAML text)", text)
    return writer.write(what, ".yaml", [text])


def patterns_file(patterns: Any, writer: InputWriter) -> Path:
    """Patterns given as a YAML file, YAML text, one Pattern, or a list of Patterns."""
    if is_file_reference(patterns):
        return as_path(patterns)
    if isinstance(patterns, str):
        return yaml_text_file(patterns, "patterns", PatternFile, writer)
    items = [patterns] if isinstance(patterns, Pattern) else list(patterns)
    if not items or not all(isinstance(p, Pattern) for p in items):
        raise PetError("patterns: give a YAML file, YAML text, or a list of pet.Pattern objects (at least one)")
    text = yaml.safe_dump({"patterns": [p.to_json() for p in items]}, allow_unicode=True, sort_keys=False)
    return writer.write("patterns", ".yaml", [text])


def verbalizers_file(verbalizers: Any, writer: InputWriter) -> Path:
    """Verbalizers given as a YAML file, YAML text, one Verbalizer, or a list of Verbalizers with the same labels."""
    if is_file_reference(verbalizers):
        return as_path(verbalizers)
    if isinstance(verbalizers, str):
        return yaml_text_file(verbalizers, "verbalizers", VerbalizerFile, writer)
    kinds = (Verbalizer, MultiLabelVerbalizer)
    items: Sequence[Verbalizer | MultiLabelVerbalizer] = [verbalizers] if isinstance(verbalizers, kinds) else list(verbalizers)
    if not items or not all(isinstance(v, kinds) for v in items):
        raise PetError("verbalizers: give a YAML file, YAML text, or a list of pet.Verbalizer (or pet.MultiLabelVerbalizer) "
                       "objects (at least one)")
    labels = items[0].labels
    for other in items[1:]:
        if other.labels != labels:
            raise PetError(f"verbalizer '{other.id}': labels ({', '.join(other.labels)}) differ from verbalizer "
                           f"'{items[0].id}' ({', '.join(labels)}); every verbalizer of a run has the same labels in the same order")
    body = [{k: v for k, v in item.to_json().items() if k not in ("labels", "kind")} for item in items]
    text = yaml.safe_dump({"labels": list(labels), "verbalizers": body}, allow_unicode=True, sort_keys=False)
    return writer.write("verbalizers", ".yaml", [text])
