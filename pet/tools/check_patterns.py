"""`pet check`'s pattern sections: each pattern as the model sees it, its token budget and
truncation, each label word's tokens in context, and zero-shot accuracy."""

from __future__ import annotations

import copy
import statistics

from pet.core.encoding import PatternEncoder, word_tokens_in_context
import torch

from pet.core.metrics import classification_metrics, multi_label_metrics
from pet.core.multilabel import unshortened_label
from pet.errors import PetError
from pet.io.data import Examples
from pet.io.patterns import LABEL, MultiLabelVerbalizer, Pattern, Verbalizer, scored_verbalizer
from pet.tools.report import Section
from pet.tools.session import Session

SHOWN_EXAMPLES = 3
PUNCTUATION = set(".,;:!?")
UNLABELED_CHECKED = 2_000  # unlabeled texts checked for truncation (the first ones of the file)


def showcase(examples: Examples, count: int = SHOWN_EXAMPLES) -> list[int]:
    """Rows of up to ``count`` examples, taking the labels in turn so that each label is shown."""
    by_label: dict[int, list[int]] = {}
    for row, label in enumerate(examples.labels or [0] * len(examples)):
        by_label.setdefault(label, []).append(row)
    queues = [by_label[label] for label in sorted(by_label)]
    rows: list[int] = []
    while len(rows) < min(count, len(examples)):
        for queue in queues:
            if queue and len(rows) < count:
                rows.append(queue.pop(0))
    return rows


def untruncated(encoder: PatternEncoder) -> PatternEncoder:
    """The same encoder without a length limit, to measure how much truncation removes."""
    wide = copy.copy(encoder)
    wide.max_length = 10**9
    return wide


def fixed_tokens(encoder: PatternEncoder) -> int:
    """Tokens every example spends on the pattern itself: special tokens, literal text, mask(s), separator."""
    return len(encoder.special) + len(encoder.separator) + sum(len(ids) for ids in encoder.literals.values()) + encoder.num_masks


def decoded(tokenizer, ids: list[int], full: list[int]) -> str:
    """The ids as text, special tokens and mask included, with the place where truncation cut marked."""
    cut = len(full) - len(ids)
    if cut == 0:
        return tokenizer.decode(ids)
    at = next((i for i, (a, b) in enumerate(zip(ids, full)) if a != b), len(ids))
    return f"{tokenizer.decode(ids[:at])} [...{cut} token{'s' if cut > 1 else ''} cut...] {tokenizer.decode(ids[at:])}"


def pattern_lines(section: Section, session: Session, pattern: Pattern, num_masks: int) -> None:
    """The budget line, three rendered labelled examples, and truncation of the labelled and unlabeled sets."""
    config, train = session.config, session.question_rows(session.task.train)  # multi-label: a row per label
    encoder = session.task.encoder(unshortened_label(pattern), config.teachers.max_length, num_masks)
    fixed = fixed_tokens(encoder)
    if len(train) == 0:
        section.add("info", f"{pattern.id}: \"{pattern.template}\" uses {fixed} of {encoder.max_length} tokens before any text",
                    pattern=pattern.id, fixed_tokens=fixed, max_length=encoder.max_length)
        return
    ids, full = encoder.encode(train), untruncated(encoder).encode(train)
    lengths = [len(f) for f in full]
    section.add("info", f"{pattern.id}: \"{pattern.template}\" uses {fixed} of {encoder.max_length} tokens before any text; "
                        f"with the text: median {statistics.median(lengths):g}, longest {max(lengths)}",
                pattern=pattern.id, fixed_tokens=fixed, max_length=encoder.max_length,
                median_tokens=statistics.median(lengths), longest_tokens=max(lengths))
    for row in showcase(train):
        label = row_label(session, train, row)
        section.add("detail", f"{label}: {decoded(session.tokenizer, ids[row], full[row])}  ({len(ids[row])} tokens)")
    doubled_punctuation(section, pattern, train)
    truncation_line(section, pattern.id, "labelled", ids, full, train.ids, encoder.max_length, "teachers.max_length")
    unlabeled_truncation(section, session, pattern, num_masks)


