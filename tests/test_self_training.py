"""Self-training rounds of the student (distillation.self_training_rounds): which targets become hard,
and that a round which hardens nothing retrains exactly the student a run without rounds gets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_cli import failed, invoke, ok

from pet.stages.distillation.self_training import hardened_targets


def test_confident_predictions_become_one_hot():
    targets = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    logits = torch.tensor([[0.0, 3.0], [0.0, 0.5], [-4.0, 0.0]])  # softmax top: .953 (1), .622 (1), .982 (1)
    hard, count = hardened_targets(targets, logits, 0.9, multi_label=False)
    assert count == 2
    assert hard.tolist() == [[0.0, 1.0], pytest.approx([0.3, 0.7]), [0.0, 1.0]]
    assert targets[0].tolist() == pytest.approx([0.6, 0.4])  # the input is not changed


def test_multi_label_decisions_become_hard_per_label():
    targets = torch.tensor([[0.6, 0.4, 0.5]])
    logits = torch.tensor([[3.0, -3.0, 0.1]])  # sigmoid .953, .047, .525
    hard, count = hardened_targets(targets, logits, 0.9, multi_label=True)
    assert count == 2 and hard.tolist() == [[1.0, 0.0, pytest.approx(0.5)]]


def student_weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_a_round_that_hardens_nothing_retrains_the_same_student(project, tmp_path):
    plain, rounds = tmp_path / "plain", tmp_path / "rounds"
    ok(invoke("run", project, "-o", plain))
    ok(invoke("distill", plain / "labels", "-o", rounds, "--distillation.self_training_rounds", "1",
              "--distillation.self_training_threshold", "0.999999"))
    manifest = json.loads((rounds / "manifest.json").read_text())
    first, last = manifest["self_training"]
    assert first["round"] == 0 and first["made_hard_for_next_round"] == 0 and "test" in first
    assert last == {"round": 1, "loss_first": manifest["metrics"]["loss_first"], "loss_last": manifest["metrics"]["loss_last"]}
    # same targets, checkpoint, seed and batches: the round's fresh student is the plain run's student, bit for bit
    a, b = student_weights(plain / "student"), student_weights(rounds)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first["test"]["accuracy"] == json.loads((plain / "student" / "manifest.json").read_text())["test"]["accuracy"]


def test_a_low_threshold_hardens_every_soft_label_and_changes_the_student(project, tmp_path):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run, "--distillation.self_training_rounds", "2", "--distillation.self_training_threshold", "0.5001"))
    manifest = json.loads((run / "student" / "manifest.json").read_text())
    assert [r["round"] for r in manifest["self_training"]] == [0, 1, 2]
    softmax_top = manifest["self_training"][0]["made_hard_for_next_round"]
    assert 0 < softmax_top <= 24  # 24 unlabeled texts; a tie at exactly 0.5 is the only way to stay soft
    # the setting is part of what the student was made from: a rerun with another value is refused
    result = invoke("distill", run / "labels", "-o", run / "student", "--distillation.self_training_rounds", "1",
                    "--distillation.self_training_threshold", "0.5001")
    assert "distillation.self_training_rounds 2 -> 1" in failed(result)


def test_threshold_must_keep_one_class_on_top(project, tmp_path):
    result = invoke("run", project, "-o", tmp_path / "run", "--distillation.self_training_threshold", "0.5")
    assert "self_training_threshold" in failed(result)
