"""How teachers' class logits are combined: the one place that decides the ensemble's weights.

PET's ``wmean`` weights each teacher by its accuracy on the labelled set before training. Where that
is undefined (zero-shot teachers without labelled examples) or useless (every weight is 0), the
ensemble is the uniform mean, and the method reported is ``mean``: stage B, iPET and `pet evaluate`
all go through :func:`ensemble_weights`, so they can never disagree about what was used.

The supervised member (``teachers.supervised``) is a classifier whose head is new, so its accuracy
before training is chance and says nothing about it. Under ``wmean`` it gets the mean of the pattern
teachers' weights: it counts as one average teacher, never as 0 and never as more than the patterns.
``cv`` is meaningful for both kinds: each teacher's weight is the k-fold cross-validated accuracy on
the labelled set of its configuration (pattern x verbalizer, or the classifier), which stage A
computes when ``labelling.ensemble`` is cv (pet/stages/teachers/crossval.py). The seeds of one
configuration share its weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from pet.core import maths
from pet.core.classifier import CLASSIFIER, PATTERN, teacher_kind
from pet.errors import PetError

log = logging.getLogger("pet")


@dataclass(frozen=True)
class EnsembleWeights:
    method: str  # the method actually used: "mean", "wmean" or "cv"
    weights: torch.Tensor | None  # [K] raw weights for wmean and cv; None for the uniform mean
    fallback: str | None = None  # why wmean (or cv) was asked for and mean used, if it was

    def normalised(self) -> list[float] | None:
        return None if self.weights is None else [float(w) for w in self.weights / self.weights.sum()]

    def combine(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """[K, N, C] teacher logits -> [N, C] ensemble logits."""
        return maths.ensemble_logits(teacher_logits, self.weights)


def ensemble_weights(weights: Sequence[float | None], method: str, *, warn: bool = True) -> EnsembleWeights:
    """The ensemble for teachers with these ``weights`` (for wmean: labelled accuracy before training;
    for cv: cross-validated accuracy; None where there is none)."""
    if method == "mean":
        return EnsembleWeights("mean", None)
    if method not in ("wmean", "cv"):
        raise ValueError(f"unknown ensemble method {method!r}")
    reason = None
    if any(w is None for w in weights):
        if method == "cv":  # asked for by name, and stage A can compute it: an error, not a quiet fallback
            raise PetError("labelling.ensemble is cv, but these teachers have no cross-validated accuracies (stage A "
                           "computes them only when labelling.ensemble is cv); rerun pet train-teachers with "
                           "--labelling.ensemble cv --overwrite (trained teachers are kept), or use wmean or mean")
        reason = ("wmean needs each teacher's accuracy on labelled examples, and these teachers had none "
                  "(zero-shot without a labelled set); using the uniform mean ensemble")
    elif sum(float(w) for w in weights) <= 0:
        reason = ("every teacher had accuracy 0 before training; using a uniform ensemble" if method == "wmean" else
                  "every teacher's configuration had cross-validated accuracy 0; using a uniform ensemble")
    if reason is not None:
        if warn:
            log.warning(reason)
        return EnsembleWeights("mean", None, reason)
    return EnsembleWeights(method, torch.tensor([float(w) for w in weights]))


def member_weights(entries: Sequence[dict[str, Any]], method: str) -> list[float | None]:
    """Each teacher's raw weight under ``method`` (wmean or cv), from the entries of a teachers manifest.

    wmean: a pattern teacher's recorded weight (accuracy on the labelled set before training); a
    supervised member's is the mean of the pattern teachers' (None if one of them has none).
    cv: the cross-validated accuracy of the teacher's configuration (None where it was not computed).
    """
    if method == "cv":
        return [None if e.get("cv_accuracy") is None else float(e["cv_accuracy"]) for e in entries]
    recorded = [None if e.get("weight") is None else float(e["weight"]) for e in entries]
    patterns = [w for e, w in zip(entries, recorded) if teacher_kind(e) == PATTERN]
    mean = None if not patterns or any(w is None for w in patterns) else sum(patterns) / len(patterns)
    return [mean if teacher_kind(e) == CLASSIFIER else w for e, w in zip(entries, recorded)]


def ensemble_of(entries: Sequence[dict[str, Any]], method: str, *, warn: bool = True) -> EnsembleWeights:
    """The ensemble of the teachers of these manifest entries under ``method`` (mean, wmean or cv)."""
    return ensemble_weights([] if method == "mean" else member_weights(entries, method), method, warn=warn)
