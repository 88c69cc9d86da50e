"""`pet evaluate` and `pet predict`: metrics and predictions for a student or a teachers folder.

The data file is read with the run's own column mapping (from the manifest); a teachers folder is
scored by each teacher and by their ensemble, exactly as stage B would combine them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pet.core import maths
from pet.io.artifacts import MANIFEST, read_json, read_manifest
from pet.io.config import RunConfig, config_from_json
from pet.io.data import Examples, Table
from pet.errors import PetError
from pet.core.metrics import classification_metrics


def folder_stage(model_dir: Path) -> str:
    path = model_dir / MANIFEST
    if not path.exists():
        raise PetError(f"{model_dir}: no {MANIFEST}; expected a pet student or teachers folder")
    manifest = read_json(path, "manifest")
    stage = manifest.get("stage") if isinstance(manifest, dict) else None
    if stage not in ("student", "teachers"):
        raise PetError(f"{model_dir}: holds {stage or 'unknown'} artifacts; evaluate a student or a teachers folder")
    return stage


def read_examples(config: RunConfig, path: Path, labels: list[str], labelled: bool) -> Examples:
    data = config.data
    table = Table(path, "evaluation data", data.fields, data.id_column,
                  data.label_column if labelled else None, labels if labelled else None)
    return table.read_all()


def student_logits(model_dir: Path, manifest: dict[str, Any], config: RunConfig, examples: Examples) -> torch.Tensor:
    from pet.core.modeling import autocast, load_classifier, load_tokenizer, pick_device
    from pet.stages.distillation.student import classifier_logits, student_texts, tokenize_pairs

    device = pick_device(config.runtime.device)
    tokenizer = load_tokenizer(str(model_dir))
    model = load_classifier(str(model_dir), manifest["labels"], device)
    sequences = tokenize_pairs(tokenizer, *student_texts(examples.fields, manifest["input_fields"]), config.distillation.max_length)
    return classifier_logits(model, sequences, tokenizer.pad_token_id or 0, config.runtime.eval_batch_size,
                             lambda: autocast(device, config.runtime.precision))


def teachers_logits(model_dir: Path, manifest: dict[str, Any], config: RunConfig, examples: Examples) -> torch.Tensor:
    """[K, N, C] logits of every teacher."""
    from pet.core.modeling import autocast, pick_device
    from pet.io.patterns import pattern_from_json, verbalizer_from_json
    from pet.stages.teachers.train import load_teacher

    device = pick_device(config.runtime.device)
    patterns = {p["id"]: pattern_from_json(p) for p in manifest["patterns"]}
    verbalizers = {v["id"]: verbalizer_from_json(v) for v in manifest["verbalizers"]}
    out = []
    for entry in manifest["teachers"]:
        teacher = load_teacher(model_dir, entry, patterns, verbalizers, config.labelling.max_length, device, config.runtime.trust_remote_code)
        out.append(teacher.scorer.score(teacher.encoder.encode(examples), config.labelling.batch_size,
                                        lambda: autocast(device, config.runtime.precision)))
    return torch.stack(out)


def ensemble(manifest: dict[str, Any], config: RunConfig, logits: torch.Tensor) -> torch.Tensor:
    from pet.stages.labelling.stage import ensemble_weights

    return maths.ensemble_logits(logits, ensemble_weights(manifest["teachers"], config.labelling.ensemble))


def effective_method(manifest: dict[str, Any], config: RunConfig) -> str:
    """wmean falls back to mean for teachers without weights (zero-shot without labelled data)."""
    if config.labelling.ensemble == "wmean" and any(e.get("weight") is None for e in manifest["teachers"]):
        return "mean"
    return config.labelling.ensemble


def evaluate(model_dir: Path, data: Path) -> dict[str, Any]:
    """Accuracy and macro-F1 on a labelled file; for teachers, per teacher and for the ensemble."""
    stage = folder_stage(model_dir)
    manifest = read_manifest(model_dir, stage)
    config = config_from_json(manifest["config"])
    labels = manifest["labels"]
    examples = read_examples(config, data, labels, labelled=True)
    if stage == "student":
        logits = student_logits(model_dir, manifest, config, examples)
        return {"model": str(model_dir), "data": str(data), "stage": stage,
                **classification_metrics(examples.labels, logits.argmax(-1).tolist(), labels)}
    logits = teachers_logits(model_dir, manifest, config, examples)
    per_teacher = {e["name"]: classification_metrics(examples.labels, logits[k].argmax(-1).tolist(), labels)
                   for k, e in enumerate(manifest["teachers"])}
    combined = ensemble(manifest, config, logits)
    return {"model": str(model_dir), "data": str(data), "stage": stage, "teachers": per_teacher,
            "ensemble": {"method": effective_method(manifest, config),
                         **classification_metrics(examples.labels, combined.argmax(-1).tolist(), labels)}}


def evaluate_zero_shot(config_path: Path, data: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each pattern x verbalizer's zero-shot accuracy (the untrained model) and their uniform ensemble, from a run config."""
    from pet.io.config import load_config
    from pet.core.modeling import load_masked_lm, pick_device
    from pet.core.scoring import MaskedLMScorer
    from pet.stages.teachers.task import prepare_task
    from pet.stages.teachers.train import score_examples, teacher_specs

    config = load_config(config_path, {**(overrides or {}), "teachers.zero_shot": True})
    task = prepare_task(config)
    device = pick_device(config.runtime.device)
    labels = list(task.labels)
    examples = read_examples(config, data, labels, labelled=True)
    model = load_masked_lm(config.model, device, config.runtime.trust_remote_code).eval()
    names, logits = [], []
    for spec in teacher_specs(task):
        tokens = task.verbalizer_tokens(spec.pattern, spec.verbalizer, config.labelling.max_length)
        encoder = task.encoder(spec.pattern, config.labelling.max_length, tokens.num_masks)
        scorer = MaskedLMScorer(model, tokens, task.tokenizer.mask_token_id, task.tokenizer.pad_token_id or 0)
        names.append(spec.name)
        logits.append(score_examples(scorer, encoder, examples, config, device))
    stacked = torch.stack(logits)
    per_teacher = {name: classification_metrics(examples.labels, stacked[k].argmax(-1).tolist(), labels)
                   for k, name in enumerate(names)}
    combined = maths.ensemble_logits(stacked)
    return {"model": config.model, "data": str(data), "stage": "zero-shot", "teachers": per_teacher,
            "ensemble": {"method": "mean", **classification_metrics(examples.labels, combined.argmax(-1).tolist(), labels)}}


def predict(model_dir: Path, data: Path, output: Path) -> int:
    """Write one JSON line per example: id, predicted label, and the probability of each label."""
    stage = folder_stage(model_dir)
    manifest = read_manifest(model_dir, stage)
    config = config_from_json(manifest["config"])
    labels = manifest["labels"]
    examples = read_examples(config, data, labels, labelled=False)
    if stage == "student":
        probs = torch.softmax(student_logits(model_dir, manifest, config, examples), -1)
    else:
        probs = maths.soft_labels(ensemble(manifest, config, teachers_logits(model_dir, manifest, config, examples)),
                                  config.labelling.temperature)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for example_id, row in zip(examples.ids, probs.tolist()):
            best = max(range(len(labels)), key=row.__getitem__)
            handle.write(json.dumps({"id": example_id, "label": labels[best],
                                     "probs": dict(zip(labels, row))}, ensure_ascii=False) + "\n")
    tmp.replace(output)
    return len(examples)


