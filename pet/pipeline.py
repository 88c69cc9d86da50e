"""The pipeline: stage A -> RUN/teachers -> stage B -> RUN/labels -> stage C -> RUN/student.

Each stage reads only the artifact folder of the stage before it (its manifest records the config
and input hashes), so each can also be run alone (`pet train-teachers`, `pet label`, `pet distill`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.io.config import RunConfig
from pet.stages.distillation.stage import STAGE_KEYS as DISTILL_KEYS
from pet.stages.distillation.stage import distill
from pet.stages.labelling.stage import STAGE_KEYS as LABEL_KEYS
from pet.stages.labelling.stage import label
from pet.stages.teachers.stage import train_teachers


def run(config: RunConfig, output: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Run every stage; a rerun after an interruption skips what already finished.

    Stages B and C get this config's own settings for them (and its unlabeled and test files), not
    the ones recorded upstream: a rerun with another ``--distillation.steps`` is compared with the
    student on disk, never answered with it (pet/io/artifacts.py ``reuse_or_refuse``).
    """
    teachers = train_teachers(config, output / "teachers", overwrite=overwrite)
    labels = label(output / "teachers", output / "labels", downstream(config, LABEL_KEYS), overwrite=overwrite)
    student = distill(output / "labels", output / "student", downstream(config, DISTILL_KEYS), overwrite=overwrite)
    return {
        "run": str(output),
        "teachers": len(teachers["teachers"]),
        "soft_labels": labels["statistics"]["examples"],
        "ensemble_test": labels.get("test", {}).get("ensemble"),
        "student_test": student.get("test"),
    }


def downstream(config: RunConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """This config's values for the sections and keys a later stage may set, as dotted overrides."""
    data = config.to_json()
    out: dict[str, Any] = {}
    for key in keys:
        section, _, name = key.partition(".")
        if name:
            out[key] = data[section][name]
        else:
            out.update({f"{section}.{k}": v for k, v in data[section].items()})
    return out
