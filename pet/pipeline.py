"""The pipeline: stage A -> RUN/teachers -> stage B -> RUN/labels -> stage C -> RUN/student.

Each stage reads only the artifact folder of the stage before it (its manifest records the config
and input hashes), so each can also be run alone (`pet train-teachers`, `pet label`, `pet distill`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.io.config import RunConfig
from pet.stages.distillation.stage import distill
from pet.stages.labelling.stage import label
from pet.stages.teachers.stage import train_teachers


def run(config: RunConfig, output: Path) -> dict[str, Any]:
    """Run every stage; a rerun after an interruption skips what already finished."""
    teachers = train_teachers(config, output / "teachers")
    labels = label(output / "teachers", output / "labels")
    student = distill(output / "labels", output / "student")
    return {
        "run": str(output),
        "teachers": len(teachers["teachers"]),
        "soft_labels": labels["statistics"]["examples"],
        "ensemble_test": labels.get("test", {}).get("ensemble"),
        "student_test": student.get("test"),
    }
