"""The numerical core of PET, as small pure functions on tensors.

Shapes: B = batch, V = vocabulary, C = classes, W = words per label (padded), K = teachers,
N = examples. Everything here is differentiable where it is used for training and free of I/O so
that it can be checked against hand computations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_scores(mask_logits: torch.Tensor, word_ids: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """Score each class as the mean raw MLM logit of its verbalizer words at the mask.

    mask_logits: [B, V] logits at the mask position; word_ids: [C, W] token ids, padded;
    word_mask: [C, W] with 1 for real words and 0 for padding. Returns [B, C].
    """
    picked = mask_logits[:, word_ids]  # [B, C, W]
    weights = word_mask.to(picked.dtype)
    return (picked * weights).sum(-1) / weights.sum(-1)


def class_cross_entropy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the gold class under softmax(scores): the teachers' training objective."""
    return F.cross_entropy(scores.float(), labels)


def ensemble_logits(teacher_logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Combine [K, N, C] teacher logits into [N, C]: a uniform or weighted mean (weights [K])."""
    if weights is None:
        return teacher_logits.mean(0)
    weights = weights.to(teacher_logits.dtype)
    if not torch.all(weights >= 0) or weights.sum() <= 0:
        raise ValueError("ensemble weights must be non-negative with a positive sum")
    return torch.einsum("k,knc->nc", weights / weights.sum(), teacher_logits)


def soft_labels(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft labels softmax(z / T); T > 1 flattens the distribution."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    return torch.softmax(logits / temperature, dim=-1)


def distillation_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p || softmax(z / T)) * T^2, averaged over the batch.

    Scaling by T^2 keeps gradient magnitudes comparable across temperatures (Hinton et al., 2015).
    xlogy makes 0 * log 0 = 0 for classes the targets rule out.
    """
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p = target_probs.float()
    kl = (torch.xlogy(p, p) - p * log_q).sum(-1)
    return kl.mean() * temperature**2


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of each row of [N, C] probabilities."""
    return -torch.xlogy(probs, probs).sum(-1)


def agreement(teacher_logits: torch.Tensor, ensemble_prediction: torch.Tensor) -> torch.Tensor:
    """Fraction of the K teachers whose top class equals the ensemble's, per example: [K, N, C] -> [N]."""
    votes = teacher_logits.argmax(-1) == ensemble_prediction.unsqueeze(0)
    return votes.float().mean(0)


def multi_token_class_scores(mask_logits: torch.Tensor, token_ids: torch.Tensor, token_mask: torch.Tensor,
                             word_mask: torch.Tensor) -> torch.Tensor:
    """Class scores for label words of several tokens, from one pass with M masks.

    mask_logits: [B, M, V] logits at the M consecutive masks; token_ids: [C, W, M] token ids of each
    word (padded); token_mask: [C, W, M] real tokens; word_mask: [C, W] real words. A word
    t_1..t_n scores the mean of log p(t_i) at mask i (log_softmax over the vocabulary); a class
    scores the mean over its words. Returns [B, C].
    """
    picked = word_token_log_probs(mask_logits, token_ids)  # [B, C, W, M]
    tokens = token_mask.to(picked.dtype)
    per_word = (picked * tokens).sum(-1) / tokens.sum(-1).clamp(min=1)  # [B, C, W]
    words = word_mask.to(picked.dtype)
    return (per_word * words).sum(-1) / words.sum(-1)


def word_token_log_probs(mask_logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """[B, C, W, M]: log p(token m of word w of class c) at mask m, from [B, M, V] logits at M masks."""
    log_probs = F.log_softmax(mask_logits.float(), dim=-1)  # [B, M, V]
    positions = torch.arange(token_ids.size(-1), device=token_ids.device)
    return log_probs[:, positions, token_ids]


def pet_multi_token_class_scores(mask_logits: torch.Tensor, token_ids: torch.Tensor, token_mask: torch.Tensor,
                                 word_mask: torch.Tensor) -> torch.Tensor:
    """PET's training-time scores of multi-token words, from one pass with M masks: [B, C].

    As PET's MultiMaskTaskHelper.train_step (timoschick/pet, pet/task_helpers.py): one forward pass
    over the pattern with M = longest-word masks, and a word t_1..t_n scores the SUM of log p(t_i)
    at mask i (masks after its n-th are ignored, PET's -100 targets). Several words per label are
    combined by :func:`log_mean_exp_words`. Shapes as :func:`multi_token_class_scores`.
    """
    picked = word_token_log_probs(mask_logits, token_ids)
    per_word = (picked * token_mask.to(picked.dtype)).sum(-1)  # [B, C, W]
    return log_mean_exp_words(per_word, word_mask)


def log_mean_exp_words(word_scores: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """[B, C, W] word log-probabilities -> [B, C]: log of the mean probability of each class's real words.

    PET's MultiMask helper uses one word per label; for several, the label is read as a uniform
    mixture of its words (a smooth max that equals the word's score when there is one word).
    """
    masked = word_scores.masked_fill(~word_mask.bool(), float("-inf"))
    return torch.logsumexp(masked, dim=-1) - torch.log(word_mask.sum(-1).to(word_scores.dtype))


def fill_most_probable(token_log_probs: torch.Tensor, filled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of PET's decoding order: (mask index [R], its log-probability [R]) of each row.

    token_log_probs: [R, n] log p(target token i) at mask i, now; filled: [R, n] masks already
    filled. The open mask whose target is most probable is chosen, the first one on ties, as
    ``_get_choice_probabilities_batched``'s strict ``m_prob > highest_prob`` (timoschick/pet).
    """
    candidates = token_log_probs.masked_fill(filled, float("-inf"))
    choice = candidates.argmax(-1)
    return choice, candidates.gather(-1, choice[:, None])[:, 0]


def mixed_loss(ce: torch.Tensor, mlm: torch.Tensor, mlm_weight: float) -> torch.Tensor:
    """PET's auxiliary language-modelling objective: (1 - a) * CE + a * MLM."""
    return (1.0 - mlm_weight) * ce + mlm_weight * mlm


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (log_softmax based) over MLM targets; -100 marks positions that are not targets.

    logits: [..., V]; targets: [...]. Zero (with a gradient path) when there is no target at all.
    Computed as a sum over the targets divided by their count, which needs no check on the host
    (a GPU would have to stop and report whether any target exists).
    """
    flat_targets = targets.reshape(-1)
    total = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), flat_targets, ignore_index=-100, reduction="sum")
    return total / (flat_targets != -100).sum().clamp(min=1)


# Multi-label tasks (README "Multi-label tasks"): one independent yes/no decision per label, whose
# logit d is the yes score minus the no score at the mask. sigmoid(d) is exactly the "yes" share of
# softmax over the two answers, so a label's probability never competes with another label's.


def answer_logits(answer_scores: torch.Tensor) -> torch.Tensor:
    """[..., 2] scores of the answers (no, yes) -> [...] decision logits d = yes - no."""
    return answer_scores[..., 1] - answer_scores[..., 0]


def decision_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of decisions on their logits (sigmoid and log fused, as BCEWithLogitsLoss),
    summed over the labels of an example ([B, L]) and averaged over examples; [B] logits: the mean."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return losses.sum(-1).mean() if losses.dim() > 1 else losses.mean()


def multi_label_soft_labels(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Independent per-label soft labels sigmoid(d / T)."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    return torch.sigmoid(logits / temperature)


def multi_label_distillation_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over labels of KL(Bernoulli(p) || Bernoulli(sigmoid(z / T))) * T^2, averaged over the batch.

    The binary counterpart of :func:`distillation_loss`: p log(p/q) + (1 - p) log((1 - p)/(1 - q)),
    with log q and log(1 - q) from logsigmoid (stable for large |z|) and xlogy for p in {0, 1}.
    """
    scaled = student_logits.float() / temperature
    p = target_probs.float()
    kl = torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p) - p * F.logsigmoid(scaled) - (1 - p) * F.logsigmoid(-scaled)
    return kl.sum(-1).mean() * temperature**2


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of independent per-label probabilities [N, L], summed over labels -> [N]."""
    return -(torch.xlogy(probs, probs) + torch.xlogy(1 - probs, 1 - probs)).sum(-1)


def decision_agreement(teacher_logits: torch.Tensor, ensemble_decisions: torch.Tensor, threshold_logit: float) -> torch.Tensor:
    """Share of (teacher, label) decisions equal to the ensemble's, per example: [K, N, L] -> [N]."""
    votes = (teacher_logits >= threshold_logit) == ensemble_decisions.unsqueeze(0)
    return votes.float().mean((0, 2))
