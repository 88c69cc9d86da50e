"""What the Python API returns: typed views of finished stage folders, reopened from disk at any time.

Each object carries its folder and manifest; nothing is held that the folder does not also say, so
``pet.Teachers.load("runs/x/teachers")`` in a new session gives the same object a run returned.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pet.io.artifacts import read_manifest
from pet.io.config import RunConfig, config_from_json
from pet.io.patterns import MultiLabelVerbalizer, Pattern, Verbalizer, pattern_from_json, verbalizer_from_json


@dataclass(frozen=True)
class Prediction:
    label: str | None  # the top label; None for a multi-label task (see ``labels``)
    probs: dict[str, float]
    labels: tuple[str, ...] | None = None  # multi-label tasks: every label whose probability reaches task.threshold


class StageResult:
    """A finished stage folder: ``path``, its ``manifest`` and the ``config`` of the run that made it."""

    stage = ""

    def __init__(self, path: str | Path, manifest: dict[str, Any] | None = None):
        self.path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path, self.stage)

    @classmethod
    def load(cls, path: str | Path):
        """Reopen a finished folder (a PetError if it is not one, or not finished)."""
        return cls(path)

    @property
    def config(self) -> RunConfig:
        return config_from_json(self.manifest["config"], source=str(self.path / "manifest.json"))

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def test_metrics(self) -> dict[str, Any] | None:
        """Metrics on ``data.test``, when the run had a test set."""
        return self.manifest.get("test")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class Predictor(StageResult):
    """A folder that classifies new text: a student, or a teachers folder (their ensemble)."""

    def predict_proba(self, data: Any) -> np.ndarray:
        """[N, C] probabilities (columns in ``labels`` order) for texts, rows, a DataFrame, a Dataset or a file
        (multi-label tasks: independent per-label probabilities, rows need not sum to 1)."""
        from pet.evaluation import ModelFolder, predicted_probs, read_unlabelled

        folder = ModelFolder(self.path, self.stage, self.manifest, self.config)  # the manifest this object already read
        with as_data_file(data, self.config, "prediction") as path:
            examples = read_unlabelled(folder, path)
        return predicted_probs(folder, examples).numpy()

    def predict(self, data: Any) -> list[Prediction]:
        """The predicted label (multi-label: labels) and the probability of each label, per example."""
        labels, task = self.labels, self.config.task
        if task.multi_label:
            return [Prediction(None, dict(zip(labels, map(float, row))), tuple(l for l, p in zip(labels, row) if p >= task.threshold))
                    for row in self.predict_proba(data)]
        return [Prediction(labels[int(row.argmax())], dict(zip(labels, map(float, row)))) for row in self.predict_proba(data)]

    def evaluate(self, data: Any) -> dict[str, Any]:
        """Accuracy and macro-F1 on labelled data (for teachers: per teacher and for the ensemble)."""
        return self._evaluate(data)

    def _evaluate(self, data: Any, **options: Any) -> dict[str, Any]:
        from pet.evaluation import evaluate

        with as_data_file(data, self.config, "evaluation") as path:
            result = evaluate(self.path, path, **options)
        if not isinstance(data, (str, Path)):
            result["data"] = f"{type(data).__name__} of {len(data)} rows"  # the temporary file is gone
        return result


class Teachers(Predictor):
    """Stage A's output (RUN/teachers)."""

    stage = "teachers"

    @property
    def entries(self) -> list[dict[str, Any]]:
        """One entry per teacher: name, path, kind (pattern, or classifier for the supervised member), pattern,
        verbalizer, seed, weight, cv_accuracy and metrics."""
        return list(self.manifest["teachers"])

    @property
    def patterns(self) -> list[Pattern]:
        return [pattern_from_json(p) for p in self.manifest["patterns"]]

    @property
    def verbalizers(self) -> list[Verbalizer] | list[MultiLabelVerbalizer]:
        return [verbalizer_from_json(v) for v in self.manifest["verbalizers"]]

    def __len__(self) -> int:
        return len(self.manifest["teachers"])

    def evaluate(self, data: Any, generation: int | None = None) -> dict[str, Any]:
        """Accuracy and macro-F1 on labelled data, per teacher and for the ensemble; ``generation``: an iPET
        run's generation to measure (0 = plain PET's teachers) instead of the last, which stage B labels with."""
        return self._evaluate(data, generation=generation)


