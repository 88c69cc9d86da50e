"""iPET with the supervised member (teachers.supervised) and with cross-validated weights (labelling.ensemble: cv)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import skewed_project, write_project
from typer.testing import CliRunner

from pet.cli import app

MEMBERS = ["supervised--s1", "supervised--s2"]
PATTERN_TEACHERS = ["it-was--bad-good--s1", "it-was--bad-good--s2", "just--bad-good--s1", "just--bad-good--s2"]
SETTINGS = {"ipet.generations": 2, "ipet.growth": 2, "ipet.teacher_fraction": 0.5, "teachers.seeds": [1, 2],
            "teachers.steps": 2, "teachers.supervised": True}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train(folder, model, **extra):
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    config = load_config(skewed_project(folder, model), {**SETTINGS, **extra})
    return train_teachers(config, folder / "teachers")


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("ipet-cv")
    return folder, train(folder, tiny_bert, **{"labelling.ensemble": "cv", "teachers.cv_folds": 2})


@pytest.fixture(scope="module")
def wmean_run(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("ipet-wmean")
    return folder, train(folder, tiny_bert)


def configuration(entry):
    return "supervised" if entry["kind"] == "classifier" else f"{entry['pattern']}--{entry['verbalizer']}"


def chosen_ensemble(folder, entry, previous, weight_of):
    """The probabilities of the ensemble that labelled ``entry``'s added examples, computed here from its record."""
    from safetensors.torch import load_file

    from pet.core import maths

    record = json.loads((folder / "teachers" / entry["path"] / "teacher.json").read_text())
    chosen = [previous[name] for name in record["labelled_by"]]
    logits = torch.stack([load_file(str(folder / "teachers" / e["path"] / "unlabeled_logits.safetensors"))["logits"]
                          for e in chosen])
    weights = torch.tensor([weight_of(e) for e in chosen], dtype=torch.float32)
    return torch.softmax(maths.ensemble_logits(logits, weights if weights.sum() > 0 else None), -1)


def assert_added_rows_follow(folder, entry, probs):
    unlabeled = {r["id"]: i for i, r in enumerate(read_jsonl(folder / "unlabeled.jsonl"))}
    predicted = probs.argmax(-1)
    rows = read_jsonl(folder / "teachers" / entry["training_set"])
    assert len(rows) == 16 and [r["source"] for r in rows] == ["labelled"] * 8 + ["ipet"] * 8
    for row in rows[8:]:
        label = ["negative", "positive"].index(row["label"])
        p = probs[unlabeled[row["id"]]]
        if (predicted == label).any():
            assert int(p.argmax()) == label
        else:  # nobody predicts this label: the examples most likely to have it stand in
            assert unlabeled[row["id"]] in torch.argsort(probs[:, label], descending=True)[:100].tolist()
        assert row["probability"] == pytest.approx(float(p[label]), rel=1e-5)


def test_the_member_is_a_teacher_of_every_generation(wmean_run):
    folder, manifest = wmean_run
    generations = manifest["ipet"]["generations"]
    assert [[e["name"] for e in g["teachers"]] for g in generations] == [PATTERN_TEACHERS + MEMBERS] * 3
    assert [e["path"] for e in manifest["teachers"]] == [f"g2/{name}" for name in PATTERN_TEACHERS + MEMBERS]
    for generation in generations:
        for entry in generation["teachers"]:
            record = json.loads((folder / "teachers" / entry["path"] / "teacher.json").read_text())
            assert record["generation"] == generation["generation"]
            assert record["training_examples"] == generation["training_examples"]  # 8, 16, 32
            if entry["kind"] == "classifier":
                assert record["kind"] == "classifier" and (folder / "teachers" / entry["path"] / "config.json").exists()
            # Every teacher that labels a next generation kept its scores on the unlabeled set; the last did not.
            scored = (folder / "teachers" / entry["path"] / "unlabeled_logits.safetensors").exists()
            assert scored == (generation["generation"] < 2)
            if generation["generation"]:
                assert len(record["labelled_by"]) == round(0.5 * 5)  # half of the 5 others
                assert entry["name"] not in record["labelled_by"]  # never itself (the member: of its own seed)
                assert set(record["labelled_by"]) <= {e["name"] for e in generations[generation["generation"] - 1]["teachers"]}
    seeds = [e["derived_seed"] for g in generations for e in g["teachers"]]
    assert len(set(seeds)) == len(seeds)  # the member of generation 1 is not generation 0's again


