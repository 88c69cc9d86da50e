"""Turning examples into token ids through a pattern, with truncation that never cuts the mask.

Each segment of the template is tokenized on its own (fields in one batched call per field), so
truncation can remove tokens from the shortenable fields only. Whitespace before a segment is
given to the tokenizer as a leading space, which is what byte-level BPE (RoBERTa, GPT-2) and
SentencePiece need to produce the word-start form of a token; a segment without whitespace before
it is, for SentencePiece-style tokenizers, tokenized right after its left context (see
:class:`PatternEncoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from pet.io.data import Examples
from pet.errors import PetError
from pet.io.patterns import MultiLabelVerbalizer, Pattern, Verbalizer, scored_verbalizer


@dataclass(frozen=True)
class SpecialTokens:
    """The ids a tokenizer wraps around a single sequence, e.g. [CLS] ... [SEP] or <s> ... </s>."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer) -> "SpecialTokens":
        # transformers 5 tokenizers no longer expose build_inputs_with_special_tokens, so read the
        # wrapping off a probe: the content of "a" with and without special tokens.
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return cls(tuple(full[:start]), tuple(full[start + len(bare) :]))
        raise PetError(f"cannot work out how tokenizer {type(tokenizer).__name__} adds special tokens")

    def __len__(self) -> int:
        return len(self.prefix) + len(self.suffix)


def trim_lengths(lengths: Sequence[int], excess: int) -> list[int]:
    """New lengths after removing ``excess`` tokens, always from the currently longest segment.

    Equivalent to PET's token-by-token "pop from the longest", computed in closed form: all
    segments longer than some cap are cut to the cap, earlier segments keeping ties.
    """
    if excess <= 0:
        return list(lengths)
    if excess > sum(lengths):
        raise ValueError("cannot remove more tokens than there are")
    low, high = 0, max(lengths)
    while low < high:  # the largest cap whose cut removes at least `excess` tokens
        cap = (low + high + 1) // 2
        if sum(max(0, n - cap) for n in lengths) >= excess:
            low = cap
        else:
            high = cap - 1
    cap = low
    new = [min(n, cap) for n in lengths]
    give_back = sum(lengths) - sum(new) - excess
    for i, n in enumerate(lengths):
        if give_back == 0:
            break
        if n > cap:
            new[i] += 1
            give_back -= 1
    return new


