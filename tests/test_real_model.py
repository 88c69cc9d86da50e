"""The pipeline learns with a real pretrained masked LM (../shared/models/minilm-l6-mlm on SST-2).

Skipped when ../shared is absent. A small budget: 2 patterns x 1 verbalizer x 1 seed, 20 teacher
steps on 32 labelled examples, 200 unlabeled texts, 60 student steps (batch 8) at lr 3e-5 and 300
test sentences. The ensemble and the student must clearly beat the majority class (52%); measured:
ensemble 0.827, student 0.783 and 25-35 s on an idle 2-core machine (2026-12-05, fused AdamW;
before it, ensemble 0.80 and student 0.84).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA, SHARED_MODEL, cores_per_worker
from typer.testing import CliRunner

from pet.cli import app

SST2 = SHARED_DATA / "sst2"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.long,
    pytest.mark.skipif(not (SHARED_MODEL / "config.json").exists() or not (SST2 / "test.jsonl").exists(),
                       reason="../shared/models/minilm-l6-mlm or ../shared/data/sst2 not present"),
]


def head(source: Path, target: Path, count: int) -> list[dict]:
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()[:count]]
    target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


@pytest.fixture
def all_threads():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(cores_per_worker(), 4))  # under pytest -n, only this worker's share
    yield
    torch.set_num_threads(previous)


def test_model_is_loaded_in_float32_although_stored_in_float16():
    import torch
    from safetensors import safe_open

    from pet.core.modeling import load_masked_lm

    assert json.loads((SHARED_MODEL / "config.json").read_text())["dtype"] == "float16"
    with safe_open(str(SHARED_MODEL / "model.safetensors"), "pt") as stored:
        first = next(iter(stored.keys()))
        assert stored.get_slice(first).get_dtype() == "F16"
    model = load_masked_lm(str(SHARED_MODEL), torch.device("cpu"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_small_run_beats_the_majority_class(tmp_path, all_threads):
    train = head(SST2 / "fewshot" / "n32-s1.jsonl", tmp_path / "train.jsonl", 32)
    head(SST2 / "unlabeled.jsonl", tmp_path / "unlabeled.jsonl", 200)
    test = head(SST2 / "test.jsonl", tmp_path / "test.jsonl", 300)
    assert {r["label"] for r in train} == {"negative", "positive"}
    (tmp_path / "patterns.yaml").write_text(
        "patterns:\n"
        "  - id: it-was\n    template: \"{text} It was {mask}.\"\n    shorten: [text]\n"
        "  - id: in-summary\n    template: \"{text} In summary, the movie was {mask}.\"\n    shorten: [text]\n",
        encoding="utf-8")
    (tmp_path / "verbalizers.yaml").write_text(
        "labels: [negative, positive]\n"
        "verbalizers:\n  - id: terrible-great\n    words: {negative: [terrible], positive: [great]}\n",
        encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"model: {SHARED_MODEL}\n"
        "data:\n  train: train.jsonl\n  unlabeled: unlabeled.jsonl\n  test: test.jsonl\n"
        "patterns:\n  file: patterns.yaml\n"
        "verbalizers:\n  file: verbalizers.yaml\n"
        # no auxiliary MLM loss here (tests/test_aux_mlm.py covers it): it would triple the teachers' cost
        "teachers:\n  seeds: [1]\n  steps: 20\n  batch_size: 4\n  max_length: 64\n  mlm_weight: 0\n"
        "labelling:\n  batch_size: 64\n  max_length: 64\n"
        "distillation:\n  steps: 60\n  batch_size: 8\n  learning_rate: 3.0e-5\n  max_length: 64\n"
        "runtime:\n  device: cpu\n"
        "ipet:\n  generations: 0\n",  # plain PET: iPET by default would triple stage A here
        encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert "newly initialised" not in result.output  # this checkpoint has a pretrained MLM head
    summary = json.loads(result.stdout)
    majority = max(sum(r["label"] == label for r in test) for label in ("negative", "positive")) / len(test)
    assert majority < 0.55
    student, ensemble = summary["student_test"], summary["ensemble_test"]
    assert student["examples"] == ensemble["examples"] == 300
    # pet's default adapt.enabled: auto measured the real model on movie-review sentences, its own kind
    # of text (sst2: 2.8-2.9 in BENCHMARKS.md), and trained from it as it is
    decision = summary["adapt_decision"]
    assert decision["texts"] == 200 and decision["mlm_loss"] < 3.5 and decision["adapt"] is False
    assert summary["adapted"] is None
    print(f"majority {majority:.3f}  ensemble {ensemble['accuracy']:.3f}  student {student['accuracy']:.3f}")
    assert ensemble["accuracy"] >= 0.65, summary
    assert student["accuracy"] >= 0.65, summary
    # the teachers learnt something from their 20 steps on 32 examples
    teachers = json.loads((tmp_path / "run" / "teachers" / "manifest.json").read_text())
    for entry in teachers["teachers"]:
        assert entry["metrics"]["train_accuracy_after"] >= entry["metrics"]["train_accuracy_before"], entry
