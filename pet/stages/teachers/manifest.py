"""The teachers folder's manifest: what stage B reads to find, load and weight every teacher."""

from __future__ import annotations

from typing import Any

from pet.core.classifier import CLASSIFIER, teacher_kind
from pet.core.ensemble import member_weights
from pet.io.artifacts import base_manifest, file_hash, model_reads
from pet.io.config import RunConfig, task_reads
from pet.stages.teachers.context import TeacherContext
from pet.stages.teachers.task import Task


def stage_reads(config: RunConfig, task: Task) -> dict[str, Any]:
    """Everything stage A reads, so that a rerun can tell exactly what changed.

    Not the test set (no teacher reads it), nor the labelling or distillation settings; the
    unlabeled set only when the auxiliary MLM loss or iPET reads it; ``teachers.cv_folds`` only when
    ``labelling.ensemble`` is cv (stage A cross-validates every configuration then). Patterns and
    verbalizers by their definitions, not their files' hashes: an edit to a pattern the run does not
    use changes nothing.
    """
    reads: dict[str, Any] = {
        **model_reads(config.model),
        "runtime.trust_remote_code": config.runtime.trust_remote_code,
        "data.fields": config.data.fields, "data.id_column": config.data.id_column, "data.label_column": config.data.label_column,
        "inputs.data.train": file_hash(config.data.train),
        "patterns": [p.to_json() for p in task.patterns],
        "verbalizers": [v.to_json() for v in task.verbalizers],
    }
    teachers = config.teachers.model_dump(mode="json")
    # The supervised member and the folds only when used: a run that uses neither reads what it read before they existed.
    cross_validated = config.labelling.ensemble == "cv" or config.teachers.learning_rate == "cv"
    for key, used in (("supervised", config.teachers.supervised), ("cv_folds", cross_validated),
                      ("learning_rate_grid", config.teachers.learning_rate == "cv")):
        if not used:
            del teachers[key]
    member_model = teachers.pop("supervised_model")  # recorded below, as model_reads records `model`
    reads.update({f"teachers.{key}": value for key, value in teachers.items()})
    if member_model and config.teachers.supervised:  # by name and (if pet adapt wrote it) by its adaptation
        reads.update({f"teachers.supervised_{key}": value for key, value in model_reads(member_model).items()})
    if config.teachers.learning_rate == "cv":  # every teacher's rate comes from this search: part of each one's fingerprint
        reads["teachers.learning_rate_search"] = {"pattern": task.patterns[0].to_json(), "verbalizer": task.verbalizers[0].to_json(),
                                                  "cv_folds": config.teachers.cv_folds}
    reads.update(task_reads(config))
    ipet = config.effective_ipet.enabled
    if config.teachers.mlm_weight > 0 or ipet:
        reads["inputs.data.unlabeled"] = file_hash(config.data.unlabeled)
    if ipet:
        reads.update({f"ipet.{key}": value for key, value in config.effective_ipet.model_dump(mode="json").items()})
        reads["labelling.ensemble"] = config.labelling.ensemble  # iPET labels with it
    return reads


def record_member_weights(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write into each supervised member's entry the wmean weight stage B gives it (pet/core/ensemble.py)."""
    for entry, weight in zip(entries, member_weights(entries, "wmean")):
        if teacher_kind(entry) == CLASSIFIER:
            entry["weight"] = weight
    return entries


def teachers_manifest(task: Task, ctx: TeacherContext, entries: list[dict[str, Any]]) -> dict[str, Any]:
    record_member_weights(entries)
    manifest = base_manifest("teachers", task.config.to_json(), task.inputs)
    manifest.update({
        "fingerprint": ctx.stamp,
        "reads": ctx.reads,
        "labels": list(task.labels),
        "patterns": [p.to_json() for p in task.patterns],
        "verbalizers": [v.to_json() for v in task.verbalizers],
        "zero_shot": task.config.teachers.zero_shot,
        "task": task.config.task.model_dump(mode="json"),
        "labelled_examples": len(task.train),
        "teachers": entries,
    })
    return manifest
