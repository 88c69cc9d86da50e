"""Cross-validated ensemble weights (``labelling.ensemble: cv``), computed in stage A.

PET's ``wmean`` weight, a teacher's accuracy on the labelled set *before* training, measures the
untrained model through the teacher's pattern and verbalizer; it means nothing for the supervised
member, whose classification head is new, and accuracy *after* training is measured on the examples
the teacher was trained on. Under ``cv`` each configuration (pattern x verbalizer, or the supervised
classifier) is trained k times (k = ``teachers.cv_folds``, 4): each time from the base model, on k - 1
folds of the labelled set, for ``teachers.steps`` steps with the teachers' own settings and loss
(auxiliary MLM loss included), then scored on the held-out fold. Its weight is the share of the
labelled examples that its held-out predictions got right (every example is held out exactly once),
and every seed of the configuration shares it. This costs k trainings per configuration on top of
the teachers themselves. Under iPET the configurations are cross-validated once, after generation 0,
with generation 0's recipe (training on the labelled set alone), and every generation's teachers of a
configuration share its weight: it weights the ensembles that label each next generation's training
sets and the final generation's ensemble in stage B. A configuration's later generations train on
pseudo-labels drawn by teachers that saw every labelled example, so cross-validating them honestly
would mean running the whole chain of generations once per fold: k times the cost of all of iPET.

Folds are stratified and the same for every configuration: each label's examples, shuffled by a
generator with a fixed seed, are dealt round-robin over the folds, one label after another, so the
folds' sizes differ by at most one and so do any label's counts in them. Each label needs at least k
examples (checked before any training), so that every fold holds one of each. A fold's model takes
its seed from ``<configuration>--cv<fold>``, never from a teacher's seed.

Each fold's result is written as ``cv/<configuration>--cv<fold>.json`` as soon as it is finished
(the held-out ids, the predicted labels, the number right, the losses), so an interrupted stage
resumes; the teachers manifest's ``cross_validation`` sums them up and each teacher entry gets its
configuration's ``cv_accuracy``. It is not written into the teachers' own ``teacher.json``: it belongs
to the configuration, not to one trained teacher, and adding cv to a finished run must leave every
trained teacher's folder untouched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from pet.core.classifier import CLASSIFIER, PATTERN, teacher_kind
from pet.core.progress import info
from pet.errors import PetError
from pet.io.artifacts import fingerprint_of, read_json, write_json_atomic
from pet.io.config import RunConfig
from pet.io.data import Examples
from pet.io.patterns import Pattern, Verbalizer
from pet.stages.teachers.context import TeacherContext
from pet.stages.teachers.specs import SUPERVISED, ClassifierSpec, FoldSpec, configuration, derive_seed
from pet.stages.teachers.supervised import LoadedClassifier, fit_classifier, member_spec, optim_settings

CV_DIR = "cv"
FOLD_SEED = "cv-folds"  # the folds' shuffle derives its seed from this, for every run and configuration


def check_settings(config: RunConfig) -> None:
    if config.labelling.ensemble == "cv":
        require_labelled_folds(config, "labelling.ensemble: cv", "weights teachers by cross-validation",
                               "use labelling.ensemble wmean or mean")


def require_labelled_folds(config: RunConfig, setting: str, does: str, instead: str) -> None:
    """A setting that trains on folds of the labelled set needs labelled examples, one label each
    (multi-label folds would need stratifying and scoring per class)."""
    if config.teachers.zero_shot:
        raise PetError(f"{setting} {does} on the labelled set, and teachers.zero_shot: true trains on none; {instead}")
    if config.task.multi_label:
        raise PetError(f"{setting} is not supported for multi-label tasks yet (its folds and scores are per class); {instead}")


def check_folds(config: RunConfig, labelled: Examples, labels: Sequence[str]) -> None:
    """Every label has at least teachers.cv_folds labelled examples, so that every fold holds each label."""
    if config.labelling.ensemble != "cv" and config.teachers.learning_rate != "cv":
        return
    folds = config.teachers.cv_folds
    counts = [list(labelled.labels or []).count(i) for i in range(len(labels))]
    fewest = min(range(len(labels)), key=counts.__getitem__)
    if counts[fewest] < folds:
        hint = f"set teachers.cv_folds to {counts[fewest]} or fewer" if counts[fewest] >= 2 else "add labelled examples"
        what = "labelling.ensemble cv" if config.labelling.ensemble == "cv" else "teachers.learning_rate cv"
        raise PetError(f"{config.data.train}: {what} splits the labelled set into teachers.cv_folds = {folds} "
                       f"folds, but label '{labels[fewest]}' has {counts[fewest]} example(s), so a fold would hold none; "
                       f"{hint}, or use {'labelling.ensemble wmean' if config.labelling.ensemble == 'cv' else 'teachers.learning_rate auto'}")


def fold_assignment(labels: Sequence[int], folds: int) -> list[int]:
    """The fold (0 .. folds - 1) of each labelled example: stratified, seeded, balanced (module docstring)."""
    generator = torch.Generator().manual_seed(derive_seed(FOLD_SEED))
    order: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, value in enumerate(labels) if value == label]
        order.extend(members[j] for j in torch.randperm(len(members), generator=generator).tolist())
    assignment = [0] * len(labels)
    for position, index in enumerate(order):
        assignment[index] = position % folds
    return assignment


def fold_specs(patterns: Sequence[Pattern], verbalizers: Sequence[Verbalizer], member: ClassifierSpec | None,
               folds: int) -> list[FoldSpec | ClassifierSpec]:
    """Every configuration x fold: the pattern x verbalizers, then the supervised member (if any)."""
    specs: list[FoldSpec | ClassifierSpec] = [FoldSpec(p, v, None, fold=f) for p in patterns for v in verbalizers for f in range(folds)]
    if member is not None:
        specs += [ClassifierSpec(member.labels, member.fields, None, fold=f) for f in range(folds)]
    return specs


def configuration_folds(config: RunConfig, patterns: Sequence[Pattern], verbalizers: Sequence[Verbalizer],
                        labels: Sequence[str]) -> list[FoldSpec | ClassifierSpec]:
    """A run's configurations x folds: its pattern x verbalizers, and the supervised member if it has one."""
    member = member_spec(config, labels, None) if config.teachers.supervised else None
    return fold_specs(patterns, verbalizers, member, config.teachers.cv_folds)


