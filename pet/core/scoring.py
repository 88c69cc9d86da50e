"""Class scores of a masked-LM teacher: MLM logits (or log-probabilities) at the mask, per label.

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
its context): the encoder gives the pattern M consecutive masks, M = the longest label word in
tokens, so truncation is decided once for every word. ``teachers.multi_token_rule`` says how a word
t_1..t_n (n <= M) is scored; neither rule drops a token or stands a word in by its first piece.

- "mean" (the default): the mean per-token log-probability ``(1/n) * sum_i log_softmax(logits at
  mask i)[t_i]``, all from one forward pass over the M-mask sequence (a shorter word's masks after
  its n-th stay in the input, unscored); a label scores the mean over its words. One pass per batch
  whatever the number of labels, and the same function trains (cross-entropy over the class scores)
  and scores. It is a length-normalised approximation, not PET's rule: a word of n < M tokens is
  read in a context of M masks, and its tokens are predicted independently of each other.
- "pet": PET's MultiMaskTaskHelper (timoschick/pet, pet/task_helpers.py). At inference
  (:meth:`MaskedLMScorer.score`: accuracies, stage B, pet evaluate), as ``eval_step``: each word is
  scored on the sequence with exactly its own n masks (the M - n last ones deleted, as PET's
  ``trim_input_ids``; the sequence only gets shorter, so it still fits), decoded in PET's default
  order (``_get_choice_probabilities_batched``): at each step the open mask whose target token is the
  most probable is filled with that token and the model runs again; the word scores the SUM of the
  log-probabilities its tokens had when they were filled. That is n forward passes per word (the
  first one shared by the words of one length). In training (:meth:`MaskedLMScorer.class_scores`,
  :meth:`~MaskedLMScorer.scores_from_mask_logits`, used by pet/core/mlm.py), as ``train_step``: one
  forward pass with all M masks, a word scoring the SUM of its tokens' log-probabilities at its
  first n masks. PET trains with a hinge loss over those sums, ``max(0, 1 + NLL(gold) - NLL(wrong))``
  per wrong candidate; here the loss stays the cross-entropy over class scores that every pet
  teacher trains with (the single-token PET objective), and the auxiliary MLM loss is mixed in as
  for single-token teachers (PET's MultiMask helper leaves it out). PET verbalizes a label with one
  word (``verbalize(label)[0]``); a label of several words here scores the log of the mean of its
  words' probabilities (log-mean-exp), which is that word's score when there is one.

Single-token verbalizers keep the fast path (raw logits at one mask) under either rule.
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

DECODE_ROWS = 256  # rows per forward pass of the "pet" rule's decoding (bounds the [rows, n, V] logits)

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
        # single-token words keep the fast path (raw logits) whatever the rule says
        self.rule = verbalizer.rule if self.token_mask is not None else "mean"
        self.groups = length_groups(self.word_ids, self.token_mask, self.word_mask) if self.rule == "pet" else []
        self.head = mask_only_projection(model, (mask_token_id,))
        types = getattr(model.config, "type_vocab_size", 0) or 0
        self.separator_id = separator_id if types >= 2 else None
        self.pairs: bool | None = None  # decided from the first batch (a scorer serves one pattern)

    @classmethod
    def for_tokenizer(cls, model, verbalizer: VerbalizerTokens, tokenizer) -> "MaskedLMScorer":
        """The one way pet builds a scorer: mask, padding and separator ids come from the model's tokenizer."""
        return cls(model, verbalizer, tokenizer.mask_token_id, pad_id(tokenizer), pair_separator(tokenizer))

    @classmethod
    def for_vocabulary(cls, model, tokenizer) -> "MaskedLMScorer":
        """A scorer used only for vocabulary logits at chosen positions (``logits_at``): its placeholder
        verbalizer is never read (pet adapt, the MLM loss of pet/tools/domain.py, word search, perplexity)."""
        placeholder = VerbalizerTokens(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool), (("",),))
        return cls.for_tokenizer(model, placeholder, tokenizer)

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

    def mask_positions(self, input_ids: torch.Tensor, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, positions) of each row's mask slot: [B] each, or [B, 1] and [B, M] for M masks
        (``count``: a slot of that many masks instead of the scorer's own M)."""
        count = self.num_masks if count is None else count
        first = (input_ids == self.mask_token_id).int().argmax(-1)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        if self.num_masks == 1:
            return rows, first
        offsets = torch.arange(count, device=input_ids.device)
        return rows[:, None], first[:, None] + offsets

    def mask_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, V] vocabulary logits at the (single) mask position of each row; [B, M, V] for M masks."""
        return self.hidden_to_logits(input_ids, attention_mask, *self.mask_positions(input_ids))

    def class_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.scores_from_mask_logits(self.mask_logits(input_ids, attention_mask))

    def training_loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A teacher's training objective: cross-entropy of the gold class over the class scores."""
        return maths.class_cross_entropy(scores, labels)

    def scores_from_mask_logits(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """[B, C] class scores from the vocabulary logits at the mask slot(s): the training form, one
        pass with M masks (for the "pet" rule, PET's train_step; its inference form is :meth:`score`)."""
        logits = mask_logits.float()
        if self.token_mask is None:
            return maths.class_scores(logits, self.word_ids, self.word_mask)
        if self.rule == "pet":
            return maths.pet_multi_token_class_scores(logits, self.word_ids, self.token_mask, self.word_mask)
        return maths.multi_token_class_scores(logits, self.word_ids, self.token_mask, self.word_mask)

    def slot_log_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, count: int) -> torch.Tensor:
        """[B, count, V] log-probabilities (log_softmax) at the first ``count`` masks of each row."""
        logits = self.hidden_to_logits(input_ids, attention_mask, *self.mask_positions(input_ids, count))
        return torch.log_softmax(logits.float(), dim=-1)

    def pet_decode_scores(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """[B, C] the "pet" rule at inference for one batch of M-mask sequences (module docstring):
        each word on its own n-mask sequence, decoded in PET's order, labels by log-mean-exp."""
        word_scores = torch.full((len(sequences), *self.word_mask.shape), float("-inf"), device=self.device)
        for n, classes, words, targets in self.groups:
            shortened = [drop_masks(s, self.mask_token_id, self.num_masks, n) for s in sequences]
            word_scores[:, classes, words] = self.decode(*self.batch(shortened), targets)
        return maths.log_mean_exp_words(word_scores, self.word_mask)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[B, K] summed log-probabilities of K words of n tokens (``targets`` [K, n]) on rows holding n
        masks. Nothing is filled before the first step, so its pass is shared by all K words, as PET's
        ``initial_outputs``; every later step is one pass over B x K rows, in chunks of DECODE_ROWS."""
        n = targets.size(1)
        positions = self.mask_positions(input_ids, n)[1]  # [B, n], read before any mask is filled
        first = self.slot_log_probs(input_ids, attention_mask, n)[:, torch.arange(n, device=targets.device), targets]  # [B, K, n]
        if n == 1:
            return first[..., 0]
        chunk = max(1, DECODE_ROWS // input_ids.size(0))
        return torch.cat([self.decode_rows(input_ids, attention_mask, positions, first[:, k : k + chunk], targets[k : k + chunk])
                          for k in range(0, targets.size(0), chunk)], dim=1)

    def decode_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                    first: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[B, k]: PET's decoding (``_get_choice_probabilities_batched``, default strategy) of k words
        on B rows, from the first step's [B, k, n] token log-probabilities; n - 1 more passes."""
        batch, k, n = first.shape
        ids = input_ids.repeat_interleave(k, 0)  # row b * k + j: example b, word j
        attention, slots = attention_mask.repeat_interleave(k, 0), positions.repeat_interleave(k, 0)
        goal = targets.repeat(batch, 1)  # [R, n]
        rows = torch.arange(ids.size(0), device=ids.device)
        token_log_probs, filled = first.reshape(-1, n), torch.zeros_like(goal, dtype=torch.bool)
        total = torch.zeros(ids.size(0), device=ids.device)
        for step in range(n):
            if step:
                # masks are filled where they were: positions stay those read from the n-mask rows
                logits = self.hidden_to_logits(ids, attention, rows[:, None], slots)
                token_log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, goal[..., None])[..., 0]
            choice, log_prob = maths.fill_most_probable(token_log_probs, filled)
            total = total + log_prob
            filled[rows, choice] = True
            ids[rows, slots[rows, choice]] = goal[rows, choice]
        return total.view(batch, k)

    def batch(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention = pad(sequences, self.pad_token_id)
        return to_device(input_ids, self.device), to_device(attention, self.device)

    @torch.inference_mode()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int, autocast_ctx=None) -> torch.Tensor:
        """[N, C] float32 class scores on the CPU, batched by similar length, in the input order."""
        import contextlib

        was_training = self.model.training
        self.model.eval()
        batches = length_sorted_batches([len(s) for s in sequences], batch_size)
        parts = []  # stay on the device until every batch is queued: one device-to-host copy, not one per batch
        for indices in batches:
            with autocast_ctx() if autocast_ctx else contextlib.nullcontext():
                if self.rule == "pet":  # n forward passes per word of n tokens, not one per batch
                    scores = self.pet_decode_scores([sequences[i] for i in indices])
                else:
                    scores = self.class_scores(*self.batch([sequences[i] for i in indices]))
            parts.append(scores.float())
        out = torch.empty(len(sequences), self.num_classes)
        if parts:
            order = torch.as_tensor([i for indices in batches for i in indices])
            out[order] = torch.cat(parts).cpu()
        self.model.train(was_training)
        return out


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on ``device``; to a GPU through pinned memory without blocking, so the copy overlaps
    the kernels still queued instead of waiting for them."""
    if device.type != "cuda":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


def drop_masks(sequence: Sequence[int], mask_id: int, num_masks: int, keep: int) -> list[int]:
    """``sequence`` with its slot of ``num_masks`` consecutive masks cut to the first ``keep``, as PET's
    ``trim_input_ids`` (timoschick/pet, pet/utils.py) keeps a word's n masks. Only shorter, so it still fits."""
    start = list(sequence).index(mask_id)
    return list(sequence[: start + keep]) + list(sequence[start + num_masks :])


