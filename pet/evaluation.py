"""`pet evaluate` and `pet predict`: metrics and predictions for a student or a teachers folder.

The data file is read with the run's own column mapping (from the manifest); a teachers folder is
scored by each teacher and by their ensemble, exactly as stage B would combine them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Any, Callable

import torch

from pet.core import maths
from pet.core.calibration import TEMPERATURE_BOUNDS, at_temperature, calibration_metrics, definitions, fit_temperature, prediction_metrics
from pet.core.ensemble import EnsembleWeights, ensemble_of, ensemble_weights
from pet.io.artifacts import MANIFEST, checked_manifest, read_json
from pet.io.config import RunConfig, config_from_json, decision_threshold
from pet.io.data import Examples, open_table
from pet.errors import PetError


@dataclass(frozen=True)
class ModelFolder:
    """A student or teachers folder with its manifest, read (and version-checked) once."""

    path: Path
    stage: str
    manifest: dict[str, Any]
    config: RunConfig

    @classmethod
    def open(cls, model_dir: Path) -> ModelFolder:
        path = model_dir / MANIFEST
        if not path.exists():
            raise PetError(f"{model_dir}: no {MANIFEST}; expected a pet student or teachers folder")
        recorded = read_json(path, "manifest")
        stage = recorded.get("stage") if isinstance(recorded, dict) else None
        if stage not in ("student", "teachers"):
            raise PetError(f"{model_dir}: holds {stage or 'unknown'} artifacts; evaluate a student or a teachers folder")
        manifest = checked_manifest(recorded, model_dir, stage)
        return cls(model_dir, stage, manifest, config_from_json(manifest["config"]))

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]


def read_examples(config: RunConfig, path: Path, labels: list[str], labelled: bool) -> Examples:
    return open_table(config, path, "evaluation data", labels, labelled).read_all()


def student_logits(model_dir: Path, manifest: dict[str, Any], config: RunConfig, examples: Examples) -> torch.Tensor:
    from pet.stages.distillation.student import Student

    return Student.load(model_dir, manifest["labels"], manifest["input_fields"], config).logits(examples.fields)


def teachers_logits(model_dir: Path, manifest: dict[str, Any], config: RunConfig, examples: Examples) -> torch.Tensor:
    """[K, N, C] logits of every teacher."""
    from pet.core.modeling import autocast_factory, pick_device
    from pet.stages.teachers.load import TeacherSource

    device = pick_device(config.runtime.device)
    source = TeacherSource.of(model_dir, manifest, config.labelling.max_length, device, config.runtime.trust_remote_code)
    out = []
    for entry in manifest["teachers"]:
        teacher = source.load(entry)
        out.append(teacher.scorer.score(teacher.encoder.encode(examples), config.labelling.batch_size,
                                        autocast_factory(device, config.runtime.precision)))
    return torch.stack(out)


def teachers_ensemble(manifest: dict[str, Any], config: RunConfig) -> EnsembleWeights:
    """The ensemble stage B would use for these teachers with this config (one decision, pet/core/ensemble.py)."""
    return ensemble_of(manifest["teachers"], config.labelling.ensemble, warn=False)


def generation_manifest(folder: ModelFolder, generation: int) -> dict[str, Any]:
    """The teachers manifest with one iPET generation's teachers in place of the last generation's."""
    generations = (folder.manifest.get("ipet") or {}).get("generations") if folder.stage == "teachers" else None
    if not generations:
        raise PetError(f"{folder.path}: --generation needs the teachers folder of an iPET run (ipet.generations > 0); "
                       f"this is {'a student folder' if folder.stage == 'student' else 'a plain PET teachers folder'}")
    if not 0 <= generation < len(generations):
        raise PetError(f"{folder.path}: no generation {generation}; this iPET run has generations 0 to {len(generations) - 1}")
    return {**folder.manifest, "teachers": generations[generation]["teachers"]}


def evaluate(model_dir: Path, data: Path, calibrate: bool = False, calibrate_on: Path | None = None,
             generation: int | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, ECE, Brier and NLL on a labelled file; for teachers, per teacher and for the ensemble.

    The ensemble is measured at T = 1 (its plain logits, like a teacher or a student) and at the
    labelling temperature (the soft labels the student learns from). With ``calibrate``, a
    temperature T* is fitted on the run's labelled set (data.train), or on ``calibrate_on``, a held-out
    labelled file (better: the teachers and the student have seen data.train), and the metrics at T*
    are added under ``calibrated`` (of the student, or of the ensemble). ``generation``: an iPET
    teachers folder's generation to measure (each teacher, and their ensemble as they labelled the
    next generation's sets), instead of the last one, which stage B labels with.
    """
    calibrate = calibrate or calibrate_on is not None
    folder = ModelFolder.open(model_dir)
    stage, manifest, config, labels = folder.stage, folder.manifest, folder.config, folder.labels
    if generation is not None:
        manifest = generation_manifest(folder, generation)
    examples = read_examples(config, data, labels, labelled=True)
    gold, threshold = examples.gold, config.task.threshold
    head = {"model": str(model_dir), "data": str(data), "stage": stage, "task": config.task.type}
    if generation is not None:
        head["generation"] = generation
    if stage == "student":
        scorer = partial(student_logits, model_dir, manifest, config)
        logits = scorer(examples)
        result = {**head, **prediction_metrics(gold, logits, labels, threshold)}
        if calibrate:
            result["calibrated"] = calibrated(scorer, config, labels, logits, gold, calibrate_on)
        return {**result, "calibration_definitions": definitions(gold)}
    chosen = teachers_ensemble(manifest, config)
    logits = teachers_logits(model_dir, manifest, config, examples)
    ensemble = ensemble_metrics(chosen, logits, gold, labels, config.labelling.temperature, threshold)
    if calibrate:
        scorer = partial(ensemble_scores, model_dir, manifest, config, chosen)
        ensemble["calibrated"] = calibrated(scorer, config, labels, chosen.combine(logits), gold, calibrate_on)
    per_teacher = {e["name"]: prediction_metrics(gold, logits[k], labels, threshold) for k, e in enumerate(manifest["teachers"])}
    return {**head, "teachers": per_teacher, "ensemble": ensemble, "calibration_definitions": definitions(gold)}


