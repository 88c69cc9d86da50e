"""The ../shared/data layout that the unseen-task builders (subj.py, r8.py) write: train, test and
unlabeled JSONL, and few-shot sets drawn round-robin over the labels."""

from __future__ import annotations

import json
import random
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
