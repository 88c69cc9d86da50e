"""How teachers' class logits are combined: the one place that decides the ensemble's weights.

PET's ``wmean`` weights each teacher by its accuracy on the labelled set before training. Where that
is undefined (zero-shot teachers without labelled examples) or useless (every weight is 0), the
ensemble is the uniform mean, and the method reported is ``mean``: stage B, iPET and `pet evaluate`
all go through :func:`ensemble_weights`, so they can never disagree about what was used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from pet.core import maths

log = logging.getLogger("pet")


@dataclass(frozen=True)
class EnsembleWeights:
    method: str  # the method actually used: "mean" or "wmean"
    weights: torch.Tensor | None  # [K] raw weights for wmean; None for the uniform mean
    fallback: str | None = None  # why wmean was asked for and mean used, if it was

    def normalised(self) -> list[float] | None:
        return None if self.weights is None else [float(w) for w in self.weights / self.weights.sum()]

    def combine(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """[K, N, C] teacher logits -> [N, C] ensemble logits."""
        return maths.ensemble_logits(teacher_logits, self.weights)


def ensemble_weights(weights: Sequence[float | None], method: str, *, warn: bool = True) -> EnsembleWeights:
    """The ensemble for teachers with these ``weights`` (labelled accuracy before training, or None)."""
    if method == "mean":
        return EnsembleWeights("mean", None)
    if method != "wmean":
        raise ValueError(f"unknown ensemble method {method!r}")
    reason = None
    if any(w is None for w in weights):
        reason = ("wmean needs each teacher's accuracy on labelled examples, and these teachers had none "
                  "(zero-shot without a labelled set); using the uniform mean ensemble")
    elif sum(float(w) for w in weights) <= 0:
        reason = "every teacher had accuracy 0 before training; using a uniform ensemble"
    if reason is not None:
        if warn:
            log.warning(reason)
        return EnsembleWeights("mean", None, reason)
    return EnsembleWeights("wmean", torch.tensor([float(w) for w in weights]))


def entry_weights(entries: Sequence[dict[str, Any]]) -> list[float | None]:
    """The recorded ensemble weight of each teacher entry of a teachers manifest."""
    return [None if e.get("weight") is None else float(e["weight"]) for e in entries]
