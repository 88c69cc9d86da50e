"""Reruns never return stale results, each stage's fingerprint holds exactly what it reads, existing
teachers label other files, and everything that can be checked is checked before the first teacher."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import sentiment_rows, write_jsonl, write_project
from typer.testing import CliRunner

import pet
from pet.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}"
    return result.output


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bert):
    """A finished `pet run`, copied for each test that changes it."""
    folder = tmp_path_factory.mktemp("finished")
    config = write_project(folder, tiny_bert)
    ok(invoke("run", config, "-o", folder / "run"))
    return folder


@pytest.fixture
def project(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "p")
    config = tmp_path / "p" / "config.yaml"
    # the copied config names the same data files by relative path: it is the same project
    return config


def test_changed_downstream_settings_are_refused_not_answered_with_old_results(project):
    """The issue's report: `pet run` with other --distillation.steps and --labelling.temperature printed the old metrics."""
    run = project.parent / "run"
    before = manifest(run / "student")
    line = error_line(invoke("run", project, "-o", run, "--distillation.steps", "7", "--labelling.temperature", "5"))
    assert f"{run / 'labels'}: holds soft labels from other teachers or settings (labelling.temperature 2.0 -> 5.0)" in line
    assert "--overwrite" in line and "another output folder" in line
    assert manifest(run / "student") == before  # nothing was changed
    teacher_weights = digest(run / "teachers" / "it-was--bad-good--s1" / "model.safetensors")
    output = ok(invoke("run", project, "-o", run, "--distillation.steps", "7", "--labelling.temperature", "5", "--overwrite"))
    assert "all teachers already trained" in output  # stage A's settings did not change
    assert digest(run / "teachers" / "it-was--bad-good--s1" / "model.safetensors") == teacher_weights
    assert manifest(run / "labels")["temperature"] == 5.0
    student = manifest(run / "student")
    assert student["metrics"]["steps"] == 7 and student["config"]["distillation"]["steps"] == 7
    assert student["temperature"] == 5.0
    # and the same settings again: everything reused, no --overwrite needed
    output = ok(invoke("run", project, "-o", run, "--distillation.steps", "7", "--labelling.temperature", "5"))
    assert "soft labels already written" in output and "student already trained" in output


def test_distillation_settings_do_not_relabel(project):
    run = project.parent / "run"
    soft = digest(run / "labels" / "soft_labels.parquet")
    line = error_line(invoke("distill", run / "labels", "-o", run / "student", "--distillation.steps", "4"))
    assert "distillation.steps 3 -> 4" in line
    output = ok(invoke("run", project, "-o", run, "--distillation.steps", "4", "--overwrite"))
    assert "soft labels already written" in output
    assert digest(run / "labels" / "soft_labels.parquet") == soft
    assert manifest(run / "student")["metrics"]["steps"] == 4


def test_a_new_test_set_does_not_retrain_teachers(project):
    run = project.parent / "run"
    rows = sentiment_rows("test", 12)
    rows[0]["text"] = "an excellent and wonderful film"
    write_jsonl(project.parent / "test2.jsonl", rows)
    weights = digest(run / "teachers" / "just--bad-good--s1" / "model.safetensors")
    line = error_line(invoke("run", project, "-o", run, "--data.test", project.parent / "test2.jsonl"))
    assert line.startswith(f"error: {run / 'labels'}: ") and "data.test" in line  # stage A accepted it: no teacher read the test set
    output = ok(invoke("run", project, "-o", run, "--data.test", project.parent / "test2.jsonl", "--overwrite"))
    assert "all teachers already trained" in output
    assert digest(run / "teachers" / "just--bad-good--s1" / "model.safetensors") == weights
    assert manifest(run / "labels")["config"]["data"]["test"] == str(project.parent / "test2.jsonl")
    assert manifest(run / "student")["config"]["data"]["test"] == str(project.parent / "test2.jsonl")


def test_changed_teacher_settings_name_the_key(project):
    run = project.parent / "run"
    line = error_line(invoke("train-teachers", project, "-o", run / "teachers", "--teachers.learning_rate", "0.001"))
    assert 'different config or data (teachers.learning_rate "auto" -> 0.001)' in line and "--overwrite" in line
    rows = sentiment_rows("train", 8)
    rows[0]["text"] = "a different text"
    write_jsonl(project.parent / "train.jsonl", rows)
    line = error_line(invoke("train-teachers", project, "-o", run / "teachers"))
    assert "(data.train content changed)" in line