def cross_validate(specs: Sequence[FoldSpec | ClassifierSpec], ctx: TeacherContext, output: Path) -> dict[str, Any]:
    """Train and score every configuration x fold that is not finished yet; returns the manifest's ``cross_validation``.

    With several ranks (torchrun), each trains every world-th fold model, then all read every record.
    """
    folds = ctx.settings.cv_folds
    assignment = fold_assignment(ctx.labelled.labels, folds)
    for number, spec in enumerate(specs, start=1):
        if ctx.ranks.owner(number - 1) != ctx.ranks.rank:
            continue
        what = f"cross-validation {number}/{len(specs)} {spec.name}"
        if ctx.finished(fold_path(output, spec), fold_fingerprint(ctx, spec), what,
                        thing="cross-validation", made="computed", redo="recompute", done="scored") is None:
            run_fold(spec, ctx, output, assignment, what)
    ctx.ranks.barrier()
    records = [read_json(fold_path(output, spec), "cross-validation record") for spec in specs]
    return summary(records, folds, assignment)


def fold_path(output: Path, spec: FoldSpec | ClassifierSpec) -> Path:
    return output / CV_DIR / f"{spec.name}.json"


def fold_fingerprint(ctx: TeacherContext, spec: FoldSpec | ClassifierSpec) -> str:
    """What one fold model is made from: its configuration's teacher fingerprint (seedless), the folds, its fold."""
    return fingerprint_of({"configuration": ctx.fingerprint(spec), "cv_folds": ctx.settings.cv_folds, "fold": spec.fold})


