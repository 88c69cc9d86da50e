"""A plain sequence classifier's view of examples, and its class logits.

Shared by the student (stage C) and the supervised member of the teacher ensemble (stage A,
``teachers.supervised``): both read the data fields without a pattern. One field is the text; two
fields are a tokenizer pair (first, second), as for NLI; further fields are joined into the pair's
second text with ``join`` (the student: a space, as it always has; the supervised member: the
tokenizer's separator token, so that it can tell where one field ends).

The teachers' artifacts say which kind a teacher is (``"kind"`` in ``teacher.json`` and in its
manifest entry): ``pattern`` (a masked LM read through a pattern and a verbalizer) or
``classifier`` (the supervised member). Artifacts written before kinds existed have none: pattern.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from pet.core.encoding import length_sorted_batches, pad

PATTERN = "pattern"
CLASSIFIER = "classifier"


def teacher_kind(record: dict[str, Any]) -> str:
    """``pattern`` or ``classifier``, for a teacher record or manifest entry (older ones have no kind: pattern)."""
    return record.get("kind") or PATTERN


def classifier_texts(fields: dict[str, list[str]], order: Sequence[str], join: str = " ") -> tuple[list[str], list[str] | None]:
    """(first texts, second texts or None): the first field, and the other fields joined with ``join``."""
    first = list(fields[order[0]])
    if len(order) == 1:
        return first, None
    rest = [fields[name] for name in order[1:]]
    return first, [join.join(parts) for parts in zip(*rest)]


def separator_join(tokenizer) -> str:
    """The tokenizer's separator token with a space either side (a space for a tokenizer without one)."""
    sep = getattr(tokenizer, "sep_token", None)
    return f" {sep} " if sep else " "


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


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


class ClassifierEncoder:
    """Examples -> token ids for a sequence classifier: the ``encode`` surface of a PatternEncoder, so a
    supervised member scores a data table chunk by chunk through the same code as a pattern teacher."""

    def __init__(self, tokenizer, fields: Sequence[str], max_length: int, join: str):
        self.tokenizer, self.fields, self.max_length, self.join = tokenizer, list(fields), max_length, join

    def encode(self, examples) -> list[list[int]]:
        """Token ids of ``examples`` (pet.io.data.Examples), truncated to ``max_length``: a classifier never fails to fit."""
        return tokenize_pairs(self.tokenizer, *classifier_texts(examples.fields, self.fields, self.join), self.max_length)


class ClassifierScorer:
    """Class logits of a sequence classifier, with the MaskedLMScorer surface (``score``, ``class_scores``,
    ``batch``, ``num_classes``): [N, C] in the model's label order, which is the run's."""

    def __init__(self, model, pad_id: int):
        self.model, self.pad_token_id = model, pad_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def batch(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention = pad(list(sequences), self.pad_token_id)
        return input_ids.to(self.device), attention.to(self.device)

    def class_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, C] training-mode logits of one batch."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def score(self, sequences: Sequence[Sequence[int]], batch_size: int, autocast_ctx=None) -> torch.Tensor:
        """[N, C] float32 logits on the CPU, in input order."""
        import contextlib

        return classifier_logits(self.model, list(sequences), self.pad_token_id, batch_size,
                                 autocast_ctx or contextlib.nullcontext)