def length_groups(word_ids: torch.Tensor, token_mask: torch.Tensor, word_mask: torch.Tensor
                  ) -> list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(n, classes [K], words [K], token ids [K, n]) of the real words of each length n: PET groups
    its candidates by length the same way, one n-mask sequence per group."""
    lengths = token_mask.sum(-1)  # [C, W]
    groups = []
    for n in sorted(set(lengths[word_mask].tolist())):
        classes, words = ((lengths == n) & word_mask).nonzero(as_tuple=True)
        groups.append((int(n), classes, words, word_ids[classes, words, :n]))
    return groups


def encoded_chunks(encoder: PatternEncoder, table, select=None) -> Iterable[tuple[int, list[list[int]]]]:
    """(rows, token ids) of each chunk of a data table (pet.io.data.Table), errors naming the file;
    ``select`` keeps only the chunks whose index it accepts (one rank's share)."""
    for chunk in table.chunks(select=select):
        try:
            yield len(chunk), encoder.encode(chunk)
        except PetError as err:  # e.g. an example that cannot be shortened to fit: name the file
            raise PetError(f"{table.path}: {err}") from None


def check_table_fits(encoder: PatternEncoder, table) -> None:
    """Every row of ``table`` can be encoded with this pattern and max_length (else a PetError naming the file)."""
    for _ in encoded_chunks(encoder, table):
        pass


def score_table(encoder: PatternEncoder, scorer: MaskedLMScorer, table, batch_size: int, autocast_ctx, label: str,
                select=None) -> torch.Tensor:
    """[N, C] class scores of one teacher over a whole data table (or the chunks ``select`` keeps), read in chunks."""
    parts = []
    with progress(label, len(table)) as advance:
        for rows, sequences in encoded_chunks(encoder, table, select):
            parts.append(scorer.score(sequences, batch_size, autocast_ctx))
            advance(rows)
    return torch.cat(parts) if parts else torch.empty(0, scorer.num_classes)
