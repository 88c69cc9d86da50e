"""iPET (PET paper, section 3.3): generations of teachers that label data for each other.

Generation 0 is plain PET (or, with ``teachers.zero_shot``, the untrained pretrained model per
pattern x verbalizer). Each teacher of generation j >= 1 (one per pattern x verbalizer x seed) is
trained from the pretrained model on the labelled set T plus examples of the unlabeled set labelled
by the ensemble (``labelling.ensemble``, wmean by default as in PET; softmax at temperature 1) of a
random share lambda (``ipet.teacher_fraction``, 0.25) of the *other* teachers of generation j - 1
(never the teacher with its own pattern, verbalizer and seed). Its training set has |T| * d^j
examples (d = ``ipet.growth``, 5); the added examples keep the label distribution of T
(``ipet.label_distribution: labelled``, the paper's rule) or the distribution of the classes
generation 0's ensemble predicts on the unlabeled set (``predicted``), and within a label they are
drawn without replacement with probability proportional to the ensemble's confidence (its
probability for that label) among the examples it assigns that label.
If a label has fewer candidates than needed, every candidate is taken as often as fits and the rest
drawn by confidence, as in PET.

Why ``predicted``: few-shot sets are often drawn round-robin, so T is even when the task is not. On r8
(half the stories "earn", under 1% "grain") keeping T's distribution made generation 3 train on 500
examples per class, the rare ones a few dozen stories copied 10-15 times, and the teachers learnt an
even prior the test set does not have: the iPET student ended 18 points below plain PET (BENCHMARKS.md).
The predicted distribution is measured once, on generation 0's whole ensemble (``labelling.ensemble``,
weighted as stage B would), and every later generation keeps it: a generation that followed its own
labellers' predictions would feed its biases back into the next. Generation 0's teachers, trained on
an even T, over-predict rare classes (on subj cut to 15% subjective they predicted 22-34%), so this
moves the prior towards the task's without overshooting it. A label generation 0 never predicts counts
as predicted once, so it keeps a few added examples (drawn from the texts likeliest to have it) instead
of fading from every later generation's training set as the sets grow d-fold. ``auto`` (the default)
chooses predicted when some class is predicted under half as often as an even split would have it
(pet/core/imbalance.py, the rule of ``distillation.class_weights: auto``), else labelled, so an even
task's training sets are the paper's, unchanged. The choice and the counts are recorded in the
manifest (``ipet.label_distribution``).

Zero-shot iPET (no labelled examples): generation 1's training set has ``ipet.zero_shot_examples``
(10) examples split evenly over the labels (under ``predicted``, by the zero-shot ensemble's top
classes), each label's drawn by confidence from the ``ipet.zero_shot_candidates`` (100) examples the
zero-shot ensemble finds most likely for that label; generation j has 10 * d^(j-1) examples.

Every generation's training sets are written as JSON Lines under ``g<j>/train-sets/<teacher>.jsonl``
with the data's id, text and label columns plus ``source`` (labelled or ipet) and ``probability``
(the confidence used for drawing; null for labelled rows), so they can be read, audited or reused as
``data.train``. The final generation's teachers are the stage's ``teachers``: stage B labels with them.
Seeds (teacher choice, drawing, training) derive from each teacher's identity and generation, so an
interrupted run resumes to exactly what an uninterrupted run would have produced.

With ``teachers.supervised`` the supervised member (one classifier per seed, supervised.py) is a
teacher of every generation like the pattern teachers: it is trained on its generation's training
set, scores the unlabeled set, and may be among the teachers that label the next generation's sets
(never its own). With ``labelling.ensemble: cv`` every configuration is cross-validated once, after
generation 0 (crossval.py), and those accuracies weight every generation's labelling ensembles.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pet.core.classifier import CLASSIFIER, teacher_kind
from pet.core.ensemble import EnsembleWeights, ensemble_weights, member_weights
from pet.core.imbalance import AUTO_LARGEST_WEIGHT, describe_auto, is_uneven, largest_weight
from pet.core.progress import info
from pet.errors import PetError
from pet.io.data import Examples
from pet.stages.teachers.context import TeacherContext, TeacherJob
from pet.stages.teachers.crossval import (
    add_cross_validation,
    configuration_folds,
    cross_validate,
    record_cv_accuracies,
)
from pet.stages.teachers.generation import run_generation
from pet.stages.teachers.manifest import record_member_weights, teachers_manifest
from pet.stages.teachers.specs import ClassifierSpec, TeacherSpec, derive_seed
from pet.stages.teachers.supervised import member_specs, supervised_jobs
from pet.stages.teachers.task import IPET_NEEDS_TWO, Task, teachers_per_generation
from pet.stages.teachers.teacher import (
    TEACHER_FILE,
    UNLABELED_LOGITS,
    save_unlabeled_logits,
)

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


def predicted_shares(counts: list[int]) -> list[float]:
    """Shares of the added examples under ``predicted``: the predicted counts, a count of 0 raised to 1. A class
    generation 0 never puts on top is still a class of the task (its labelled examples say so); with no added
    examples its share of a generation's training set would fall d-fold every generation."""
    return [float(max(count, 1)) for count in counts]


