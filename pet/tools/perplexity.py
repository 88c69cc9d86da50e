"""Label-free pattern ranking: the masked LM's pseudo-perplexity of each pattern's own words.

Definition. For an unlabeled example x, a pattern P and a label word w of the verbalizer (each
label's first word), render P(x) with w in the mask's place. Mask, one at a time, each token of P's literal text and of w (not
the tokens of x), and read log_softmax of the MLM logits at that position for the token that was
there. The mean of those log-probabilities is the pseudo-log-likelihood (PLL) of the reading
(P, x, w). An example's PLL under P is the best reading over the labels' words (max over w:
without labels we cannot know which word is right, and the right one is the reading a good
pattern makes natural); the pattern's PLL is the mean over the examples, and its pseudo-perplexity
is PPPL = exp(-PLL). Lower is more natural.

Why this variant of Salazar et al.'s pseudo-log-likelihood (ACL 2020), which masks every token:
the input text is the same under every pattern and is most of the tokens, so scoring it adds cost
(one forward pass per token) and mostly a pattern-independent term; the tokens that differ between
patterns are the pattern's own words and the filled label word. Per-token means keep patterns of
different lengths comparable. It is cheap: (literal tokens + 1) x labels forward passes per
example, batched, on at most ``max_examples`` (32) examples.

Whether PPPL predicts a pattern's accuracy was measured (benchmarks/patterns.py, BENCHMARKS.md).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

import torch

from pet.core.encoding import length_sorted_batches
from pet.core.progress import progress
from pet.core.scoring import MaskedLMScorer
from pet.errors import PetError
from pet.io.data import Examples
from pet.io.patterns import Pattern, Verbalizer

MAX_EXAMPLES = 32  # as measured in benchmarks/patterns.py; the cost of `pet check` is mostly this


@dataclass(frozen=True)
class PatternPerplexity:
    pattern: str
    verbalizer: str
    perplexity: float  # exp(-log_likelihood); lower = the pattern reads more naturally to the model
    log_likelihood: float  # mean log-probability per scored token (the PLL)
    examples: int
    tokens: int  # masked positions scored, all examples and words together

    def to_json(self) -> dict:
        return dict(self.__dict__)


def rendered_parts(pattern: Pattern, values: dict[str, str], word: str) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """The text of each part (two for a ``second_segment`` pattern) with ``word`` in the mask's
    place, spaced as :meth:`Pattern.render` spaces it, and the character spans of literal text and word."""
    parts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for index, seg in enumerate(pattern.segments):
        if index in (0, pattern.second_segment_start):
            parts.append("")  # a new part: no space before its first segment
            spans.append([])
        if seg.kind == "field":
            piece = pattern.field_text(seg.value, values.get(seg.value, ""))
        else:
            piece = word if seg.kind == "mask" else seg.value
        space = " " if seg.space_before and index not in (0, pattern.second_segment_start) else ""
        parts[-1] += space + piece
        if seg.kind != "field":
            spans[-1].append((len(parts[-1]) - len(piece), len(parts[-1])))
    return parts, spans


def scored_tokens(tokenizer, pattern: Pattern, values: dict[str, str], word: str) -> tuple[list[int], list[int]]:
    """Token ids of the filled pattern (with special tokens) and the positions of its literal and word tokens."""
    parts, spans = rendered_parts(pattern, values, word)
    if not getattr(tokenizer, "is_fast", False):
        raise PetError(f"pattern ranking needs a fast tokenizer (with offsets); {type(tokenizer).__name__} is not one")
    encoded = tokenizer(*parts, return_offsets_mapping=True)
    positions = []
    for position, (part, (start, end)) in enumerate(zip(encoded.sequence_ids(), encoded["offset_mapping"])):
        if part is None or end <= start:
            continue  # a special token
        if any(start < stop and end > begin for begin, stop in spans[part]):
            positions.append(position)
    return list(encoded["input_ids"]), positions


@torch.inference_mode()
def masked_token_log_probs(scorer: MaskedLMScorer, items: list[tuple[list[int], int]], batch_size: int,
                           advance: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """log p(token | the rest) for each (ids, position): that position masked alone, batched by length;
    ``advance`` is told the items of each batch done (a progress bar)."""
    out = torch.empty(len(items))
    for indices in length_sorted_batches([len(ids) for ids, _ in items], batch_size):
        input_ids, attention = scorer.batch([items[i][0] for i in indices])
        rows = torch.arange(len(indices), device=input_ids.device)
        positions = torch.tensor([items[i][1] for i in indices], device=input_ids.device)
        targets = input_ids[rows, positions].clone()
        input_ids[rows, positions] = scorer.mask_token_id
        logits = scorer.hidden_to_logits(input_ids, attention, rows, positions).float()
        out[torch.as_tensor(indices)] = logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1).cpu()
        advance(len(indices))
    return out


@dataclass(frozen=True)
class Readings:
    """What one pattern x verbalizer scores: each (ids, position) masked alone, and the reading
    (example row x word) each belongs to."""

    items: list[tuple[list[int], int]]
    groups: list[int]  # row * len(words) + word, per item
    examples: int
    words: int


def readings(tokenizer, pattern: Pattern, verbalizer: Verbalizer, examples: Examples) -> Readings:
    """Every reading (P, x, w) of the examples with each label's first word, as positions to score."""
    words = list(dict.fromkeys(verbalizer.words[label][0] for label in verbalizer.labels))
    items, groups = [], []
    for row in range(len(examples)):
        values = {name: texts[row] for name, texts in examples.fields.items()}
        for w, word in enumerate(words):
            ids, positions = scored_tokens(tokenizer, pattern, values, word)
            items.extend((ids, p) for p in positions)
            groups.extend([row * len(words) + w] * len(positions))
    return Readings(items, groups, len(examples), len(words))


