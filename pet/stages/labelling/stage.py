"""Stage B: score the unlabeled set with every teacher and turn the ensemble into soft labels.

Reads RUN/teachers (its manifest, the teachers, and the unlabeled and test files it recorded);
writes RUN/labels: ``soft_labels.parquet`` and ``manifest.json`` last. Scoring is in scores.py, the
artifact format in soft_labels.py, the ensemble weighting in pet/core/ensemble.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from pet.core.calibration import DEFINITIONS, at_temperature, calibration_metrics, prediction_metrics
from pet.core.ensemble import EnsembleWeights, ensemble_weights, entry_weights
from pet.core.metrics import classification_metrics
from pet.core.progress import info
from pet.errors import PetError
from pet.io.artifacts import MANIFEST, base_manifest, check_inputs, prepare_output, read_manifest, write_json_atomic
from pet.io.config import RunConfig, stage_config
from pet.io.data import Table, open_table
from pet.stages.labelling.scores import check_teachers, teacher_logits
from pet.stages.labelling.soft_labels import SOFT_LABELS, write_soft_labels

PARTIAL = ".partial"


def label(teachers_dir: Path, output: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage B: write soft labels for the unlabeled set under ``output``; returns the manifest."""
    manifest = read_manifest(teachers_dir, "teachers")
    config = stage_config(manifest, overrides, ("labelling", "runtime"), teachers_dir)
    reads = [config.data.unlabeled] + ([config.data.test] if config.data.test else [])
    check_inputs({str(p): manifest["inputs"][str(p)] for p in reads}, teachers_dir / MANIFEST)
    stamp = hashlib.sha256(json.dumps([manifest["fingerprint"], config.labelling.model_dump(mode="json")]).encode()).hexdigest()[:16]
    existing = prepare_output(output, "labels")
    if existing is not None:
        if existing.get("fingerprint") == stamp:
            info(f"{output}: soft labels already written")
            return existing
        raise PetError(f"{output}: holds soft labels from other teachers or settings; choose another output folder")
    tables = data_tables(config, manifest["labels"])
    check_teachers(teachers_dir, manifest["teachers"])
    logits = teacher_logits(teachers_dir, manifest, config, tables, output / PARTIAL, stamp)
    ensemble = ensemble_weights(entry_weights(manifest["teachers"]), config.labelling.ensemble)
    stats = write_soft_labels(output / SOFT_LABELS, tables["unlabeled"], logits["unlabeled"], ensemble,
                              config.labelling.temperature, manifest["labels"])
    result = labels_manifest(teachers_dir, manifest, config, stamp, ensemble, stats)
    if "test" in logits:
        result["test"] = test_set_metrics(tables["test"], logits["test"], ensemble, manifest, config.labelling.temperature)
        info(f"ensemble test accuracy {result['test']['ensemble']['accuracy']:.4f} on {result['test']['ensemble']['examples']} examples")
    write_json_atomic(output / MANIFEST, result)
    shutil.rmtree(output / PARTIAL, ignore_errors=True)
    return result


def data_tables(config: RunConfig, labels: list[str]) -> dict[str, Table]:
    tables = {"unlabeled": open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False)}
    if config.data.test is not None:
        tables["test"] = open_table(config, config.data.test, "test", tuple(labels), labelled=True)
    return tables


def labels_manifest(teachers_dir: Path, teachers: dict[str, Any], config: RunConfig, stamp: str,
                    ensemble: EnsembleWeights, stats: dict[str, Any]) -> dict[str, Any]:
    result = base_manifest("labels", config.to_json(), teachers["inputs"])
    result.update({
        "fingerprint": stamp,
        "teachers_dir": str(teachers_dir.resolve()),
        "teachers_fingerprint": teachers["fingerprint"],
        "labels": teachers["labels"],
        "teachers": [e["name"] for e in teachers["teachers"]],
        "ensemble": ensemble.method,  # wmean falls back to mean without weights
        "weights": ensemble.normalised(),
        "temperature": config.labelling.temperature,
        "soft_labels": SOFT_LABELS,
        "statistics": stats,
    })
    return result


def test_set_metrics(table: Table, logits: torch.Tensor, ensemble: EnsembleWeights, teachers: dict[str, Any],
                     temperature: float) -> dict[str, Any]:
    """The ensemble's metrics and each teacher's accuracy on the test set, with their calibration.

    The ensemble's ECE/Brier/NLL are at T = 1 (its plain logits) and, under
    ``at_labelling_temperature``, at the temperature of the soft labels; ``teachers`` stays
    name -> accuracy, and ``teachers_calibration`` adds each teacher's ECE/Brier/NLL at T = 1.
    """
    gold, labels = table.read_all().labels, teachers["labels"]
    combined = ensemble.combine(logits)
    names = [e["name"] for e in teachers["teachers"]]
    return {
        "ensemble": {**prediction_metrics(gold, combined, labels),
                     "at_labelling_temperature": at_temperature(combined, gold, temperature)},
        "teachers": {name: classification_metrics(gold, logits[k].argmax(-1).tolist(), labels)["accuracy"]
                     for k, name in enumerate(names)},
        "teachers_calibration": {name: calibration_metrics(logits[k], gold) for k, name in enumerate(names)},
        "calibration_definitions": DEFINITIONS,
    }
