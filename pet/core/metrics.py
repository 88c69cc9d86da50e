"""Accuracy, F1 and subset accuracy through scikit-learn."""

from __future__ import annotations

from typing import Sequence

import torch


def classification_metrics(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and each class's F1 (so a collapsed run shows which classes it lost)."""
    from sklearn.metrics import accuracy_score, f1_score

    indices = list(range(len(labels)))
    per_class = f1_score(gold, predicted, labels=indices, average=None, zero_division=0) if len(gold) else [0.0] * len(labels)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(sum(per_class) / len(labels)) if labels else 0.0,
        "per_class_f1": {label: float(value) for label, value in zip(labels, per_class)},
        "examples": len(gold),
    }


def multi_label_metrics(gold: torch.Tensor, predicted: torch.Tensor, labels: Sequence[str]) -> dict:
    """Micro- and macro-F1, subset accuracy and per-label F1 of [N, L] 0/1 decisions.

    ``accuracy`` is the subset accuracy (an example counts only when every one of its labels is
    right), scikit-learn's accuracy on multi-label data, so tables that read "accuracy" stay honest.
    """
    from sklearn.metrics import accuracy_score, f1_score

    y, p = gold.int().numpy(), predicted.int().numpy()
    subset = float(accuracy_score(y, p)) if len(y) else 0.0
    per_label = f1_score(y, p, average=None, labels=list(range(len(labels))), zero_division=0) if len(y) else [0.0] * len(labels)
    return {
        "accuracy": subset,
        "subset_accuracy": subset,
        "micro_f1": float(f1_score(y, p, average="micro", zero_division=0)) if len(y) else 0.0,
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)) if len(y) else 0.0,
        "per_label_f1": {label: float(value) for label, value in zip(labels, per_label)},
        "examples": len(y),
    }


def labelled_score(scores: torch.Tensor, gold: Sequence, threshold: float = 0.5) -> float:
    """A teacher's figure on labelled examples (PET's ensemble weight before training): accuracy of
    the top class; for multi-label teachers ([N, L] decision logits, gold label sets) the micro-F1 of
    the decisions sigmoid(d) >= threshold, since accuracy over mostly-absent labels rewards saying no."""
    if not len(gold):
        return 0.0
    if scores.dim() == 2 and isinstance(gold[0], tuple):
        from pet.core.multilabel import multi_hot
        from sklearn.metrics import f1_score

        decisions = torch.sigmoid(scores.double()) >= threshold
        return float(f1_score(multi_hot(gold, scores.size(1)).int().numpy(), decisions.int().numpy(), average="micro", zero_division=0))
    return float((scores.argmax(-1) == torch.as_tensor(gold)).float().mean())