def generation_size(labelled: int, generation: int, growth: float, zero_shot_examples: int) -> int:
    """Training set size of a generation >= 1: |T| * d^j, or zero_shot_examples * d^(j-1) without labels."""
    if labelled:
        return int(round(labelled * growth**generation))
    return int(round(zero_shot_examples * growth ** (generation - 1)))


def added_per_label(task: Task, generation: int, distribution: LabelDistribution) -> list[int]:
    """How many examples each label gets added in ``generation``: keeping T's label distribution (zero-shot: even),
    or with ``distribution.used`` predicted in proportion to how often generation 0's ensemble predicts each label."""
    settings = task.config.effective_ipet
    labelled = len(task.train)
    added = generation_size(labelled, generation, settings.growth, settings.zero_shot_examples) - labelled
    if distribution.used == "predicted":
        return split_counts(added, predicted_shares([distribution.predicted_counts[label] for label in task.labels]))
    if labelled:
        counts = torch.bincount(torch.tensor(task.train.labels), minlength=len(task.labels)).tolist()
        return split_counts(added, [float(c) for c in counts])
    return split_counts(added, [1.0] * len(task.labels))


@dataclass(frozen=True)
class LabelDistribution:
    """What ``ipet.label_distribution`` came to for a run, recorded in the teachers manifest."""

    setting: str  # as configured: auto, labelled or predicted
    used: str  # labelled or predicted
    predicted_counts: dict[str, int]  # how often generation 0's ensemble predicts each label on the unlabeled set

    @property
    def largest_weight(self) -> float:
        return largest_weight(self.predicted_counts)

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"setting": self.setting, "used": self.used, "predicted_label_counts": self.predicted_counts,
                                  "largest_weight": round(self.largest_weight, 4)}
        if self.setting == "auto":
            record["auto_threshold"] = AUTO_LARGEST_WEIGHT
        return record

    def describe(self) -> str:
        if self.setting != "auto":
            return self.used
        return describe_auto(self.used, self.largest_weight, uneven=self.used == "predicted")


def choose_label_distribution(setting: str, predicted_counts: dict[str, int]) -> LabelDistribution:
    """``auto`` decided on the classes generation 0's ensemble predicts; ``labelled`` and ``predicted`` as they are."""
    if setting != "auto":
        return LabelDistribution(setting, setting, predicted_counts)
    return LabelDistribution(setting, "predicted" if is_uneven(largest_weight(predicted_counts)) else "labelled", predicted_counts)


