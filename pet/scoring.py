"""Class scores of a masked-LM teacher: MLM logits at the mask, averaged over each label's words.

Only the mask position needs vocabulary logits, so for common architectures the encoder runs alone
and the MLM head is applied to the mask's hidden state: this skips a [batch, length, vocab] matmul
that costs as much as the encoder itself on small models. Other architectures use the full forward.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from pet import maths
from pet.encoding import VerbalizerTokens, length_sorted_batches, pad

# Attribute of *ForMaskedLM models holding a head that maps hidden states to vocabulary logits.
HEAD_ATTRIBUTES = ("cls", "lm_head", "predictions")


class MaskedLMScorer:
    def __init__(self, model, verbalizer: VerbalizerTokens, mask_token_id: int, pad_token_id: int):
        self.model = model
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
        device = next(model.parameters()).device
        self.word_ids = verbalizer.ids.to(device)
        self.word_mask = verbalizer.mask.to(device)
        self.head = next((getattr(model, a) for a in HEAD_ATTRIBUTES if isinstance(getattr(model, a, None), torch.nn.Module)), None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def mask_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, V] vocabulary logits at the (single) mask position of each row."""
        positions = (input_ids == self.mask_token_id).int().argmax(-1)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        if self.head is not None:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.head(hidden[rows, positions])
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits[rows, positions]

    def class_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return maths.class_scores(self.mask_logits(input_ids, attention_mask).float(), self.word_ids, self.word_mask)

    def batch(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention = pad(sequences, self.pad_token_id)
        return input_ids.to(self.device), attention.to(self.device)

    @torch.inference_mode()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int, autocast_ctx=None) -> torch.Tensor:
        """[N, C] float32 class scores on the CPU, batched by similar length, in the input order."""
        import contextlib

        was_training = self.model.training
        self.model.eval()
        out = torch.empty(len(sequences), self.word_ids.size(0))
        for indices in length_sorted_batches([len(s) for s in sequences], batch_size):
            with autocast_ctx() if autocast_ctx else contextlib.nullcontext():
                scores = self.class_scores(*self.batch([sequences[i] for i in indices]))
            out[torch.as_tensor(indices)] = scores.float().cpu()
        self.model.train(was_training)
        return out
