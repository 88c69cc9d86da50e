"""Choosing the teachers' learning rate by cross-validation on the labelled set (``teachers.learning_rate: cv``).

The paper's rate (1e-5) was made for RoBERTa-large; ``auto`` picks one a priori by model size. Under
``cv`` stage A first tries every rate of ``teachers.learning_rate_grid`` on one configuration, the
first pattern x verbalizer: for each rate, k models (k = ``teachers.cv_folds``) each trained on k - 1
stratified folds of the labelled set for ``teachers.steps`` steps with the teachers' other settings,
and scored on the held-out fold (crossval.py does the folds, the same ones as ``labelling.ensemble:
cv``). The rate whose held-out predictions get the most labelled examples right trains every teacher
(and the supervised member); on a tie, the earlier rate in the grid. Nothing is chosen on a test set.

The cost is len(grid) x k trainings before the first teacher (16 with the defaults), bounded and
known in advance. Each fold's record is kept under ``lr-search/lr-<rate>/cv/`` (an interrupted search
resumes) and the teachers manifest records ``learning_rate_search``: the grid, each rate's accuracy
and the rate chosen; every teacher's record has the ``learning_rate`` it trained with.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pet.core.progress import info
from pet.stages.teachers.context import TeacherContext
from pet.stages.teachers.crossval import cross_validate
from pet.stages.teachers.specs import FoldSpec, configuration
from pet.stages.teachers.task import Task

LR_DIR = "lr-search"


def search_learning_rate(task: Task, ctx: TeacherContext, output: Path) -> tuple[TeacherContext, dict[str, Any]]:
    """The context with the chosen rate in its settings, and the manifest's ``learning_rate_search``."""
    settings = ctx.settings
    pattern, verbalizer = task.patterns[0], task.verbalizers[0]
    name = configuration(FoldSpec(pattern, verbalizer, None, fold=0))
    accuracy: dict[str, float] = {}
    for rate in settings.learning_rate_grid:
        trial = dataclasses.replace(ctx, settings=settings.model_copy(update={"learning_rate": rate}))
        specs = [FoldSpec(pattern, verbalizer, None, fold=f) for f in range(settings.cv_folds)]
        result = cross_validate(specs, trial, output / LR_DIR / f"lr-{rate:g}")
        accuracy[f"{rate:g}"] = result["configurations"][name]["accuracy"]
        info(f"learning-rate search: {rate:g} -> cross-validated accuracy {accuracy[f'{rate:g}']:.4f}")
    best = max(range(len(settings.learning_rate_grid)), key=lambda i: (accuracy[f"{settings.learning_rate_grid[i]:g}"], -i))
    chosen = float(settings.learning_rate_grid[best])
    info(f"learning-rate search: teachers train at {chosen:g}")
    record = {"configuration": name, "folds": settings.cv_folds, "steps": settings.steps,
              "grid": list(settings.learning_rate_grid), "accuracy": accuracy, "chosen": chosen, "records": LR_DIR}
    return dataclasses.replace(ctx, settings=settings.model_copy(update={"learning_rate": chosen})), record