def ensemble_metrics(chosen: EnsembleWeights, teacher_logits: torch.Tensor, gold: list, labels: list[str],
                     temperature: float, threshold: float = 0.5) -> dict[str, Any]:
    """The ensemble's metrics at T = 1, and its calibration at the labelling (distillation) temperature."""
    combined = chosen.combine(teacher_logits)
    return {"method": chosen.method, **prediction_metrics(gold, combined, labels, threshold),
            "at_labelling_temperature": at_temperature(combined, gold, temperature)}


def ensemble_scores(model_dir: Path, manifest: dict[str, Any], config: RunConfig, chosen: EnsembleWeights,
                    examples: Examples) -> torch.Tensor:
    """[N, C] ensemble logits z of a teachers folder."""
    return chosen.combine(teachers_logits(model_dir, manifest, config, examples))


def calibrated(scorer: Callable[[Examples], torch.Tensor], config: RunConfig, labels: list[str],
               logits: torch.Tensor, gold: list, fit_on: Path | None = None) -> dict[str, Any]:
    """Fit T* on the run's labelled set (data.train) by minimising NLL; the metrics of ``logits`` at T*.

    T* is a calibration temperature, fitted after the fact; it is not the labelling temperature the
    soft labels were made with, and dividing by it never changes a prediction (so accuracy is the same).
    """
    fit_on = fit_on or config.data.train
    if fit_on is None:
        raise PetError("--calibrate fits a temperature on the run's labelled set, and this run has none (data.train); "
                       "name a held-out labelled file with --calibrate-on FILE, or evaluate without --calibrate")
    fit_set = read_examples(config, fit_on, labels, labelled=True)
    fitted = fit_temperature(scorer(fit_set), fit_set.gold)
    # At a bound, the search wanted to go further: T -> 0 (the fit set is perfectly separated) or
    # T -> infinity (the scores carry no information on it); either way T* says little.
    at_bound = any(abs(math.log(fitted / bound)) < 1e-3 for bound in TEMPERATURE_BOUNDS)
    return {"fitted_temperature": fitted, "fitted_on": str(fit_on), "fit_examples": len(fit_set),
            "at_search_bound": at_bound, **calibration_metrics(logits, gold, fitted)}


