"""Calibration: how far a model's probabilities can be trusted, as small pure functions on tensors.

Shapes: N = examples, C = classes; ``labels`` are [N] class indices. Every number is computed in
float64 so that the tests can compare against hand computations exactly.

- **ECE** (expected calibration error): the top-class confidences are put into ``ECE_BINS`` = 15
  equal-width bins over [0, 1] (bin b holds confidences in (b/15, (b+1)/15]; a confidence of exactly
  0 goes into the first bin), and ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|.
- **Brier score**, multi-class definition (Brier, 1950): the mean over examples of
  sum_c (p_c - y_c)^2 with y the one-hot gold label; 0 is perfect, 2 the worst possible.
- **NLL**: the mean of -log softmax(z / T)_y, from the logits with log_softmax (never log(softmax),
  which underflows to -inf for confident wrong predictions).

**Multi-label tasks** (gold given as label sets, logits [N, L] of independent decisions): each
(example, label) decision is a binary prediction with probability sigmoid(d / T), which is exactly
softmax over the two logits (0, d). ECE bins the confidences max(p, 1 - p) of all N x L decisions;
Brier is the mean over decisions of (p - y)^2 (0 best, 1 worst); NLL the mean binary cross-entropy
per decision; T* is fitted on the same decisions.

**Temperature scaling** (Guo et al., 2017) fits a single T* > 0 that minimises the NLL of
softmax(z / T*) on held-out labelled data. That T* is a *calibration* temperature; it has nothing to
do with the *distillation* temperature (``labelling.temperature``, T = 2 by default) that softens the
soft labels the student learns from.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

ECE_BINS = 15
# The bounded search for T*: wide enough for any sensible model, and it keeps a set that the model
# classifies perfectly (where NLL keeps falling as T -> 0) from running off to T = 0.
TEMPERATURE_BOUNDS = (0.01, 100.0)
DEFINITIONS = {
    "ece_bins": ECE_BINS,
    "ece": "expected calibration error over 15 equal-width bins of the top-class confidence",
    "brier": "multi-class Brier score: mean over examples of sum over classes (p_c - y_c)^2; 0 best, 2 worst",
    "nll": "mean negative log-likelihood of the gold class, -log_softmax(z / T)_y",
}


MULTI_LABEL_DEFINITIONS = {
    "ece_bins": ECE_BINS,
    "ece": "expected calibration error over 15 equal-width bins of the confidence max(p, 1 - p) of every (example, label) decision",
    "brier": "binary Brier score: mean over (example, label) decisions of (p - y)^2; 0 best, 1 worst",
    "nll": "mean binary cross-entropy per (example, label) decision, from the logits (logsigmoid)",
}


def _as_labels(labels: Any) -> torch.Tensor:
    return torch.as_tensor(labels, dtype=torch.long)


def is_label_sets(gold: Any) -> bool:
    """Whether gold labels are a multi-label task's label sets (tuples of indices) rather than class indices."""
    return not isinstance(gold, torch.Tensor) and len(gold) > 0 and isinstance(gold[0], (tuple, list))


def definitions(gold: Any) -> dict[str, Any]:
    return MULTI_LABEL_DEFINITIONS if is_label_sets(gold) else DEFINITIONS


