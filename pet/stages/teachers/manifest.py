"""The teachers folder's manifest: what stage B reads to find, load and weight every teacher."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pet.io.artifacts import base_manifest
from pet.io.config import RunConfig
from pet.stages.teachers.task import Task


def fingerprint(config: RunConfig, inputs: dict[str, str]) -> str:
    """Identifies what a teacher was trained from, so a rerun never mixes teachers of two configs."""
    relevant = {"model": config.model, "data": config.data.model_dump(mode="json"), "teachers": config.teachers.model_dump(mode="json"),
                "ipet": config.ipet.model_dump(mode="json"), "inputs": inputs}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def teachers_manifest(task: Task, stamp: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    manifest = base_manifest("teachers", task.config.to_json(), task.inputs)
    manifest.update({
        "fingerprint": stamp,
        "labels": list(task.labels),
        "patterns": [p.to_json() for p in task.patterns],
        "verbalizers": [v.to_json() for v in task.verbalizers],
        "zero_shot": task.config.teachers.zero_shot,
        "labelled_examples": len(task.train),
        "teachers": entries,
    })
    return manifest
