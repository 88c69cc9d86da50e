"""Class-balanced distillation (distillation.class_weights): the weights against a hand computation,
the batches they draw, auto's choice, and the setting end to end (recorded, part of what the student
was made from, refused where it cannot apply)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli import failed, invoke, ok

from pet.core.imbalance import AUTO_LARGEST_WEIGHT, largest_weight
from pet.stages.distillation.balance import ClassWeightsChoice, WeightedSampler, balanced_weights, choose_class_weights


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
    assert plain_manifest["config"]["distillation"]["class_weights"] == "none"  # the default, auto, came to none here
    assert plain_manifest["class_weights"]["setting"] == "auto" and plain_manifest["class_weights"]["used"] == "none"
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


def test_largest_weight_is_the_rarest_predicted_classes_weight():
    targets = torch.tensor([[0.9, 0.1, 0.0]] * 6 + [[0.1, 0.8, 0.1]] * 3 + [[0.1, 0.2, 0.7]])
    assert largest_weight({"a": 6, "b": 3, "c": 1}) == pytest.approx(10 / 3)  # n / (k x rarest) = 10 / (3 x 1)
    assert largest_weight({"a": 6, "b": 3, "c": 1}) == pytest.approx(balanced_weights(targets).max().item())
    assert largest_weight({"a": 7, "b": 3, "c": 0}) == pytest.approx(10 / 6)  # a class never on top weighs nothing
    assert largest_weight({"a": 5, "b": 5}) == 1.0


@pytest.mark.parametrize(("counts", "used"), [
    ({"a": 500, "b": 500}, "none"),
    ({"a": 577, "b": 423}, "none"),  # rte's teachers, cpu_auto n = 32 seed 1
    ({"a": 750, "b": 250}, "none"),  # weight 2.0 exactly: not above the threshold
    ({"a": 760, "b": 240}, "balanced"),
    ({"earn": 500, "acq": 300, "crude": 150, "grain": 7, "x": 43}, "balanced"),
])
def test_auto_balances_only_a_pool_with_a_class_under_half_its_even_share(counts, used):
    choice = choose_class_weights("auto", False, counts)
    assert choice.used == used
    assert choice.largest_weight == pytest.approx(largest_weight(counts))
    assert choice.record() == {"setting": "auto", "used": used, "largest_weight": round(largest_weight(counts), 4),
                               "auto_threshold": AUTO_LARGEST_WEIGHT}


def test_explicit_settings_and_multi_label_pools_are_not_second_guessed():
    skewed, even = {"a": 95, "b": 5}, {"a": 50, "b": 50}
    assert choose_class_weights("none", False, skewed).used == "none"
    assert choose_class_weights("balanced", False, even).used == "balanced"
    assert choose_class_weights("auto", True, skewed) == ClassWeightsChoice("auto", "none", None)
    assert choose_class_weights("none", True, None).record() == {"setting": "none", "used": "none"}
    with pytest.raises(ValueError, match="predicted class counts"):
        choose_class_weights("auto", False, None)


def test_choices_read_as_what_was_used_and_why():
    assert ClassWeightsChoice("auto", "balanced", 12.5).describe() == "balanced (auto: largest class weight 12.50 > 2)"
    assert ClassWeightsChoice("auto", "none", 1.18).describe() == "none (auto: largest class weight 1.18 <= 2)"
    assert ClassWeightsChoice("balanced", "balanced", 1.0).describe() == "balanced"


def skewed_copy(labels: Path, target: Path, counts: dict[str, int]) -> Path:
    """The labels folder with stage B's predicted-class counts rewritten: what auto decides on."""
    shutil.copytree(labels, target)
    manifest = json.loads((target / "manifest.json").read_text())
    assert set(manifest["statistics"]["predicted_label_counts"]) == set(counts)
    manifest["statistics"]["predicted_label_counts"] = counts
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_auto_on_an_imbalanced_pool_trains_the_balanced_student(project, tmp_path):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run))
    labels = json.loads((run / "labels" / "manifest.json").read_text())["labels"]
    skewed = skewed_copy(run / "labels", tmp_path / "skewed", {labels[0]: 95, labels[1]: 5})
    ok(invoke("distill", skewed, "-o", tmp_path / "auto"))
    ok(invoke("distill", skewed, "-o", tmp_path / "balanced", "--distillation.class_weights", "balanced"))
    manifest = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    assert manifest["class_weights"] == {"setting": "auto", "used": "balanced", "largest_weight": 10.0, "auto_threshold": 2.0}
    assert manifest["config"]["distillation"]["class_weights"] == "balanced"
    assert manifest["reads"]["distillation.class_weights"] == "balanced"
    a = load_file(str(tmp_path / "auto" / "model.safetensors"))
    b = load_file(str(tmp_path / "balanced" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same student, bit for bit


@pytest.mark.parametrize("damage", ["missing", "not counts", "no statistics"])
def test_auto_without_predicted_counts_is_refused_in_one_line(project, tmp_path, damage):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run))
    broken = tmp_path / "broken"
    shutil.copytree(run / "labels", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    if damage == "missing":
        del manifest["statistics"]["predicted_label_counts"]
    elif damage == "not counts":
        manifest["statistics"]["predicted_label_counts"] = {label: "many" for label in manifest["labels"]}
    else:
        manifest["statistics"] = None
    (broken / "manifest.json").write_text(json.dumps(manifest))
    message = failed(invoke("distill", broken, "-o", tmp_path / "student"))
    assert "predicted_label_counts" in message and "rerun pet label" in message
    assert not (tmp_path / "student").exists()
    ok(invoke("distill", broken, "-o", tmp_path / "student", "--distillation.class_weights", "none"))
