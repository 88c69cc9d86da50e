"""The result of ``pet check``: sections of lines, each ✔ (ok), ⚠ (warn), ✘ (fail) or ℹ (info).

Like spaCy's ``debug data``: a person reads the text form, a program reads ``to_json()``, and a
check has passed when no line is ✘.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "info", "detail"]
SYMBOLS = {"ok": "✔", "warn": "⚠", "fail": "✘", "info": "ℹ", "detail": " "}


def plural(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


@dataclass(frozen=True)
class Line:
    status: Status
    text: str
    data: dict[str, Any] | None = None  # the numbers behind the text, for --json

    def render(self) -> str:
        return f"  {self.text}" if self.status == "detail" else f"{SYMBOLS[self.status]} {self.text}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "text": self.text}
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)

    def add(self, status: Status, text: str, **data: Any) -> Line:
        line = Line(status, text, data or None)
        self.lines.append(line)
        return line

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "lines": [line.to_json() for line in self.lines]}


@dataclass
class CheckReport:
    config: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    def count(self, status: Status) -> int:
        return sum(line.status == status for section in self.sections for line in section.lines)

    @property
    def passed(self) -> bool:
        return self.count("fail") == 0

    def summary(self) -> str:
        ok, warn, fail = self.count("ok"), self.count("warn"), self.count("fail")
        return f"{ok} {plural(ok, 'check')} passed, {warn} {plural(warn, 'warning')}, {fail} {plural(fail, 'error')}"

    def render(self) -> str:
        out: list[str] = []
        for section in self.sections:
            out.append(f"=== {section.title} ===")
            out.extend(line.render() for line in section.lines)
            out.append("")
        verdict = "✔" if self.passed else "✘"
        out.append(f"{verdict} {self.summary()}")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "passed": self.passed,
                "summary": {"ok": self.count("ok"), "warnings": self.count("warn"), "errors": self.count("fail")},
                "sections": [section.to_json() for section in self.sections]}
