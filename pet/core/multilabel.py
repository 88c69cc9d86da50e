"""Multi-label teachers: one cloze question per (example, label), answered yes or no at the mask.

A multi-label pattern has a ``{label}`` placeholder ("{text} Is this about {label}? {mask}."), and
a multi-label verbalizer gives the words of the answers (yes: "Yes", no: "No") and, optionally, how
each label reads in the pattern. An example of a task with L labels becomes L cloze texts, in
example-major order (row i * L + l asks about label l of example i). The masked LM scores the two
answers of each row exactly as a single-label teacher scores two classes, and the label's logit is
d = yes score - no score, so that

- its probability sigmoid(d) is the "yes" share of softmax over the two answers: labels never
  compete with each other (no softmax over labels);
- training is binary cross-entropy on d (BCEWithLogitsLoss semantics), over (example, label) rows;
- a teachers ensemble averages d, and the soft labels are sigmoid(d / T) per label.

This is the formulation the PET author suggests for multi-label tasks (timoschick/pet issue 13):
one binary decision per label with a yes/no verbalizer. It costs L forward passes per example.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from pet.core import maths
from pet.core.encoding import PatternEncoder, VerbalizerTokens
from pet.core.scoring import MaskedLMScorer
from pet.io.data import Examples
from pet.io.patterns import LABEL, MultiLabelVerbalizer, Pattern, Verbalizer


def is_multi_label(verbalizer: Verbalizer | MultiLabelVerbalizer) -> bool:
    return isinstance(verbalizer, MultiLabelVerbalizer)


def expand(examples: Examples, label_texts: Sequence[str]) -> Examples:
    """Each example once per label, example-major, with the label's text in the ``label`` field and,
    when the examples have label sets, the binary answer (1: the label applies) as the class."""
    count = len(label_texts)
    rows = [i for i in range(len(examples)) for _ in range(count)]
    fields = {name: [values[i] for i in rows] for name, values in examples.fields.items()}
    fields[LABEL] = list(label_texts) * len(examples)
    answers = None
    if examples.label_sets is not None:
        answers = [int(label in examples.label_sets[i]) for i in range(len(examples)) for label in range(count)]
    return Examples([examples.ids[i] for i in rows], fields, answers)


def multi_hot(label_sets: Sequence[Sequence[int]], num_labels: int) -> torch.Tensor:
    """[N, L] float 0/1 matrix of label sets."""
    out = torch.zeros(len(label_sets), num_labels)
    for row, label_set in enumerate(label_sets):
        out[row, list(label_set)] = 1.0
    return out


def training_targets(examples: Examples, num_labels: int) -> torch.Tensor:
    """The targets a teacher's training rows are compared with: class indices [N] (single-label), or
    each (example, label) row's 0/1 answer [N * L], in the order :func:`expand` gives the rows."""
    if examples.label_sets is None:
        return torch.tensor(examples.labels)
    return multi_hot(examples.label_sets, num_labels).reshape(-1)


def unshortened_label(pattern: Pattern) -> Pattern:
    """The pattern with ``{label}`` never truncated: a cut label name would ask another question."""
    if LABEL not in pattern.shorten:
        return pattern
    return dataclasses.replace(pattern, shorten=tuple(field for field in pattern.shorten if field != LABEL))


class MultiLabelEncoder:
    """Encodes examples as L cloze texts each, one per label (the pattern's ``{label}`` filled in)."""

    def __init__(self, pattern: Pattern, verbalizer: MultiLabelVerbalizer, tokenizer, max_length: int, num_masks: int = 1):
        self.inner = PatternEncoder(unshortened_label(pattern), tokenizer, max_length, num_masks)
        self.label_texts = [verbalizer.label_text[label] for label in verbalizer.labels]

    def encode(self, examples: Examples) -> list[list[int]]:
        return self.inner.encode(expand(examples, self.label_texts))

    def __getattr__(self, name: str):  # pattern, tokenizer, num_masks, ...: the per-row encoder's
        return getattr(self.inner, name)


class MultiLabelScorer:
    """A masked-LM scorer of yes/no answers, read as per-label decision logits.

    ``score`` takes the L rows per example that :class:`MultiLabelEncoder` gives and returns [N, L]
    logits d; ``class_scores`` and ``scores_from_mask_logits`` keep the rows' own [B, 2] answer
    scores, and ``training_loss`` is the binary cross-entropy of their d against the 0/1 answers.
    """

    def __init__(self, inner: MaskedLMScorer, num_labels: int):
        self.inner, self.num_labels = inner, num_labels

    @property
    def num_classes(self) -> int:
        return self.num_labels

    def score(self, sequences: Sequence[Sequence[int]], batch_size: int, autocast_ctx=None) -> torch.Tensor:
        answers = self.inner.score(sequences, batch_size, autocast_ctx)
        return maths.answer_logits(answers).reshape(-1, self.num_labels)

    def training_loss(self, answer_scores: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        return maths.decision_cross_entropy(maths.answer_logits(answer_scores.float()), answers)

    def __getattr__(self, name: str):  # model, pad_token_id, class_scores, logits_at, ...: the row scorer's
        return getattr(self.inner, name)


def teacher_encoder(pattern: Pattern, verbalizer: Verbalizer | MultiLabelVerbalizer, tokenizer, max_length: int,
                    num_masks: int = 1) -> PatternEncoder | MultiLabelEncoder:
    """The encoder of one teacher: one row per example, or (multi-label) one per example and label."""
    if is_multi_label(verbalizer):
        return MultiLabelEncoder(pattern, verbalizer, tokenizer, max_length, num_masks)
    return PatternEncoder(pattern, tokenizer, max_length, num_masks)


def teacher_scorer(model, tokens: VerbalizerTokens, tokenizer, verbalizer: Verbalizer | MultiLabelVerbalizer
                   ) -> MaskedLMScorer | MultiLabelScorer:
    """The scorer of one teacher: class scores, or (multi-label) per-label decision logits."""
    scorer = MaskedLMScorer.for_tokenizer(model, tokens, tokenizer)
    return MultiLabelScorer(scorer, len(verbalizer.labels)) if is_multi_label(verbalizer) else scorer