def run_fold(spec: FoldSpec | ClassifierSpec, ctx: TeacherContext, output: Path, assignment: list[int], what: str) -> dict[str, Any]:
    """Train one configuration without fold ``spec.fold``, score that fold, write the record."""
    labelled = ctx.labelled
    held = [i for i, fold in enumerate(assignment) if fold == spec.fold]
    rest = [i for i, fold in enumerate(assignment) if fold != spec.fold]
    train_part, held_part = labelled.take(rest), labelled.take(held)
    info(f"{what}: training on {len(rest)} examples, scoring {len(held)} held out ({ctx.device})")
    started = time.perf_counter()
    if isinstance(spec, ClassifierSpec):
        loaded = LoadedClassifier(spec, ctx)
        losses, learning_rate = fit_classifier(loaded, spec, ctx, train_part, ctx.settings.steps)
    else:
        loaded, losses, learning_rate = fit_pattern(spec, ctx, train_part, ctx.settings.steps)
    predicted = ctx.score(loaded.scorer, loaded.encoder, held_part).argmax(-1).tolist()
    correct = sum(int(p == g) for p, g in zip(predicted, held_part.labels))
    labels = spec.labels if isinstance(spec, ClassifierSpec) else spec.verbalizer.labels
    record = {
        "name": spec.name,
        "configuration": configuration(spec),
        "kind": CLASSIFIER if isinstance(spec, ClassifierSpec) else PATTERN,
        "fold": spec.fold,
        "folds": ctx.settings.cv_folds,
        "fingerprint": fold_fingerprint(ctx, spec),
        "derived_seed": spec.derived_seed,
        "training_examples": len(rest),
        "held_out": len(held),
        "correct": correct,
        "accuracy": correct / len(held),
        "held_out_ids": held_part.ids,
        "predicted": [labels[p] for p in predicted],
        "learning_rate": learning_rate,
        "metrics": {"loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses),
                    "seconds": round(time.perf_counter() - started, 2), "losses": losses},
    }
    write_json_atomic(fold_path(output, spec), record)
    return record


def fit_pattern(spec: FoldSpec, ctx: TeacherContext, examples: Examples, steps: int):
    """A pattern teacher trained as stage A trains one (pet/stages/teachers/teacher.py), without saving it."""
    from pet.core.modeling import resolved_learning_rate
    from pet.core.training import train
    from pet.stages.teachers.teacher import LoadedScorer, step_loss_fn

    torch.manual_seed(spec.derived_seed)  # dropout and any newly initialised weights
    loaded = LoadedScorer(spec, ctx)
    learning_rate = resolved_learning_rate(ctx.settings.learning_rate, loaded.model)
    losses = train(loaded.model, step_loss_fn(loaded, ctx, spec, examples), optim_settings(ctx.settings, steps, learning_rate),
                   ctx.device, ctx.runtime.precision, f"cross-validation {spec.name}")
    return loaded, losses, learning_rate


def summary(records: list[dict[str, Any]], folds: int, assignment: list[int]) -> dict[str, Any]:
    """Per configuration: the examples its held-out predictions got right, of all labelled examples."""
    configurations: dict[str, dict[str, Any]] = {}
    for record in records:
        entry = configurations.setdefault(record["configuration"], {"correct": 0, "examples": 0, "fold_accuracies": []})
        entry["correct"] += record["correct"]
        entry["examples"] += record["held_out"]
        entry["fold_accuracies"].append(record["accuracy"])
    for entry in configurations.values():
        entry["accuracy"] = entry["correct"] / entry["examples"]
    return {"folds": folds, "fold_sizes": [assignment.count(f) for f in range(folds)], "records": CV_DIR,
            "configurations": configurations}


def entry_configuration(entry: dict[str, Any]) -> str:
    """The configuration of a teachers-manifest entry (as :func:`pet.stages.teachers.specs.configuration`)."""
    return SUPERVISED if teacher_kind(entry) == CLASSIFIER else f"{entry['pattern']}--{entry['verbalizer']}"


def record_cv_accuracies(entries: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Write into each teacher entry its configuration's cross-validated accuracy, as ``cv_accuracy``."""
    for entry in entries:
        entry["cv_accuracy"] = result["configurations"][entry_configuration(entry)]["accuracy"]
    return entries


def add_cross_validation(manifest: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Record ``result`` in the teachers manifest, and each teacher's configuration's accuracy as its ``cv_accuracy``."""
    manifest["cross_validation"] = result
    record_cv_accuracies(manifest["teachers"], result)
    return manifest