def test_with_wmean_the_member_labels_with_the_pattern_teachers_mean_weight(wmean_run):
    """A member among the chosen labellers weighs the mean of its whole generation's pattern teachers' weights."""
    folder, manifest = wmean_run
    for previous_generation, generation in zip(manifest["ipet"]["generations"], manifest["ipet"]["generations"][1:]):
        previous = {e["name"]: e for e in previous_generation["teachers"]}
        patterns = [e["weight"] for e in previous_generation["teachers"] if e["kind"] == "pattern"]
        for name in MEMBERS:
            assert previous[name]["weight"] == pytest.approx(sum(patterns) / len(patterns))
        labelled_by_a_member = 0
        for entry in generation["teachers"]:
            record = json.loads((folder / "teachers" / entry["path"] / "teacher.json").read_text())
            labelled_by_a_member += any(name in MEMBERS for name in record["labelled_by"])
            if generation["generation"] == 1:
                assert_added_rows_follow(folder, entry, chosen_ensemble(folder, entry, previous, lambda e: e["weight"]))
        assert labelled_by_a_member  # the members take part in labelling


def test_labellers_weigh_what_stage_b_gives_them_in_the_whole_generation():
    from pet.stages.teachers.ipet import labellers_weights

    previous = [{"kind": "pattern", "weight": 0.2, "cv_accuracy": 0.5}, {"kind": "pattern", "weight": 0.6, "cv_accuracy": 0.75},
                {"kind": "classifier", "weight": None, "cv_accuracy": 0.9}]
    wmean = labellers_weights(previous, [0, 2], "wmean")  # the member: the mean of both pattern teachers, not of p1 alone
    assert wmean.method == "wmean" and wmean.weights.tolist() == pytest.approx([0.2, 0.4])
    assert labellers_weights(previous, [1, 2], "cv").weights.tolist() == pytest.approx([0.75, 0.9])
    assert labellers_weights(previous, [2], "mean").weights is None


def test_cv_weights_are_computed_once_and_weight_every_generation(cv_run):
    folder, manifest = cv_run
    summary = manifest["cross_validation"]
    assert set(summary["configurations"]) == {"it-was--bad-good", "just--bad-good", "supervised"}
    assert sorted(p.name for p in (folder / "teachers" / "cv").iterdir()) == sorted(
        f"{c}--cv{f}.json" for c in summary["configurations"] for f in (0, 1))
    accuracy = {c: r["accuracy"] for c, r in summary["configurations"].items()}
    for generation in manifest["ipet"]["generations"]:
        for entry in generation["teachers"]:
            assert entry["cv_accuracy"] == accuracy[configuration(entry)]
    assert manifest["reads"]["labelling.ensemble"] == "cv" and manifest["reads"]["teachers.cv_folds"] == 2
    generations = manifest["ipet"]["generations"]
    previous = {e["name"]: e for e in generations[0]["teachers"]}
    for entry in generations[1]["teachers"]:
        assert_added_rows_follow(folder, entry, chosen_ensemble(folder, entry, previous, lambda e: e["cv_accuracy"]))


def test_stage_b_labels_with_the_final_generation_and_its_cv_weights(cv_run, tmp_path):
    folder, manifest = cv_run
    result = CliRunner().invoke(app, ["label", str(folder / "teachers"), "-o", str(tmp_path / "labels")])
    assert result.exit_code == 0, result.output
    labels = json.loads((tmp_path / "labels" / "manifest.json").read_text())
    assert labels["teachers"] == PATTERN_TEACHERS + MEMBERS
    raw = [e["cv_accuracy"] for e in manifest["teachers"]]
    assert labels["ensemble"] == "cv" and labels["weights"] == pytest.approx([w / sum(raw) for w in raw])


def test_a_resumed_run_rebuilds_the_members_sets_and_training_exactly(wmean_run, tmp_path, tiny_bert):
    folder, manifest = wmean_run
    out = tmp_path / "teachers"
    first = train(tmp_path, tiny_bert)
    member = next(e for e in first["ipet"]["generations"][1]["teachers"] if e["name"] == MEMBERS[1])
    (out / "manifest.json").unlink()
    shutil.rmtree(out / member["path"])
    (out / member["training_set"]).unlink()
    shutil.rmtree(out / "g2")
    again = train(tmp_path, tiny_bert)
    for generation in (1, 2):
        for entry in manifest["ipet"]["generations"][generation]["teachers"]:
            assert (out / entry["training_set"]).read_text() == (folder / "teachers" / entry["training_set"]).read_text()
    losses = lambda m: [e["metrics"]["loss_last"] for e in m["teachers"]]
    assert losses(again) == losses(manifest)


def test_one_pattern_teacher_and_the_member_are_enough(tmp_path, tiny_bert):
    """iPET needs two teachers per generation: the member counts as one."""
    config = write_project(tmp_path, tiny_bert)
    base = ["train-teachers", str(config), "-o", str(tmp_path / "t"), "--ipet.generations", "1", "--patterns.ids", "[just]"]
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code == 1 and "at least two teachers" in refused.output
    result = CliRunner().invoke(app, [*base, "--teachers.supervised", "true"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert [e["path"] for e in manifest["teachers"]] == ["g1/just--bad-good--s1", "g1/supervised--s1"]
