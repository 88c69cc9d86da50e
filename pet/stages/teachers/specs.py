"""Which teachers a run trains, and the seed each one derives from its own name.

A teacher is one pattern x verbalizer x seed (x iPET generation), or the supervised member (a plain
classifier, one per seed). Its random seed is a hash of its name, so a resumed run trains exactly
what an uninterrupted run would have, in any order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from pet.io.patterns import Pattern, Verbalizer


@dataclass(frozen=True)
class TeacherSpec:
    pattern: Pattern
    verbalizer: Verbalizer
    seed: int | None  # None: an untrained (zero-shot) teacher
    generation: int = 0  # iPET generation; 0 for plain PET

    @property
    def name(self) -> str:
        tail = "zero-shot" if self.seed is None else f"s{self.seed}"
        return f"{self.pattern.id}--{self.verbalizer.id}--{tail}"

    @property
    def identity(self) -> tuple[str, str, int | None]:
        return (self.pattern.id, self.verbalizer.id, self.seed)

    @property
    def derived_seed(self) -> int:
        key = self.name if self.generation == 0 else f"{self.name}--g{self.generation}"
        return derive_seed(key)


def derive_seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


def make_specs(patterns: Sequence[Pattern], verbalizers: Sequence[Verbalizer], seeds: Sequence[int] | None,
               generation: int = 0) -> list[TeacherSpec]:
    """Every pattern x verbalizer x seed; ``seeds=None`` gives one zero-shot teacher per pattern x verbalizer."""
    if seeds is None:
        return [TeacherSpec(p, v, None, generation) for p in patterns for v in verbalizers]
    return [TeacherSpec(p, v, s, generation) for p in patterns for v in verbalizers for s in seeds]


SUPERVISED = "supervised"  # the supervised member's name prefix, and its configuration's name


@dataclass(frozen=True)
class ClassifierSpec:
    """The supervised member (``teachers.supervised``): a sequence classifier fine-tuned on the labelled set
    (in an iPET generation >= 1, on that generation's training set).

    Named ``supervised--s<seed>``; in cross-validation (``fold`` set), ``supervised--cv<fold>``."""

    labels: tuple[str, ...]  # class order: the verbalizer's
    fields: tuple[str, ...]  # the data fields it reads, in data.fields order
    seed: int | None
    fold: int | None = None  # cross-validation: trained without this fold of the labelled set
    generation: int = 0  # iPET generation; 0 for plain PET

    @property
    def name(self) -> str:
        return f"{SUPERVISED}--{f'cv{self.fold}' if self.fold is not None else f's{self.seed}'}"

    @property
    def derived_seed(self) -> int:
        return derive_seed(self.name if self.generation == 0 else f"{self.name}--g{self.generation}")

    def to_json(self) -> dict:
        return {"labels": list(self.labels), "fields": list(self.fields)}


@dataclass(frozen=True)
class FoldSpec(TeacherSpec):
    """A pattern x verbalizer trained for cross-validation, without fold ``fold`` of the labelled set;
    its seed derives from ``<pattern>--<verbalizer>--cv<fold>``, not from any teacher's seed."""

    fold: int = 0

    @property
    def name(self) -> str:
        return f"{self.pattern.id}--{self.verbalizer.id}--cv{self.fold}"

    @property
    def derived_seed(self) -> int:
        return derive_seed(self.name)


def configuration(spec: TeacherSpec | ClassifierSpec) -> str:
    """What a teacher is apart from its seed: ``<pattern>--<verbalizer>``, or ``supervised``."""
    return SUPERVISED if isinstance(spec, ClassifierSpec) else f"{spec.pattern.id}--{spec.verbalizer.id}"