def generation_predictions(task: Task, entries: list[dict[str, Any]], logits: torch.Tensor) -> dict[str, int]:
    """How often each label is the top class of a whole generation's ensemble (weighted as stage B would) on the unlabeled set."""
    weights = labellers_weights(entries, list(range(len(entries))), task.config.labelling.ensemble)
    predicted = weights.combine(logits).argmax(-1)
    return dict(zip(task.labels, torch.bincount(predicted, minlength=len(task.labels)).tolist()))


def decide_label_distribution(task: Task, ctx: TeacherContext, output: Path, first: list[dict[str, Any]]) -> LabelDistribution:
    """ipet.label_distribution for this run, from generation 0 (``first``), said in one line."""
    score_unscored(task, ctx, output, first)
    counts = generation_predictions(task, first, load_unlabeled_logits(output, first))
    choice = choose_label_distribution(task.config.effective_ipet.label_distribution, counts)
    info(f"iPET label distribution of the added examples: {choice.describe()}")
    return choice


def is_self(entry: dict[str, Any], spec: TeacherSpec | ClassifierSpec) -> bool:
    """The previous generation's teacher with this teacher's own identity (any zero-shot one of its pattern x
    verbalizer; for the supervised member, the member of its seed)."""
    if isinstance(spec, ClassifierSpec):
        return teacher_kind(entry) == CLASSIFIER and entry["seed"] == spec.seed
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


def build_training_set(task: Task, spec: TeacherSpec | ClassifierSpec, previous: list[dict[str, Any]], logits: torch.Tensor,
                       zero_shot_start: bool, distribution: LabelDistribution) -> tuple[Examples, dict[str, Any], list[dict[str, Any]]]:
    """The training set of one teacher of generation ``spec.generation``; returns (examples, record, file rows)."""
    generator = torch.Generator().manual_seed(derive_seed(f"ipet-set:{spec.name}--g{spec.generation}"))
    chosen = choose_labellers(task, spec, previous, generator)
    chosen_entries = [previous[k] for k in chosen]
    weights = labellers_weights(previous, chosen, task.config.labelling.ensemble)
    probs = torch.softmax(weights.combine(logits[chosen]), dim=-1)  # [N, C]
    rows, picked_labels = draw_examples(task, spec, probs, zero_shot_start, distribution, generator)
    added = task.unlabeled().take(rows.tolist())
    original = task.train
    examples = Examples(
        ids=original.ids + added.ids,
        fields={name: original.fields[name] + added.fields[name] for name in original.fields},
        labels=list(original.labels or []) + picked_labels,
    )
    confidence = probs[rows, torch.tensor(picked_labels, dtype=torch.long)].tolist() if len(rows) else []
    record = {"labelled_by": [e["name"] for e in chosen_entries], "training_examples": len(examples),
              "added_examples": len(rows),
              "added_per_label": dict(zip(task.labels, torch.bincount(torch.tensor(picked_labels, dtype=torch.long),
                                                                      minlength=len(task.labels)).tolist()))}
    return examples, record, training_set_rows(task, examples, len(original), confidence)


def labellers_weights(previous: list[dict[str, Any]], chosen: list[int], method: str) -> EnsembleWeights:
    """The ensemble of the ``chosen`` teachers of the previous generation: each weighs what stage B would give it
    in the whole generation (so a supervised member's wmean weight is the mean of *all* its pattern teachers')."""
    raw = [None] * len(previous) if method == "mean" else member_weights(previous, method)
    return ensemble_weights([raw[k] for k in chosen], method, warn=False)


def choose_labellers(task: Task, spec: TeacherSpec | ClassifierSpec, previous: list[dict[str, Any]], generator: torch.Generator) -> list[int]:
    """Indices of a random share lambda of the previous generation's teachers, never the teacher's own identity."""
    others = [k for k, entry in enumerate(previous) if not is_self(entry, spec)]
    count = max(1, round(task.config.effective_ipet.teacher_fraction * len(others)))
    return sorted(others[i] for i in torch.randperm(len(others), generator=generator)[:count].tolist())


