"""Progress when stderr is not a terminal: periodic plain lines with rate and ETA, quiet for short work."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pet.core import progress as progress_module
from pet.core.progress import LineReporter, clock_time


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def captured(monkeypatch) -> io.StringIO:
    """Route pet's stderr console into a buffer that, like a log file, is not a terminal."""
    buffer = io.StringIO()
    monkeypatch.setattr(progress_module, "console", Console(file=buffer, width=200, highlight=False))
    return buffer


def test_lines_every_interval_with_rate_and_eta(captured):
    clock = FakeClock()
    reporter = LineReporter("teacher t1", 100, interval=30.0, clock=clock)
    for _ in range(20):  # 20 steps in 10 s: no line yet
        clock.now += 0.5
        reporter.advance(1)
    assert captured.getvalue() == ""
    for _ in range(40):  # 60 steps after 30 s: the first line, 2 steps/s, 40 left -> 20 s
        clock.now += 0.5
        reporter.advance(1)
    assert captured.getvalue().splitlines() == ["teacher t1: 60/100 (60%), 2/s, elapsed 0:00:30, eta 0:00:20"]
    for _ in range(40):
        clock.now += 0.5
        reporter.advance(1)
    reporter.finish()
    assert captured.getvalue().splitlines()[1:] == ["teacher t1: 100/100 done in 0:00:50"]


def test_short_work_prints_nothing(captured):
    clock = FakeClock()
    reporter = LineReporter("labelling", 10, interval=30.0, clock=clock)
    for _ in range(10):
        clock.now += 1.0
        reporter.advance(1)
    reporter.finish()
    assert captured.getvalue() == ""


def test_progress_context_uses_lines_off_terminal_and_respects_the_switch(captured, monkeypatch):
    monkeypatch.delenv("PET_NO_PROGRESS", raising=False)
    with progress_module.progress("scoring", 4, interval=0.0) as advance:
        for _ in range(4):
            advance(1)
    lines = captured.getvalue().splitlines()
    assert lines[0].startswith("scoring: 1/4 (25%), ")
    assert lines[-1].startswith("scoring: 4/4 done in ")
    monkeypatch.setenv("PET_NO_PROGRESS", "1")
    before = captured.getvalue()
    with progress_module.progress("scoring", 4, interval=0.0) as advance:
        advance(4)
    assert captured.getvalue() == before


def test_clock_time():
    assert clock_time(0) == "0:00:00"
    assert clock_time(3725.4) == "1:02:05"
    assert clock_time(float("inf")) == "?"
