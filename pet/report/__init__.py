"""`pet report RUN`: an HTML page of a finished run (config, timings, teachers, soft labels,
calibration, confusion matrices, losses) in RUN/report/, drawn with matplotlib (the ``report`` extra).

This package imports nothing heavy at load time: ``import pet`` binds ``pet.report`` to the function
below, and torch and matplotlib load only when a report is written.
"""

from __future__ import annotations

from pathlib import Path


def report(run_folder: str | Path) -> Path:
    """Write ``run_folder``/report/index.html (and its PNGs) for a run folder written by ``pet run``; returns its path.

    Needs matplotlib (``pip install 'pet-fewshot[report]'``); a PetError says so when it is missing.
    """
    from pet.report.build import write_report

    return write_report(Path(run_folder))