def evaluate_zero_shot(config_path: Path, data: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each pattern x verbalizer's zero-shot accuracy (the untrained model) and their uniform ensemble, from a run config."""
    from pet.io.config import load_config
    from pet.core.modeling import load_masked_lm, pick_device
    from pet.core.multilabel import teacher_scorer
    from pet.stages.teachers.task import prepare_task

    # untrained pattern teachers only: no supervised member, no cross-validation (their mean ensemble is reported)
    config = load_config(config_path, {**(overrides or {}), "teachers.zero_shot": True, "teachers.supervised": False,
                                       "labelling.ensemble": "mean"})
    task = prepare_task(config)
    ctx = task.context(pick_device(config.runtime.device), "zero-shot")
    labels = list(task.labels)
    examples = read_examples(config, data, labels, labelled=True)
    model = load_masked_lm(config.model, ctx.device, config.runtime.trust_remote_code).eval()
    names, logits = [], []
    for spec in task.specs():
        tokens = task.verbalizer_tokens(spec.pattern, spec.verbalizer, config.labelling.max_length)
        encoder = task.encoder(spec.pattern, config.labelling.max_length, tokens.num_masks, spec.verbalizer)
        names.append(spec.name)
        logits.append(ctx.score(teacher_scorer(model, tokens, task.tokenizer, spec.verbalizer), encoder, examples))
    stacked = torch.stack(logits)
    gold, threshold = examples.gold, config.task.threshold
    per_teacher = {name: prediction_metrics(gold, stacked[k], labels, threshold) for k, name in enumerate(names)}
    ensemble = ensemble_metrics(ensemble_weights([], "mean"), stacked, gold, labels, config.labelling.temperature, threshold)
    return {"model": config.model, "data": str(data), "stage": "zero-shot", "task": config.task.type, "teachers": per_teacher,
            "ensemble": ensemble, "calibration_definitions": definitions(gold)}


def predicted_probs(folder: ModelFolder, examples: Examples) -> torch.Tensor:
    """[N, C] probabilities of a student (softmax) or a teachers folder (the ensemble at the labelling
    temperature); multi-label: independent per-label sigmoids."""
    manifest, config = folder.manifest, folder.config
    multi_label = config.task.multi_label
    if folder.stage == "student":
        logits = student_logits(folder.path, manifest, config, examples)
        return torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
    combined = teachers_ensemble(manifest, config).combine(teachers_logits(folder.path, manifest, config, examples))
    if multi_label:
        return maths.multi_label_soft_labels(combined, config.labelling.temperature)
    return maths.soft_labels(combined, config.labelling.temperature)


def read_unlabelled(folder: ModelFolder, data: Path) -> Examples:
    """``data`` read with the run's column mapping, without labels."""
    return read_examples(folder.config, data, folder.labels, labelled=False)


def predict(model_dir: Path, data: Path, output: Path) -> int:
    """Write one JSON line per example: id, predicted label (multi-label: ``labels``, every label whose
    probability reaches task.threshold), and the probability of each label."""
    folder = ModelFolder.open(model_dir)
    labels, threshold = folder.labels, decision_threshold(folder.config)
    examples = read_unlabelled(folder, data)
    probs = predicted_probs(folder, examples)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for example_id, row in zip(examples.ids, probs.tolist()):
            if threshold is None:
                decided = {"label": labels[max(range(len(labels)), key=row.__getitem__)]}
            else:
                decided = {"labels": [label for label, p in zip(labels, row) if p >= threshold]}
            handle.write(json.dumps({"id": example_id, **decided, "probs": dict(zip(labels, row))}, ensure_ascii=False) + "\n")
    tmp.replace(output)
    return len(examples)
