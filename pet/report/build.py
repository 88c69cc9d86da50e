"""`pet report RUN`: RUN/report/index.html and its PNG figures, from a finished run folder.

collect.py reads the run (and scores the test set), plots.py draws, page.py writes HTML; this
module decides what goes where. The folder is written through a temporary sibling and renamed, so
RUN/report is always one whole report.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from pet.core.classifier import PATTERN, teacher_kind
from pet.errors import PetError
from pet.io.artifacts import atomic_dir
from pet.io.lock import writing
from pet.report.collect import RunData, collect
from pet.report.page import (
    Formatted,
    document,
    image,
    key_values,
    notes,
    side_by_side,
    table,
)
from pet.report.plots import (
    draw_confusion,
    draw_losses,
    draw_per_label_f1,
    draw_reliability,
    draw_soft_labels,
    draw_teacher_accuracy,
    share,
)

REPORT = "report"
INDEX = "index.html"
MATPLOTLIB_MISSING = "pet report needs matplotlib: pip install 'pet-fewshot[report]'"


@dataclass
class Scored:
    """One model on the test set: its name, logits and the temperature its probabilities use."""

    name: str
    logits: np.ndarray  # [N, C]
    temperature: float = 1.0


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:  # only checked here: plots.py imports what it draws with
        raise PetError(MATPLOTLIB_MISSING)


def write_report(run: Path) -> Path:
    """Write RUN/report (index.html + PNGs) and return the path of index.html."""
    require_matplotlib()
    data = collect(run)
    with writing(run / REPORT, "pet report", beside=True), atomic_dir(run / REPORT) as folder:
        sections = [("Run", run_section(data)), ("Teachers", teachers_section(data, folder)),
                    ("Soft labels", soft_labels_section(data, folder)), ("Test set", test_section(data, folder)),
                    ("Training losses", losses_section(data, folder)), ("Notes", notes(data.notes))]
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        version = data.teachers.get("versions", {}).get("pet", "?")
        html = document(f"PET run report: {run.name}", f"{run.resolve()} · written {stamp} · pet {version}", sections)
        (folder / INDEX).write_text(html, encoding="utf-8")
    return run / REPORT / INDEX


# --- run: config and timings -------------------------------------------------------------------------

def student_class_weights(data: RunData) -> str:
    """What distillation.class_weights came to for the trained student (auto: which way, and why), else the setting."""
    from pet.stages.distillation.balance import ClassWeightsChoice

    record = (data.student or {}).get("class_weights")
    if not isinstance(record, dict):  # no student yet, or one from before the record
        return str(data.config.distillation.class_weights)
    return ClassWeightsChoice(record.get("setting", "?"), record.get("used", "?"), record.get("largest_weight")).describe()


def ipet_label_distribution(teachers: dict[str, Any]) -> list[tuple[str, Any]]:
    """The config row of iPET's added labels (auto: which way, and why); none without iPET or before the record."""
    from pet.stages.teachers.ipet import LabelDistribution

    record = teachers.get("ipet", {}).get("label_distribution")
    if not isinstance(record, dict):
        return []
    counts = record.get("predicted_label_counts")
    choice = LabelDistribution(record.get("setting", "?"), record.get("used", "?"), counts if isinstance(counts, dict) else {})
    return [("iPET added labels", choice.describe())]


def student_rate(data: RunData) -> str:
    """The student's learning-rate setting, and with the search the rate it kept and each rate's labelled accuracy."""
    search = (data.student or {}).get("learning_rate_search")
    if not search:
        return str(data.config.distillation.learning_rate)
    tried = ", ".join(f"{rate}: {accuracy:.2f}" for rate, accuracy in search["accuracy"].items())
    return f"search -> {search['chosen']:g} (accuracy on the {search['labelled_examples']} labelled examples: {tried})"