def row_label(session: Session, rows: Examples, row: int) -> str:
    """The gold label of a shown row; for a multi-label question row, its answer and the label asked about."""
    if LABEL in rows.fields and session.config.task.multi_label:
        return f"{('no', 'yes')[rows.labels[row]]} ({rows.fields[LABEL][row]})"
    return session.task.labels[rows.labels[row]]


def doubled_punctuation(section: Section, pattern: Pattern, examples: Examples) -> None:
    """A field that ends in punctuation, glued to literal text that starts with punctuation, reads
    "it.. All in all" to the model; strip_final_punctuation is the fix."""
    segments = pattern.segments
    for seg, after in zip(segments, segments[1:]):
        if seg.kind != "field" or after.kind != "text" or after.space_before or after.value[0] not in PUNCTUATION:
            continue
        if seg.value in pattern.strip_final_punctuation:
            continue
        texts = [pattern.field_text(seg.value, t) for t in examples.fields[seg.value]]
        hits = [t for t in texts if t and t[-1] in PUNCTUATION]
        if hits:
            section.add("warn", f"{pattern.id}: {len(hits)} of {len(texts)} labelled examples end {{{seg.value}}} with punctuation right "
                                f"before the pattern's '{after.value[0]}', which doubles it (\"...{hits[0][-8:]}{after.value[0]}\"); "
                                f"add strip_final_punctuation: [{seg.value}] to the pattern", examples=len(hits))


def truncation_line(section: Section, pattern_id: str, role: str, ids, full, example_ids, max_length: int, key: str) -> None:
    cuts = [(len(f) - len(i), example_id) for i, f, example_id in zip(ids, full, example_ids) if len(f) > len(i)]
    if not cuts:
        section.add("ok", f"{pattern_id}: no {role} example is truncated at {key} {max_length}", truncated=0)
        return
    worst, worst_id = max(cuts)
    mean = sum(c for c, _ in cuts) / len(cuts)
    section.add("warn", f"{pattern_id}: {len(cuts)} of {len(ids)} {role} examples are truncated at {key} {max_length} "
                        f"(by {mean:.1f} tokens on average, at most {worst}, in '{worst_id}'); raise {key} if the end of the text matters",
                truncated=len(cuts), mean_cut=mean, max_cut=worst, worst=worst_id)


