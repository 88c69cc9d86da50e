"""Self-training rounds of the student (``distillation.self_training_rounds``; issue 10).

After the student has learned the ensemble's soft labels, each round asks it for its own
predictions on the unlabeled set and makes the soft labels hard where it is confident: an example
whose top class reaches ``distillation.self_training_threshold`` gets that class's one-hot target
(multi-label: each label whose probability reaches the threshold becomes 1, and 0 where it falls to
1 - threshold or below); every other target stays the ensemble's. A fresh student (the same
checkpoint and seed) then learns the new targets with the same loss and budget. This is classic
self-training on confident pseudo-labels, with the teachers' soft labels kept wherever the student
is unsure; the rounds' test metrics are recorded only to report them, never to choose anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hardened_targets(targets: torch.Tensor, student_logits: torch.Tensor, threshold: float,
                     multi_label: bool) -> tuple[torch.Tensor, int]:
    """The targets with the student's confident predictions made hard, and how many were.

    ``targets`` [N, C] soft labels; ``student_logits`` [N, C] the student's logits at T = 1. Counts
    examples (single-label) or (example, label) decisions (multi-label).
    """
    out = targets.clone()
    if multi_label:
        probs = torch.sigmoid(student_logits.float())
        yes, no = probs >= threshold, probs <= 1 - threshold
        out[yes], out[no] = 1.0, 0.0
        return out, int((yes | no).sum())
    confidence, predicted = torch.softmax(student_logits.float(), -1).max(-1)
    confident = confidence >= threshold
    out[confident] = F.one_hot(predicted[confident], targets.size(-1)).to(out.dtype)
    return out, int(confident.sum())
