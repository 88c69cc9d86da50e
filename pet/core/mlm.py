"""The auxiliary masked-language-modelling loss of stage A (PET paper, section 3.1).

Each training step draws one labelled batch and ``unlabeled_ratio`` (3) times as many unlabeled
examples. The unlabeled text is rendered through the teacher's own pattern, then masked BERT-style:
each *eligible* token becomes a target with probability ``mlm_probability`` (15%); a target is
replaced by the mask token 80% of the time, by a random token 10%, and kept 10%. The loss is
``(1 - a) * CE + a * MLM`` with a = ``teachers.mlm_weight``.

Eligible means: a real token (attention 1, so never padding), not a special token of the tokenizer
([CLS], [SEP], <s>, </s>, [UNK], ...) and not a mask token. The last rule keeps the pattern's own
mask slot(s) out of the targets: PET's reference implementation masks the rendered pattern without
this check, so it trains the model to predict "[MASK]" at the mask slot, padding and separators.
Random replacements are drawn from the non-special vocabulary.

The masking randomness comes from a generator seeded with the teacher's derived seed, so a resumed
or repeated run draws exactly the same targets.

Default a = 1e-4 as in the paper. The term looks negligible next to CE, but AdamW normalises each
parameter's update by its gradient scale, so the embeddings and MLM head rows that CE never touches
still move by a full learning-rate step and keep the model's language modelling intact. It makes
each step's forward/backward pass four times as wide (one batch holds the labelled and the
unlabeled rows); ``--teachers.mlm_weight 0`` turns it off.
"""

from __future__ import annotations

import torch

from pet.core import maths

IGNORE = -100


class MlmMasker:
    """Seeded 15% / 80-10-10 masking that never targets padding, special tokens or mask slots."""

    def __init__(self, tokenizer, vocab_size: int, probability: float = 0.15, seed: int = 0):
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token")
        self.mask_id = int(tokenizer.mask_token_id)
        special = {int(i) for i in tokenizer.all_special_ids if i is not None}
        special.add(self.mask_id)
        if tokenizer.pad_token_id is not None:
            special.add(int(tokenizer.pad_token_id))
        self.special_ids = torch.tensor(sorted(special), dtype=torch.long)
        self.random_ids = torch.tensor([i for i in range(vocab_size) if i not in special], dtype=torch.long)
        self.probability = probability
        self.generator = torch.Generator().manual_seed(seed)

    def eligible(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] True where a token may become an MLM target."""
        return attention_mask.bool() & ~torch.isin(input_ids, self.special_ids.to(input_ids.device))

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, targets): targets hold the original id at target positions, -100 elsewhere."""
        device = input_ids.device
        ids, attention = input_ids.cpu(), attention_mask.cpu()
        eligible = self.eligible(ids, attention)
        shape = ids.shape
        chosen = (torch.rand(shape, generator=self.generator) < self.probability) & eligible
        action = torch.rand(shape, generator=self.generator)
        replacement = self.random_ids[torch.randint(len(self.random_ids), shape, generator=self.generator)]
        targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
        masked = ids.clone()
        to_mask = chosen & (action < 0.8)
        to_random = chosen & (action >= 0.8) & (action < 0.9)
        masked[to_mask] = self.mask_id
        masked[to_random] = replacement[to_random]
        return masked.to(device), targets.to(device)


def teacher_loss(scorer, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                 mlm_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, mlm_weight: float) -> torch.Tensor:
    """One stage-A step's loss: the scorer's training loss (CE over class scores; for multi-label
    teachers BCE of the yes/no decisions), mixed with the MLM loss when a batch is given.

    The labelled rows and the masked unlabeled rows go through the encoder as one batch (padded to
    the longer of the two): the same values as two forward passes, since attention never looks at
    padding and every layer works row by row, but half the kernel launches, which is what bounds a
    small model's step time on a GPU.
    """
    if mlm_batch is None or mlm_weight == 0:
        return scorer.training_loss(scorer.class_scores(input_ids, attention_mask), labels)
    masked, masked_attention, targets = mlm_batch
    # Where the targets are is decided on the host (the masker's output stays on the CPU), so
    # finding them never makes a GPU stop and report back. No target at all selects nothing, and
    # masked_lm_loss is then 0 with a gradient path.
    targets = targets.cpu()
    target_rows, target_cols = (targets != IGNORE).nonzero(as_tuple=True)
    device = input_ids.device
    target_ids = targets[target_rows, target_cols].to(device)
    target_rows, target_cols = (target_rows + input_ids.size(0)).to(device), target_cols.to(device)
    length = max(input_ids.size(1), masked.size(1))
    both_ids = torch.cat([pad_columns(input_ids, length, scorer.pad_token_id), pad_columns(masked.to(device), length, scorer.pad_token_id)])
    both_attention = torch.cat([pad_columns(attention_mask, length, 0), pad_columns(masked_attention.to(device), length, 0)])
    at_masks, at_targets = scorer.logits_at(both_ids, both_attention, scorer.mask_positions(input_ids), (target_rows, target_cols))
    ce = scorer.training_loss(scorer.scores_from_mask_logits(at_masks), labels)
    return maths.mixed_loss(ce, maths.masked_lm_loss(at_targets, target_ids), mlm_weight)


def pad_columns(batch: torch.Tensor, length: int, value: int) -> torch.Tensor:
    """``batch`` [B, L] widened to [B, length] with ``value`` on the right."""
    return torch.nn.functional.pad(batch, (0, length - batch.size(1)), value=value)
