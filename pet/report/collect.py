"""Everything `pet report` shows, read from a run folder (and, for the test set, scored afresh).

The manifests hold the numbers each stage measured; what they do not hold is per-example test-set
probabilities (soft_labels.parquet covers only the unlabeled rows), so reliability diagrams and
confusion matrices come from scoring data.test with the stored teachers and student, exactly as
`pet evaluate` does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pet.errors import PetError
from pet.io.artifacts import MANIFEST, adapt_record, read_json, read_manifest
from pet.io.config import RunConfig, config_from_json


@dataclass
class TestScores:
    """Class logits on data.test: [K, N, C] per teacher, [N, C] for the ensemble and the student
    (multi-label: decision logits [.., N, L], and ``gold`` an object array of label-set tuples)."""

    path: Path
    gold: np.ndarray
    teachers: np.ndarray | None = None
    ensemble: np.ndarray | None = None
    student: np.ndarray | None = None


@dataclass
class RunData:
    run: Path
    config: RunConfig  # the latest stage's config: it includes every override the later stages took
    labels: list[str]
    teachers: dict[str, Any]  # RUN/teachers/manifest.json
    records: list[dict[str, Any]]  # each teacher's teacher.json, in manifest order
    soft: dict[str, Any] | None = None  # RUN/labels/manifest.json
    soft_rows: dict[str, np.ndarray] | None = None  # confidence, agreement, label of each soft label
    student: dict[str, Any] | None = None  # RUN/student/manifest.json
    adaptation: dict[str, Any] | None = None  # the model folder's adapt.json, when pet adapt wrote the model
    train_counts: dict[str, int] | None = None  # gold label counts of data.train
    test: TestScores | None = None
    notes: list[str] = field(default_factory=list)  # what could not be shown, and why

    @property
    def multi_label(self) -> bool:
        return self.config.task.multi_label


def finished(folder: Path, stage: str) -> dict[str, Any] | None:
    """The manifest of a finished stage, or None when the stage has not run (yet)."""
    return read_manifest(folder, stage) if (folder / MANIFEST).exists() else None


def collect(run: Path) -> RunData:
    """Read a run folder; RUN/teachers must be finished, RUN/labels and RUN/student are optional."""
    teachers = finished(run / "teachers", "teachers")
    if teachers is None:
        raise PetError(f"{run}: no finished teachers stage ({run / 'teachers' / MANIFEST}); pass a folder written by pet run")
    soft, student = finished(run / "labels", "labels"), finished(run / "student", "student")
    latest = student or soft or teachers
    data = RunData(run, config_from_json(latest["config"]), list(teachers["labels"]), teachers,
                   [read_json(run / "teachers" / e["path"] / "teacher.json", "teacher record") for e in teachers["teachers"]],
                   soft=soft, student=student)
    data.adaptation = adapt_record(teachers["config"]["model"])  # when pet adapt (or adapt.enabled) wrote the model
    if soft is None:
        data.notes.append("stage B (labelling) has not run: no soft labels or ensemble test metrics")
    else:
        data.soft_rows = read_soft_rows(run / "labels" / soft["soft_labels"])
    if student is None:
        data.notes.append("stage C (distillation) has not run: no student")
    data.train_counts = optional(data, "labelled set", lambda: train_label_counts(data.config, data.labels))
    if data.config.data.test is None:
        data.notes.append("no test set (data.test is not set): no test metrics, reliability diagrams or confusion matrices")
    else:
        data.test = optional(data, "test set", lambda: score_test_set(data))
    return data


def optional(data: RunData, what: str, read):
    """A part of the page that may fail (a data file moved since the run): note why, show the rest."""
    try:
        return read()
    except PetError as err:
        data.notes.append(f"{what} not shown: {err}")
        return None


def read_soft_rows(path: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(str(path), columns=["label", "confidence", "agreement"]).to_pydict()
    # a multi-label run's label column holds a list of labels per row
    labels = np.empty(len(table["label"]), dtype=object)
    labels[:] = table["label"]
    return {"label": labels,
            "confidence": np.asarray(table["confidence"], dtype=np.float64),
            "agreement": np.asarray(table["agreement"], dtype=np.float64)}


def train_label_counts(config: RunConfig, labels: list[str]) -> dict[str, int] | None:
    """How often each label occurs in data.train, the labelled set (None without one)."""
    from pet.io.data import open_table

    if config.data.train is None:
        return None
    examples = open_table(config, config.data.train, "labelled", tuple(labels), labelled=True).read_all()
    if examples.label_sets is not None:  # multi-label: examples that carry each label
        counts = Counter(index for label_set in examples.label_sets for index in label_set)
    else:
        counts = Counter(examples.labels)
    return {label: counts.get(i, 0) for i, label in enumerate(labels)}


def gold_array(gold: list) -> np.ndarray:
    """Class indices as an int array; multi-label label sets as an object array of tuples (``tolist`` gives them back)."""
    if gold and isinstance(gold[0], tuple):
        out = np.empty(len(gold), dtype=object)
        out[:] = gold
        return out
    return np.asarray(gold)


def score_test_set(data: RunData) -> TestScores:
    """Test-set logits of every teacher, their ensemble (as stage B combined them) and the student."""
    from pet.evaluation import read_examples, student_logits, teachers_ensemble, teachers_logits

    config = config_from_json((data.soft or data.teachers)["config"])  # the settings stage B scored with
    examples = read_examples(config, config.data.test, data.labels, labelled=True)
    scores = TestScores(config.data.test, gold_array(examples.gold))
    logits = teachers_logits(data.run / "teachers", data.teachers, config, examples)
    scores.teachers = logits.detach().float().numpy()
    scores.ensemble = teachers_ensemble(data.teachers, config).combine(logits).detach().float().numpy()
    if data.student is not None:
        student_config = config_from_json(data.student["config"])
        scores.student = student_logits(data.run / "student", data.student, student_config, examples).detach().float().numpy()
    return scores
