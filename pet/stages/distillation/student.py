"""The student's view of an example: one text, or a text pair for two-field tasks such as NLI.

The first data field is the first text; any further fields are joined with a space into the pair's
second text. Teachers see fields through patterns; the student sees them plainly.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pet.core.encoding import length_sorted_batches, pad


def student_texts(fields: dict[str, list[str]], order: Sequence[str]) -> tuple[list[str], list[str] | None]:
    first = list(fields[order[0]])
    if len(order) == 1:
        return first, None
    rest = [fields[name] for name in order[1:]]
    return first, [" ".join(parts) for parts in zip(*rest)]


def tokenize_pairs(tokenizer, first: list[str], second: list[str] | None, max_length: int) -> list[list[int]]:
    if not first:
        return []
    limit = getattr(tokenizer, "model_max_length", None)  # the model's positions: a larger max_length would crash
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        max_length = min(max_length, limit)
    kwargs = {"truncation": True, "max_length": max_length}
    encoded = tokenizer(first, second, **kwargs) if second is not None else tokenizer(first, **kwargs)
    return encoded["input_ids"]


@torch.inference_mode()
def classifier_logits(model, sequences: list[list[int]], pad_id: int, batch_size: int, autocast_ctx) -> torch.Tensor:
    """[N, C] float32 logits, batched by similar length, returned in input order."""
    device = next(model.parameters()).device
    model.eval()
    out = torch.empty(len(sequences), model.config.num_labels)
    for indices in length_sorted_batches([len(s) for s in sequences], batch_size):
        input_ids, attention = pad([sequences[i] for i in indices], pad_id)
        with autocast_ctx():
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        out[torch.as_tensor(indices)] = logits.float().cpu()
    return out
