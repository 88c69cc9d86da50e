"""`pet search-words`: label words proposed by the masked LM from the labelled set.

In the spirit of PETAL (Schick et al., COLING 2020) and LM-BFF's automatic label words (Gao et al.,
ACL 2021): a good word for label c is one the model makes much more likely at the mask for c's
examples than for the others'. Score of token t for label c, per pattern P:

    gap_P(c, t) = mean_{x in c} log p_P(t | x) - mean_{x not in c} log p_P(t | x),

log p from log_softmax of the MLM logits at the mask of P(x) (the untrained model), then averaged
over the config's patterns. As in LM-BFF, the candidates of label c are first its POOL (100) likeliest
words (highest mean log p over c's examples), then ranked by the gap: the gap alone favours rare
words that are merely less unlikely for c. A token is a candidate for the one label where its gap
is largest and positive (so no word serves two labels) and only if it is a whole word: alphabetic, two letters or more, not a
stop word (scikit-learn's English list), not a sub-word piece, and a single token of the tokenizer
in the mask's context of every pattern, so ``pet train-teachers`` accepts the file as it is.
Multi-token words are not proposed (every candidate is a vocabulary entry).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pet.core.encoding import length_sorted_batches, word_tokens_in_context
from pet.errors import PetError
from pet.io.patterns import Verbalizer, load_verbalizers
from pet.tools.session import ConfigLike, Session, as_config, open_session

POOL = 100  # candidates per label: its likeliest whole words at the mask, then ranked by the gap
SEARCHED = 5_000  # likeliest tokens per label looked at to fill the pool


@dataclass(frozen=True)
class WordScore:
    word: str
    label: str
    score: float  # the gap, averaged over the patterns (higher = more specific to the label)
    label_log_prob: float  # mean log p(word) at the mask over the label's examples
    other_log_prob: float  # ... and over the other labels' examples
    rank: int  # 1 = the best candidate of the label


@dataclass
class WordSearch:
    verbalizer: Verbalizer
    scores: dict[str, list[WordScore]]  # per label, the chosen words in order
    patterns: list[str]
    examples: int
    model: str
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        """A verbalizers file with a comment per word saying how it scored."""
        lines = [f"# Label words found by `pet search-words` on {self.examples} labelled examples ({self.source}),",
                 f"# model {self.model}, patterns {', '.join(self.patterns)}.",
                 "# score = mean log-probability of the word at the mask over the label's examples minus its mean",
                 "# over the other labels' examples, averaged over the patterns (higher = more specific); candidates",
                 f"# are each label's {POOL} likeliest whole words at the mask, each word kept for one label only.",
                 f"labels: [{', '.join(json.dumps(label, ensure_ascii=False) for label in self.verbalizer.labels)}]",
                 "verbalizers:", f"  - id: {self.verbalizer.id}", "    name: \"found by pet search-words\"", "    words:"]
        for label in self.verbalizer.labels:
            lines.append(f"      {json.dumps(label, ensure_ascii=False)}:")
            for s in self.scores[label]:
                lines.append(f"        - {json.dumps(s.word, ensure_ascii=False)}  # score {s.score:+.3f} (log p {s.label_log_prob:.2f} "
                             f"on {label}, {s.other_log_prob:.2f} on the others), rank {s.rank}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path, force: bool = False) -> Path:
        """Write the file atomically (temporary file, checked by the verbalizers loader, then renamed)."""
        path = Path(path)
        if path.exists() and not force:
            raise PetError(f"{path} exists; choose another -o, or pass --force to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yaml", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_yaml())
            load_verbalizers(Path(tmp))  # the file must read back as written
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path


@torch.inference_mode()
def mask_log_prob_sums(session: Session, pattern) -> tuple[torch.Tensor, torch.Tensor]:
    """[C, V] sums of log p(token) at the mask over each label's labelled examples, and [V] over all."""
    task = session.task
    scorer = session.mask_scorer()
    sequences = task.encoder(pattern, session.config.teachers.max_length).encode(task.train)
    labels = torch.tensor(task.train.labels)
    sums = None
    for indices in length_sorted_batches([len(s) for s in sequences], session.config.runtime.eval_batch_size):
        log_probs = scorer.mask_logits(*scorer.batch([sequences[i] for i in indices])).float().log_softmax(-1).cpu()
        if sums is None:
            sums = torch.zeros(len(task.labels), log_probs.size(-1))
        sums.index_add_(0, labels[indices], log_probs)
    return sums, sums.sum(0)


