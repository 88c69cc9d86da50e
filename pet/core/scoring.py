"""Class scores of a masked-LM teacher: MLM logits at the mask, averaged over each label's words.

Only the mask position needs vocabulary logits, so the encoder runs alone and the MLM head is
applied to the mask's hidden state: this skips a [batch, length, vocab] matmul that costs as much as
the encoder itself on small models. ``PROJECTIONS`` says, per architecture, what its *ForMaskedLM
forward applies between the base model and the logits; another model with a head under a usual
name (``HEAD_ATTRIBUTES``) is checked once against its own full forward, and a model that fails the
check or has no such head is scored with the full forward, with a warning (never silently).

Pair patterns (``second_segment``): a row holding two separator runs ([CLS] a [SEP] b [SEP]) is a
pair; when the tokenizer marks a pair's second part with token type 1 and the model has
``type_vocab_size >= 2``, the scorer derives token_type_ids from the separators. Rows with one
separator get no token_type_ids at all, exactly as before pairs existed.

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

import logging
from typing import Callable, Iterable, Sequence

import torch

from pet.core import maths
from pet.core.encoding import PatternEncoder, VerbalizerTokens, length_sorted_batches, pad
from pet.errors import PetError
from pet.core.progress import progress

log = logging.getLogger("pet")

# Attribute of *ForMaskedLM models holding a head that maps hidden states to vocabulary logits.
HEAD_ATTRIBUTES = ("cls", "lm_head", "predictions")

Projection = Callable[[torch.Tensor], torch.Tensor]


def _attribute_head(name: str) -> Callable[[torch.nn.Module], Projection]:
    return lambda model: getattr(model, name)


def _distilbert(model) -> Projection:
    return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))


def _electra(model) -> Projection:
    return lambda h: model.generator_lm_head(model.generator_predictions(h))


def _deberta(model) -> Projection:
    # The non-legacy head takes the (tied) input embeddings as its decoder, as the forward does.
    if getattr(model, "legacy", True):
        return model.cls
    return lambda h: model.lm_predictions(h, model.deberta.embeddings.word_embeddings)


def _modernbert(model) -> Projection:
    # ModernBertModel applies final_norm itself and, in transformers 5, returns padded hidden states.
    return lambda h: model.decoder(model.head(h))


# transformers' own *ForMaskedLM classes whose forward is "base model, then exactly this"
# (checked in tests/test_mlm_heads.py against each model's full forward).
PROJECTIONS: dict[str, Callable[[torch.nn.Module], Projection]] = {
    "BertForMaskedLM": _attribute_head("cls"),
    "RobertaForMaskedLM": _attribute_head("lm_head"),
    "XLMRobertaForMaskedLM": _attribute_head("lm_head"),
    "CamembertForMaskedLM": _attribute_head("lm_head"),
    "AlbertForMaskedLM": _attribute_head("predictions"),
    "DistilBertForMaskedLM": _distilbert,
    "ElectraForMaskedLM": _electra,
    "DebertaForMaskedLM": _deberta,
    "DebertaV2ForMaskedLM": _deberta,
    "ModernBertForMaskedLM": _modernbert,
}

_warned: set[str] = set()  # architectures already warned about (once per process each)


def pad_id(tokenizer) -> int:
    """The id used for padding; tokenizers without a pad token pad with 0 (attention masks hide it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def mask_only_projection(model, probe_ids: Sequence[int] = ()) -> Projection | None:
    """hidden states -> vocabulary logits for ``model``, or None (then the full forward is used)."""
    name = type(model).__name__
    if name in PROJECTIONS and type(model).__module__.startswith("transformers."):
        return PROJECTIONS[name](model)
    head = next((getattr(model, a) for a in HEAD_ATTRIBUTES if isinstance(getattr(model, a, None), torch.nn.Module)), None)
    if head is not None and _agrees_with_forward(model, head, probe_ids):
        return head
    if name not in _warned:
        _warned.add(name)
        log.warning("%s: no known MLM head to apply at the mask alone; scoring with the full forward pass "
                    "(correct, but computes vocabulary logits at every position)", name)
    return None


def _agrees_with_forward(model, head: Projection, probe_ids: Sequence[int]) -> bool:
    """Whether ``head(base_model(x))`` gives the model's own logits on a short probe input (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        vocab = int(model.config.vocab_size)
        ids = [i for i in probe_ids if i is not None and 0 <= i < vocab] + list(range(min(6, vocab)))
        input_ids = torch.tensor([ids], device=next(model.parameters()).device)
        attention = torch.ones_like(input_ids)
        with torch.no_grad():
            full = model(input_ids=input_ids, attention_mask=attention).logits
            fast = head(model.base_model(input_ids=input_ids, attention_mask=attention).last_hidden_state)
        return fast.shape == full.shape and torch.allclose(fast, full, rtol=1e-4, atol=1e-4)
    except Exception:  # an architecture whose base model or head takes other inputs: not ours to guess
        return False
    finally:
        model.train(was_training)


def pair_token_types(input_ids: torch.Tensor, attention_mask: torch.Tensor, separator_id: int) -> torch.Tensor:
    """[B, L] token types of pair rows: 1 from after the first run of separators to the end, as a
    tokenizer gives "[CLS] a [SEP] b [SEP]"; rows with fewer than two separators are all 0.

    Computed on the device without reading anything back (no host synchronisation).
    """
    attended = attention_mask.bool()
    sep = (input_ids == separator_id) & attended
    positions = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
    first = sep.int().argmax(-1, keepdim=True)
    after_run = attended & ~sep & (positions > first)
    last = attended.sum(-1, keepdim=True) - 1
    # the second part starts at the first non-separator after the run; an empty one at the final separator
    start = torch.where(after_run.any(-1, keepdim=True), after_run.int().argmax(-1, keepdim=True), last)
    is_pair = sep.sum(-1, keepdim=True) >= 2
    return ((positions >= start) & attended & is_pair).long()


def pair_separator(tokenizer) -> int | None:
    """The separator id that ends a pair's first part, when the tokenizer gives the second part token
    type 1 ("[CLS] a [SEP] b [SEP]" -> 0 0 0 1 1); None when it types none (RoBERTa, XLM-R)."""
    if tokenizer.sep_token_id is None:
        return None
    try:
        types = tokenizer("a", "a", return_token_type_ids=True).get("token_type_ids") or []
    except Exception:  # a tokenizer without a pair form
        return None
    return int(tokenizer.sep_token_id) if 1 in types else None


class MaskedLMScorer:
    def __init__(self, model, verbalizer: VerbalizerTokens, mask_token_id: int, pad_token_id: int,
                 separator_id: int | None = None):
        """``separator_id``: see :func:`pair_separator`; without it, pairs get no token_type_ids."""
        self.model = model
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
        device = next(model.parameters()).device
        self.word_ids = verbalizer.ids.to(device)
        self.word_mask = verbalizer.mask.to(device)
        self.token_mask = None if verbalizer.token_mask is None else verbalizer.token_mask.to(device)
        self.num_masks = verbalizer.num_masks
        self.head = mask_only_projection(model, (mask_token_id,))
        types = getattr(model.config, "type_vocab_size", 0) or 0
        self.separator_id = separator_id if types >= 2 else None
        self.pairs: bool | None = None  # decided from the first batch (a scorer serves one pattern)

    @classmethod
    def for_tokenizer(cls, model, verbalizer: VerbalizerTokens, tokenizer) -> "MaskedLMScorer":
        """The one way pet builds a scorer: mask, padding and separator ids come from the model's tokenizer."""
        return cls(model, verbalizer, tokenizer.mask_token_id, pad_id(tokenizer), pair_separator(tokenizer))

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
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        token_types = self.token_types(input_ids, attention_mask)
        if token_types is not None:
            inputs["token_type_ids"] = token_types
        if self.head is not None:
            hidden = self.model.base_model(**inputs).last_hidden_state
            return [self.head(hidden[rows, positions]) for rows, positions in selections]
        logits = self.model(**inputs).logits
        return [logits[rows, positions] for rows, positions in selections]

    def token_types(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """token_type_ids for pair rows, or None (single-segment rows are passed as they always were)."""
        if self.separator_id is None:
            return None
        if self.pairs is None:  # one read-back per scorer, not per step
            sep = (input_ids == self.separator_id) & attention_mask.bool()
            self.pairs = bool((sep.sum(-1) >= 2).any())
        return pair_token_types(input_ids, attention_mask, self.separator_id) if self.pairs else None

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
