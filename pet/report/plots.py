"""The figures of `pet report`, drawn with matplotlib's Agg canvas into PNG files.

Figures are built as ``matplotlib.figure.Figure`` objects on an explicit Agg canvas, never through
pyplot: no global figure state, no GUI backend, and nothing to close afterwards.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DPI = 100
COLUMNS = 4  # panels per row in the per-model grids
BLUE, ORANGE, GREEN, GREY = "#4C72B0", "#DD8452", "#55A868", "#8C8C8C"


def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> str:
    fig.savefig(path, format="png", dpi=DPI)
    return path.name


def grid(count: int, panel: float = 3.2):
    """A figure with ``count`` square-ish panels, COLUMNS per row; unused panels are hidden."""
    rows, cols = math.ceil(count / COLUMNS), min(count, COLUMNS)
    fig = figure(panel * cols, panel * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def draw_teacher_accuracy(path: Path, names: list[str], before: list[float | None], after: list[float | None],
                     test: list[float | None], metric: str = "accuracy") -> str:
    """Grouped bars: each teacher's labelled-set accuracy before and after training, and on the test set."""
    fig = figure(max(6.0, 1.3 * len(names) + 2), 3.2)
    ax = fig.subplots()
    x = np.arange(len(names))
    for offset, values, label, colour in ((-0.27, before, "labelled, before training (= wmean weight)", GREY),
                                          (0.0, after, "labelled, after training", BLUE), (0.27, test, "test", ORANGE)):
        heights = [np.nan if v is None else v for v in values]
        if not all(np.isnan(heights)):
            ax.bar(x + offset, heights, 0.27, label=label, color=colour)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric)
    fig.legend(fontsize=8, loc="outside upper center", ncol=3, frameon=False)
    return save(fig, path)


def draw_soft_labels(path: Path, confidence: np.ndarray, agreement: np.ndarray, labels: list[str],
                predicted: Sequence[float], labelled: Sequence[float] | None, teachers: int, multi_label: bool = False) -> str:
    """Three panels: soft-label confidence, teacher agreement, and the predicted vs labelled label
    shares (``predicted``/``labelled``: shares already computed; multi-label: of texts carrying each label)."""
    fig = figure(12.0, 3.4)
    ax_conf, ax_agree, ax_labels = fig.subplots(1, 3)
    ax_conf.hist(confidence, bins=20, range=(0, 1), color=BLUE)
    title = "confidence: mean of max(p, 1 - p) over labels" if multi_label else "confidence: max of the soft label"
    ax_conf.set(title=title, xlabel="confidence", ylabel="examples", xlim=(0, 1))
    if multi_label:  # a share of teacher x label decisions: any value in [0, 1]
        ax_agree.hist(agreement, bins=20, range=(0, 1), color=GREEN)
        ax_agree.set(title="agreement with the ensemble", xlabel="share of teacher x label decisions equal to the ensemble's",
                     ylabel="examples", xlim=(0, 1))
    else:  # agreement takes the values k / K only: one bar per k, labelled k/K
        k = np.arange(teachers + 1)
        counts = [int(np.sum(np.isclose(agreement * teachers, i))) for i in k]
        ax_agree.bar(k, counts, width=0.6, color=GREEN)
        ax_agree.set_xticks(k, [f"{i}/{teachers}" for i in k], fontsize=8)
        ax_agree.set(title="agreement with the ensemble", xlabel="teachers whose top class is the ensemble's", ylabel="examples")
    x = np.arange(len(labels))
    ax_labels.bar(x - 0.2, predicted, 0.4, label="soft labels (predicted)", color=BLUE)
    if labelled is not None:
        ax_labels.bar(x + 0.2, labelled, 0.4, label="labelled set (gold)", color=GREY)
    ax_labels.set_xticks(x, labels, rotation=20 if len(labels) > 3 else 0, fontsize=8)
    ax_labels.set(title="label distribution", ylabel="share of texts with the label" if multi_label else "share of examples", ylim=(0, 1))
    ax_labels.legend(fontsize=8)
    return save(fig, path)


def share(counts: Sequence[int]) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum() if counts.sum() else counts


def draw_reliability(path: Path, panels: list[tuple[str, list[dict[str, Any]], float]]) -> str:
    """One reliability diagram per model: accuracy against confidence in each bin, with the diagonal."""
    fig, axes = grid(len(panels))
    for ax, (name, bins, ece) in zip(axes, panels):
        filled = [b for b in bins if b["count"]]
        width = bins[0]["upper"] - bins[0]["lower"]
        centres = [(b["lower"] + b["upper"]) / 2 for b in filled]
        total = sum(b["count"] for b in filled)
        ax.bar(centres, [b["accuracy"] for b in filled], width=width, color=BLUE, edgecolor="white", label="accuracy")
        ax.bar(centres, [b["count"] / total for b in filled], width=width * 0.5, color=GREY, alpha=0.8,
               label="share of examples")
        ax.plot([b["confidence"] for b in filled], [b["confidence"] for b in filled], "o", color=ORANGE, ms=3,
                label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color=GREY, lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.set_title(f"{name}\nECE {ece:.4f}", fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside upper center", ncol=3, frameon=False)
    return save(fig, path)


def draw_confusion(path: Path, panels: list[tuple[str, np.ndarray]], labels: list[str]) -> str:
    """One confusion matrix per model: rows are the gold label, columns the predicted one, cells counts."""
    fig, axes = grid(len(panels))
    for ax, (name, matrix) in zip(axes, panels):
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=9,
                    color="white" if count > matrix.max() / 2 else "black")
        ticks = np.arange(len(labels))
        ax.set_xticks(ticks, labels, rotation=30 if len(labels) > 2 else 0, fontsize=8)
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set(xlabel="predicted", ylabel="gold")
        ax.set_title(name, fontsize=9)
    return save(fig, path)


def draw_per_label_f1(path: Path, models: list[tuple[str, list[float]]], labels: list[str]) -> str:
    """Multi-label runs: grouped bars, one group per label, one bar per model (its F1 on that label)."""
    fig = figure(max(6.0, 1.2 * len(labels) + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(models), 1)
    positions = np.arange(len(labels))
    for k, (name, values) in enumerate(models):
        ax.bar(positions + (k - (len(models) - 1) / 2) * width, values, width=width, label=name)
    ax.set_xticks(positions, labels, rotation=30 if len(labels) > 6 else 0, fontsize=8)
    ax.set(ylim=(0, 1), ylabel="F1 on the test set")
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    return save(fig, path)


def draw_losses(path: Path, teachers: list[tuple[str, list[float]]], student: list[float] | None) -> str:
    """Training loss per step: every teacher in one panel, the student in the other."""
    fig = figure(12.0, 3.6)
    ax_teachers, ax_student = fig.subplots(1, 2)
    for name, values in teachers:
        if values:
            ax_teachers.plot(np.arange(1, len(values) + 1), values, lw=1, label=name)
    ax_teachers.set(title="teachers: training loss", xlabel="step", ylabel="loss")
    if any(values for _, values in teachers):
        ax_teachers.legend(fontsize=7)
    else:
        ax_teachers.text(0.5, 0.5, "no training (zero-shot teachers)", ha="center", va="center", transform=ax_teachers.transAxes)
    if student:
        ax_student.plot(np.arange(1, len(student) + 1), student, lw=1, color=GREEN)
    else:
        ax_student.text(0.5, 0.5, "not recorded" if student is not None else "no student",
                        ha="center", va="center", transform=ax_student.transAxes)
    ax_student.set(title="student: distillation loss", xlabel="step", ylabel="loss")
    return save(fig, path)
