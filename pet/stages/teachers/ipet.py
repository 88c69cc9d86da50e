"""iPET (PET paper, section 3.3): generations of teachers that label data for each other.

Generation 0 is plain PET (or, with ``teachers.zero_shot``, the untrained pretrained model per
pattern x verbalizer). Each teacher of generation j >= 1 (one per pattern x verbalizer x seed) is
trained from the pretrained model on the labelled set T plus examples of the unlabeled set labelled
by the ensemble (``labelling.ensemble``, wmean by default as in PET; softmax at temperature 1) of a
random share lambda (``ipet.teacher_fraction``, 0.25) of the *other* teachers of generation j - 1 (never the teacher with its own pattern, verbalizer and seed). Its training set
has |T| * d^j examples (d = ``ipet.growth``, 5); the added examples keep the label distribution of T,
and within a label they are drawn without replacement with probability proportional to the
ensemble's confidence (its probability for that label) among the examples it assigns that label.
If a label has fewer candidates than needed, every candidate is taken as often as fits and the rest
drawn by confidence, as in PET.

Zero-shot iPET (no labelled examples): generation 1's training set has ``ipet.zero_shot_examples``
(10) examples split evenly over the labels, each label's drawn by confidence from the
``ipet.zero_shot_candidates`` (100) examples the zero-shot ensemble finds most likely for that label;
generation j has 10 * d^(j-1) examples.

Every generation's training sets are written as JSON Lines under ``g<j>/train-sets/<teacher>.jsonl``
with the data's id, text and label columns plus ``source`` (labelled or ipet) and ``probability``
(the confidence used for drawing; null for labelled rows), so they can be read, audited or reused as
``data.train``. The final generation's teachers are the stage's ``teachers``: stage B labels with them.
Seeds (teacher choice, drawing, training) derive from each teacher's identity and generation, so an
interrupted run resumes to exactly what an uninterrupted run would have produced.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from pet.core import maths
from pet.io.artifacts import MANIFEST, write_json_atomic
from pet.io.data import Examples
from pet.errors import PetError
from pet.core.progress import info
from pet.stages.teachers.task import Task
from pet.stages.teachers.train import (UNLABELED_LOGITS, TeacherSpec, derive_seed, run_generation, teacher_specs,
                          teachers_manifest)

TRAIN_SETS = "train-sets"
log = logging.getLogger("pet")


def split_counts(total: int, shares: list[float]) -> list[int]:
    """Integers proportional to ``shares`` that sum exactly to ``total`` (largest remainder; ties to the first)."""
    whole = sum(shares)
    exact = [total * s / whole for s in shares]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def generation_size(labelled: int, generation: int, growth: float, zero_shot_examples: int) -> int:
    """Training set size of a generation >= 1: |T| * d^j, or zero_shot_examples * d^(j-1) without labels."""
    if labelled:
        return int(round(labelled * growth**generation))
    return int(round(zero_shot_examples * growth ** (generation - 1)))


def added_per_label(task: Task, generation: int) -> list[int]:
    """How many examples each label gets added in ``generation``, keeping T's label distribution."""
    settings = task.config.ipet
    labelled = len(task.train)
    added = generation_size(labelled, generation, settings.growth, settings.zero_shot_examples) - labelled
    if labelled:
        counts = torch.bincount(torch.tensor(task.train.labels), minlength=len(task.labels)).tolist()
        return split_counts(added, [float(c) for c in counts])
    return split_counts(added, [1.0] * len(task.labels))


def is_self(entry: dict[str, Any], spec: TeacherSpec) -> bool:
    """The previous generation's teacher with this teacher's own identity (any zero-shot one of its pattern x verbalizer)."""
    return (entry["pattern"] == spec.pattern.id and entry["verbalizer"] == spec.verbalizer.id
            and (entry["seed"] is None or entry["seed"] == spec.seed))


