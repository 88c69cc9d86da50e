#!/usr/bin/env python
"""Make a skewed copy of a built task: one label kept at a given share of train, test and the pool.

    python benchmarks/unseen/skewed.py --task /tmp/unseen/subj --label subjective --share 0.15 --out /tmp/unseen/subj15

Issue 10's `distillation.class_weights: auto` balances the student only when the soft labels'
largest sklearn "balanced" class weight is above 2. The measured pools sat at 1.35 or below
(sst2, agnews, rte, subj) or at 6.9 and above (r8), so nothing said what balancing does in
between. This builds that case from a task whose classes are balanced: rows of ``--label`` are
dropped at random (seed 0) from train and from test until they are ``--share`` of each, so the
unlabeled pool (train's texts) and the test set have the same skew, as a user's data would. The
few-shot sets are drawn round-robin over the labels as before (a balanced labelled set, the
benchmark's layout), from the skewed train split.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from layout import read_jsonl, write_task


def skew(rows: list[dict[str, str]], label: str, share: float, rng: random.Random) -> list[dict[str, str]]:
    """``rows`` with ``label`` cut down to ``share`` of the result (never raised), order kept."""
    others = sum(row["label"] != label for row in rows)
    keep_count = round(others * share / (1 - share))
    own = [i for i, row in enumerate(rows) if row["label"] == label]
    if keep_count > len(own):
        raise SystemExit(f"'{label}' has {len(own)} rows, fewer than the {keep_count} that share {share} needs")
    kept = set(rng.sample(own, keep_count))
    return [row for i, row in enumerate(rows) if row["label"] != label or i in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, required=True, help="a built task folder (train.jsonl, test.jsonl)")
    parser.add_argument("--label", required=True, help="the label to make rare")
    parser.add_argument("--share", type=float, required=True, help="its share of train and of test, in (0, 1)")
    parser.add_argument("--out", type=Path, required=True, help="the new task folder")
    args = parser.parse_args()
    if not 0 < args.share < 1:
        raise SystemExit("--share must be between 0 and 1")
    train, test = read_jsonl(args.task / "train.jsonl"), read_jsonl(args.task / "test.jsonl")
    labels = tuple(dict.fromkeys(row["label"] for row in train))
    if args.label not in labels:
        raise SystemExit(f"label '{args.label}' is not in {args.task / 'train.jsonl'} (labels: {', '.join(labels)})")
    rng = random.Random(0)
    train, test = skew(train, args.label, args.share, rng), skew(test, args.label, args.share, rng)
    unlabeled_limit = len(read_jsonl(args.task / "unlabeled.jsonl"))
    counts = write_task(args.out, train, test, tuple(sorted(labels)), unlabeled_limit)
    print(json.dumps({"folder": str(args.out), "counts": counts}))


if __name__ == "__main__":
    main()