def draw_examples(task: Task, spec: TeacherSpec | ClassifierSpec, probs: torch.Tensor, zero_shot_start: bool,
                  distribution: LabelDistribution, generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """Unlabeled rows to add and the label each gets (their labels distributed as ``distribution`` says)."""
    candidates_per_label = task.config.effective_ipet.zero_shot_candidates
    prediction = probs.argmax(-1)
    picked_rows: list[torch.Tensor] = []
    picked_labels: list[int] = []
    for label, needed in enumerate(added_per_label(task, spec.generation, distribution)):
        if needed == 0:
            continue
        if zero_shot_start:
            candidates = torch.argsort(probs[:, label], descending=True, stable=True)[:candidates_per_label]
        else:
            candidates = (prediction == label).nonzero(as_tuple=True)[0]
            if len(candidates) == 0:
                log.warning("iPET generation %d, teacher %s: the ensemble assigns label '%s' to no unlabeled example; "
                            "drawing from the examples most likely to have it", spec.generation, spec.name, task.labels[label])
                candidates = torch.argsort(probs[:, label], descending=True, stable=True)[:candidates_per_label]
        rows = draw(candidates, probs[candidates, label], needed, generator)
        picked_rows.append(rows)
        picked_labels.extend([label] * len(rows))
    return (torch.cat(picked_rows) if picked_rows else torch.empty(0, dtype=torch.long)), picked_labels


def training_set_rows(task: Task, examples: Examples, labelled: int, confidence: list[float]) -> list[dict[str, Any]]:
    """The training set as data rows (the run's own columns) plus ``source`` and ``probability``."""
    data = task.config.data
    rows = []
    for i in range(len(examples)):
        row = {data.id_column: examples.ids[i]}
        for field, column in data.fields.items():
            row[column] = examples.fields[field][i]
        row[data.label_column] = task.labels[examples.labels[i]]
        row["source"] = "ipet" if i >= labelled else "labelled"
        row["probability"] = confidence[i - labelled] if i >= labelled else None
        rows.append(row)
    return rows


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


def score_unscored(task: Task, ctx: TeacherContext, output: Path, previous: list[dict[str, Any]]) -> None:
    """Give every teacher of the previous generation its unlabeled-set scores: a run's last generation keeps
    none, so when ``ipet.generations`` is raised its teachers are loaded and scored once, not retrained."""
    from pet.stages.teachers.load import TeacherSource

    source = TeacherSource(output, {p.id: p for p in task.patterns}, {v.id: v for v in task.verbalizers},
                           ctx.settings.max_length, ctx.device, ctx.runtime.trust_remote_code, tuple(task.labels))
    for index, entry in enumerate(previous):
        folder = output / entry["path"]
        if ctx.ranks.owner(index) == ctx.ranks.rank and not (folder / UNLABELED_LOGITS).exists():
            info(f"iPET: teacher {entry['path']} kept no scores on the unlabeled set (it was a last generation); scoring it")
            save_unlabeled_logits(folder, source.load(entry), ctx)
    ctx.ranks.barrier()


def check_ipet(task: Task) -> None:
    """An iPET asked for (ipet.generations set) with one teacher per generation is refused; pet's default
    falls back to plain PET before this (task.default_ipet_or_plain)."""
    if teachers_per_generation(task.config, len(task.patterns) * len(task.verbalizers)) < 2:
        raise PetError(f"{IPET_NEEDS_TWO}; use more patterns, verbalizers or teachers.seeds, or set "
                       "ipet.generations: 0 for plain PET")


def train_ipet(task: Task, ctx: TeacherContext, output: Path) -> dict[str, Any]:
    """Train every generation (skipping finished teachers); returns the stage manifest (not yet written)."""
    check_ipet(task)
    settings = task.config.effective_ipet
    zero_shot = task.config.teachers.zero_shot
    if zero_shot and len(task.train):
        log.warning("zero-shot iPET does not train on the %d labelled examples (they only weight generation 0's "
                    "ensemble); set teachers.zero_shot: false to use them", len(task.train))
    final = settings.count(len(task.train), zero_shot)  # before zero-shot iPET sets the labelled examples aside
    info(f"iPET generation 0 of {final}")
    first = [dataclasses.replace(job, path=f"g0/{job.path}", score_unlabeled=True)
             for job in task.jobs(ctx) + supervised_jobs(task.config, task.labels, ctx)]
    previous = record_member_weights(run_generation(first, ctx, output))
    cross_validation = None
    if task.config.labelling.ensemble == "cv":  # before any generation is labelled with these weights
        folds = configuration_folds(task.config, task.patterns, task.verbalizers, task.labels)
        cross_validation = cross_validate(folds, ctx, output)
        record_cv_accuracies(previous, cross_validation)
    if zero_shot:  # zero-shot iPET builds its training sets from nothing but the unlabeled set
        task = _without_labels(task)
        ctx = dataclasses.replace(ctx, labelled=task.train)
    distribution = decide_label_distribution(task, ctx, output, previous)
    generations: list[dict[str, Any]] = [{"generation": 0, "training_examples": len(task.train), "teachers": previous}]
    for generation in range(1, final + 1):
        jobs = generation_jobs(task, ctx, output, generation, previous, distribution, last=generation == final)
        size = generation_size(len(task.train), generation, settings.growth, settings.zero_shot_examples)
        info(f"iPET generation {generation} of {final}: {size} training examples per teacher")
        entries = record_member_weights(run_generation(jobs, ctx, output))
        if cross_validation is not None:
            record_cv_accuracies(entries, cross_validation)
        for entry in entries:
            entry["training_set"] = f"g{generation}/{TRAIN_SETS}/{entry['name']}.jsonl"
        generations.append({"generation": generation, "training_examples": size, "teachers": entries})
        previous = entries
    manifest = teachers_manifest(task, ctx, previous)
    if cross_validation is not None:
        add_cross_validation(manifest, cross_validation)
    manifest["zero_shot"] = zero_shot
    manifest["ipet"] = {"settings": settings.model_dump(mode="json"), "final_generation": final,
                        "label_distribution": distribution.record(), "generations": generations}
    return manifest


def generation_jobs(task: Task, ctx: TeacherContext, output: Path, generation: int,
                    previous: list[dict[str, Any]], distribution: LabelDistribution, *, last: bool) -> list[TeacherJob]:
    """The jobs of generation >= 1, with training sets built (and written) for the teachers not yet trained
    (the added examples' labels distributed as ``distribution`` says); the ``last`` generation's teachers do
    not score the unlabeled set (no generation learns from them)."""
    settings = task.config.effective_ipet
    prefix = f"g{generation}/"
    steps = settings.steps or task.config.teachers.steps
    specs = [*task.specs(generation, zero_shot=False), *member_specs(task.config, task.labels, generation)]
    pending = [s for s in specs if not (output / f"{prefix}{s.name}" / TEACHER_FILE).exists()]
    if pending:
        score_unscored(task, ctx, output, previous)
    logits = load_unlabeled_logits(output, previous) if pending else None
    jobs = []
    for index, spec in enumerate(specs):
        examples, extra = task.train, {}
        if spec in pending and ctx.ranks.owner(index) == ctx.ranks.rank:  # the rank that trains it builds its set
            zero_shot_start = task.config.teachers.zero_shot and generation == 1
            examples, record, rows = build_training_set(task, spec, previous, logits, zero_shot_start, distribution)
            relative = f"{prefix}{TRAIN_SETS}/{spec.name}.jsonl"
            write_jsonl_atomic(output / relative, rows)
            extra = {"training_set": relative, **record}
        jobs.append(TeacherJob(spec, f"{prefix}{spec.name}", examples, steps, score_unlabeled=not last, extra=extra))
    return jobs


def _without_labels(task: Task) -> Task:
    from pet.stages.teachers.task import empty_examples

    if not len(task.train):
        return task
    return dataclasses.replace(task, train=empty_examples(task.config))
