"""Which teachers a run trains, and the seed each one derives from its own name.

A teacher is one pattern x verbalizer x seed (x iPET generation). Its random seed is a hash of its
name, so a resumed run trains exactly what an uninterrupted run would have, in any order.
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
