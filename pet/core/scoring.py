"""Class scores of a masked-LM teacher: MLM logits at the mask, averaged over each label's words.

Only the mask position needs vocabulary logits, so for common architectures the encoder runs alone
and the MLM head is applied to the mask's hidden state: this skips a [batch, length, vocab] matmul
that costs as much as the encoder itself on small models. Other architectures use the full forward.

Multi-token label words (``teachers.multi_token: true``, only when some word is several tokens in
its context): the pattern's mask becomes M consecutive masks, M = the longest label word in tokens.
A word t_1..t_n (n <= M) scores the mean per-token log-probability
``(1/n) * sum_i log softmax(logits at mask i)[t_i]``, all from one forward pass over the pattern with
M masks (masks after the word's last token are ignored); a label scores the mean over its words.
This is the parallel form of PET's multi-mask scoring: it is exact (no token is dropped or
approximated by its first piece), batched (one forward pass per batch, whatever the number of
labels), and the same function is used for training (cross-entropy over the class scores) and
inference, so teachers are trained on exactly what they are later scored with. Single-token
verbalizers keep the fast path (raw logits at one mask).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from pet.core import maths
from pet.core.encoding import PatternEncoder, VerbalizerTokens, length_sorted_batches, pad
from pet.errors import PetError
from pet.core.progress import progress

# Attribute of *ForMaskedLM models holding a head that maps hidden states to vocabulary logits.
HEAD_ATTRIBUTES = ("cls", "lm_head", "predictions")


def pad_id(tokenizer) -> int:
    """The id used for padding; tokenizers without a pad token pad with 0 (attention masks hide it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


class MaskedLMScorer:
    def __init__(self, model, verbalizer: VerbalizerTokens, mask_token_id: int, pad_token_id: int):
        self.model = model
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
        device = next(model.parameters()).device
        self.word_ids = verbalizer.ids.to(device)
        self.word_mask = verbalizer.mask.to(device)
        self.token_mask = None if verbalizer.token_mask is None else verbalizer.token_mask.to(device)
        self.num_masks = verbalizer.num_masks
        self.head = next((getattr(model, a) for a in HEAD_ATTRIBUTES if isinstance(getattr(model, a, None), torch.nn.Module)), None)

    @classmethod
    def for_tokenizer(cls, model, verbalizer: VerbalizerTokens, tokenizer) -> "MaskedLMScorer":
        """The one way pet builds a scorer: mask and padding ids come from the model's tokenizer."""
        return cls(model, verbalizer, tokenizer.mask_token_id, pad_id(tokenizer))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int:
        return int(self.word_ids.size(0))

    def logits_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  *selections: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """Vocabulary logits at each selection's (rows, positions) only, [*rows.shape, V] each, from one
        forward pass: stage A gets its labelled and its MLM batch through the encoder in one go."""
        if self.head is not None:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return [self.head(hidden[rows, positions]) for rows, positions in selections]
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return [logits[rows, positions] for rows, positions in selections]

    def hidden_to_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                         positions: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits at (rows, positions) only: [*rows.shape, V]."""
        return self.logits_at(input_ids, attention_mask, (rows, positions))[0]

    def mask_positions(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, positions) of each row's mask slot: [B] each, or [B, 1] and [B, M] for M masks."""
        first = (input_ids == self.mask_token_id).int().argmax(-1)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        if self.num_masks == 1:
            return rows, first
        offsets = torch.arange(self.num_masks, device=input_ids.device)
        return rows[:, None], first[:, None] + offsets

    def mask_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, V] vocabulary logits at the (single) mask position of each row; [B, M, V] for M masks."""
        return self.hidden_to_logits(input_ids, attention_mask, *self.mask_positions(input_ids))

    def class_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.scores_from_mask_logits(self.mask_logits(input_ids, attention_mask))

    def scores_from_mask_logits(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """[B, C] class scores from the vocabulary logits at the mask slot(s)."""
        logits = mask_logits.float()
        if self.token_mask is None:
            return maths.class_scores(logits, self.word_ids, self.word_mask)
        return maths.multi_token_class_scores(logits, self.word_ids, self.token_mask, self.word_mask)

    def batch(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention = pad(sequences, self.pad_token_id)
        return input_ids.to(self.device), attention.to(self.device)

    @torch.inference_mode()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int, autocast_ctx=None) -> torch.Tensor:
        """[N, C] float32 class scores on the CPU, batched by similar length, in the input order."""
        import contextlib

        was_training = self.model.training
        self.model.eval()
        out = torch.empty(len(sequences), self.num_classes)
        for indices in length_sorted_batches([len(s) for s in sequences], batch_size):
            with autocast_ctx() if autocast_ctx else contextlib.nullcontext():
                scores = self.class_scores(*self.batch([sequences[i] for i in indices]))
            out[torch.as_tensor(indices)] = scores.float().cpu()
        self.model.train(was_training)
        return out


def score_table(encoder: PatternEncoder, scorer: MaskedLMScorer, table, batch_size: int, autocast_ctx, label: str) -> torch.Tensor:
    """[N, C] class scores of one teacher over a whole data table (pet.io.data.Table), read in chunks."""
    parts = []
    with progress(label, len(table)) as advance:
        for chunk in table.chunks():
            try:
                sequences = encoder.encode(chunk)
            except PetError as err:  # e.g. an example that cannot be shortened to fit: name the file
                raise PetError(f"{table.path}: {err}") from None
            parts.append(scorer.score(sequences, batch_size, autocast_ctx))
            advance(len(chunk))
    return torch.cat(parts) if parts else torch.empty(0, scorer.num_classes)
