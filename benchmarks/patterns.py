#!/usr/bin/env python
"""Does the label-free pattern ranking predict accuracy, and are searched label words any good?

    nice -n 10 python benchmarks/patterns.py          # sst2, agnews, rte; about 15 min on 2 CPU cores

For sst2, agnews and rte with ../shared/models/minilm-l6-mlm and the labelled set n32-s1:

1. Pattern ranking. Each shipped pattern x verbalizer's pseudo-perplexity (pet.tools.perplexity on
   --ranking-examples unlabeled texts) against its zero-shot accuracy on the 32 labelled examples
   and on a fixed random sample (seed 0) of --test-examples test examples: Spearman's rho of -PPPL
   with accuracy (positive = lower perplexity goes with higher accuracy), over all pairs and over
   the patterns with the first verbalizer only. Trained teachers are not measured (too slow on 2
   shared CPU cores: see BENCHMARKS.md).
2. Label words (--word-tasks: sst2, agnews). pet.tools.words.find_words on the n32-s1 set (1 and 3
   words per label) against the shipped manual verbalizers: zero-shot accuracy on the same test
   sample, mean and best over the patterns.

Prints one JSON line per task, then Markdown tables (for BENCHMARKS.md); writes everything to --out.
Nothing here is tuned on test data.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PET_NO_PROGRESS", "1")

SHARED = REPO.parent / "shared"
TASKS = {
    "sst2": {"files": "sentiment", "fields": {"text": "text"}, "max_length": 128},
    "agnews": {"files": "news", "fields": {"text": "text"}, "max_length": 256},
    "rte": {"files": "nli", "fields": {"premise": "premise", "hypothesis": "hypothesis"}, "max_length": 256},
}


def write_config(folder: Path, task: str, model: Path, verbalizers: Path | None = None, extra: dict | None = None) -> Path:
    spec, data = TASKS[task], SHARED / "data" / task
    raw = {
        "model": str(model),
        "data": {"train": str(data / "fewshot" / "n32-s1.jsonl"), "unlabeled": str(data / "unlabeled.jsonl"), "fields": spec["fields"]},
        "patterns": {"file": str(REPO / "patterns" / f"{spec['files']}.yaml")},
        "verbalizers": {"file": str(verbalizers or REPO / "verbalizers" / f"{spec['files']}.yaml")},
        "teachers": {"max_length": spec["max_length"], "seeds": [1], "mlm_weight": 0.0},
        "labelling": {"max_length": spec["max_length"]},
        "runtime": {"device": "cpu", "eval_batch_size": 64},
        "ipet": {"generations": 0},  # single teachers are what is measured, not iPET's last generation
    }
    for key, value in (extra or {}).items():
        section, name = key.split(".")
        raw[section][name] = value
    path = folder / f"{task}-{len(list(folder.iterdir()))}.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    return path


def test_sample(session, task: str, count: int):
    from pet.io.data import open_table

    table = open_table(session.config, SHARED / "data" / task / "test.jsonl", "test", session.task.labels, labelled=True)
    indices = sorted(random.Random(0).sample(range(len(table)), min(count, len(table))))
    return table.take(indices), indices


def accuracy(scores, labels) -> float:
    import torch

    return float((scores.argmax(-1) == torch.tensor(labels)).float().mean())


def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic) if len(set(xs)) > 1 and len(set(ys)) > 1 else float("nan")


def task_results(task: str, args, work: Path) -> dict:
    """Ranking rows (PPPL, zero-shot accuracies) for every shipped pattern x verbalizer, Spearman's rho,
    and for the word tasks the searched verbalizers' zero-shot test accuracy."""
    from pet.tools.perplexity import perplexities
    from pet.tools.session import as_config, open_session

    start = time.time()
    session = open_session(as_config(write_config(work, task, args.model)))
    test, _ = test_sample(session, task, args.test_examples)
    patterns = {p.id: p for p in session.task.patterns}
    verbalizers = {v.id: v for v in session.task.verbalizers}
    rows = [{"pattern": r.pattern, "verbalizer": r.verbalizer, "pppl": r.perplexity,
             "zs_train": accuracy(session.zero_shot_scores(patterns[r.pattern], verbalizers[r.verbalizer], session.task.train), session.task.train.labels),
             "zs_test": accuracy(session.zero_shot_scores(patterns[r.pattern], verbalizers[r.verbalizer], test), test.labels)}
            for r in perplexities(session, args.ranking_examples)]
    out = {"task": task, "rows": rows, "test_examples": len(test), "ranking_examples": args.ranking_examples}
    first = session.task.verbalizers[0].id
    for metric in ("zs_train", "zs_test"):
        firsts = [r for r in rows if r["verbalizer"] == first]
        out[f"rho_{metric}_all"] = spearman([-r["pppl"] for r in rows], [r[metric] for r in rows])
        out[f"rho_{metric}_first"] = spearman([-r["pppl"] for r in firsts], [r[metric] for r in firsts])
    out["pairs"], out["patterns"] = len(rows), len(patterns)
    if task in args.word_tasks:
        out["words"] = word_results(session, test, rows)
    out["seconds"] = round(time.time() - start, 1)
    return out