def run_section(data: RunData) -> str:
    c, t = data.config, data.teachers
    patterns = "; ".join(f"{p['id']}: {p['template']}" for p in t["patterns"])
    verbalizers = "; ".join(f"{v['id']}: " + ", ".join(f"{label}={'/'.join(words)}" for label, words in v["words"].items())
                            for v in t["verbalizers"])
    pairs = [
        ("model", c.model), *adaptation_pairs(data.adaptation), ("labels", ", ".join(data.labels)), ("patterns", patterns), ("verbalizers", verbalizers),
        ("teachers", f"{len(t['teachers'])} (seeds {c.teachers.seeds}; " + ("zero-shot" if t.get("zero_shot") else
                     f"{c.teachers.steps} steps, batch {c.teachers.batch_size}, lr {c.teachers.learning_rate}, mlm_weight {c.teachers.mlm_weight:g}") + ")"),
        *([("supervised member", f"fine-tuned from {c.teachers.supervised_model or c.model}")] if c.teachers.supervised else []),
        ("iPET generations", t.get("ipet", {}).get("final_generation", c.effective_ipet.generations)),  # auto: as resolved
        *ipet_label_distribution(t),
        ("ensemble", (data.soft or {}).get("ensemble", c.labelling.ensemble)),
        ("labelling temperature T", c.labelling.temperature),
        ("student", f"{c.distillation.model or c.model}: {c.distillation.steps} steps, batch {c.distillation.batch_size}, "
                    f"lr {student_rate(data)}, gold_weight {c.distillation.gold_weight:g}, class_weights {student_class_weights(data)}"),
        ("labelled set (data.train)", f"{c.data.train} ({t.get('labelled_examples', '?')} examples)" if c.data.train else "none"),
        ("unlabeled set", f"{c.data.unlabeled}" + (f" ({data.soft['statistics']['examples']} soft labels)" if data.soft else "")),
        ("test set (data.test)", f"{c.data.test} ({len(data.test.gold)} examples)" if data.test else (c.data.test or "none")),
        ("runtime", f"device {c.runtime.device}, precision {c.runtime.precision}"),
    ]
    return side_by_side("<h3>Config</h3>" + key_values(pairs), "<h3>Timings</h3>" + timings_table(data))


