"""The Python API: in-memory inputs of every kind, typed results reopened from disk, the same
artifacts as the CLI, and validation errors as PetError with the CLI's one-line messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, sentiment_rows, write_project
from typer.testing import CliRunner

import pet
from pet.cli import app

TINY = {"seeds": [1], "steps": 3, "batch_size": 4, "max_length": 64, "runtime": {"device": "cpu"}, "ipet": {"generations": 0}}
PATTERNS = [pet.Pattern("it-was", "{text} It was {mask}.", shorten=("text",)), pet.Pattern("just", "Just {mask}! {text}")]
VERBALIZER = pet.Verbalizer("bad-good", {"negative": ["bad"], "positive": ["good"]})


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def without_timings(value):
    """A manifest without what legitimately differs between two runs: wall-clock seconds."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_bert):
    """The reference: `pet run` on a project's files."""
    folder = tmp_path_factory.mktemp("cli")
    config = write_project(folder, tiny_bert)
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, tiny_bert, cli_run):
    """The same run through the API, with every input in memory: rows, pattern and verbalizer objects."""
    folder = tmp_path_factory.mktemp("api")
    teachers = pet.train_teachers(str(tiny_bert), train=read_rows(cli_run / "train.jsonl"),
                                  unlabeled=read_rows(cli_run / "unlabeled.jsonl"), test=read_rows(cli_run / "test.jsonl"),
                                  patterns=PATTERNS, verbalizers=[VERBALIZER], output=folder / "teachers", **TINY)
    soft = pet.label(teachers, batch_size=8, max_length=64)
    student = pet.distill(soft, steps=3, batch_size=4, max_length=64)
    return teachers, soft, student


def test_api_returns_typed_results_in_the_default_folders(api_run):
    teachers, soft, student = api_run
    assert isinstance(teachers, pet.Teachers) and isinstance(soft, pet.SoftLabels) and isinstance(student, pet.Student)
    assert soft.path == teachers.path.parent / "labels" and student.path == teachers.path.parent / "student"
    assert [e["name"] for e in teachers.entries] == ["it-was--bad-good--s1", "just--bad-good--s1"]
    assert len(teachers) == 2 and teachers.labels == ["negative", "positive"]
    assert [p.template for p in teachers.patterns] == ["{text} It was {mask}.", "Just {mask}! {text}"]
    assert teachers.config.teachers.steps == 3 and teachers.config.runtime.device == "cpu"
    assert soft.probs.shape == (24, 2) and np.allclose(soft.probs.sum(1), 1.0)
    assert len(soft) == 24 and soft.ids[:2] == ["u-0", "u-1"]
    assert student.test_metrics["examples"] == 12


