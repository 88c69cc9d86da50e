#!/usr/bin/env python
"""Does task-adaptive MLM pretraining (`pet adapt`) help PET on a domain the MLM head never saw?

    nice -n 10 python benchmarks/adapt.py                 # agnews; zero-shot only
    nice -n 10 python benchmarks/adapt.py --pet           # plus one small PET run per model

On the shared, loaded 2-core CPU one adaptation step (batch 16) took 6-8 s and one zero-shot
evaluation (12 pairs x 500 texts) 3-6 min: `--modes plain --steps 150` is about 25 min in all.

../shared/models/minilm-l6-mlm's MLM head was trained on reviews (IMDB, SST-2) only; agnews is news.
For the base model and each adapted one (``--modes``: plain text, and/or texts rendered through the
news patterns with the mask slot left open), all on the agnews unlabeled set (5,600 texts):

1. Zero-shot: every shipped news pattern x verbalizer (6 x 2) on the first --test-examples rows of
   test.jsonl, as ``pet evaluate CONFIG --data SUBSET`` reports it: mean, best and the uniform ensemble.
2. With --pet: one small PET run (n32-s1; patterns colon and dash, the first two in the file, x the
   paper verbalizer x seed 1; --teacher-steps, --student-steps, the first --unlabeled unlabeled texts
   for labelling and distillation): each teacher's, the ensemble's and the student's test accuracy
   on the same subset.

Every setting is fixed before any number is seen; nothing is tuned on test data. Prints one JSON
line per measurement and writes them to --out/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PET_NO_PROGRESS", "1")

SHARED = REPO.parent / "shared"
DATA = SHARED / "data" / "agnews"
MODEL = SHARED / "models" / "minilm-l6-mlm"


def first_rows(source: Path, target: Path, count: int) -> Path:
    with source.open(encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(count), handle)]
    target.write_text("".join(lines), encoding="utf-8")
    return target


def write_config(folder: Path, model: Path, args, pet_run: bool) -> Path:
    """A run config for agnews; for the PET run, 2 patterns x 1 verbalizer x 1 seed and the small sets."""
    folder.mkdir(parents=True, exist_ok=True)
    unlabeled = folder.parent / "unlabeled-subset.jsonl" if pet_run else DATA / "unlabeled.jsonl"
    ids = "  ids: [colon, dash]\n" if pet_run else ""
    verbalizer_ids = "  ids: [paper]\n" if pet_run else ""
    config = folder / "config.yaml"
    config.write_text(
        f"model: {model}\n"
        f"data:\n  train: {DATA / 'fewshot' / 'n32-s1.jsonl'}\n  unlabeled: {unlabeled}\n  test: {folder.parent / 'test-subset.jsonl'}\n"
        f"patterns:\n  file: {REPO / 'patterns' / 'news.yaml'}\n{ids}"
        f"verbalizers:\n  file: {REPO / 'verbalizers' / 'news.yaml'}\n{verbalizer_ids}"
        f"teachers:\n  seeds: [1]\n  steps: {args.teacher_steps}\n  max_length: {args.max_length}\n"
        f"labelling:\n  max_length: {args.max_length}\n"
        f"distillation:\n  steps: {args.student_steps}\n  max_length: {args.max_length}\n"
        "runtime:\n  device: cpu\n"
        "ipet:\n  generations: 0\n",  # plain PET, as measured in BENCHMARKS.md (pet's default is iPET)
        encoding="utf-8",
    )
    return config


def emit(out: Path, record: dict) -> None:
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    with (out / "results.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def adapt_model(mode: str, args) -> tuple[Path, dict]:
    import pet

    folder = args.out / f"adapted-{mode}"
    started = time.monotonic()
    pet.adapt(write_config(args.out / f"adapt-{mode}", MODEL, args, False), folder, overwrite=True, steps=args.steps,
              batch_size=args.batch_size, prompts=mode == "prompts", seed=0, max_length=args.max_length)
    record = json.loads((folder / "adapt.json").read_text(encoding="utf-8"))
    return folder, {"what": "adapt", "mode": mode, "steps": args.steps, "batch_size": args.batch_size,
                    "learning_rate": record["settings"]["learning_rate"], "loss_first": round(record["loss"]["first"], 4),
                    "loss_last": round(record["loss"]["last"], 4), "seconds": round(time.monotonic() - started, 1)}


def zero_shot(name: str, model: Path, args) -> dict:
    from pet.evaluation import evaluate_zero_shot

    started = time.monotonic()
    result = evaluate_zero_shot(write_config(args.out / f"zero-shot-{name}", model, args, False), args.out / "test-subset.jsonl")
    accuracies = {k: round(v["accuracy"], 4) for k, v in result["teachers"].items()}
    return {"what": "zero-shot", "model": name, "examples": args.test_examples, "mean": round(sum(accuracies.values()) / len(accuracies), 4),
            "best": max(accuracies.values()), "ensemble": round(result["ensemble"]["accuracy"], 4), "per_pattern": accuracies,
            "seconds": round(time.monotonic() - started, 1)}


def pet_run(name: str, model: Path, args) -> dict:
    import pet

    started = time.monotonic()
    run = pet.run(pet.load_config(write_config(args.out / f"pet-{name}", model, args, True)), args.out / f"run-{name}", overwrite=True)
    summary = run.summary()
    test = run.soft_labels.test_metrics or {}
    per_teacher = {k: round(v, 4) for k, v in (test.get("teachers") or {}).items()}  # accuracy of each teacher
    return {"what": "pet", "model": name, "teachers": per_teacher, "ensemble": round(summary["ensemble_test"]["accuracy"], 4),
            "student": round(summary["student_test"]["accuracy"], 4), "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pet-adapt-benchmark"),
                        help="work folder: configs, adapted models (90 MB each), runs, results.jsonl")
    parser.add_argument("--modes", default="plain,prompts", help="adapted models to build: plain, prompts")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--test-examples", type=int, default=500)
    parser.add_argument("--pet", action="store_true", help="also one small PET run per model")
    parser.add_argument("--no-base", action="store_true", help="skip the base model (measured by an earlier call)")
    parser.add_argument("--unlabeled", type=int, default=1000)
    parser.add_argument("--teacher-steps", type=int, default=100)
    parser.add_argument("--student-steps", type=int, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_base:
        (args.out / "results.jsonl").unlink(missing_ok=True)
    first_rows(DATA / "test.jsonl", args.out / "test-subset.jsonl", args.test_examples)
    first_rows(DATA / "unlabeled.jsonl", args.out / "unlabeled-subset.jsonl", args.unlabeled)
    import torch

    emit(args.out, {"what": "setup", "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "date": time.strftime("%Y-%m-%d"), "args": {k: str(v) for k, v in vars(args).items()}})
    models = {"base": MODEL}
    if not args.no_base:
        emit(args.out, zero_shot("base", MODEL, args))
        if args.pet:
            emit(args.out, pet_run("base", MODEL, args))
    for mode in [m for m in args.modes.split(",") if m]:
        models[mode], record = adapt_model(mode, args)
        emit(args.out, record)
        emit(args.out, zero_shot(mode, models[mode], args))
        if args.pet:
            emit(args.out, pet_run(mode, models[mode], args))


if __name__ == "__main__":
    main()
