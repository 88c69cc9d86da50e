#!/usr/bin/env python
"""Issue 13, after training: does the label-free pattern ranking predict trained-teacher accuracy, and
do the label words `pet search-words` finds hold up once the teachers are trained?

    python benchmarks/trained_patterns.py                 # sst2 and agnews, n32-s1, MiniLM, CPU

Per task: one teacher per shipped pattern with the file's first (manual) verbalizer, and one per
pattern (the first two patterns) with the words found on the same labelled set; 1 seed, ``--steps``
steps, learning rate auto, no auxiliary MLM loss. Accuracy on a fixed random sample of test.jsonl
(seed 0). Prints JSON lines and writes benchmarks/results/trained_patterns.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PET_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import patterns as zero_shot_bench  # noqa: E402  (benchmarks/patterns.py: configs, Spearman's rho)

REPO = Path(__file__).resolve().parents[1]


def test_subset(task: str, count: int, work: Path) -> Path:
    lines = (zero_shot_bench.SHARED / "data" / task / "test.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = sorted(random.Random(0).sample(range(len(lines)), min(count, len(lines))))
    path = work / f"{task}-test.jsonl"
    path.write_text("\n".join(lines[i] for i in chosen) + "\n", encoding="utf-8")
    return path


def teacher_accuracies(config, output: Path, test: Path) -> dict[str, float]:
    import pet

    teachers = pet.train_teachers(config, output=output)
    return {name: m["accuracy"] for name, m in teachers.evaluate(test)["teachers"].items()}


def task_results(task: str, args, work: Path) -> dict:
    import pet

    base = zero_shot_bench.write_config(work, task, args.model, extra={"teachers.steps": args.steps})
    first_verbalizer = pet.load_verbalizers(REPO / "verbalizers" / f"{zero_shot_bench.TASKS[task]['files']}.yaml")[0].id
    manual = pet.load_config(base, {"verbalizers.ids": [first_verbalizer]})
    test = test_subset(task, args.test_examples, work)
    started = time.perf_counter()
    trained = teacher_accuracies(manual, work / f"{task}-manual", test)
    ranking = {r.pattern: r.perplexity for r in pet.pattern_perplexity(manual, max_examples=args.ranking_examples)}
    patterns = [p.id for p in pet.load_patterns(manual.patterns.file)]
    accuracy = {p: trained[f"{p}--{first_verbalizer}--s1"] for p in patterns}
    rho = zero_shot_bench.spearman([-ranking[p] for p in patterns], [accuracy[p] for p in patterns])
    found = pet.search_words(manual, 1)
    found_file = work / f"{task}-found.yaml"
    found.write(found_file, force=True)
    compared = patterns[:2]
    with_found = pet.load_config(base, {"verbalizers.file": str(found_file), "patterns.ids": compared})
    found_accuracy = teacher_accuracies(with_found, work / f"{task}-found", test)
    return {
        "task": task, "test_examples": args.test_examples, "steps": args.steps, "verbalizer": first_verbalizer,
        "trained_accuracy": accuracy, "pseudo_perplexity": ranking, "spearman_rho": rho,
        "found_words": {label: list(words) for label, words in found.verbalizer.words.items()},
        "manual_vs_found": {p: {"manual": accuracy[p], "found": found_accuracy[f"{p}--found--s1"]} for p in compared},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=zero_shot_bench.SHARED / "models" / "minilm-l6-mlm")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "agnews"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--test-examples", type=int, default=300)
    parser.add_argument("--ranking-examples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "trained_patterns.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="pet-trained-patterns-") as tmp:
        for task in args.tasks:
            results.append(task_results(task, args, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