def word_results(session, test, rows: list[dict]) -> dict:
    """Zero-shot test accuracy (mean and best over the patterns) of the manual and the searched verbalizers."""
    from pet.tools.words import find_words

    out = {}
    for verbalizer in session.task.verbalizers:
        accs = [r["zs_test"] for r in rows if r["verbalizer"] == verbalizer.id]
        out[verbalizer.id] = {"words": {k: list(v) for k, v in verbalizer.words.items()}, "mean": sum(accs) / len(accs), "best": max(accs)}
    for k in (1, 3):
        search = find_words(session, k, f"found-k{k}")
        accs = [accuracy(session.zero_shot_scores(p, search.verbalizer, test), test.labels) for p in session.task.patterns]
        out[search.verbalizer.id] = {"words": {k: list(v) for k, v in search.verbalizer.words.items()},
                                     "mean": sum(accs) / len(accs), "best": max(accs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "minilm-l6-mlm")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--word-tasks", nargs="+", default=["sst2", "agnews"])
    parser.add_argument("--test-examples", type=int, default=200)
    parser.add_argument("--ranking-examples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "patterns.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results = {"tasks": [], "args": {k: str(v) for k, v in vars(args).items()}, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="pet-patterns-") as tmp:
        for task in args.tasks:
            results["tasks"].append(task_results(task, args, Path(tmp)))
            print(json.dumps(results["tasks"][-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(markdown(results))


def fmt(value) -> str:
    return "-" if value is None else f"{value:+.2f}" if isinstance(value, float) else str(value)


def markdown(results: dict) -> str:
    lines = ["| task | pattern x verbalizer pairs | rho, zero-shot on n32-s1 | rho, zero-shot on test | "
             "first verbalizer only (patterns): rho n32-s1 / test |", "| --- | --- | --- | --- | --- |"]
    for r in results["tasks"]:
        lines.append(f"| {r['task']} | {r['pairs']} | {fmt(r['rho_zs_train_all'])} | {fmt(r['rho_zs_test_all'])} | "
                     f"{fmt(r['rho_zs_train_first'])} / {fmt(r['rho_zs_test_first'])} ({r['patterns']}) |")
    lines += ["", "| task | verbalizer | words | zero-shot test accuracy %, mean over patterns | best pattern |",
              "| --- | --- | --- | --- | --- |"]
    for r in results["tasks"]:
        for vid, z in r.get("words", {}).items():
            shown = "; ".join(f"{label}: {', '.join(ws)}" for label, ws in z["words"].items())
            lines.append(f"| {r['task']} | {vid} | {shown} | {100 * z['mean']:.1f} | {100 * z['best']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