class PatternEncoder:
    """Encodes examples with one pattern for one tokenizer.

    ``num_masks`` > 1 places that many consecutive mask tokens (for multi-token verbalizers). A
    pattern with ``second_segment`` is encoded as the tokenizer encodes a pair: the tokenizer's own
    separator (e.g. [SEP], or </s></s>) between the two parts, each part starting like a sequence.

    SentencePiece-style tokenizers (Metaspace: ALBERT, XLM-R, DeBERTa-v2/v3, CamemBERT) put a "▁"
    word start on any text tokenized on its own, so a segment that directly follows the previous
    one in the template ("{mask}.") is tokenized after a stand-in left context whose tokens are then
    removed: "." and not "▁.". Tokenizers without that trait (WordPiece, byte-level BPE) tokenize
    each segment on its own, as before.
    """

    def __init__(self, pattern: Pattern, tokenizer, max_length: int, num_masks: int = 1):
        if tokenizer.mask_token_id is None:
            raise PetError(f"tokenizer {type(tokenizer).__name__} has no mask token; PET teachers need a masked LM")
        self.pattern, self.tokenizer, self.num_masks = pattern, tokenizer, num_masks
        self.special = SpecialTokens.of(tokenizer)
        self.second = pattern.second_segment_start
        self.separator = pair_separator_ids(tokenizer, self.special, pattern.id) if self.second is not None else ()
        self.max_length = min(max_length, _model_max(tokenizer))
        self.mask_id = tokenizer.mask_token_id
        self.replacement_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
        # ids user text may not produce: a second mask, or a separator that would fake a pair
        self.forbidden = {self.mask_id} | ({tokenizer.sep_token_id} if tokenizer.sep_token_id is not None else set())
        self.in_context = marks_segment_starts(tokenizer)
        self.literals: dict[int, list[int]] = {}
        for index, seg in enumerate(pattern.segments):
            if seg.kind == "text":
                self.literals[index] = self._segment_tokens(index, [seg.value])[0]

    def starts_sequence(self, index: int) -> bool:
        """Whether segment ``index`` is the first of the sequence (or of a pair's second part)."""
        return index == 0 or index == self.second

    def _spaced(self, index: int, text: str) -> str:
        return (" " + text) if not self.starts_sequence(index) and self.pattern.segments[index].space_before else text

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _segment_tokens(self, index: int, texts: list[str]) -> list[list[int]]:
        """Token ids of segment ``index`` holding each of ``texts``, as in the pattern's running text."""
        glued = not self.starts_sequence(index) and not self.pattern.segments[index].space_before
        if not (self.in_context and glued):
            return self._tokenize([self._spaced(index, t) for t in texts])
        previous = self.pattern.segments[index - 1]
        # the real left context when it is literal text, else (or where that merges with the text into
        # one token) a stand-in word; the text alone only if every probe merges
        probes = ([previous.value] if previous.kind == "text" else []) + list(STAND_INS)
        out: list[list[int] | None] = [None] * len(texts)
        for probe in probes:
            missing = [i for i, ids in enumerate(out) if ids is None]
            if not missing:
                break
            for i, ids in zip(missing, tokens_after(self.tokenizer, probe, [texts[i] for i in missing])):
                out[i] = ids
        return [ids if ids is not None else self._tokenize([t])[0] for ids, t in zip(out, texts)]

    def _field_tokens(self, examples: Examples) -> dict[int, list[list[int]]]:
        out: dict[int, list[list[int]]] = {}
        for index, seg in enumerate(self.pattern.segments):
            if seg.kind == "field":
                texts = [self.pattern.field_text(seg.value, value) for value in examples.fields[seg.value]]
                out[index] = [[self.replacement_id if t in self.forbidden else t for t in ids]
                              for ids in self._segment_tokens(index, texts)]
        return out

    def encode(self, examples: Examples) -> list[list[int]]:
        """Token ids with special tokens, one list per example, unpadded."""
        segments = self.pattern.segments
        field_tokens = self._field_tokens(examples)
        out: list[list[int]] = []
        for row in range(len(examples)):
            parts: dict[int, list[int]] = {}
            for index, seg in enumerate(segments):
                if seg.kind == "text":
                    parts[index] = self.literals[index]
                elif seg.kind == "field":
                    parts[index] = field_tokens[index][row]
                else:
                    parts[index] = [self.mask_id] * self.num_masks
            self._fit(parts, examples.ids[row])
            out.append(self._assemble(parts))
        return out

    def _fit(self, parts: dict[int, list[int]], example_id: str) -> None:
        """Shorten the shortenable fields of one example in place so that it fits ``max_length``."""
        fixed = len(self.special) + len(self.separator)
        excess = sum(len(p) for p in parts.values()) - (self.max_length - fixed)
        if excess <= 0:
            return
        shortenable = [i for i, seg in enumerate(self.pattern.segments) if seg.kind == "field" and seg.value in self.pattern.shorten]
        cuttable = sum(len(parts[i]) for i in shortenable)
        if cuttable < excess:
            raise PetError(
                f"pattern '{self.pattern.id}': example '{example_id}' needs "
                f"{sum(len(p) for p in parts.values()) + fixed} tokens and only "
                f"{cuttable} of them may be shortened to fit max_length {self.max_length}; "
                f"raise max_length or add fields to the pattern's shorten list"
            )
        for i, n in zip(shortenable, trim_lengths([len(parts[i]) for i in shortenable], excess)):
            parts[i] = parts[i][:n]

    def _assemble(self, parts: dict[int, list[int]]) -> list[int]:
        ids = list(self.special.prefix)
        for index in range(len(self.pattern.segments)):
            if index == self.second:
                ids.extend(self.separator)
            ids.extend(parts[index])
        ids.extend(self.special.suffix)
        return ids

    def mask_index(self) -> int:
        return next(i for i, s in enumerate(self.pattern.segments) if s.kind == "mask")

    def context_before_mask(self) -> tuple[str, bool]:
        """The literal text just before the mask (if any) and whether a space separates them."""
        segments = self.pattern.segments
        index = self.mask_index()
        if self.starts_sequence(index):
            return "", False
        previous = segments[index - 1].value if segments[index - 1].kind == "text" else ""
        return previous, segments[index].space_before


STAND_INS = ("a", "x")  # words standing in for a field's or the mask's text when it is the left context


