"""Stage B: score the unlabeled set with every teacher and turn the ensemble into soft labels.

Reads RUN/teachers (its manifest, the teachers, and the unlabeled and test files it recorded);
writes RUN/labels: ``soft_labels.parquet`` and ``manifest.json`` last. Scoring is in scores.py, the
artifact format in soft_labels.py, the ensemble weighting in pet/core/ensemble.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from pet.core.calibration import (
    at_temperature,
    calibration_metrics,
    definitions,
    is_label_sets,
    prediction_metrics,
)
from pet.core.classifier import PATTERN, teacher_kind
from pet.core.distributed import current_ranks
from pet.core.ensemble import EnsembleWeights, ensemble_of
from pet.core.progress import info
from pet.core.scoring import check_table_fits
from pet.io.artifacts import (
    MANIFEST,
    base_manifest,
    check_inputs,
    file_hash,
    read_json,
    read_manifest,
    reuse_or_refuse,
    write_json_atomic,
)
from pet.io.config import RunConfig, decision_threshold, stage_config, task_reads
from pet.io.data import Table, open_table
from pet.io.lock import writing
from pet.stages.labelling.scores import check_teachers, teacher_logits
from pet.stages.labelling.soft_labels import SOFT_LABELS, write_soft_labels

PARTIAL = ".partial"


STAGE_KEYS = ("labelling", "runtime", "data.unlabeled", "data.test", "task.threshold")  # what `pet label` may change


def label(teachers_dir: Path, output: Path, overrides: dict[str, Any] | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Stage B: write soft labels for the unlabeled set under ``output``; returns the manifest.

    ``overrides`` may change the labelling and runtime settings and name another unlabeled or test
    file (``data.unlabeled``, ``data.test``): existing teachers label any data. A finished folder
    made from the same teachers, settings and data is returned as it is; one made from others is
    refused, or recomputed with ``overwrite``.
    """
    manifest = read_manifest(teachers_dir, "teachers")
    config = stage_config(manifest, overrides, STAGE_KEYS, teachers_dir)
    check_unlabeled_unchanged(config, manifest, teachers_dir)
    reads = stage_reads(config, manifest)
    ensemble_of(manifest["teachers"], config.labelling.ensemble, warn=False)  # cv of teachers without cv accuracies: fails before any write
    with writing(output, "pet label", enabled=current_ranks().main):
        stamp, existing = reuse_or_refuse(output, "labels", reads, overwrite, "holds soft labels from other teachers or settings")
        current_ranks().barrier()  # every rank has decided before any rank writes
        if existing is not None:
            info(f"{output}: soft labels already written")
            return existing
        tables = data_tables(config, manifest["labels"])
        check_teachers(teachers_dir, manifest["teachers"])
        check_encodable(teachers_dir, manifest, config, tables)
        logits = teacher_logits(teachers_dir, manifest, config, tables, output / PARTIAL, stamp)
        ranks = current_ranks()
        if not ranks.main:
            ranks.barrier()  # while rank 0 writes the soft labels and the manifest
            return read_manifest(output, "labels")
        ensemble = ensemble_of(manifest["teachers"], config.labelling.ensemble)
        stats = write_soft_labels(output / SOFT_LABELS, tables["unlabeled"], logits["unlabeled"], ensemble,
                                  config.labelling.temperature, manifest["labels"], decision_threshold(config))
        result = labels_manifest(teachers_dir, manifest, config, stamp, ensemble, stats)
        result["reads"] = reads
        result["inputs"] = {**manifest["inputs"], str(config.data.unlabeled): reads["inputs.data.unlabeled"]}
        if config.data.test is not None:
            result["inputs"][str(config.data.test)] = reads["inputs.data.test"]
        if "test" in logits:
            result["test"] = test_set_metrics(tables["test"], logits["test"], ensemble, manifest, config.labelling.temperature,
                                              config.task.threshold)
            info(f"ensemble test accuracy {result['test']['ensemble']['accuracy']:.4f} on {result['test']['ensemble']['examples']} examples")
        write_json_atomic(output / MANIFEST, result)
        shutil.rmtree(output / PARTIAL, ignore_errors=True)
        ranks.barrier()
        return result