class SoftLabels(StageResult):
    """Stage B's output (RUN/labels): the ensemble's soft labels on the unlabeled set."""

    stage = "labels"

    def _table(self):
        import pyarrow.parquet as pq

        from pet.stages.labelling.soft_labels import read_soft_labels

        read_soft_labels(self.path, self.manifest, [])  # one-line errors for a missing or corrupted file
        return pq.read_table(str(self.path / self.manifest["soft_labels"]))

    @property
    def probs(self) -> np.ndarray:
        """[N, C] ensemble probabilities at the labelling temperature (columns in ``labels`` order)."""
        from pet.stages.labelling.soft_labels import read_soft_labels

        return read_soft_labels(self.path, self.manifest, [])[2]

    @property
    def ids(self) -> list[str]:
        return self._table().column("id").to_pylist()

    @property
    def teacher_logits(self) -> np.ndarray:
        """[N, K, C] class logits of each teacher (in ``manifest['teachers']`` order)."""
        column = self._table().column("teacher_logits").combine_chunks()
        teachers, classes = len(self.manifest["teachers"]), len(self.labels)
        return column.flatten().flatten().to_numpy().reshape(len(column), teachers, classes)

    def to_pandas(self):
        """Every column of the soft-label file as a DataFrame (needs pandas)."""
        return self._table().to_pandas()

    def __len__(self) -> int:
        return int(self.manifest["statistics"]["examples"])


class Student(Predictor):
    """Stage C's output (RUN/student): a plain transformers sequence classifier with its manifest."""

    stage = "student"


class Run:
    """A run folder with its three stages (RUN/teachers, RUN/labels, RUN/student)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.teachers = Teachers(self.path / "teachers")
        self.soft_labels = SoftLabels(self.path / "labels")
        self.student = Student(self.path / "student")

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        return cls(path)

    @property
    def adapted(self) -> Path | None:
        """RUN/adapted, the masked LM every stage started from, when the run adapted one (adapt.enabled)."""
        from pet.io.artifacts import ADAPT_RECORD

        folder = self.path / "adapted"
        return folder if (folder / ADAPT_RECORD).is_file() else None

    @property
    def adapt_decision(self) -> dict[str, Any] | None:
        """What ``adapt.enabled: auto`` measured and decided (RUN/adapt-decision.json); None under true or false."""
        from pet.io.artifacts import ADAPT_DECISION

        path = self.path / ADAPT_DECISION
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def summary(self) -> dict[str, Any]:
        adapted = self.adapted
        return {
            "run": str(self.path),
            "adapted": None if adapted is None else str(adapted),
            "adapt_decision": self.adapt_decision,
            "teachers": len(self.teachers),
            "soft_labels": len(self.soft_labels),
            "ensemble_test": (self.soft_labels.test_metrics or {}).get("ensemble"),
            "student_test": self.student.test_metrics,
        }

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


class as_data_file:
    """A context giving a file for ``data``: the path itself, or the rows written to a temporary file."""

    def __init__(self, data: Any, config: RunConfig, role: str):
        self.data, self.config, self.role, self.tmp = data, config, role, None

    def __enter__(self) -> Path:
        from pet.io.inputs import InputWriter, data_file

        if isinstance(self.data, (str, Path)):
            return Path(self.data)
        self.tmp = tempfile.TemporaryDirectory(prefix="pet-data-")
        text_column = next(iter(self.config.data.fields.values()))
        return data_file(self.data, self.role, InputWriter(Path(self.tmp.name)), text_column)

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()

