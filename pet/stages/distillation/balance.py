"""Class-balanced distillation (``distillation.class_weights: balanced``; issue 10).

Why: the unlabeled pool comes in the task's natural proportions. On an imbalanced task (r8, Reuters
topics: half the stories are "earn", about 7 in 1,000 "grain") a student that draws its batches
uniformly from the pool sees a rare class a handful of times and learns to stop predicting it; on
r8 distillation cut macro-F1 14-19 points below the teachers' own ensemble (BENCHMARKS.md, "PET on
tasks it was not made for"). With ``balanced`` each text gets scikit-learn's
``class_weight="balanced"`` weight for its *predicted* class (the soft label's top class),
n / (k x count of that class), and batches are drawn with replacement in proportion to those
weights, so every predicted class is drawn equally often. The soft labels themselves are left as
they are: the student still learns how sure the teachers were.
"""

from __future__ import annotations

import torch


def balanced_weights(targets: torch.Tensor) -> torch.Tensor:
    """[N, C] soft labels -> [N] weights, n / (k x count of the text's top class), k the classes predicted at least once."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    predicted = targets.argmax(-1).numpy()
    classes = np.unique(predicted)  # sorted; a class never on top has no texts to weigh
    per_class = compute_class_weight("balanced", classes=classes, y=predicted)
    return torch.from_numpy(per_class[np.searchsorted(classes, predicted)]).double()


class WeightedSampler:
    """Endless batches of indices drawn with replacement, each index with probability proportional to its weight."""

    def __init__(self, weights: torch.Tensor, batch_size: int, generator: torch.Generator):
        if weights.numel() == 0:
            raise ValueError("cannot sample batches from an empty set")
        self.weights, self.batch_size, self.generator = weights, batch_size, generator

    def next(self) -> list[int]:
        return torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator).tolist()