def decision_view(logits: torch.Tensor, label_sets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, L] decision logits and label sets as N x L binary predictions: logits (0, d) [N * L, 2] and 0/1 answers."""
    from pet.core.multilabel import multi_hot

    d = logits.double().reshape(-1)
    return torch.stack([torch.zeros_like(d), d], -1), multi_hot(label_sets, logits.size(-1)).reshape(-1).long()


def reliability_bins(probs: torch.Tensor, labels: Any, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """One entry per equal-width confidence bin: its edges, example count, accuracy and mean confidence.

    Empty bins have count 0 and accuracy/confidence NaN (there is nothing to average). This is both
    what ECE sums over and what a reliability diagram draws.
    """
    probs, labels = probs.double(), _as_labels(labels)
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).double()
    # ceil(conf * B) - 1 puts conf in (b/B, (b+1)/B] into bin b; clamp sends conf = 0 to bin 0.
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        out.append({
            "lower": b / bins, "upper": (b + 1) / bins, "count": count,
            "accuracy": float(correct[inside].mean()) if count else math.nan,
            "confidence": float(confidence[inside].mean()) if count else math.nan,
        })
    return out


def expected_calibration_error(probs: torch.Tensor, labels: Any, bins: int = ECE_BINS) -> float:
    """sum_b |B_b| / N * |acc(B_b) - conf(B_b)| over equal-width confidence bins."""
    total = len(probs)
    if total == 0:
        raise ValueError("ECE needs at least one example")
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
               for b in reliability_bins(probs, labels, bins) if b["count"])


def brier_score(probs: torch.Tensor, labels: Any) -> float:
    """Multi-class Brier score: mean over examples of sum_c (p_c - y_c)^2, y one-hot (range 0 to 2)."""
    probs = probs.double()
    one_hot = F.one_hot(_as_labels(labels), probs.size(-1)).double()
    return float(((probs - one_hot) ** 2).sum(-1).mean())


def negative_log_likelihood(logits: torch.Tensor, labels: Any, temperature: float = 1.0) -> float:
    """Mean -log softmax(z / T)_y, computed with log_softmax (cross_entropy) for numerical safety."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    return float(F.cross_entropy(logits.double() / temperature, _as_labels(labels)))


def calibration_metrics(logits: torch.Tensor, labels: Any, temperature: float = 1.0) -> dict[str, float]:
    """ECE, Brier score and NLL of softmax(z / T) against the gold labels (label sets: of the decisions)."""
    if is_label_sets(labels):
        decisions, answers = decision_view(logits, labels)
        probs = torch.softmax(decisions / temperature, dim=-1)
        return {"ece": expected_calibration_error(probs, answers), "brier": float(((probs[:, 1] - answers) ** 2).mean()),
                "nll": negative_log_likelihood(decisions, answers, temperature)}
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    return {"ece": expected_calibration_error(probs, labels), "brier": brier_score(probs, labels),
            "nll": negative_log_likelihood(logits, labels, temperature)}


def fit_temperature(logits: torch.Tensor, labels: Any, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The T* in ``bounds`` that minimises the NLL of softmax(z / T*) on these labelled examples.

    A bounded 1-D search (Brent's method) over log T: the NLL is smooth in log T and log T spreads
    small and large temperatures evenly, so the search needs no starting point or step size.
    """
    from scipy.optimize import minimize_scalar  # scipy is installed with scikit-learn, a dependency

    if len(logits) == 0:
        raise ValueError("fitting a temperature needs at least one labelled example")
    if is_label_sets(labels):
        logits, labels = decision_view(logits, labels)
    logits, labels = logits.double(), _as_labels(labels)
    low, high = math.log(bounds[0]), math.log(bounds[1])
    found = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def prediction_metrics(gold: Any, logits: torch.Tensor, labels: list[str], threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, macro-F1 and the example count, plus ECE, Brier and NLL of softmax(z) (T = 1).

    Multi-label (gold label sets): subset accuracy, micro-/macro-F1 and per-label F1 of the
    decisions sigmoid(d) >= ``threshold``, and the decisions' calibration.
    """
    from pet.core.metrics import classification_metrics, multi_label_metrics

    if is_label_sets(gold):
        from pet.core.multilabel import multi_hot

        decided = torch.sigmoid(logits.double()) >= threshold
        return {**multi_label_metrics(multi_hot(gold, logits.size(-1)), decided, labels), "threshold": threshold,
                **calibration_metrics(logits, gold)}
    return {**classification_metrics(list(gold), logits.argmax(-1).tolist(), labels), **calibration_metrics(logits, gold)}


def at_temperature(logits: torch.Tensor, gold: Any, temperature: float) -> dict[str, float]:
    """ECE, Brier and NLL of softmax(z / T), keyed with the temperature they were measured at."""
    return {"temperature": float(temperature), **calibration_metrics(logits, gold, temperature)}