def reading_log_likelihoods(scorer: MaskedLMScorer, read: Readings, batch_size: int,
                            advance: Callable[[int], None] = lambda n: None) -> tuple[torch.Tensor, int]:
    """[N] PLL of each example (its best reading over the words), and the number of tokens scored."""
    log_probs = masked_token_log_probs(scorer, read.items, batch_size, advance)
    index = torch.tensor(read.groups, dtype=torch.long)
    sums = torch.zeros(read.examples * read.words).index_add_(0, index, log_probs)
    counts = torch.zeros(read.examples * read.words).index_add_(0, index, torch.ones_like(log_probs))
    means = (sums / counts.clamp(min=1)).view(read.examples, read.words)
    return means.max(-1).values, len(read.items)


def sample_examples(session, max_examples: int) -> Examples:
    """A fixed random sample (seed 0) of unlabeled examples whose every rendering fits the model."""
    table = session.task.unlabeled()
    order = list(range(len(table)))
    random.Random(0).shuffle(order)
    limit = min(session.config.labelling.max_length, getattr(session.tokenizer, "model_max_length", 512) or 512) - 8
    chosen: list[int] = []
    for start in range(0, len(order), 4 * max_examples):
        block = table.take(order[start : start + 4 * max_examples])
        chosen.extend(i for i, row in zip(order[start:], range(len(block))) if fits(session, block, row, limit))
        if len(chosen) >= max_examples:
            break
    if not chosen:
        raise PetError(f"{table.path}: no unlabeled example fits labelling.max_length under every pattern; nothing to rank with")
    return table.take(sorted(chosen[:max_examples]))


def fits(session, examples: Examples, row: int, limit: int) -> bool:
    values = {name: texts[row] for name, texts in examples.fields.items()}
    word = session.task.verbalizers[0].words[session.task.labels[0]][0]
    return all(len(scored_tokens(session.tokenizer, p, values, word)[0]) <= limit for p in session.task.patterns)


def perplexities(session, max_examples: int = MAX_EXAMPLES) -> list[PatternPerplexity]:
    """Pseudo-perplexity of every pattern x verbalizer of the session's config on unlabeled examples."""
    if session.config.task.multi_label:
        raise PetError("the pseudo-perplexity ranking reads each label's words in the pattern, and a multi-label task's "
                       "patterns ask yes/no questions about one label; it is not available for multi-label tasks yet")
    examples = sample_examples(session, max_examples)
    scorer = session.mask_scorer()
    batch_size = session.config.runtime.eval_batch_size
    pairs = [(p, v, readings(session.tokenizer, p, v, examples)) for p in session.task.patterns for v in session.task.verbalizers]
    out = []
    # one forward pass per scored token: minutes on a CPU for long texts, so the wait shows
    with progress("pattern ranking (pseudo-perplexity)", sum(len(read.items) for _, _, read in pairs)) as advance:
        for pattern, verbalizer, read in pairs:
            per_example, tokens = reading_log_likelihoods(scorer, read, batch_size, advance)
            pll = float(per_example.mean())
            out.append(PatternPerplexity(pattern.id, verbalizer.id, math.exp(-pll), pll, len(examples), tokens))
    return out


def rank_patterns(results: list[PatternPerplexity]) -> list[tuple[str, float]]:
    """(pattern id, PPPL) from most to least natural; a pattern's PLL is its mean over verbalizers."""
    by_pattern: dict[str, list[float]] = {}
    for result in results:
        by_pattern.setdefault(result.pattern, []).append(result.log_likelihood)
    scored = [(pattern, math.exp(-sum(plls) / len(plls))) for pattern, plls in by_pattern.items()]
    return sorted(scored, key=lambda item: item[1])


def pattern_perplexity(config, *, max_examples: int = MAX_EXAMPLES, overrides: dict | None = None) -> list[PatternPerplexity]:
    """Pseudo-perplexity of each pattern x verbalizer of a run config (a path or a RunConfig), label-free,
    on at most ``max_examples`` unlabeled examples; sort with :func:`rank_patterns`."""
    from pet.tools.session import as_config, open_session

    return perplexities(open_session(as_config(config, overrides=overrides)), max_examples)