def unlabeled_truncation(section: Section, session: Session, pattern: Pattern, num_masks: int) -> None:
    config = session.config
    encoder = session.task.encoder(unshortened_label(pattern), config.labelling.max_length, num_masks)
    table = session.task.unlabeled()
    examples = session.question_rows(table.take(range(min(len(table), UNLABELED_CHECKED // len(session.task.labels)))))
    role = ("unlabeled" if len(examples) == len(table) else f"unlabeled (first {len(examples)} of {len(table)})"
            if not session.config.task.multi_label else f"unlabeled question rows (texts x labels, {len(examples)})")
    try:
        ids = encoder.encode(examples)
    except PetError as err:
        section.add("fail", f"{table.path}: {err}")
        return
    truncation_line(section, pattern.id, role, ids, untruncated(encoder).encode(examples), examples.ids,
                    encoder.max_length, "labelling.max_length")


def verbalizer_lines(section: Section, session: Session, verbalizer: Verbalizer | MultiLabelVerbalizer, pattern: Pattern) -> None:
    """Each label word's tokens after the text before the mask; a word of several tokens is an
    error unless teachers.multi_token is set, and the line says which fix to make."""
    tokenizer, multi = session.tokenizer, session.config.teachers.multi_token
    encoder = session.task.encoder(pattern, session.config.teachers.max_length)
    before, space = encoder.context_before_mask()
    at_start = encoder.starts_sequence(encoder.mask_index())
    where = f"{verbalizer.id} with {pattern.id}"
    verbalizer = scored_verbalizer(verbalizer)  # multi-label: the yes/no answer words
    good, problems = [], 0
    for label in verbalizer.labels:
        for word in verbalizer.words[label]:
            ids = word_tokens_in_context(tokenizer, word, before, space, at_start)
            pieces = tokenizer.convert_ids_to_tokens(ids)
            problem = word_problem(tokenizer, ids, pieces, multi)
            if problem:
                problems += 1
                section.add("fail", f"{where}: '{word}' ({label}) {problem}", word=word, label=label, tokens=pieces)
            else:
                good.append(f"{word} -> {' '.join(pieces)}")
    if not problems:
        section.add("ok", f"{where}: {', '.join(good)}")


def word_problem(tokenizer, ids: list[int], pieces: list[str], multi: bool) -> str | None:
    if not ids:
        return "is no token at all; choose another word"
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        return f"is the unknown token {pieces}; choose a word the tokenizer knows"
    if len(ids) > 1 and not multi:
        return (f"is {len(ids)} tokens {pieces}; choose a single-token word, or set teachers.multi_token: true "
                f"to score it with {len(ids)} masks")
    return None


def zero_shot_lines(section: Section, session: Session) -> None:
    """Accuracy of the untrained model with each pattern x verbalizer on the labelled set."""
    task, train = session.task, session.task.train
    if len(train) == 0:
        section.add("info", "no labelled examples: skipped")
        return
    if session.config.task.multi_label:
        multi_label_zero_shot_lines(section, session)
        return
    labels = list(task.labels)
    counts = [train.labels.count(i) for i in range(len(labels))]
    majority = max(counts) / len(train)
    majority_label = labels[counts.index(max(counts))]
    for spec in task.specs(zero_shot=True):
        scores = session.zero_shot_scores(spec.pattern, spec.verbalizer, train)
        predicted = scores.argmax(-1).tolist()
        metrics = classification_metrics(train.labels, predicted, labels)
        name = f"{spec.pattern.id} x {spec.verbalizer.id}"
        text = f"{name}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
        data = dict(pattern=spec.pattern.id, verbalizer=spec.verbalizer.id, majority=majority, **metrics)
        if metrics["accuracy"] > majority:
            section.add("ok", text, **data)
        else:
            section.add("warn", f"{text}: no better than always answering '{majority_label}' ({majority:.4f}); "
                                f"try other words (pet search-words) or another pattern", **data)


def multi_label_zero_shot_lines(section: Section, session: Session) -> None:
    """Micro- and macro-F1 of the untrained model's decisions on the labelled set, against answering
    yes for every label (the F1 a pattern must beat to carry any information)."""
    from pet.core.calibration import prediction_metrics
    from pet.core.multilabel import multi_hot

    task, train, threshold = session.task, session.task.train, session.config.task.threshold
    labels = list(task.labels)
    gold = multi_hot(train.label_sets, len(labels))
    always_yes = multi_label_metrics(gold, torch.ones_like(gold), labels)["micro_f1"]
    for spec in task.specs(zero_shot=True):
        metrics = prediction_metrics(train.label_sets, session.zero_shot_scores(spec.pattern, spec.verbalizer, train), labels, threshold)
        name = f"{spec.pattern.id} x {spec.verbalizer.id}"
        text = f"{name}: micro-F1 {metrics['micro_f1']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, subset accuracy {metrics['subset_accuracy']:.4f}"
        data = dict(pattern=spec.pattern.id, verbalizer=spec.verbalizer.id, always_yes_micro_f1=always_yes,
                    **{k: metrics[k] for k in ("micro_f1", "macro_f1", "subset_accuracy", "per_label_f1", "examples")})
        if metrics["micro_f1"] > always_yes:
            section.add("ok", text, **data)
        else:
            section.add("warn", f"{text}: no better than answering yes for every label (micro-F1 {always_yes:.4f}); "
                                f"try other answer words or another question", **data)
