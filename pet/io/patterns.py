"""Patterns and verbalizers: parsing and validating the user's YAML files.

A pattern is a template with ``{field}`` placeholders and exactly one ``{mask}``; it is parsed with
``string.Formatter`` (no Jinja, no eval) into literal, field and mask segments. A verbalizer maps
each label to one or more words. The label order of the verbalizer file is the class index in every
artifact.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Mapping, Sequence

from pydantic import Field, field_validator

from pet.errors import PetError
from pet.io.yamlfile import Strict, load_model

MASK = "mask"
LABEL = "label"  # multi-label patterns: where the label being asked about is written
YES, NO = "yes", "no"  # multi-label verbalizers: the words of the two answers
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PatternSpec(Strict):
    id: str
    name: str | None = None
    template: str
    shorten: list[str] | None = None  # None: every field may be shortened
    # fields whose final punctuation is dropped, e.g. the hypothesis in "{hypothesis}? {mask}, ..."
    strip_final_punctuation: list[str] = []
    # pair tasks: the field where the model's second segment ([SEP] ..., token type 1) begins
    second_segment: str | None = None


class PatternFile(Strict):
    patterns: list[PatternSpec] = Field(min_length=1)


class VerbalizerSpec(Strict):
    id: str
    name: str | None = None
    words: dict[str, list[str] | str]
    # multi-label tasks: how each label reads in a pattern's {label} (default: the label's name)
    label_text: dict[str, str] | None = None

    @field_validator("words", mode="before")
    @classmethod
    def _int_labels_as_text(cls, value: object) -> object:
        # As for VerbalizerFile.labels: a label written 0 or 1 is the name "0" or "1". A multi-label
        # verbalizer's bare `yes:` / `no:` keys are booleans in YAML 1.1: read them back as the words.
        if isinstance(value, dict):
            return {(YES if k else NO) if isinstance(k, bool) else str(k) if isinstance(k, int) else k: v
                    for k, v in value.items()}
        return value

    @field_validator("words")
    @classmethod
    def _as_lists(cls, value: dict[str, list[str] | str]) -> dict[str, list[str]]:
        return {label: [words] if isinstance(words, str) else list(words) for label, words in value.items()}


class VerbalizerFile(Strict):
    # Unset: the first verbalizer's labels, in the order its words are written (single-label files only)
    labels: Annotated[list[str], Field(min_length=2)] | None = None
    verbalizers: list[VerbalizerSpec] = Field(min_length=1)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        # Labels such as 0/1 are names too: compared as text with the data's label column.
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value


@dataclass(frozen=True)
class Segment:
    kind: Literal["text", "field", "mask"]
    value: str  # the literal text, or the field name ("mask" for the mask)
    space_before: bool = False  # whitespace preceded this segment in the template


@dataclass(frozen=True)
class Pattern:
    """A cloze template with exactly one ``{mask}``: ``Pattern("it-was", "{text} It was {mask}.")``.

    ``shorten`` names the fields that may be truncated to fit ``max_length`` (default: every field);
    ``segments`` is parsed from the template when not given. ``second_segment`` names the field
    where a pair's second segment begins (encoded after the tokenizer's pair separator). Invalid
    input raises a one-line PetError, the same as a patterns YAML file would.
    """

    id: str
    template: str
    shorten: tuple[str, ...] | None = None
    segments: tuple[Segment, ...] | None = None
    name: str | None = None
    strip_final_punctuation: tuple[str, ...] = ()
    second_segment: str | None = None

    def __post_init__(self) -> None:
        where = f"pattern '{self.id}'"
        check_id(self.id, where)
        if self.segments is None:
            object.__setattr__(self, "segments", parse_template(self.template, where))
        fields = self.fields
        shorten = fields if self.shorten is None else tuple(self.shorten)
        object.__setattr__(self, "shorten", shorten)
        object.__setattr__(self, "strip_final_punctuation", tuple(self.strip_final_punctuation))
        for key, names in (("shorten", shorten), ("strip_final_punctuation", self.strip_final_punctuation)):
            for field in names:
                if field not in fields:
                    raise PetError(f"{where}: {key} names '{field}', which is not a placeholder of the template ({', '.join(fields)})")
        if self.second_segment is not None:
            self._check_second_segment(where, fields)

    def _check_second_segment(self, where: str, fields: tuple[str, ...]) -> None:
        if self.second_segment not in fields:
            raise PetError(f"{where}: second_segment names '{self.second_segment}', which is not a placeholder of the template ({', '.join(fields)})")
        if self.second_segment_start == 0:
            raise PetError(f"{where}: second_segment '{self.second_segment}' starts the template, so the first segment "
                           f"would be empty; name a placeholder that comes later")

    @property
    def second_segment_start(self) -> int | None:
        """Index in ``segments`` where the second segment begins (first use of that field), or None."""
        if self.second_segment is None:
            return None
        return next(i for i, seg in enumerate(self.segments) if seg.kind == "field" and seg.value == self.second_segment)

    @property
    def fields(self) -> tuple[str, ...]:
        """Placeholders other than the mask, in order of first appearance."""
        seen: dict[str, None] = {}
        for seg in self.segments:
            if seg.kind == "field":
                seen.setdefault(seg.value)
        return tuple(seen)

    def render(self, values: dict[str, str], mask_token: str = "[MASK]") -> str:
        """The cloze text as a person would read it (for `pet check` and debugging)."""
        out = []
        for seg in self.segments:
            field = self.field_text(seg.value, values.get(seg.value, "")) if seg.kind == "field" else ""
            text = {"text": seg.value, "field": field, "mask": mask_token}[seg.kind]
            out.append((" " if seg.space_before and out else "") + text)
        return "".join(out)

    def field_text(self, field: str, value: str) -> str:
        """A field's text as this pattern inserts it: trimmed, and for the fields listed in
        ``strip_final_punctuation`` without trailing punctuation (PET's "{hypothesis}? {mask}, ..."
        would otherwise read "It rained.? Yes, ...")."""
        value = value.strip()
        if field in self.strip_final_punctuation:
            value = value.rstrip(string.punctuation + " ")
        return value

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "template": self.template, "shorten": list(self.shorten),
                "strip_final_punctuation": list(self.strip_final_punctuation), "second_segment": self.second_segment}


@dataclass(frozen=True)
class Verbalizer:
    """Label words per label. ``Verbalizer("tg", {"negative": ["terrible"], "positive": ["great"]})``
    takes the label order (the class index in every artifact) from the mapping; the long form
    ``Verbalizer(id, labels, words)`` names it explicitly. A label's words may be one string or a list.
    """

    id: str
    labels: tuple[str, ...] | Mapping[str, Sequence[str] | str]
    words: Mapping[str, Sequence[str] | str] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        labels, words = self.labels, self.words
        if words is None:
            if not isinstance(labels, Mapping):
                raise PetError(f"verbalizer '{self.id}': give the words as a mapping {{label: [word, ...]}}")
            labels, words = tuple(labels), labels
        labels, cleaned = checked_words(self.id, tuple(labels), dict(words), f"verbalizer '{self.id}'")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "words", cleaned)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "labels": list(self.labels), "words": {k: list(v) for k, v in self.words.items()}}


@dataclass(frozen=True)
class MultiLabelVerbalizer:
    """The answer words of a multi-label task's yes/no question, asked once per label.

    ``MultiLabelVerbalizer("yes-no", ("food", "price"), {"yes": "Yes", "no": "No"})``: each example
    is asked, for every label, a pattern with ``{label}`` filled by ``label_text[label]`` (default:
    the label's name); the label's logit is the yes score minus the no score at the mask, and its
    probability the sigmoid of that. ``answers`` is that yes/no decision as a two-class Verbalizer
    (class 0 "no", class 1 "yes"), which is what is tokenized and scored.
    """

    id: str
    labels: tuple[str, ...]
    words: Mapping[str, Sequence[str] | str]
    label_text: Mapping[str, str] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        where = f"verbalizer '{self.id}'"
        check_id(self.id, where)
        labels = tuple(self.labels)
        if len(labels) < 2:
            raise PetError(f"{where}: needs at least two labels, got {len(labels)}")
        if len(set(labels)) != len(labels):
            duplicate = next(label for label in labels if labels.count(label) > 1)
            raise PetError(f"{where}: label '{duplicate}' is listed twice in labels")
        keys = set(self.words)
        if keys != {YES, NO}:
            given = ", ".join(map(str, self.words)) or "none"
            raise PetError(f"{where}: a multi-label verbalizer gives the words of the two answers to \"does this label "
                           f"apply?\", words: {{yes: [...], no: [...]}}; got keys {given}")
        _, answers = checked_words(self.id, (NO, YES), dict(self.words), where)
        texts = dict(self.label_text or {})
        unknown = [label for label in texts if label not in labels]
        if unknown:
            raise PetError(f"{where}: label_text names '{unknown[0]}', which is not in labels ({', '.join(labels)})")
        for label, text in texts.items():
            if not isinstance(text, str) or not text.strip():
                raise PetError(f"{where}: label_text of '{label}' is empty; give the words a pattern's {{label}} should read")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "words", answers)
        object.__setattr__(self, "label_text", {label: texts.get(label, label).strip() for label in labels})

    @property
    def answers(self) -> Verbalizer:
        """The yes/no decision as a two-class verbalizer: class 0 is "no", class 1 is "yes"."""
        return Verbalizer(self.id, (NO, YES), dict(self.words), self.name)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": "multi_label", "labels": list(self.labels),
                "words": {k: list(v) for k, v in self.words.items()}, "label_text": dict(self.label_text)}


def scored_verbalizer(verbalizer: "Verbalizer | MultiLabelVerbalizer") -> Verbalizer:
    """The verbalizer whose words are scored at the mask: the label words, or a multi-label task's yes/no answers."""
    return verbalizer.answers if isinstance(verbalizer, MultiLabelVerbalizer) else verbalizer


def parse_template(template: str, where: str) -> tuple[Segment, ...]:
    """Split a template into segments, moving whitespace before a placeholder onto that placeholder.

    Whitespace is carried as ``space_before`` rather than as literal text so that tokenizers that
    mark word starts (RoBERTa's "Ġ", SentencePiece's "▁") see " great" and not "great" after a space.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise PetError(f"{where}: template is not valid: {err}; write literal braces as {{{{ and }}}}") from None
    segments: list[Segment] = []
    pending_space = False
    for literal, field, spec, conversion in parsed:
        if literal:
            stripped = literal.rstrip()
            lead = literal[: len(literal) - len(literal.lstrip())]
            body = stripped.lstrip()
            if body:
                segments.append(Segment("text", body, space_before=pending_space or bool(lead)))
                pending_space = False
            else:
                pending_space = pending_space or bool(lead)
            if body and len(stripped) < len(literal):
                pending_space = True
        if field is None:
            continue
        if spec or conversion:
            raise PetError(f"{where}: placeholder '{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}' may not have a format spec or conversion")
        if not field.isidentifier():
            raise PetError(f"{where}: placeholder '{{{field}}}' must be a plain name such as {{text}}")
        kind = "mask" if field == MASK else "field"
        segments.append(Segment(kind, field, space_before=pending_space))
        pending_space = False
    masks = sum(seg.kind == "mask" for seg in segments)
    if masks != 1:
        problem = "has no {mask}" if masks == 0 else f"has {masks} {{mask}} placeholders"
        raise PetError(f"{where}: template {problem}; a pattern needs exactly one {{mask}}")
    if not any(seg.kind == "field" for seg in segments):
        raise PetError(f"{where}: template has no input placeholder such as {{text}}")
    return tuple(segments)


def check_id(value: str, where: str) -> None:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise PetError(f"{where}: id may only use letters, digits, '-', '_' and '.'")


def checked_words(verbalizer_id: str, labels: tuple[str, ...], words: dict, where: str) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Validated labels and per-label word tuples (stripped, none empty), in label order."""
    check_id(verbalizer_id, where)
    if len(labels) < 2:
        raise PetError(f"{where}: needs at least two labels, got {len(labels)}")
    if len(set(labels)) != len(labels):
        duplicate = next(label for label in labels if labels.count(label) > 1)
        raise PetError(f"{where}: label '{duplicate}' is listed twice in labels")
    missing = [label for label in labels if label not in words]
    if missing:
        raise PetError(f"{where}: no words for label '{missing[0]}'")
    extra = [label for label in words if label not in labels]
    if extra:
        raise PetError(f"{where}: words given for '{extra[0]}', which is not in labels ({', '.join(map(str, labels))})")
    cleaned: dict[str, tuple[str, ...]] = {}
    for label in labels:
        given = words[label]
        items = (given,) if isinstance(given, str) else tuple(given)
        if any(not isinstance(word, str) for word in items):
            raise PetError(f"{where}: label '{label}' has a word that is not text; quote it in YAML")
        cleaned[label] = tuple(word.strip() for word in items)
        if not cleaned[label]:
            raise PetError(f"{where}: label '{label}' has an empty word list")
        if any(not word for word in cleaned[label]):
            raise PetError(f"{where}: label '{label}' has an empty word")
    owner: dict[str, str] = {}
    for label in labels:
        for word in cleaned[label]:
            if owner.get(word, label) != label:  # both labels would get the same score from this word
                raise PetError(f"{where}: word '{word}' is given for both '{owner[word]}' and '{label}'; a word can stand for one label only")
            owner[word] = label
    return labels, cleaned


def in_file(path: Path | str, build):
    """Run a constructor, naming the file in its error (the user edits the file, not the object)."""
    try:
        return build()
    except PetError as err:
        raise PetError(f"{path}: {err}") from None


def unique(items: list, path: Path | str, what: str) -> list:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise PetError(f"{path}: {what} '{item.id}': duplicate {what} id")
        seen.add(item.id)
    return items


def parse_patterns(spec: PatternFile, source: Path | str, ids: list[str] | None = None) -> list[Pattern]:
    patterns = [in_file(source, lambda item=item: Pattern(item.id, item.template, None if item.shorten is None else tuple(item.shorten),
                                                          None, item.name, tuple(item.strip_final_punctuation), item.second_segment))
                for item in spec.patterns]
    return select(unique(patterns, source, "pattern"), ids, source, "pattern")


def parse_verbalizers(spec: VerbalizerFile, source: Path | str, ids: list[str] | None = None,
                      multi_label: bool = False) -> list[Verbalizer] | list[MultiLabelVerbalizer]:
    """The file's verbalizers: label words per label, or (``multi_label``) yes/no answer words."""
    labels = file_labels(spec, source, multi_label)
    if len(set(labels)) != len(labels):
        duplicate = next(label for label in labels if labels.count(label) > 1)
        raise PetError(f"{source}: label '{duplicate}' is listed twice in labels")
    if multi_label:
        build = lambda item: MultiLabelVerbalizer(item.id, labels, item.words, item.label_text, item.name)  # noqa: E731
    else:
        build = lambda item: Verbalizer(item.id, labels, item.words, item.name)  # noqa: E731
        with_texts = next((item.id for item in spec.verbalizers if item.label_text is not None), None)
        if with_texts is not None:
            raise PetError(f"{source}: verbalizer '{with_texts}': label_text is for multi-label tasks; "
                           f"set task.type: multi_label in the run config, or remove it")
    verbalizers = [in_file(source, lambda item=item: build(item)) for item in spec.verbalizers]
    return select(unique(verbalizers, source, "verbalizer"), ids, source, "verbalizer")


def file_labels(spec: VerbalizerFile, source: Path | str, multi_label: bool) -> tuple[str, ...]:
    """The labels in class order: the file's ``labels``, or else its first verbalizer's, as written."""
    if spec.labels is not None:
        return tuple(spec.labels)
    if multi_label:  # its words are the yes/no answers, not one entry per label
        raise PetError(f"{source}: a multi-label verbalizers file lists its labels at the top level, e.g. "
                       f"labels: [food, service]; its words are the yes/no answer words")
    return tuple(spec.verbalizers[0].words)


def load_patterns(path: Path, ids: list[str] | None = None) -> list[Pattern]:
    return parse_patterns(load_model(path, PatternFile, "patterns"), path, ids)


def load_verbalizers(path: Path, ids: list[str] | None = None, multi_label: bool = False) -> list[Verbalizer] | list[MultiLabelVerbalizer]:
    return parse_verbalizers(load_model(path, VerbalizerFile, "verbalizers"), path, ids, multi_label)


def select(items: list, ids: list[str] | None, path: Path, what: str) -> list:
    if ids is None:
        return items
    by_id = {item.id: item for item in items}
    chosen = []
    for wanted in ids:
        if wanted not in by_id:
            import difflib

            close = difflib.get_close_matches(wanted, list(by_id), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; available: {', '.join(by_id)}"
            raise PetError(f"{path}: no {what} with id '{wanted}'{hint}")
        chosen.append(by_id[wanted])
    if not chosen:
        raise PetError(f"{path}: the config selects no {what}s (ids is an empty list)")
    return chosen


def pattern_from_json(data: dict) -> Pattern:
    """Rebuild a pattern recorded in a manifest."""
    segments = parse_template(data["template"], f"pattern '{data['id']}'")
    # manifests written before strip_final_punctuation / second_segment existed lack those keys:
    # nothing was stripped, and everything was one segment
    return Pattern(data["id"], data["template"], tuple(data["shorten"]), segments, data.get("name"),
                   tuple(data.get("strip_final_punctuation", ())), data.get("second_segment"))


def verbalizer_from_json(data: dict) -> Verbalizer | MultiLabelVerbalizer:
    if data.get("kind") == "multi_label":
        return MultiLabelVerbalizer(data["id"], tuple(data["labels"]), {k: tuple(v) for k, v in data["words"].items()},
                                    data.get("label_text"), data.get("name"))
    return Verbalizer(data["id"], tuple(data["labels"]), {k: tuple(v) for k, v in data["words"].items()}, data.get("name"))
