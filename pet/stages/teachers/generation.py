"""One generation of teachers: train (or set up) every teacher that is not finished yet.

A teacher folder with a ``teacher.json`` is finished (it is written last, in one rename); one with
another config's fingerprint is refused rather than mixed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.core.classifier import CLASSIFIER, PATTERN
from pet.core.progress import info
from pet.io.artifacts import read_json
from pet.stages.teachers.context import TeacherContext, TeacherJob
from pet.stages.teachers.specs import ClassifierSpec
from pet.stages.teachers.supervised import train_classifier
from pet.stages.teachers.teacher import TEACHER_FILE, train_teacher, zero_shot_teacher


def run_generation(jobs: list[TeacherJob], ctx: TeacherContext, output: Path) -> list[dict[str, Any]]:
    """The manifest entries of every job's teacher, training the ones that are missing.

    With several ranks (torchrun), each trains every world-th teacher, then all read every record.
    """
    for number, job in enumerate(jobs, start=1):
        if ctx.ranks.owner(number - 1) != ctx.ranks.rank:
            continue
        what = f"teacher {number}/{len(jobs)} {job.path}"
        done = "set up" if job.spec.seed is None else "trained"
        if ctx.finished(output / job.path / TEACHER_FILE, ctx.fingerprint(job.spec), what,
                        thing="teacher", made="trained", redo="retrain", done=done) is None:
            run_job(job, ctx, output, what)
    ctx.ranks.barrier()
    return [manifest_entry(job, read_json(output / job.path / TEACHER_FILE, "teacher record")) for job in jobs]


def run_job(job: TeacherJob, ctx: TeacherContext, output: Path, what: str) -> dict[str, Any]:
    if isinstance(job.spec, ClassifierSpec):
        info(f"{what}: fine-tuning a sequence classifier on {len(job.train_set)} examples ({ctx.device})")
        return train_classifier(job, ctx, output / job.path)
    if job.spec.seed is None:
        info(f"{what}: zero-shot, no training ({ctx.device})")
        return zero_shot_teacher(job, ctx, output / job.path)
    info(f"{what}: training on {len(job.train_set)} examples ({ctx.device})")
    return train_teacher(job, ctx, output / job.path)


def manifest_entry(job: TeacherJob, record: dict[str, Any]) -> dict[str, Any]:
    spec = job.spec
    classifier = isinstance(spec, ClassifierSpec)  # the supervised member: no pattern, no verbalizer
    return {"name": spec.name, "path": job.path, "kind": CLASSIFIER if classifier else PATTERN,
            "pattern": None if classifier else spec.pattern.id, "verbalizer": None if classifier else spec.verbalizer.id,
            "seed": spec.seed, "derived_seed": spec.derived_seed, "generation": spec.generation,
            "zero_shot": spec.seed is None, "weight": record["weight"], "cv_accuracy": None,  # set by crossval.py under cv
            "metrics": {k: v for k, v in record["metrics"].items() if k != "losses"}}
