#!/usr/bin/env python
"""Multi-label PET on the shipped example (examples/multilabel) against what a user would try instead.

    nice -n 10 python benchmarks/multilabel.py                       # ~15 min on 2 CPU cores
    nice -n 10 python benchmarks/multilabel.py --seeds 1 2 3 --student-steps 300

The example is small and synthetic (24 labelled reviews, 200 unlabeled, 80 test; 4 aspects): a
check that multi-label PET learns, not a benchmark of the field. Methods, every setting fixed before
any number was seen (nothing is tuned on the test set):

- ``always yes``: every label predicted (the micro-F1 a model must beat to carry information);
- ``train frequency``: a label predicted for every text when more than half the labelled examples carry it;
- ``supervised``: a multi-label sequence classifier (BCE) fine-tuned from the same masked LM on the
  24 labelled examples: --supervised-steps steps, batch 4, lr auto (pet's rule by model size);
- ``pet``: `pet run examples/multilabel/config.yaml` (2 patterns x the yes/no verbalizer x each seed
  of --seeds, --teacher-steps, T = 2, --student-steps): its teachers, the ensemble and the student.

Prints one JSON line per method and seed, then a markdown table (micro-F1, macro-F1, subset accuracy
on the 80 test reviews, at the threshold 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PET_NO_PROGRESS", "1")

EXAMPLE = REPO / "examples" / "multilabel"
MODEL = REPO.parent / "shared" / "models" / "minilm-l6-mlm"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def metrics(gold_sets, decided, labels) -> dict:
    from pet.core.metrics import multi_label_metrics
    from pet.core.multilabel import multi_hot

    m = multi_label_metrics(multi_hot(gold_sets, len(labels)), decided, labels)
    return {k: m[k] for k in ("micro_f1", "macro_f1", "subset_accuracy", "per_label_f1")}


def baselines(train, test, labels) -> list[dict]:
    import torch

    gold = [tuple(labels.index(l) for l in r["labels"]) for r in test]
    frequent = torch.tensor([sum(l in r["labels"] for r in train) / len(train) > 0.5 for l in labels])
    return [{"method": "always yes", **metrics(gold, torch.ones(len(test), len(labels)), labels)},
            {"method": "train frequency", **metrics(gold, frequent.expand(len(test), -1).float(), labels)}]


def supervised(config, train, test, labels, seed: int, steps: int) -> dict:
    """Plain fine-tuning: pet's own student class as a multi-label classifier, BCE on the gold label sets."""
    import torch

    from pet.core import maths
    from pet.core.modeling import resolved_learning_rate
    from pet.core.multilabel import multi_hot
    from pet.core.training import EpochSampler, OptimSettings, train as optimise
    from pet.stages.distillation.student import Student

    started = time.perf_counter()
    config = config.model_copy(update={"distillation": config.distillation.model_copy(update={"seed": seed})})
    student = Student.create(config, labels)
    texts = {"text": [r["text"] for r in train]}
    sequences = student.encode(texts)
    targets = multi_hot([tuple(labels.index(l) for l in r["labels"]) for r in train], len(labels))
    sampler = EpochSampler(len(sequences), 4, torch.Generator().manual_seed(seed))

    def step_loss(step: int):
        batch = sampler.next()
        return maths.decision_cross_entropy(student.forward([sequences[i] for i in batch]).float(), targets[batch])

    rate = resolved_learning_rate("auto", student.model)
    optimise(student.model, step_loss, OptimSettings(steps, rate, 0.01, 0, 1.0), student.device, "fp32", "supervised")
    logits = student.logits({"text": [r["text"] for r in test]})
    gold = [tuple(labels.index(l) for l in r["labels"]) for r in test]
    return {"method": "supervised", "seed": seed, "steps": steps, "learning_rate": rate,
            **metrics(gold, (torch.sigmoid(logits) >= 0.5).float(), labels), "seconds": round(time.perf_counter() - started, 1)}


def pet_run(model: Path, work: Path, seed: int, args) -> list[dict]:
    import pet
    from pet.io.config import load_config

    overrides = {"model": str(model), "teachers.seeds": [seed], "teachers.steps": args.teacher_steps,
                 "distillation.steps": args.student_steps, "runtime.device": args.device}
    started = time.perf_counter()
    run = pet.run(load_config(EXAMPLE / "config.yaml", overrides), work / f"pet-s{seed}")
    labels_test = run.soft_labels.test_metrics
    keys = ("micro_f1", "macro_f1", "subset_accuracy", "per_label_f1")
    out = [{"method": "pet teacher", "teacher": name, "seed": seed, **{k: teacher[k] for k in keys}}
           for name, teacher in labels_test["teachers_metrics"].items()]
    out.append({"method": "pet ensemble", "seed": seed, **{k: labels_test["ensemble"][k] for k in keys}})
    out.append({"method": "pet student", "seed": seed, **{k: run.student.test_metrics[k] for k in keys},
                "seconds": round(time.perf_counter() - started, 1)})
    return out


def run_labels(config) -> tuple[str, ...]:
    from pet.io.patterns import load_verbalizers

    return load_verbalizers(config.verbalizers.file, config.verbalizers.ids, multi_label=True)[0].labels


def table(results: list[dict]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in results))
    lines = ["| method | micro-F1 | macro-F1 | subset accuracy | runs |", "| --- | --- | --- | --- | --- |"]
    for method in methods:
        chosen = [r for r in results if r["method"] == method]

        def cell(key: str) -> str:
            values = [100 * r[key] for r in chosen]
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            return f"{statistics.mean(values):.1f}{spread}"

        lines.append(f"| {method} | {cell('micro_f1')} | {cell('macro_f1')} | {cell('subset_accuracy')} | {len(chosen)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--work", help="run folders (default: a temporary folder, deleted)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--teacher-steps", type=int, default=250)  # the example config's budget
    parser.add_argument("--student-steps", type=int, default=150)
    parser.add_argument("--supervised-steps", type=int, default=250)  # the teachers' budget
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import torch

    from pet.io.config import load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    model = Path(args.model)
    config = load_config(EXAMPLE / "config.yaml", {"model": str(model), "runtime.device": args.device})
    labels = list(run_labels(config))
    train, test = rows(EXAMPLE / "train.jsonl"), rows(EXAMPLE / "test.jsonl")
    results = baselines(train, test, labels)
    for r in results:
        print(json.dumps(r), flush=True)
    with tempfile.TemporaryDirectory(prefix="pet-multilabel-") as tmp:
        work = Path(args.work or tmp)
        for seed in args.seeds:
            for r in [supervised(config, train, test, labels, seed, args.supervised_steps), *pet_run(model, work, seed, args)]:
                print(json.dumps(r), flush=True)
                results.append(r)
    print(f"\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; model {model.name}; "
          f"seeds {args.seeds}; teachers {args.teacher_steps} steps, student {args.student_steps}, supervised {args.supervised_steps}\n")
    print(table(results))


if __name__ == "__main__":
    main()
