"""When a task's classes are far from even: the rule shared by ``distillation.class_weights: auto``
(pet/stages/distillation/balance.py) and ``ipet.label_distribution: auto`` (pet/stages/teachers/ipet.py).

Both decide on the classes the teachers predict on the unlabeled pool (never a test set): a pool is
uneven when scikit-learn's ``class_weight="balanced"`` would give some predicted class a weight above
``AUTO_LARGEST_WEIGHT``, that is when the class is predicted under half as often as an even split
would have it.
"""

from __future__ import annotations

# "Under half its even share": the imbalance at which a uniform draw shows a class less than half as
# often as an even split would, not tuned. The pools of sst2, agnews and rte measured 1.01-1.35, r8's
# above 10 (BENCHMARKS.md, "On the even pools")
AUTO_LARGEST_WEIGHT = 2.0


def largest_weight(predicted_counts: dict[str, int]) -> float:
    """The largest "balanced" class weight for a pool whose top classes come up this often: n / (k x rarest
    count), k the classes predicted at least once (a class never on top has no texts to weigh)."""
    counts = [count for count in predicted_counts.values() if count > 0]
    return sum(counts) / (len(counts) * min(counts)) if counts else 1.0


def is_uneven(largest: float) -> bool:
    return largest > AUTO_LARGEST_WEIGHT


def describe_auto(used: str, largest: float, uneven: bool) -> str:
    """How an ``auto`` setting went, as a log line and the report say it: the choice and the weight that decided it."""
    relation = ">" if uneven else "<="
    return f"{used} (auto: largest class weight {largest:.2f} {relation} {AUTO_LARGEST_WEIGHT:g})"
