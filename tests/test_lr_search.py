"""teachers.learning_rate: cv: the rate chosen by cross-validation on the labelled set, before any teacher trains."""

from __future__ import annotations

import json

from test_cli import failed, invoke, ok

SEARCH = ["--teachers.learning_rate", "cv", "--teachers.learning_rate_grid", "[1.0e-5, 1.0e-3]", "--teachers.cv_folds", "2"]


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_search_picks_the_best_cross_validated_rate_and_every_teacher_trains_with_it(project, tmp_path):
    out = tmp_path / "teachers"
    ok(invoke("train-teachers", project, "-o", out, *SEARCH))
    manifest = read(out / "manifest.json")
    search = manifest["learning_rate_search"]
    assert search["grid"] == [1e-5, 1e-3] and search["folds"] == 2 and search["configuration"] == "it-was--bad-good"
    # each rate's accuracy: its held-out predictions right, of the 8 labelled examples (every one held out once)
    for rate in ("1e-05", "0.001"):
        records = [read(p) for p in sorted((out / "lr-search" / f"lr-{rate}" / "cv").glob("*.json"))]
        assert len(records) == 2 and sum(r["held_out"] for r in records) == 8
        assert all(r["learning_rate"] == float(rate) for r in records)
        assert search["accuracy"][rate] == sum(r["correct"] for r in records) / 8
    accuracies = [search["accuracy"]["1e-05"], search["accuracy"]["0.001"]]
    assert search["chosen"] == [1e-5, 1e-3][accuracies.index(max(accuracies))]  # ties: the earlier rate
    for entry in manifest["teachers"]:
        assert read(out / entry["path"] / "teacher.json")["learning_rate"] == search["chosen"]


def test_a_finished_search_is_reused_and_a_changed_grid_is_refused(project, tmp_path):
    out = tmp_path / "teachers"
    ok(invoke("train-teachers", project, "-o", out, *SEARCH))
    assert "already trained" in ok(invoke("train-teachers", project, "-o", out, *SEARCH))
    other = SEARCH[:3] + ["[1.0e-5, 1.0e-4]"] + SEARCH[4:]
    assert "teachers.learning_rate_grid" in failed(invoke("train-teachers", project, "-o", out, *other))


def test_the_search_needs_labels_and_enough_of_each(project, tmp_path):
    result = invoke("train-teachers", project, "-o", tmp_path / "a", *SEARCH, "--teachers.zero_shot", "true")
    assert "teachers.learning_rate: cv searches a rate by training on the labelled set" in failed(result)
    result = invoke("train-teachers", project, "-o", tmp_path / "b", *SEARCH[:4], "--teachers.cv_folds", "5")
    assert "teachers.learning_rate cv splits the labelled set into teachers.cv_folds = 5 folds" in failed(result)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