def data_tables(config: RunConfig, labels: list[str]) -> dict[str, Table]:
    tables = {"unlabeled": open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False)}
    if config.data.test is not None:
        tables["test"] = open_table(config, config.data.test, "test", labels, labelled=True)
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
                     temperature: float, threshold: float = 0.5) -> dict[str, Any]:
    """The ensemble's metrics and each teacher's accuracy on the test set, with their calibration.

    The ensemble's ECE/Brier/NLL are at T = 1 (its plain logits) and, under
    ``at_labelling_temperature``, at the temperature of the soft labels; ``teachers`` stays
    name -> accuracy (multi-label: subset accuracy, with the F1s under ``teachers_metrics``), and
    ``teachers_calibration`` adds each teacher's ECE/Brier/NLL at T = 1.
    """
    gold, labels = table.read_all().gold, teachers["labels"]
    combined = ensemble.combine(logits)
    names = [e["name"] for e in teachers["teachers"]]
    result = {
        "ensemble": {**prediction_metrics(gold, combined, labels, threshold),
                     "at_labelling_temperature": at_temperature(combined, gold, temperature)},
        "teachers": {name: prediction_metrics(gold, logits[k], labels, threshold)["accuracy"] for k, name in enumerate(names)},
        "teachers_calibration": {name: calibration_metrics(logits[k], gold) for k, name in enumerate(names)},
        "calibration_definitions": definitions(gold),
    }
    if is_label_sets(gold):
        result["teachers_metrics"] = {name: {key: value for key, value in prediction_metrics(gold, logits[k], labels, threshold).items()
                                             if key in ("micro_f1", "macro_f1", "subset_accuracy", "per_label_f1")}
                                      for k, name in enumerate(names)}
    return result


def stage_reads(config: RunConfig, teachers: dict[str, Any]) -> dict[str, Any]:
    """Everything stage B reads: the teachers (by fingerprint), its settings, the data it scores."""
    reads: dict[str, Any] = {"teachers": teachers["fingerprint"], "runtime.trust_remote_code": config.runtime.trust_remote_code,
                             "inputs.data.unlabeled": file_hash(config.data.unlabeled), "inputs.data.test": file_hash(config.data.test)}
    reads.update({f"labelling.{key}": value for key, value in config.labelling.model_dump(mode="json").items()})
    reads.update(task_reads(config))
    return reads


def check_unlabeled_unchanged(config: RunConfig, teachers: dict[str, Any], teachers_dir: Path) -> None:
    """Teachers that read the unlabeled set (auxiliary MLM loss, iPET) must label the same content
    under the same name: an edited file there means the teachers were trained on other data."""
    recorded = teachers["inputs"].get(str(config.data.unlabeled))
    read_by_teachers = config.teachers.mlm_weight > 0 or config.effective_ipet.enabled
    if recorded is not None and read_by_teachers:
        check_inputs({str(config.data.unlabeled): recorded}, teachers_dir / MANIFEST)


def check_encodable(teachers_dir: Path, teachers: dict[str, Any], config: RunConfig, tables: dict[str, Table]) -> None:
    """Every row of every table fits every teacher's pattern at labelling.max_length: checked before
    the first teacher scores, so a row that cannot be shortened fails in seconds, not after an hour."""
    from pet.core.modeling import load_tokenizer
    from pet.core.multilabel import teacher_encoder
    from pet.io.patterns import pattern_from_json, verbalizer_from_json

    tokenizer = load_tokenizer(config.model, config.runtime.trust_remote_code)  # every teacher saved a copy of it
    patterns = {p["id"]: pattern_from_json(p) for p in teachers["patterns"]}
    verbalizers = {v["id"]: verbalizer_from_json(v) for v in teachers["verbalizers"]}
    multi_label = config.task.multi_label  # the label texts are part of each row then
    needs = {(e["pattern"], int(read_json(teachers_dir / e["path"] / "teacher.json", "teacher record").get("num_masks", 1)),
              e["verbalizer"] if multi_label else None)
             for e in teachers["teachers"] if teacher_kind(e) == PATTERN}  # a classifier truncates: every row fits
    for pattern_id, num_masks, verbalizer_id in sorted(needs, key=str):
        verbalizer = verbalizers[verbalizer_id] if verbalizer_id is not None else next(iter(verbalizers.values()))
        encoder = teacher_encoder(patterns[pattern_id], verbalizer, tokenizer, config.labelling.max_length, num_masks)
        for table in tables.values():
            check_table_fits(encoder, table)
