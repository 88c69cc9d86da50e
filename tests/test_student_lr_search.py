"""distillation.learning_rate: search: one student per rate of the grid, the one with the most labelled
examples right is kept, and it is bit for bit the student of that fixed rate."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from conftest import POSITIVE
from test_cli import failed, invoke, ok

from pet.results import Student

GRID = "[1.0e-5, 1.0e-3]"
SEARCH = ["--distillation.learning_rate", "search", "--distillation.learning_rate_grid", GRID]


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def labelled_accuracy(folder, train_file) -> float:
    """The saved student's accuracy on the labelled set, as pet evaluate computes it."""
    return Student.load(folder).evaluate(train_file)["accuracy"]


def test_the_search_keeps_the_student_with_the_most_labelled_examples_right(project, tmp_path):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run, "--distillation.steps", "6"))
    searched = tmp_path / "searched"
    out = ok(invoke("distill", run / "labels", "-o", searched, "--distillation.steps", "6", *SEARCH))
    manifest = read(searched / "manifest.json")
    search = manifest["learning_rate_search"]
    assert search["grid"] == [1e-5, 1e-3] and search["labelled_examples"] == 8
    assert set(search["accuracy"]) == {"1e-05", "0.001"} and set(search["loss_last"]) == {"1e-05", "0.001"}
    accuracies = [search["accuracy"]["1e-05"], search["accuracy"]["0.001"]]
    assert search["chosen"] == [1e-5, 1e-3][accuracies.index(max(accuracies))]  # a tie keeps the earlier rate
    assert manifest["learning_rate"] == search["chosen"] and manifest["config"]["distillation"]["learning_rate"] == "search"
    assert f"learning rate {search['chosen']:g}, kept by the search" in out
    # each rate trained exactly as that fixed rate would: the kept student is that run's student, bit for bit,
    # and the recorded accuracies are those of the fixed-rate students on the labelled set
    for rate in ("1e-05", "0.001"):
        fixed = tmp_path / f"fixed-{rate}"
        ok(invoke("distill", run / "labels", "-o", fixed, "--distillation.steps", "6", "--distillation.learning_rate", rate))
        fixed_manifest = read(fixed / "manifest.json")
        assert search["loss_last"][rate] == fixed_manifest["metrics"]["loss_last"]
        assert search["accuracy"][rate] == labelled_accuracy(fixed, project.parent / "train.jsonl")
        # each rate's test metrics are reported (never used to choose): those of the fixed-rate student
        assert search["test"][rate] == {k: fixed_manifest["test"][k] for k in ("accuracy", "macro_f1")}
        if float(rate) == search["chosen"]:
            a, b = weights(fixed), weights(searched)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            assert manifest["metrics"]["losses"] == fixed_manifest["metrics"]["losses"]


def test_a_later_rate_with_more_examples_right_wins(project, tmp_path, monkeypatch):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run))
    import pet.stages.distillation.stage as stage

    trained = stage.train_student

    def train_and_remember(student, data, config, *args):
        student.rate = config.distillation.learning_rate
        return trained(student, data, config, *args)

    def logits(self, texts):  # the 1e-3 student is right on every labelled text, the other says positive throughout
        right = getattr(self, "rate", None) == 1e-3
        return torch.tensor([[0.0, 1.0] if text in POSITIVE or not right else [1.0, 0.0] for text in texts["text"]])

    monkeypatch.setattr(stage, "train_student", train_and_remember)
    monkeypatch.setattr("pet.stages.distillation.student.Student.logits", logits)
    ok(invoke("distill", run / "labels", "-o", tmp_path / "searched", *SEARCH, "--data.test", "null"))
    manifest = read(tmp_path / "searched" / "manifest.json")
    assert manifest["learning_rate_search"]["accuracy"] == {"1e-05": 0.5, "0.001": 1.0}
    assert manifest["learning_rate_search"]["chosen"] == 1e-3 and manifest["learning_rate"] == 1e-3


def test_a_tie_keeps_the_earlier_rate(project, tmp_path, monkeypatch):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run))
    # every student predicts the same class for every text: equal accuracy at every rate
    monkeypatch.setattr("pet.stages.distillation.student.Student.logits",
                        lambda self, texts: torch.tensor([[0.0, 1.0]] * len(next(iter(texts.values())))))
    ok(invoke("distill", run / "labels", "-o", tmp_path / "tie", "--distillation.learning_rate_grid", "[1.0e-3, 1.0e-5]",
              "--distillation.learning_rate", "search", "--data.test", "null"))
    search = read(tmp_path / "tie" / "manifest.json")["learning_rate_search"]
    assert search["accuracy"] == {"0.001": 0.5, "1e-05": 0.5} and search["chosen"] == 1e-3
    assert "test" not in search  # no test set: nothing to report


def test_the_search_is_part_of_what_the_student_was_made_from(project, tmp_path):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run, *SEARCH))
    student = read(run / "student" / "manifest.json")
    assert student["reads"]["distillation.learning_rate_grid"] == [1e-5, 1e-3] and "inputs.data.train" in student["reads"]
    assert "already trained" in ok(invoke("distill", run / "labels", "-o", run / "student", *SEARCH))
    other = invoke("distill", run / "labels", "-o", run / "student", *SEARCH[:3], "[1.0e-5, 1.0e-4]")
    assert "distillation.learning_rate_grid" in failed(other)
    # without the search the grid is not read, so a plain student's fingerprint is what it was before the grid existed
    ok(invoke("run", project, "-o", tmp_path / "plain"))
    plain = read(tmp_path / "plain" / "student" / "manifest.json")["reads"]
    assert "distillation.learning_rate_grid" not in plain and "inputs.data.train" not in plain
    # the report shows what the search kept
    ok(invoke("report", run))
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert f"search -&gt; {student['learning_rate']:g} (accuracy on the 8 labelled examples: 1e-05: " in page


def test_the_search_needs_labelled_examples_the_student_does_not_train_on(project, tmp_path):
    result = invoke("run", project, "-o", tmp_path / "a", *SEARCH, "--distillation.gold_weight", "1")
    assert failed(result) == ("error: distillation.learning_rate: search scores the students on the labelled set, which "
                              "distillation.gold_weight > 0 trains them on; set gold_weight: 0, or a rate or auto")
    assert not (tmp_path / "a").exists()  # refused before stage A, not after it
    result = invoke("run", project, "-o", tmp_path / "b", *SEARCH, "--teachers.zero_shot", "true", "--data.train", "null")
    assert "distillation.learning_rate: search scores each student on the labelled set (data.train), and this run has none" in failed(result)
    assert not (tmp_path / "b").exists()
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run))
    result = invoke("distill", run / "labels", "-o", tmp_path / "c", *SEARCH, "--distillation.gold_weight", "0.5")
    assert "set gold_weight: 0, or a rate or auto" in failed(result)
    assert not (tmp_path / "c").exists()
    result = invoke("run", project, "-o", tmp_path / "d", "--distillation.learning_rate", "fast")
    assert "distillation.learning_rate" in failed(result)


def test_a_changed_labelled_set_is_refused(project, tmp_path):
    run = tmp_path / "run"
    ok(invoke("run", project, "-o", run))
    train = project.parent / "train.jsonl"
    train.write_text(train.read_text(encoding="utf-8").replace("a great movie", "a grand movie"), encoding="utf-8")
    result = invoke("distill", run / "labels", "-o", tmp_path / "searched", *SEARCH)
    assert "train.jsonl" in failed(result) and not (tmp_path / "searched").exists()
