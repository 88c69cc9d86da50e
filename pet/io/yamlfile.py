"""Reading YAML files into validated pydantic models, with one-line errors a user can act on.

Every error names the file, the line when it can be found, the key path, and for a misspelt key
the nearest valid one. YAML is only ever read with ``yaml.safe_load``; ``yaml.compose`` (which builds
nodes but never constructs Python objects) is used on the error path to find line numbers.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pet.errors import PetError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for every file schema: unknown keys are errors, and no silent type coercion of strings."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


def read_text(path: Path, what: str) -> str:
    """Read a UTF-8 text file, turning the usual failures into PetError."""
    if not path.exists():
        raise PetError(f"{path}: {what} file not found")
    if path.is_dir():
        raise PetError(f"{path}: expected a {what} file but found a folder")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PetError(f"{path}: {what} file is not valid UTF-8 (byte {err.start})") from None


def load_yaml(path: Path, what: str) -> tuple[Any, str]:
    """Parse a YAML file; returns the data and the text (kept for locating keys in errors)."""
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PetError(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None:
        raise PetError(f"{path}: {what} file is empty")
    return data, text


def line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the node at ``loc`` (keys and list indices) in YAML ``text``, if found."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the (nested) model that ``loc`` points into, for "did you mean" hints."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = model_in(field.annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def describe_error(model: type[BaseModel], error: dict[str, Any]) -> str:
    """One readable phrase for one pydantic error."""
    loc = clean_loc(error["loc"])
    key = dotted(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = field_names(model, loc)
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"unknown key '{key}'{suggestion}"
    if kind == "missing":
        return f"missing required key '{key}'"
    got = error.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    hint = ""
    if isinstance(got, bool) and kind == "string_type":
        # YAML 1.1 reads bare yes/no/on/off as booleans: a classic trap for verbalizer words.
        hint = "; YAML reads bare yes/no/true/false/on/off as booleans, so quote the word"
    return f"'{key}': {error['msg'].lower()} (got {shown}){hint}"


# Tags pydantic puts in an error's location for the member of a union it tried (float | "auto" gives
# 'constrained-float' and "literal['auto']"): they are not keys the user wrote.
UNION_TAGS = ("function-", "union[", "constrained-", "literal[", "tagged-union[")


def clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and (p.startswith(UNION_TAGS) or "[" in p)))


def validate(model: type[M], data: Any, source: str, text: str | None = None) -> M:
    """Validate ``data`` against ``model``; the first problem becomes a one-line PetError."""
    if not isinstance(data, dict):
        raise PetError(f"{source}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        # A misspelt key shows up as an unknown key and a missing one: report the unknown key first,
        # since its "did you mean" hint is what the user needs.
        errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        line = line_of(text, clean_loc(first["loc"])) if text is not None else None
        where = f"{source}:{line}" if line else source
        problems = len({clean_loc(e["loc"]) for e in errors})  # a union's members fail at one key: one problem
        more = f" (and {problems - 1} more problem{'s' if problems > 2 else ''})" if problems > 1 else ""
        raise PetError(f"{where}: {item_name(data, first['loc'])}{describe_error(model, first)}{more}") from None


def item_name(data: Any, loc: tuple[Any, ...]) -> str:
    """A prefix such as ``pattern 'it-was': `` when ``loc`` points into a list item with an id."""
    found, node, section = "", data, None
    for part in loc:
        if isinstance(node, dict) and part in node:
            section, node = part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            if isinstance(node, dict) and isinstance(node.get("id"), str) and isinstance(section, str):
                found = f"{section[:-1] if section.endswith('s') else section} '{node['id']}': "
        else:
            break
    return found


def load_model(path: Path, model: type[M], what: str) -> M:
    data, text = load_yaml(path, what)
    return validate(model, data, str(path), text)
