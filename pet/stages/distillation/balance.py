"""Class-balanced distillation (``distillation.class_weights``; issue 10).

Why: the unlabeled pool comes in the task's natural proportions. On an imbalanced task (r8, Reuters
topics: half the stories are "earn", about 7 in 1,000 "grain") a student that draws its batches
uniformly from the pool sees a rare class a handful of times and learns to stop predicting it; on
r8 distillation cut macro-F1 14-19 points below the teachers' own ensemble (BENCHMARKS.md, "PET on
tasks it was not made for"). With ``balanced`` each text gets scikit-learn's
``class_weight="balanced"`` weight for its *predicted* class (the soft label's top class),
n / (k x count of that class), and batches are drawn with replacement in proportion to those
weights, so every predicted class is drawn equally often. The soft labels themselves are left as
they are: the student still learns how sure the teachers were.

``auto`` (the default) balances only a pool that needs it: when some predicted class would weigh
more than ``AUTO_LARGEST_WEIGHT`` (it is predicted under half as often as an even split would have
it; pet/core/imbalance.py, the rule iPET's ``label_distribution: auto`` shares). On an even pool
the weights are near 1 and balancing only swaps the epoch order for draws with replacement, which
measured a little below it (BENCHMARKS.md); there ``auto`` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pet.core.imbalance import AUTO_LARGEST_WEIGHT, describe_auto, is_uneven, largest_weight


def balanced_weights(targets: torch.Tensor) -> torch.Tensor:
    """[N, C] soft labels -> [N] weights, n / (k x count of the text's top class), k the classes predicted at least once."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    predicted = targets.argmax(-1).numpy()
    classes = np.unique(predicted)  # sorted; a class never on top has no texts to weigh
    per_class = compute_class_weight("balanced", classes=classes, y=predicted)
    return torch.from_numpy(per_class[np.searchsorted(classes, predicted)]).double()


@dataclass(frozen=True)
class ClassWeightsChoice:
    """What ``distillation.class_weights`` came to for one soft-label set, recorded in the student's manifest."""

    setting: str  # as configured: auto, none or balanced
    used: str  # none or balanced
    largest_weight: float | None  # single-label pools only

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"setting": self.setting, "used": self.used}
        if self.largest_weight is not None:
            record["largest_weight"] = round(self.largest_weight, 4)
        if self.setting == "auto":
            record["auto_threshold"] = AUTO_LARGEST_WEIGHT
        return record

    def describe(self) -> str:
        if self.setting != "auto" or self.largest_weight is None:
            return self.used
        return describe_auto(self.used, self.largest_weight, uneven=self.used == "balanced")


def choose_class_weights(setting: str, multi_label: bool, predicted_counts: dict[str, int] | None) -> ClassWeightsChoice:
    """``auto`` decided on the soft labels' predicted classes (never a test set); ``none`` and ``balanced`` as they are.
    A multi-label pool has no one class per text to balance: auto is none there."""
    if multi_label:
        return ClassWeightsChoice(setting, "none" if setting == "auto" else setting, None)
    largest = largest_weight(predicted_counts) if predicted_counts is not None else None
    if setting != "auto":
        return ClassWeightsChoice(setting, setting, largest)
    if largest is None:
        raise ValueError("class_weights: auto needs the soft labels' predicted class counts")
    return ClassWeightsChoice(setting, "balanced" if is_uneven(largest) else "none", largest)


class WeightedSampler:
    """Endless batches of indices drawn with replacement, each index with probability proportional to its weight."""

    def __init__(self, weights: torch.Tensor, batch_size: int, generator: torch.Generator):
        if weights.numel() == 0:
            raise ValueError("cannot sample batches from an empty set")
        self.weights, self.batch_size, self.generator = weights, batch_size, generator

    def next(self) -> list[int]:
        return torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator).tolist()