def pair_separator_ids(tokenizer, special: SpecialTokens, pattern_id: str) -> tuple[int, ...]:
    """The ids the tokenizer puts between the two parts of a pair, read off a probe pair ("a", "a")."""
    part = tokenizer("a", add_special_tokens=False)["input_ids"]
    try:
        full = tokenizer("a", "a")["input_ids"]
    except Exception as err:  # tokenizers without a pair form raise various errors
        raise PetError(f"pattern '{pattern_id}': tokenizer {type(tokenizer).__name__} cannot encode a pair ({err}); "
                       f"remove second_segment from the pattern") from None
    prefix, suffix = list(special.prefix), list(special.suffix)
    inner = full[len(prefix) : len(full) - len(suffix)]
    fits = (full[: len(prefix)] == prefix and full[len(full) - len(suffix) :] == suffix and len(inner) >= 2 * len(part)
            and inner[: len(part)] == part and inner[len(inner) - len(part) :] == part)
    if not fits:
        raise PetError(f"pattern '{pattern_id}': cannot work out how tokenizer {type(tokenizer).__name__} separates "
                       f"the two parts of a pair; remove second_segment from the pattern")
    return tuple(inner[len(part) : len(inner) - len(part)])


def marks_segment_starts(tokenizer) -> bool:
    """Whether the tokenizer gives text tokenized on its own a word start it would not have right
    after a word: SentencePiece/Metaspace turns "." into "▁." (or "▁", "."), yet "a." into "▁a", ".".
    WordPiece and byte-level BPE tokenize "." the same in both places."""
    alone = tokenizer(".", add_special_tokens=False)["input_ids"]
    [after] = tokens_after(tokenizer, "a", ["."])
    return after is not None and after != alone


def tokens_after(tokenizer, before: str, texts: list[str]) -> list[list[int] | None]:
    """Token ids of each text right after ``before`` (``before``'s tokens removed), one batched call;
    None where the two merge into a token so that ``before``'s tokens are not a prefix."""
    context = tokenizer(before, add_special_tokens=False)["input_ids"]
    joined = tokenizer([before + t for t in texts], add_special_tokens=False)["input_ids"] if texts else []
    return [ids[len(context) :] if ids[: len(context)] == context else None for ids in joined]


def _model_max(tokenizer) -> int:
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000 else 1_000_000


def word_tokens_in_context(tokenizer, word: str, before: str, space: bool, at_start: bool = False) -> list[int]:
    """Token ids of ``word`` as the tokenizer would produce them right after ``before``.

    Tokenizing the word alone is wrong for byte-level BPE: "great" and " great" are different
    tokens. So the word is tokenized after its real left context and the context's tokens removed.
    ``at_start``: the mask begins the sequence (or a pair's second part), where the word does stand
    alone; SentencePiece-style tokenizers then give it its word start "▁great".
    """
    spaced = (" " if space else "") + word
    glued_start = marks_segment_starts(tokenizer)
    if at_start and glued_start:
        return tokenizer(word, add_special_tokens=False)["input_ids"]
    [ids] = tokens_after(tokenizer, before or "a", [spaced])
    if ids is None and before and glued_start:  # "▁" tokenizers must not fall back to the word alone
        [ids] = tokens_after(tokenizer, "a", [spaced])
    return ids if ids is not None else tokenizer(spaced, add_special_tokens=False)["input_ids"]


MULTI_TOKEN_RULES = ("mean", "pet")  # teachers.multi_token_rule; "mean" first: the default


