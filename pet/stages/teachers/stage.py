"""Stage A: fine-tune one masked-LM teacher per pattern x verbalizer x seed; writes RUN/teachers.

Zero-shot (``teachers.zero_shot: true``): no training, one teacher per pattern x verbalizer is the
pretrained MLM itself. iPET (``ipet.generations > 0``): generations of teachers, pet/stages/teachers/ipet.py.
The manifest is written last: its presence means every teacher finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.core.progress import info
from pet.errors import PetError
from pet.io.artifacts import MANIFEST, prepare_output, write_json_atomic
from pet.io.config import RunConfig
from pet.stages.teachers.generation import run_generation
from pet.stages.teachers.ipet import train_ipet
from pet.stages.teachers.manifest import fingerprint, teachers_manifest
from pet.stages.teachers.task import Task, prepare_task


def train_teachers(config: RunConfig, output: Path, *, task: Task | None = None) -> dict[str, Any]:
    """Train every missing teacher under ``output`` and write the stage manifest last."""
    from pet.core.modeling import pick_device

    task = task or prepare_task(config)
    stamp = fingerprint(config, task.inputs)
    existing = prepare_output(output, "teachers")
    if existing is not None:
        if existing.get("fingerprint") == stamp:
            info(f"{output}: all teachers already trained")
            return existing
        raise PetError(f"{output}: holds teachers trained with a different config or data; choose another output folder")
    ctx = task.context(pick_device(config.runtime.device), stamp)
    if config.ipet.generations > 0:
        manifest = train_ipet(task, ctx, output)
    else:
        manifest = teachers_manifest(task, stamp, run_generation(task.jobs(ctx), ctx, output))
    write_json_atomic(output / MANIFEST, manifest)
    return manifest
