"""Choosing the student's learning rate on the labelled set (``distillation.learning_rate: search``; issue 10).

``auto`` picks the student's rate a priori, by model size. Under ``search`` stage C picks it on the data:
it trains one student per rate of ``distillation.learning_rate_grid``, each exactly as
``learning_rate: <rate>`` would train it (same checkpoint, seed, batches and steps), scores each on the
labelled set, and keeps the one with the most labelled examples right (on a tie, the earlier rate in the
grid). The kept student is not retrained: it *is* the student of that fixed rate, bit for bit.

Why the labelled set needs no folds here: with ``distillation.gold_weight`` 0 the student learns only
the soft labels of the unlabeled texts, so the labelled examples are texts it never trains on. They
are not held out from the teachers whose soft labels it learns, so the accuracy it measures is
optimistic, by about as much for every rate: it compares rates, and is not an estimate to report.
With 32 labelled examples one accuracy has a standard error of about 7 points, so the search tells
rates apart only when they differ by more than that. Nothing is chosen on a test set.

The cost is len(grid) students instead of one (4 with the default grid), known in advance; an
interrupted search starts again, as an interrupted student does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from pet.core.progress import info
from pet.errors import PetError
from pet.io.config import RunConfig
from pet.io.data import open_table
from pet.stages.distillation.student import Student

SEARCH = "search"


def with_rate(config: RunConfig, rate: float) -> RunConfig:
    """The config with the student's learning rate set to ``rate``."""
    return config.model_copy(update={"distillation": config.distillation.model_copy(update={"learning_rate": rate})})


@dataclass
class SearchResult:
    student: Student
    losses: list[float]
    rate: float
    record: dict[str, Any]  # the student manifest's learning_rate_search


def search_learning_rate(config: RunConfig, labels: list[str], train: Callable[[RunConfig], tuple[Student, list[float]]],
                         measure: Callable[[Student], dict[str, Any] | None]) -> SearchResult:
    """Train a student at every rate of the grid (``train``: a fresh student trained with a config, and its
    losses) and keep the one with the most labelled examples right. ``measure`` gives a student's test
    metrics (None without a test set): recorded for every rate to report them, never used to choose."""
    grid = list(config.distillation.learning_rate_grid)
    labelled = open_table(config, config.data.train, "labelled", labels, labelled=True).read_all()
    if not len(labelled):
        raise PetError(f"{config.data.train}: distillation.learning_rate: search scores the students on the labelled set, "
                       "and it has no rows; set a rate or auto")
    gold = torch.tensor(labelled.labels)
    accuracy: dict[str, float] = {}
    loss_last: dict[str, float] = {}
    test: dict[str, dict[str, Any]] = {}
    best, best_right = None, -1
    for rate in grid:
        student, losses = train(with_rate(config, rate))
        # every rank holds the same weights after training, so every rank reaches the same choice
        right = int((student.logits(labelled.fields).argmax(-1) == gold).sum())
        accuracy[f"{rate:g}"], loss_last[f"{rate:g}"] = right / len(gold), losses[-1]
        info(f"student learning-rate search: {rate:g} -> {right} of {len(gold)} labelled examples right")
        metrics = measure(student)
        if metrics is not None:
            test[f"{rate:g}"] = {key: metrics[key] for key in ("accuracy", "macro_f1")}
        if right > best_right:  # strictly more: a tie keeps the earlier rate
            best, best_right = SearchResult(student, losses, rate, {}), right
    assert best is not None  # the grid has at least one rate (config validation)
    info(f"student learning-rate search: the student of {best.rate:g} is kept")
    best.record = {"grid": grid, "labelled_examples": len(gold), "accuracy": accuracy, "loss_last": loss_last,
                   "chosen": best.rate, **({"test": test} if test else {})}
    return best