@dataclass(frozen=True)
class VerbalizerTokens:
    """A verbalizer's words as token ids.

    Single-token (the fast path): ``ids`` is [C, W], padded with 0, and ``mask`` [C, W] marks real
    words. Multi-token: ``ids`` is [C, W, M] with M = the longest word in tokens (the number of mask
    slots the pattern gets), ``token_mask`` [C, W, M] marks each word's real tokens.

    ``rule`` says how multi-token words are scored ("mean" or "pet", see pet/core/scoring.py); it
    travels here so that every scorer built from these tokens scores them the same way. It is not
    part of :meth:`to_json` (whose format old teacher records share); teacher records store it
    beside it, as "multi_token_rule".
    """

    ids: torch.Tensor
    mask: torch.Tensor
    words: tuple[tuple[str, ...], ...]
    token_mask: torch.Tensor | None = None
    rule: str = "mean"

    def __post_init__(self):
        if self.rule not in MULTI_TOKEN_RULES:  # the config validates user input; this catches code
            raise ValueError(f"unknown multi-token rule {self.rule!r}; expected one of {MULTI_TOKEN_RULES}")

    @property
    def num_masks(self) -> int:
        return 1 if self.token_mask is None else int(self.ids.size(-1))

    def to_json(self) -> list:
        """Single-token: [[id, ...] per label]; multi-token: [[[id, ...] per word] per label]."""
        if self.token_mask is None:
            return [[int(i) for i, m in zip(row, mrow) if m] for row, mrow in zip(self.ids.tolist(), self.mask.tolist())]
        return [[[int(t) for t, k in zip(word, kw) if k] for word, kw, m in zip(row, krow, mrow) if m]
                for row, krow, mrow in zip(self.ids.tolist(), self.token_mask.tolist(), self.mask.tolist())]

    @classmethod
    def from_json(cls, data: list, words: tuple[tuple[str, ...], ...], rule: str = "mean") -> "VerbalizerTokens":
        """Rebuild from :meth:`to_json` (as recorded in a teacher's record) and the record's rule."""
        multi = any(isinstance(word, list) for row in data for word in row)
        rows = [[w if isinstance(w, list) else [w] for w in row] for row in data] if multi else [[[w] for w in row] for row in data]
        return tokens_from_rows(rows, words, multi, rule)


def tokens_from_rows(rows: list[list[list[int]]], words: tuple[tuple[str, ...], ...], multi: bool,
                     rule: str = "mean") -> VerbalizerTokens:
    """Pack per-label, per-word token lists into padded tensors (multi-token form only if asked)."""
    width = max(len(r) for r in rows)
    longest = max(len(w) for r in rows for w in r)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    if not multi:
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for c, row in enumerate(rows):
            ids[c, : len(row)] = torch.tensor([w[0] for w in row])
            mask[c, : len(row)] = True
        return VerbalizerTokens(ids, mask, words, rule=rule)
    ids = torch.zeros(len(rows), width, longest, dtype=torch.long)
    token_mask = torch.zeros(len(rows), width, longest, dtype=torch.bool)
    for c, row in enumerate(rows):
        mask[c, : len(row)] = True
        for w, word in enumerate(row):
            ids[c, w, : len(word)] = torch.tensor(word)
            token_mask[c, w, : len(word)] = True
    return VerbalizerTokens(ids, mask, words, token_mask, rule)


def verbalizer_tokens(verbalizer: Verbalizer | MultiLabelVerbalizer, encoder: PatternEncoder, model_name: str, multi_token: bool = False,
                      rule: str = "mean") -> VerbalizerTokens:
    """Token ids of every label word in the pattern's mask context.

    By default each word must be one known token. With ``multi_token`` a word may be several tokens;
    if any is, the result is in multi-token form (and the pattern needs ``num_masks`` masks), scored
    by ``rule`` (teachers.multi_token_rule).
    """
    verbalizer = scored_verbalizer(verbalizer)  # a multi-label task scores its yes/no answer words
    tokenizer = encoder.tokenizer
    before, space = encoder.context_before_mask()
    at_start = encoder.starts_sequence(encoder.mask_index())
    rows: list[list[list[int]]] = []
    for label in verbalizer.labels:
        row = []
        for word in verbalizer.words[label]:
            ids = word_tokens_in_context(tokenizer, word, before, space, at_start)
            where = f"verbalizer '{verbalizer.id}' with pattern '{encoder.pattern.id}'"
            if not ids:
                raise PetError(f"{where}: word '{word}' of label '{label}' is no token at all for {model_name}; choose another word")
            if len(ids) != 1 and not multi_token:
                pieces = tokenizer.convert_ids_to_tokens(ids)
                raise PetError(
                    f"{where}: word '{word}' of label '{label}' is {len(ids)} tokens {pieces} for {model_name}; "
                    f"choose a word that is a single token for this model, or set teachers.multi_token: true "
                    f"to score multi-token words"
                )
            if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
                raise PetError(f"{where}: word '{word}' of label '{label}' is the unknown token for {model_name}; choose another word")
            row.append(list(ids))
        rows.append(row)
    words = tuple(verbalizer.words[label] for label in verbalizer.labels)
    return tokens_from_rows(rows, words, multi=any(len(w) > 1 for r in rows for w in r), rule=rule)


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence of this batch only (dynamic padding)."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, seq in enumerate(sequences):
        input_ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention[i, : len(seq)] = 1
    return input_ids, attention


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (longest first) so that padding is small for inference."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