def adaptation_pairs(record: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The config rows of a model `pet adapt` wrote: what it was adapted from, how, and its MLM loss."""
    if not record:  # not adapted (None), or an adapt.json that is not a record ({})
        return []
    settings, loss = record.get("settings", {}), record.get("loss", {})
    how = (f"from {record.get('base_model', '?')}: {settings.get('steps', '?')} MLM steps on {record.get('unlabeled_examples', '?')} "
           f"{record.get('text', 'plain')} unlabeled texts, lr {settings.get('learning_rate', '?')}, seed {settings.get('seed', '?')}")
    pairs: list[tuple[str, Any]] = [("adapted (pet adapt)", how)]
    if "first" in loss and "last" in loss:
        pairs.append(("adaptation MLM loss", f"{loss['first']:.3f} -> {loss['last']:.3f} (mean of the first / last {loss.get('window', '?')} steps)"))
    return pairs


def timings_table(data: RunData) -> str:
    seconds = [e.get("metrics", {}).get("seconds") for e in data.teachers["teachers"]]
    rows = [[f"teacher {e['name']}", s] for e, s in zip(data.teachers["teachers"], seconds)]
    student = (data.student or {}).get("metrics", {}).get("seconds")
    adaptation = (data.adaptation or {}).get("seconds")
    teacher_total = sum(s or 0.0 for s in seconds)
    rows = ([["adaptation (pet adapt)", adaptation]] if data.adaptation else []) + rows
    rows += [["all teachers (stage A training)", teacher_total], ["student (stage C training)", student],
             ["total", (adaptation or 0.0) + teacher_total + (student or 0.0)]]
    # Seconds to 0.01 s (as the manifests record them), not the page's 4 decimals for metrics.
    rows = [[what, None if s is None else Formatted(f"{s:.2f}")] for what, s in rows]
    return table(["what", "seconds"], rows, "timings") + \
        '<p class="legend">Training time as each stage measured it; loading, scoring (stage B) and saving are not included.</p>'


# --- teachers ------------------------------------------------------------------------------------------

def teachers_section(data: RunData, folder: Path) -> str:
    entries = data.teachers["teachers"]
    normalised = (data.soft or {}).get("weights")
    test = (data.soft or {}).get("test", {})
    rows, before, after, test_accuracy = [], [], [], []
    for k, (entry, record) in enumerate(zip(entries, data.records)):
        metrics = record.get("metrics", {})
        accuracy = (test.get("teachers_metrics", {}).get(entry["name"], {}).get("micro_f1") if data.multi_label
                    else test.get("teachers", {}).get(entry["name"]))
        ece = test.get("teachers_calibration", {}).get(entry["name"], {}).get("ece")
        before.append(metrics.get("train_accuracy_before"))
        after.append(metrics.get("train_accuracy_after"))
        test_accuracy.append(accuracy)
        pattern = entry["pattern"] if teacher_kind(entry) == PATTERN else "(supervised classifier)"
        rows.append([entry["name"], pattern, entry["verbalizer"], entry["seed"], entry.get("generation", 0),
                     entry.get("weight"), None if normalised is None else normalised[k], before[-1], after[-1], accuracy, ece,
                     entry.get("cv_accuracy")])
    figure_name = "micro-F1" if data.multi_label else "acc."
    header = ["teacher", "pattern", "verbalizer", "seed", "generation", "weight", "normalised weight",
              f"labelled {figure_name} before", f"labelled {figure_name} after",
              "test micro-F1" if data.multi_label else "test accuracy", "test ECE", "cv accuracy"]
    figure = draw_teacher_accuracy(folder / "teachers.png", [e["name"] for e in entries], before, after, test_accuracy,
                                   "micro-F1" if data.multi_label else "accuracy")
    measured = ("micro-F1 of its yes/no decisions (multi-label)" if data.multi_label else "accuracy")
    legend = (f"<p class=\"legend\">weight: the teacher's {measured} on the labelled set before training (PET's wmean weight; "
              "the supervised classifier's: the pattern teachers' mean); cv accuracy: its configuration's cross-validated accuracy "
              "(labelling.ensemble cv); normalised weight: as stage B used it (none for the uniform mean). "
              "Test figures and ECE from the labels manifest.</p>")
    return table(header, rows, "teachers", [e["name"] for e in entries]) + legend + image(figure, "teacher accuracy")


# --- soft labels ----------------------------------------------------------------------------------------

def soft_labels_section(data: RunData, folder: Path) -> str:
    if data.soft is None or data.soft_rows is None:
        return notes(["stage B has not run: no soft labels"])
    stats, rows = data.soft["statistics"], data.soft_rows
    if data.multi_label:  # each row's label is a list: count the rows that carry each label
        predicted = [sum(label in row for row in rows["label"]) for label in data.labels]
    else:
        predicted = [int(np.sum(rows["label"] == label)) for label in data.labels]
    labelled = None if data.train_counts is None else [data.train_counts[label] for label in data.labels]
    confidence = float(rows["confidence"].mean()) if len(rows["confidence"]) else None
    summary = key_values([("soft labels", stats["examples"]), ("temperature T", data.soft["temperature"]),
                          ("mean confidence", four(confidence)), ("mean agreement", four(stats["mean_agreement"])),
                          ("mean entropy (nats)", four(stats["mean_entropy"]))])
    if data.multi_label:  # a row can carry several labels: the share of rows that carry each one
        total_labelled = int(data.teachers.get("labelled_examples") or 0)
        predicted_share = np.asarray(predicted, dtype=np.float64) / max(len(rows["label"]), 1)
        labelled_share = None if labelled is None else np.asarray(labelled, dtype=np.float64) / max(total_labelled, 1)
        shares = ("share of texts", "share of examples")
    else:
        predicted_share, labelled_share = share(predicted), None if labelled is None else share(labelled)
        shares = ("share", "share")
    distribution = table(
        ["label", "predicted (soft labels)", shares[0], "labelled set (gold)", shares[1]],
        [[label, predicted[i], float(predicted_share[i]),
          None if labelled is None else labelled[i], None if labelled is None else float(labelled_share[i])]
         for i, label in enumerate(data.labels)], "distribution", data.labels)
    figure = draw_soft_labels(folder / "soft_labels.png", rows["confidence"], rows["agreement"], data.labels,
                               predicted_share, labelled_share, len(data.teachers["teachers"]), data.multi_label)
    return side_by_side(summary, distribution) + image(figure, "soft labels")


def four(value: float | None) -> str | None:
    """A metric as the page's tables print it (4 decimals)."""
    return None if value is None else f"{value:.4f}"


# --- test set: metrics, reliability, confusion -------------------------------------------------------------

def scored_models(data: RunData) -> list[Scored]:
    """Each teacher, the ensemble at T = 1 and at the labelling temperature, and the student."""
    test = data.test
    models = [Scored(e["name"], test.teachers[k]) for k, e in enumerate(data.teachers["teachers"])]
    method = (data.soft or {}).get("ensemble", data.config.labelling.ensemble)
    temperature = float((data.soft or {}).get("temperature", data.config.labelling.temperature))
    models.append(Scored(f"ensemble ({method}), T=1", test.ensemble))
    models.append(Scored(f"ensemble ({method}), T={temperature:g} (soft labels)", test.ensemble, temperature))
    if test.student is not None:
        models.append(Scored("student", test.student))
    return models


def test_section(data: RunData, folder: Path) -> str:
    if data.test is None:
        return notes(["no test set: " + ("data.test is not set in the run config" if data.config.data.test is None
                                              else "it could not be scored (see Notes)")])
    if data.multi_label:
        return multi_label_test_section(data, folder)
    import torch

    from pet.core.calibration import prediction_metrics, reliability_bins

    gold, models = data.test.gold.tolist(), scored_models(data)
    rows, panels, matrices = [], [], []
    for model in models:
        logits = torch.from_numpy(model.logits).double() / model.temperature
        m = prediction_metrics(gold, logits, data.labels)
        rows.append([model.name, m["accuracy"], m["macro_f1"], m["ece"], m["brier"], m["nll"], m["examples"]])
        panels.append((model.name, reliability_bins(torch.softmax(logits, -1), gold), m["ece"]))
        if model.temperature == 1.0:  # dividing by T never changes a prediction: one matrix per model
            matrices.append((model.name, confusion_matrix(gold, model.logits.argmax(-1), len(data.labels))))
    metrics = table(["model", "accuracy", "macro-F1", "ECE", "Brier", "NLL", "examples"], rows, "test", [m.name for m in models])
    legend = (f"<p class=\"legend\">Scored afresh on {escape(str(data.test.path))} with the stored models. "
              "ECE: 15 equal-width confidence bins; Brier: mean over examples of sum over classes (p_c - y_c)^2 (0 best, 2 worst); "
              "NLL: mean -log softmax(z / T)_y. The ensemble's soft labels use the labelling (distillation) temperature; "
              "T=1 is its plain logits.</p>")
    reliability = draw_reliability(folder / "reliability.png", panels)
    confusion = draw_confusion(folder / "confusion.png", matrices, data.labels)
    return (metrics + legend + "<h3>Reliability diagrams</h3>" + image(reliability, "reliability diagrams")
            + "<h3>Confusion matrices</h3>" + image(confusion, "confusion matrices"))


def multi_label_test_section(data: RunData, folder: Path) -> str:
    """Multi-label runs: subset accuracy, micro-/macro-F1 and calibration of every model, reliability
    diagrams over all (example, label) decisions, and per-label F1 bars instead of confusion matrices."""
    import torch

    from pet.core.calibration import decision_view, prediction_metrics, reliability_bins

    gold, models, threshold = data.test.gold.tolist(), scored_models(data), data.config.task.threshold
    rows, panels, per_label = [], [], []
    for model in models:
        logits = torch.from_numpy(model.logits).double() / model.temperature
        m = prediction_metrics(gold, logits, data.labels, threshold)
        rows.append([model.name, m["subset_accuracy"], m["micro_f1"], m["macro_f1"], m["ece"], m["brier"], m["nll"], m["examples"]])
        decisions, answers = decision_view(logits, gold)
        panels.append((model.name, reliability_bins(torch.softmax(decisions, -1), answers), m["ece"]))
        if model.temperature == 1.0:
            per_label.append((model.name, [m["per_label_f1"][label] for label in data.labels]))
    metrics = table(["model", "subset accuracy", "micro-F1", "macro-F1", "ECE", "Brier", "NLL", "examples"], rows, "test",
                    [m.name for m in models])
    legend = (f"<p class=\"legend\">Scored afresh on {escape(str(data.test.path))} with the stored models; a label is predicted "
              f"when sigmoid(d / T) is at least {threshold:g}. Subset accuracy: every label of an example right. ECE: 15 "
              "equal-width bins of the confidence of every (example, label) decision; Brier: mean over decisions of (p - y)^2 "
              "(0 best, 1 worst); NLL: mean binary cross-entropy per decision.</p>")
    reliability = draw_reliability(folder / "reliability.png", panels)
    bars = draw_per_label_f1(folder / "per_label_f1.png", per_label, data.labels)
    return (metrics + legend + "<h3>Reliability diagrams (every example x label decision)</h3>" + image(reliability, "reliability diagrams")
            + "<h3>Per-label F1</h3>" + image(bars, "per-label F1"))


def confusion_matrix(gold: list[int], predicted: np.ndarray, classes: int) -> np.ndarray:
    """[C, C] counts: row = gold class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(gold), np.asarray(predicted)), 1)
    return matrix


# --- losses -----------------------------------------------------------------------------------------------

def losses_section(data: RunData, folder: Path) -> str:
    teachers = [(record["name"], list(record.get("metrics", {}).get("losses", []))) for record in data.records]
    student: list[float] | None = None
    if data.student is not None:
        student = list(data.student.get("metrics", {}).get("losses", []))  # empty: a run from before losses were kept
    figure = draw_losses(folder / "losses.png", teachers, student)
    return image(figure, "training losses") + \
        '<p class="legend">Loss per optimiser step as training recorded it: teachers (1 - a) CE + a MLM, student KL x T^2 (+ gold_weight x CE).</p>'

