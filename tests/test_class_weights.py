"""Class-balanced distillation (distillation.class_weights: balanced): the weights against a hand
computation, the batches they draw, and the setting end to end (recorded, part of what the student
was made from, refused where it cannot apply)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file
from test_cli import failed, invoke, ok

from pet.stages.distillation.balance import WeightedSampler, balanced_weights


def test_each_text_weighs_n_over_k_times_its_predicted_class_count():
    # top classes 0, 0, 0, 1; class 2 is never on top, so k = 2 classes share n = 4 texts
    targets = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.3, 0.2], [0.4, 0.3, 0.3], [0.2, 0.7, 0.1]])
    weights = balanced_weights(targets)
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 6, 4 / 6, 2.0])
    assert weights[:3].sum().item() == pytest.approx(weights[3].item())  # each predicted class carries the same mass
    assert weights.sum().item() == pytest.approx(4.0)  # mean weight 1, as sklearn's "balanced"


def test_a_pool_in_equal_proportions_weighs_every_text_alike():
    targets = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    assert balanced_weights(targets).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_batches_draw_every_predicted_class_equally_often():
    # 95 texts predicted "a", 5 predicted "b": uniform batches would be 95% "a"
    targets = torch.tensor([[0.9, 0.1]] * 95 + [[0.2, 0.8]] * 5)
    sampler = WeightedSampler(balanced_weights(targets), 16, torch.Generator().manual_seed(0))
    draws = [i for _ in range(500) for i in sampler.next()]
    assert len(draws) == 8000
    share_b = sum(i >= 95 for i in draws) / len(draws)
    assert 0.47 < share_b < 0.53
    assert set(Counter(i for i in draws if i >= 95)) == {95, 96, 97, 98, 99}  # every rare text, with replacement


def test_the_same_seed_draws_the_same_batches():
    weights = balanced_weights(torch.tensor([[0.9, 0.1]] * 6 + [[0.1, 0.9]] * 2))
    first = WeightedSampler(weights, 4, torch.Generator().manual_seed(3))
    second = WeightedSampler(weights, 4, torch.Generator().manual_seed(3))
    assert [first.next() for _ in range(5)] == [second.next() for _ in range(5)]


def test_an_empty_set_cannot_be_sampled():
    with pytest.raises(ValueError, match="empty"):
        WeightedSampler(torch.empty(0), 4, torch.Generator())


def test_balanced_distillation_is_recorded_and_part_of_what_the_student_was_made_from(project, tmp_path):
    run, balanced = tmp_path / "run", tmp_path / "balanced"
    ok(invoke("run", project, "-o", run))
    ok(invoke("distill", run / "labels", "-o", balanced, "--distillation.class_weights", "balanced"))
    plain_manifest = json.loads((run / "student" / "manifest.json").read_text())
    manifest = json.loads((balanced / "manifest.json").read_text())
    assert manifest["config"]["distillation"]["class_weights"] == "balanced"
    assert manifest["reads"]["distillation.class_weights"] == "balanced"
    # a run without class weights reads what it read before the setting existed: old students stay reusable
    assert "distillation.class_weights" not in plain_manifest["reads"]
    assert plain_manifest["config"]["distillation"]["class_weights"] == "none"
    a, b = load_file(str(run / "student" / "model.safetensors")), load_file(str(balanced / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # other batches, another student
    # the API's keyword setting is the same setting: the same student, bit for bit
    import pet

    via_api = pet.distill(run / "labels", tmp_path / "api", class_weights="balanced")
    c = load_file(str(via_api.path / "model.safetensors"))
    assert all(torch.equal(b[k], c[k]) for k in b)
    # same soft labels and settings: reused as it is; another value: refused, naming the change
    assert "already trained" in ok(invoke("distill", run / "labels", "-o", balanced, "--distillation.class_weights", "balanced"))
    result = invoke("distill", run / "labels", "-o", balanced)
    assert "distillation.class_weights" in failed(result)


def test_an_unknown_value_is_refused_in_one_line(project, tmp_path):
    result = invoke("run", project, "-o", tmp_path / "run", "--distillation.class_weights", "inverse")
    assert "class_weights" in failed(result)
    assert not (tmp_path / "run").exists()