def draw(candidates: torch.Tensor, confidence: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices from ``candidates``, by confidence without replacement; whole copies first if too few."""
    if count <= 0 or len(candidates) == 0:
        return torch.empty(0, dtype=torch.long)
    copies, rest = divmod(count, len(candidates))
    picked = [candidates.repeat(copies)] if copies else []
    if rest:
        weights = confidence.double().clamp(min=1e-12)
        picked.append(candidates[torch.multinomial(weights, rest, replacement=False, generator=generator)])
    return torch.cat(picked)


def labelling_weights(entries: list[dict[str, Any]], method: str) -> torch.Tensor | None:
    """Stage B's ensemble weights, quietly uniform where teachers have none (zero-shot without labels)."""
    if method == "mean" or any(e.get("weight") is None for e in entries):
        return None
    weights = torch.tensor([float(e["weight"]) for e in entries])
    return weights if weights.sum() > 0 else None


def build_training_set(task: Task, spec: TeacherSpec, previous: list[dict[str, Any]], logits: torch.Tensor,
                       zero_shot_start: bool) -> tuple[Examples, dict[str, Any], list[dict[str, Any]]]:
    """The training set of one teacher of generation ``spec.generation``; returns (examples, record, file rows)."""
    settings = task.config.ipet
    generator = torch.Generator().manual_seed(derive_seed(f"ipet-set:{spec.name}--g{spec.generation}"))
    others = [k for k, entry in enumerate(previous) if not is_self(entry, spec)]
    count = max(1, round(settings.teacher_fraction * len(others)))
    chosen = sorted(others[i] for i in torch.randperm(len(others), generator=generator)[:count].tolist())
    chosen_entries = [previous[k] for k in chosen]
    weights = labelling_weights(chosen_entries, task.config.labelling.ensemble)
    probs = torch.softmax(maths.ensemble_logits(logits[chosen], weights), dim=-1)  # [N, C]
    prediction = probs.argmax(-1)
    picked_rows: list[torch.Tensor] = []
    picked_labels: list[int] = []
    for label, needed in enumerate(added_per_label(task, spec.generation)):
        if needed == 0:
            continue
        if zero_shot_start:
            candidates = torch.argsort(probs[:, label], descending=True, stable=True)[: settings.zero_shot_candidates]
        else:
            candidates = (prediction == label).nonzero(as_tuple=True)[0]
            if len(candidates) == 0:
                log.warning("iPET generation %d, teacher %s: the ensemble assigns label '%s' to no unlabeled example; "
                            "drawing from the examples most likely to have it", spec.generation, spec.name, task.labels[label])
                candidates = torch.argsort(probs[:, label], descending=True, stable=True)[: settings.zero_shot_candidates]
        rows = draw(candidates, probs[candidates, label], needed, generator)
        picked_rows.append(rows)
        picked_labels.extend([label] * len(rows))
    rows = torch.cat(picked_rows) if picked_rows else torch.empty(0, dtype=torch.long)
    unlabeled = task.unlabeled()
    added = unlabeled.take(rows.tolist())
    added.labels = picked_labels
    original = task.train
    examples = Examples(
        ids=original.ids + added.ids,
        fields={name: original.fields[name] + added.fields[name] for name in original.fields},
        labels=list(original.labels or []) + picked_labels,
    )
    confidence = probs[rows, torch.tensor(picked_labels, dtype=torch.long)].tolist() if len(rows) else []
    data = task.config.data
    file_rows = []
    for i in range(len(examples)):
        row = {data.id_column: examples.ids[i]}
        for field, column in data.fields.items():
            row[column] = examples.fields[field][i]
        row[data.label_column] = task.labels[examples.labels[i]]
        is_new = i >= len(original)
        row["source"] = "ipet" if is_new else "labelled"
        row["probability"] = confidence[i - len(original)] if is_new else None
        file_rows.append(row)
    record = {"labelled_by": [e["name"] for e in chosen_entries], "training_examples": len(examples),
              "added_examples": len(rows), "added_per_label": dict(zip(task.labels, added_per_label(task, spec.generation)))}
    return examples, record, file_rows


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_unlabeled_logits(output: Path, entries: list[dict[str, Any]]) -> torch.Tensor:
    """[K, N, C] class scores on the unlabeled set of every teacher of a finished generation."""
    from safetensors.torch import load_file

    parts = []
    for entry in entries:
        path = output / entry["path"] / UNLABELED_LOGITS
        try:
            parts.append(load_file(str(path))["logits"])
        except Exception:
            raise PetError(f"{path}: unlabeled scores of iPET teacher '{entry['name']}' are missing or corrupted; "
                           f"delete {output / entry['path']} and rerun") from None
    return torch.stack(parts)


def check_ipet(task: Task) -> None:
    count = len(task.patterns) * len(task.verbalizers) * (1 if task.config.teachers.zero_shot else len(task.config.teachers.seeds))
    if count < 2 or len(task.patterns) * len(task.verbalizers) * len(task.config.teachers.seeds) < 2:
        raise PetError("iPET needs at least two teachers per generation, since each is taught by the others; "
                       "use more patterns, verbalizers or teachers.seeds, or set ipet.generations: 0")


def train_ipet(task: Task, output: Path, device: torch.device, stamp: str) -> dict[str, Any]:
    """Train every generation (skipping finished teachers) and write the stage manifest last."""
    check_ipet(task)
    config = task.config
    settings = config.ipet
    zero_shot = config.teachers.zero_shot
    if zero_shot and len(task.train):
        log.warning("zero-shot iPET does not train on the %d labelled examples (they only weight generation 0's "
                    "ensemble); set teachers.zero_shot: false to use them", len(task.train))
    generations: list[dict[str, Any]] = []
    info(f"iPET generation 0 of {settings.generations}")
    previous = run_generation(task, output, teacher_specs(task, 0), task.train, device, stamp, prefix="g0/", score_unlabeled=True)
    if zero_shot:
        task = _without_labels(task)
    generations.append({"generation": 0, "training_examples": len(task.train), "teachers": previous})
    for generation in range(1, settings.generations + 1):
        last = generation == settings.generations
        specs = teacher_specs(task, generation, zero_shot=False)
        prefix = f"g{generation}/"
        train_sets: dict[str, Examples] = {}
        extra: dict[str, dict[str, Any]] = {}
        pending = [s for s in specs if not (output / f"{prefix}{s.name}" / "teacher.json").exists()]
        if pending:
            logits = load_unlabeled_logits(output, previous)
            for spec in pending:
                examples, record, rows = build_training_set(task, spec, previous, logits, zero_shot and generation == 1)
                relative = f"{prefix}{TRAIN_SETS}/{spec.name}.jsonl"
                write_jsonl_atomic(output / relative, rows)
                train_sets[spec.name] = examples
                extra[spec.name] = {"training_set": relative, **record}
        size = generation_size(len(task.train), generation, settings.growth, settings.zero_shot_examples)
        info(f"iPET generation {generation} of {settings.generations}: {size} training examples per teacher")
        entries = run_generation(task, output, specs, task.train, device, stamp, prefix=prefix,
                                 steps=settings.steps or config.teachers.steps, score_unlabeled=not last,
                                 extra=extra, train_sets=train_sets)
        for entry in entries:
            entry["training_set"] = f"{prefix}{TRAIN_SETS}/{entry['name']}.jsonl"
        generations.append({"generation": generation, "training_examples": size, "teachers": entries})
        previous = entries
    manifest = teachers_manifest(task, stamp, previous)
    manifest["zero_shot"] = zero_shot
    manifest["ipet"] = {"settings": settings.model_dump(mode="json"), "final_generation": settings.generations,
                        "generations": generations}
    write_json_atomic(output / MANIFEST, manifest)
    return manifest


def _without_labels(task: Task) -> Task:
    """Zero-shot iPET builds its training sets from nothing but the unlabeled set."""
    import dataclasses

    from pet.stages.teachers.task import empty_examples

    if not len(task.train):
        return task
    return dataclasses.replace(task, train=empty_examples(task.config))