def test_api_and_cli_write_the_same_artifacts(api_run, cli_run):
    """Same data and settings: identical soft labels, teacher logits and student weights on the CPU."""
    from safetensors.torch import load_file

    teachers, soft, student = api_run
    cli = pet.Run.load(cli_run / "run")
    assert np.array_equal(soft.probs, cli.soft_labels.probs)
    assert np.array_equal(soft.teacher_logits, cli.soft_labels.teacher_logits)
    assert soft.ids == cli.soft_labels.ids
    ours, theirs = load_file(str(student.path / "model.safetensors")), load_file(str(cli.student.path / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all(ours[k].equal(theirs[k]) for k in ours)
    assert without_timings(teachers.entries) == without_timings(cli.teachers.entries)
    assert soft.manifest["weights"] == cli.soft_labels.manifest["weights"]
    assert without_timings(student.manifest["test"]) == without_timings(cli.student.manifest["test"])


def test_api_with_the_cli_files_records_the_same_config(cli_run, tiny_bert, tmp_path):
    """Given the very files a config names, the API builds the same run config (and fingerprint)."""
    teachers = pet.train_teachers(str(tiny_bert), train=cli_run / "train.jsonl", unlabeled=str(cli_run / "unlabeled.jsonl"),
                                  test=cli_run / "test.jsonl", patterns=cli_run / "patterns.yaml",
                                  verbalizers=str(cli_run / "verbalizers.yaml"), output=tmp_path / "teachers",
                                  labelling={"batch_size": 8, "max_length": 64},
                                  distillation={"steps": 3, "batch_size": 4, "max_length": 64}, adapt={"enabled": False},
                                  **TINY)
    cli = pet.Teachers.load(cli_run / "run" / "teachers")
    assert teachers.manifest["config"] == cli.manifest["config"]
    assert teachers.manifest["fingerprint"] == cli.manifest["fingerprint"]
    assert not (tmp_path / "teachers" / "inputs").exists()  # files given as paths are read in place


def test_results_reopen_from_disk(api_run):
    teachers, soft, student = api_run
    again = pet.Teachers.load(teachers.path)
    assert again.manifest == teachers.manifest and again.entries == teachers.entries
    assert np.array_equal(pet.SoftLabels.load(soft.path).probs, soft.probs)
    frame = soft.to_pandas()
    assert list(frame["id"][:2]) == ["u-0", "u-1"] and {"probs", "teacher_logits", "confidence", "label"} <= set(frame.columns)
    reopened = pet.Student.load(student.path)
    predictions = reopened.predict(["a great movie", "a terrible movie"])
    assert [p.label in ("negative", "positive") for p in predictions] == [True, True]
    assert all(abs(sum(p.probs.values()) - 1) < 1e-6 for p in predictions)
    assert np.allclose(reopened.predict_proba(["a great movie"])[0], list(predictions[0].probs.values()))


def test_predict_and_evaluate_accept_in_memory_data(api_run, cli_run):
    teachers, _, student = api_run
    rows = read_rows(cli_run / "test.jsonl")
    from_file = student.evaluate(cli_run / "test.jsonl")
    assert student.evaluate(rows) == {**from_file, "data": "list of 12 rows"}
    assert from_file["accuracy"] == student.test_metrics["accuracy"]
    ensemble = teachers.evaluate(rows)
    assert ensemble["ensemble"]["accuracy"] == pytest.approx(pet.SoftLabels.load(teachers.path.parent / "labels").test_metrics["ensemble"]["accuracy"])
    probs = teachers.predict_proba([r["text"] for r in rows])
    assert probs.shape == (12, 2) and np.allclose(probs.sum(1), 1.0)


def test_data_as_dataframe_dataset_and_texts(tmp_path, tiny_bert):
    """pandas, datasets.Dataset and a plain list of texts (unlabeled) all work, and give the same soft labels as dicts."""
    import datasets
    import pandas as pd

    train, unlabeled = sentiment_rows("train", 8), [r["text"] for r in sentiment_rows("u", 6, labelled=False)]
    common = dict(patterns=PATTERNS[:1], verbalizers=VERBALIZER, **TINY)
    a = pet.train_teachers(str(tiny_bert), train=pd.DataFrame(train), unlabeled=unlabeled, output=tmp_path / "a" / "teachers", **common)
    b = pet.train_teachers(str(tiny_bert), train=datasets.Dataset.from_list(train),
                           unlabeled=datasets.Dataset.from_dict({"text": unlabeled}), output=tmp_path / "b" / "teachers", **common)
    c = pet.train_teachers(str(tiny_bert), train=train, unlabeled=[{"text": t} for t in unlabeled],
                           output=tmp_path / "c" / "teachers", **common)
    probs = [pet.label(t, batch_size=8, max_length=64).probs for t in (a, b, c)]
    assert np.array_equal(probs[0], probs[1]) and np.array_equal(probs[0], probs[2])
    assert pet.SoftLabels.load(tmp_path / "a" / "labels").ids == [f"row-{i}" for i in range(6)]


def test_patterns_and_verbalizers_as_yaml_text(tmp_path, tiny_bert):
    patterns = 'patterns:\n  - id: it-was\n    template: "{text} It was {mask}."\n'
    verbalizers = "labels: [negative, positive]\nverbalizers:\n  - id: v\n    words: {negative: bad, positive: good}\n"
    teachers = pet.train_teachers(str(tiny_bert), train=sentiment_rows("t", 4), unlabeled=["a great movie"],
                                  patterns=patterns, verbalizers=verbalizers, output=tmp_path / "teachers", **TINY)
    assert [e["name"] for e in teachers.entries] == ["it-was--v--s1"]
    stored = sorted(p.name for p in (tmp_path / "teachers" / "inputs").iterdir())
    assert [name.split("-")[0] for name in stored] == ["patterns", "train", "unlabeled", "verbalizers"]
    assert (tmp_path / "teachers" / "inputs" / stored[0]).read_text() == patterns


def test_rerun_with_the_same_in_memory_data_resumes(tmp_path, tiny_bert):
    args = dict(train=sentiment_rows("t", 4), unlabeled=["a great movie"], patterns=PATTERNS[:1], verbalizers=VERBALIZER,
                output=tmp_path / "teachers", **TINY)
    first = pet.train_teachers(str(tiny_bert), **args)
    second = pet.train_teachers(str(tiny_bert), **args)
    assert second.manifest == first.manifest
    with pytest.raises(pet.PetError, match="holds teachers trained with a different config or data"):
        pet.train_teachers(str(tiny_bert), **{**args, "unlabeled": ["a terrible movie"]})
    assert len(list((tmp_path / "teachers" / "inputs").glob("unlabeled-*"))) == 2  # the old file is kept, never overwritten


@pytest.mark.parametrize("change, message", [
    ({"stpes": 3}, "pet.train_teachers: unknown setting 'stpes'; did you mean 'steps'?"),
    ({"teachers": {"stpes": 3}}, "--teachers.stpes: unknown setting; did you mean --teachers.steps?"),
    ({"learning_rate": -1}, "pet.train_teachers: 'teachers.learning_rate': input should be greater than 0 (got -1)"),
    ({"train": [{"id": "a", "text": "good", "label": "neutral"}]},
     "has label 'neutral', which the verbalizer does not define (labels: negative, positive)"),
    ({"train": [{"id": "a", "txt": "good", "label": "positive"}]}, "has no column 'text'"),
    ({"unlabeled": []}, "unlabeled: no rows given; pass at least one example"),
    ({"unlabeled": {"train": []}}, "did you mean dataset['train']?"),
    ({"verbalizers": [VERBALIZER, pet.Verbalizer("other", {"positive": ["good"], "negative": ["bad"]})]},
     "every verbalizer of a run has the same labels in the same order"),
    ({"verbalizers": "labels: [negative, positive]\nverbalizer: []\n"}, "verbalizers (YAML text):2: unknown key 'verbalizer'"),
])
def test_validation_errors_are_one_line_pet_errors_and_leave_nothing(tmp_path, tiny_bert, change, message):
    args = dict(train=sentiment_rows("t", 4), unlabeled=["a great movie"], patterns=PATTERNS, verbalizers=[VERBALIZER], **TINY)
    with pytest.raises(pet.PetError) as caught:
        pet.train_teachers(str(tiny_bert), output=tmp_path / "teachers", **{**args, **change})
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "teachers").exists()


def test_object_errors_match_the_yaml_messages(tmp_path):
    """A bad pattern or verbalizer built in Python fails with the message its YAML file would give, minus the file."""
    from pet.io.patterns import load_patterns, load_verbalizers

    with pytest.raises(pet.PetError) as from_object:
        pet.Pattern("p", "{text} no mask here")
    (tmp_path / "p.yaml").write_text('patterns:\n  - id: p\n    template: "{text} no mask here"\n')
    with pytest.raises(pet.PetError) as from_file:
        load_patterns(tmp_path / "p.yaml")
    assert str(from_file.value) == f"{tmp_path / 'p.yaml'}: {from_object.value}"
    with pytest.raises(pet.PetError) as from_object:
        pet.Verbalizer("v", {"negative": ["bad"], "positive": [""]})
    (tmp_path / "v.yaml").write_text("labels: [negative, positive]\nverbalizers:\n  - id: v\n    words: {negative: [bad], positive: ['']}\n")
    with pytest.raises(pet.PetError) as from_file:
        load_verbalizers(tmp_path / "v.yaml")
    assert str(from_file.value) == f"{tmp_path / 'v.yaml'}: {from_object.value}"
    assert str(from_object.value) == "verbalizer 'v': label 'positive' has an empty word"


def test_stage_settings_are_checked_like_the_cli(api_run, tmp_path):
    teachers, soft, _ = api_run
    with pytest.raises(pet.PetError, match="pet.label: unknown setting 'temprature'; did you mean 'temperature'"):
        pet.label(teachers, tmp_path / "labels", temprature=3)
    with pytest.raises(pet.PetError, match=r"--teachers.steps: cannot be changed at this stage"):
        pet.distill(soft, tmp_path / "student", **{"teachers.steps": 3})
    with pytest.raises(pet.PetError, match="no manifest.json, so the teachers stage did not finish"):
        pet.Teachers.load(tmp_path)


def test_import_pet_stays_light():
    """`import pet` and its public names load no torch or transformers (the CLI's --help depends on it)."""
    code = "import sys, pet; pet.Pattern; pet.train_teachers; pet.RunConfig; print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.long
def test_example_script_runs_end_to_end(tmp_path, tiny_bert):
    """examples/python_api.py on the shipped example data, offline, with the tiny model and tiny budgets."""
    script = REPO / "examples" / "python_api.py"
    out = subprocess.run([sys.executable, str(script), "--model", str(tiny_bert), "--output", str(tmp_path / "run"),
                          "--teacher-steps", "2", "--student-steps", "2"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "student test accuracy" in out.stdout
    assert (tmp_path / "run" / "student" / "manifest.json").exists()
    assert pet.Run.load(tmp_path / "run").student.test_metrics["examples"] == 120
