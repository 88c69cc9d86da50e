"""Stage A: fine-tune one masked-LM teacher per pattern x verbalizer x seed; writes RUN/teachers.

Zero-shot (``teachers.zero_shot: true``): no training, one teacher per pattern x verbalizer is the
pretrained MLM itself. iPET (``config.effective_ipet``: the default for trained single-label teachers, or
``ipet.generations`` > 0 or auto): generations of teachers, pet/stages/teachers/ipet.py.
``teachers.supervised``: one more teacher per seed, a plain classifier (supervised.py), after the pattern
teachers (under iPET, in every generation). ``labelling.ensemble: cv``: every configuration cross-validated on the labelled set (crossval.py).
``teachers.learning_rate: cv``: the teachers' rate chosen by cross-validation first (lr_search.py).
The manifest is written last: its presence means every teacher finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.core.distributed import current_ranks, rank_device
from pet.core.progress import info
from pet.errors import PetError
from pet.io.artifacts import MANIFEST, reuse_or_refuse, write_json_atomic
from pet.io.config import RunConfig
from pet.io.lock import writing
from pet.stages.teachers.crossval import (
    add_cross_validation,
    configuration_folds,
    cross_validate,
)
from pet.stages.teachers.generation import run_generation
from pet.stages.teachers.ipet import train_ipet
from pet.stages.teachers.lr_search import search_learning_rate
from pet.stages.teachers.manifest import stage_reads, teachers_manifest
from pet.stages.teachers.supervised import supervised_jobs
from pet.stages.teachers.task import Task, plain_pet_note, prepare_task


def train_teachers(config: RunConfig, output: Path, *, task: Task | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train every missing teacher under ``output`` and write the stage manifest last.

    A finished folder made from the same settings and data is returned as it is; one made from
    others is refused, or with ``overwrite`` brought up to date: teachers whose own settings, data,
    pattern, verbalizer and seed are unchanged are kept, the others retrained.
    """
    from pet.core.modeling import pick_device

    if config.adapt.enabled is True:  # auto is pet run's decision; stage A alone trains from the model as it is
        raise PetError("adapt.enabled is true, and only pet run adapts before stage A; run pet run, or adapt first "
                       "(pet adapt CONFIG -o ADAPTED) and train the teachers with --model ADAPTED --adapt.enabled false")
    ranks = current_ranks()
    task = task or prepare_task(config)
    note = plain_pet_note(config, task)
    if note:
        info(note)
    config = task.config  # pet's default iPET decided for these teachers (plain PET with one per generation)
    reads = stage_reads(config, task)
    with writing(output, "pet train-teachers", enabled=ranks.main):
        stamp, existing = reuse_or_refuse(output, "teachers", reads, overwrite, "holds teachers trained with a different config or data")
        ranks.barrier()  # every rank has decided before any rank writes
        if existing is not None:
            info(f"{output}: all teachers already trained")
            return existing
        ctx = task.context(pick_device(rank_device(config.runtime.device, ranks)), stamp, reads, overwrite, ranks)
        search = None
        if config.teachers.learning_rate == "cv":  # before any teacher: they all train at the rate it picks
            ctx, search = search_learning_rate(task, ctx, output)
        if config.effective_ipet.enabled:
            manifest = train_ipet(task, ctx, output)
        else:
            jobs = task.jobs(ctx) + supervised_jobs(config, task.labels, ctx)  # the supervised members last
            manifest = teachers_manifest(task, ctx, run_generation(jobs, ctx, output))
            if config.labelling.ensemble == "cv":
                folds = configuration_folds(config, task.patterns, task.verbalizers, task.labels)
                add_cross_validation(manifest, cross_validate(folds, ctx, output))
        if search is not None:
            manifest["learning_rate_search"] = search
        if ranks.main:
            write_json_atomic(output / MANIFEST, manifest)
        ranks.barrier()
        return manifest