def label_gaps(session: Session) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[C, V] gap, label mean and other-labels mean of log p at the mask, averaged over the patterns."""
    counts = torch.bincount(torch.tensor(session.task.train.labels), minlength=len(session.task.labels)).float()[:, None]
    label_mean = other_mean = 0
    for pattern in session.task.patterns:
        sums, total = mask_log_prob_sums(session, pattern)
        label_mean = label_mean + sums / counts
        other_mean = other_mean + (total - sums) / (counts.sum() - counts)
    label_mean, other_mean = label_mean / len(session.task.patterns), other_mean / len(session.task.patterns)
    return label_mean - other_mean, label_mean, other_mean


def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


class WordFilter:
    """Whether a vocabulary entry is a whole word that every pattern tokenizes as that one token."""

    def __init__(self, session: Session):
        self.tokenizer = session.tokenizer
        self.special = set(self.tokenizer.all_special_ids)
        self.stop = stop_words()
        self.contexts = []
        for pattern in session.task.patterns:
            encoder = session.task.encoder(pattern, session.config.teachers.max_length)
            before, space = encoder.context_before_mask()
            self.contexts.append((before, space, encoder.starts_sequence(encoder.mask_index())))

    def word(self, token_id: int) -> str | None:
        if token_id in self.special:
            return None
        word = self.tokenizer.decode([token_id]).strip()
        if len(word) < 2 or not word.isalpha() or word.lower() in self.stop:
            return None
        for before, space, at_start in self.contexts:
            if word_tokens_in_context(self.tokenizer, word, before, space, at_start) != [token_id]:
                return None  # a sub-word piece, or a different token in this pattern's context
        return word


def candidate_pool(keep: WordFilter, label_mean: torch.Tensor) -> list[tuple[int, str]]:
    """The label's POOL likeliest whole words at the mask (LM-BFF's top-k by label-conditional likelihood):
    ranking by the gap alone favours rare words that are merely less unlikely for one label."""
    pool = []
    for token_id in label_mean.argsort(descending=True)[:SEARCHED].tolist():
        word = keep.word(token_id)
        if word is not None:
            pool.append((token_id, word))
            if len(pool) == POOL:
                break
    return pool


def choose_words(session: Session, gaps: torch.Tensor, label_mean: torch.Tensor, words_per_label: int) -> dict[int, list[tuple[int, str]]]:
    """Per label, the ``words_per_label`` (token id, word) of its pool with the largest gap, each
    word kept only for the label where its gap is largest (no word serves two labels)."""
    keep = WordFilter(session)
    owner = gaps.argmax(0)
    chosen: dict[int, list[tuple[int, str]]] = {}
    for c in range(gaps.size(0)):
        pool = [(t, w) for t, w in candidate_pool(keep, label_mean[c]) if int(owner[t]) == c and gaps[c, t] > 0]
        chosen[c] = sorted(pool, key=lambda item: -float(gaps[c, item[0]]))[:words_per_label]
        if not chosen[c]:
            raise PetError(f"no candidate word found for label '{session.task.labels[c]}' among its {POOL} likeliest words; "
                           f"add labelled examples, or write the words by hand")
    return chosen


def search_words(config: ConfigLike, words_per_label: int = 1, *, data: str | Path | None = None,
                 verbalizer_id: str = "found", overrides: dict | None = None) -> WordSearch:
    """Propose ``words_per_label`` words per label for a run config (a path or a RunConfig), from its
    labelled set (or ``data``) and patterns; ``.write(path)`` saves them as a verbalizers file."""
    if words_per_label < 1:
        raise PetError("--words-per-label must be at least 1")
    return find_words(open_session(as_config(config, data, overrides)), words_per_label, verbalizer_id)


def find_words(session: Session, words_per_label: int = 1, verbalizer_id: str = "found") -> WordSearch:
    """:func:`search_words` with the model and task already loaded."""
    task = session.task
    if session.config.task.multi_label:
        raise PetError("pet search-words proposes a word per label, and a multi-label task's verbalizer has yes/no answer "
                       "words instead; it does not apply to multi-label tasks")
    if len(task.train) == 0:
        raise PetError("pet search-words needs labelled examples (data.train, or --data FILE)")
    gaps, label_mean, other_mean = label_gaps(session)
    chosen = choose_words(session, gaps, label_mean, words_per_label)
    scores = {label: [WordScore(word, label, float(gaps[c, t]), float(label_mean[c, t]), float(other_mean[c, t]), rank)
                      for rank, (t, word) in enumerate(chosen[c], start=1)] for c, label in enumerate(task.labels)}
    verbalizer = Verbalizer(verbalizer_id, tuple(task.labels), {label: [s.word for s in scores[label]] for label in task.labels})
    notes = [f"label '{label}': only {len(s)} of {words_per_label} words found" for label, s in scores.items() if len(s) < words_per_label]
    return WordSearch(verbalizer, scores, [p.id for p in task.patterns], len(task.train), session.config.model,
                      str(session.config.data.train), notes)