def test_overwrite_keeps_teachers_whose_own_settings_did_not_change(project):
    run = project.parent / "run"
    kept = digest(run / "teachers" / "it-was--bad-good--s1" / "model.safetensors")
    line = error_line(invoke("train-teachers", project, "-o", run / "teachers", "--teachers.seeds", "[1, 2]"))
    assert "teachers.seeds [1] -> [1, 2]" in line
    output = ok(invoke("train-teachers", project, "-o", run / "teachers", "--teachers.seeds", "[1, 2]", "--overwrite"))
    assert "teacher 1/4 it-was--bad-good--s1: already trained, skipped" in output
    assert "teacher 2/4 it-was--bad-good--s2: training" in output
    assert digest(run / "teachers" / "it-was--bad-good--s1" / "model.safetensors") == kept
    assert [e["name"] for e in manifest(run / "teachers")["teachers"]] == [
        "it-was--bad-good--s1", "it-was--bad-good--s2", "just--bad-good--s1", "just--bad-good--s2"]
    output = ok(invoke("train-teachers", project, "-o", run / "teachers", "--teachers.seeds", "[1, 2]",
                       "--teachers.steps", "4", "--overwrite"))
    assert "already trained, skipped" not in output and output.count("--overwrite: retrain it") == 4
    assert all(e["metrics"]["steps"] == 4 for e in manifest(run / "teachers")["teachers"])


def test_label_scores_other_files_with_existing_teachers(project):
    run = project.parent / "run"
    write_jsonl(project.parent / "more.jsonl", sentiment_rows("more", 5, labelled=False))
    write_jsonl(project.parent / "test3.jsonl", sentiment_rows("t3", 6))
    ok(invoke("label", run / "teachers", "-o", project.parent / "labels-more", "--data.unlabeled", project.parent / "more.jsonl",
              "--data.test", project.parent / "test3.jsonl"))
    result = pet.SoftLabels.load(project.parent / "labels-more")
    assert result.ids == [f"more-{i}" for i in range(5)] and result.probs.shape == (5, 2)
    assert result.test_metrics["ensemble"]["examples"] == 6
    # the same through the API, with the texts in memory
    texts = ["a great movie", "a terrible movie", "loved it"]
    api = pet.label(pet.Teachers.load(run / "teachers"), project.parent / "labels-api", unlabeled=texts)
    assert api.ids == ["row-0", "row-1", "row-2"] and len(api) == 3


def test_api_reruns_behave_like_the_cli(project):
    run = project.parent / "run"
    with pytest.raises(pet.PetError, match=r"distillation.steps 3 -> 5\); rerun with --overwrite"):
        pet.run(project, run, **{"distillation.steps": 5})
    result = pet.run(project, run, overwrite=True, **{"distillation.steps": 5})
    assert result.student.manifest["metrics"]["steps"] == 5


# --- checked up front, before any teacher trains --------------------------------------------------


@pytest.mark.parametrize("extra, fragment", [
    ("distillation:\n  model: /no/such/student\n", "distillation.model: model '/no/such/student' not found"),
    ("", None),
])
def test_student_model_is_checked_before_stage_a(tmp_path, tiny_bert, extra, fragment):
    config = write_project(tmp_path, tiny_bert)
    if fragment is None:  # a valid distillation.model (another folder) passes the check
        text = config.read_text().replace("distillation:\n", f"distillation:\n  model: {tiny_bert}\n")
        config.write_text(text)
        ok(invoke("train-teachers", config, "-o", tmp_path / "run" / "teachers", "--teachers.steps", "1"))
        return
    text = config.read_text().replace("distillation:\n", extra.rstrip("\n").replace("distillation:", "distillation:", 1) + "\n", 1)
    config.write_text(text)
    line = error_line(invoke("run", config, "-o", tmp_path / "run"))
    assert fragment in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("role", ["unlabeled", "test"])
def test_rows_that_cannot_fit_fail_before_training(tmp_path, tiny_bert, role):
    config = write_project(tmp_path, tiny_bert)
    config.write_text(config.read_text().replace("labelling:\n  batch_size: 8\n  max_length: 64\n",
                                                 "labelling:\n  batch_size: 8\n  max_length: 12\n"))
    (tmp_path / "patterns.yaml").write_text('patterns:\n  - id: fixed\n    template: "{text} It was {mask}."\n    shorten: []\n')
    rows = sentiment_rows("x", 4, labelled=role == "test")
    rows[2]["text"] = "a great movie and really good food and excellent service"
    write_jsonl(tmp_path / f"{role}.jsonl", rows)
    line = error_line(invoke("run", config, "-o", tmp_path / "run"))
    assert line.startswith(f"error: {tmp_path / (role + '.jsonl')}: pattern 'fixed': example 'x-2' needs")
    assert "max_length 12" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, fragment", [
    (("teachers:\n  seeds: [1]\n", "teachers:\n  seeds: []\n"), "teachers.seeds is empty, so no teacher would be trained"),
    (("teachers:\n  seeds: [1]\n", "teachers:\n  seeds: [1, 1]\n"), "teachers.seeds lists 1 twice"),
])
def test_settings_that_can_only_give_a_useless_run_are_errors(tmp_path, tiny_bert, change, fragment):
    config = write_project(tmp_path, tiny_bert)
    config.write_text(config.read_text().replace(*change))
    assert fragment in error_line(invoke("run", config, "-o", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_word_for_two_labels_is_an_error(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    (tmp_path / "verbalizers.yaml").write_text("labels: [negative, positive]\nverbalizers:\n"
                                               "  - id: v\n    words: {negative: [bad, good], positive: [good]}\n")
    line = error_line(invoke("run", config, "-o", tmp_path / "run"))
    assert "verbalizer 'v': word 'good' is given for both 'negative' and 'positive'" in line
