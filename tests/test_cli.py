"""The CLI end to end on the tiny models: files, manifests, numbers and exit codes.

The staged run (train-teachers, label, distill) is built once per module and shared; tests that
change a folder work on a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, held_by_another_process, sentiment_rows, write_jsonl, write_project
from typer.testing import CliRunner

from pet.cli import app

TEACHERS = ["it-was--bad-good--s1", "just--bad-good--s1"]
TEMPLATES = {"it-was--bad-good--s1": "{text} It was {mask}.", "just--bad-good--s1": "Just {mask}! {text}"}


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result) -> str:
    """stdout and stderr of a successful command."""
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result.output


def ok_json(result) -> dict:
    """The JSON a successful command printed on stdout (messages go to stderr)."""
    ok(result)
    return json.loads(result.stdout)


def failed(result, *fragments: str) -> str:
    """A clean failure: exit code 1, one 'error:' line naming the problem, no traceback."""
    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def read_parquet(path: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    return pq.read_table(str(path)).to_pydict()


@pytest.fixture(scope="module")
def staged(tmp_path_factory, tiny_bert):
    """A full run through the three stage commands on tiny BERT: 2 patterns x 1 verbalizer x 1 seed."""
    folder = tmp_path_factory.mktemp("staged")
    config = write_project(folder, tiny_bert)
    run = folder / "run"
    outputs = {
        "teachers": invoke("train-teachers", config, "-o", run / "teachers"),
        "labels": invoke("label", run / "teachers", "-o", run / "labels"),
        "student": invoke("distill", run / "labels", "-o", run / "student"),
    }
    for result in outputs.values():
        ok(result)
    return {"folder": folder, "config": config, "run": run, "model": tiny_bert, "outputs": outputs}


# --- stage A ----------------------------------------------------------------------------------------

def test_teachers_folder(staged):
    teachers = staged["run"] / "teachers"
    assert f"2 teachers in {teachers}" in staged["outputs"]["teachers"].stdout
    assert {p.name for p in teachers.iterdir()} == {"manifest.json", *TEACHERS}
    for name in TEACHERS:
        files = {p.name for p in (teachers / name).iterdir()}
        assert {"config.json", "model.safetensors", "teacher.json", "tokenizer_config.json"} <= files
        assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
        record = read_json(teachers / name / "teacher.json")
        assert record["name"] == name and record["metrics"]["steps"] == 3 and len(record["metrics"]["losses"]) == 3
    assert not list(teachers.glob(".tmp-*"))


def test_teachers_manifest(staged):
    folder, teachers = staged["folder"], staged["run"] / "teachers"
    manifest = read_json(teachers / "manifest.json")
    assert manifest["stage"] == "teachers" and manifest["schema_version"] == 1
    assert manifest["labels"] == ["negative", "positive"]
    assert {"pet", "torch", "transformers", "datasets"} <= set(manifest["versions"])
    assert manifest["config"]["model"] == str(staged["model"])
    assert manifest["config"]["teachers"]["steps"] == 3
    files = ["train.jsonl", "unlabeled.jsonl", "test.jsonl", "patterns.yaml", "verbalizers.yaml"]
    assert manifest["inputs"] == {str(folder / f): sha256(folder / f) for f in files}
    assert [p["id"] for p in manifest["patterns"]] == ["it-was", "just"]
    assert [v["id"] for v in manifest["verbalizers"]] == ["bad-good"]
    entries = manifest["teachers"]
    assert [e["name"] for e in entries] == TEACHERS
    for entry in entries:
        record = read_json(teachers / entry["path"] / "teacher.json")
        assert entry["seed"] == 1 and entry["verbalizer"] == "bad-good"
        assert entry["weight"] == record["weight"] == record["metrics"]["train_accuracy_before"]
        assert entry["derived_seed"] == record["derived_seed"] == \
            int.from_bytes(hashlib.sha256(entry["name"].encode()).digest()[:4], "big") & 0x7FFFFFFF
        assert 0 <= entry["weight"] <= 1
    assert entries[0]["derived_seed"] != entries[1]["derived_seed"]


def test_teacher_weight_is_accuracy_before_training(staged):
    """Recomputed independently: the untrained model, whole rendered sentences, the full forward."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(staged["model"]))
    model = AutoModelForMaskedLM.from_pretrained(str(staged["model"]), dtype=torch.float32).eval()
    words = tokenizer.convert_tokens_to_ids(["bad", "good"])
    rows = sentiment_rows("train", 8)
    manifest = read_json(staged["run"] / "teachers" / "manifest.json")
    for entry in manifest["teachers"]:
        correct = 0
        for row in rows:
            text = TEMPLATES[entry["name"]].format(text=row["text"], mask=tokenizer.mask_token)
            encoded = tokenizer(text, return_tensors="pt")
            with torch.no_grad():
                logits = model(**encoded).logits[0]
            position = encoded["input_ids"][0].tolist().index(tokenizer.mask_token_id)
            predicted = int(logits[position, words].argmax())
            correct += ["negative", "positive"][predicted] == row["label"]
        assert entry["weight"] == pytest.approx(correct / len(rows))


def test_rerun_skips_finished_teachers(staged, tmp_path):
    teachers = tmp_path / "teachers"
    shutil.copytree(staged["run"] / "teachers", teachers)
    stamps = {p: p.stat().st_mtime_ns for p in teachers.rglob("*") if p.is_file()}
    # a finished stage: nothing to do
    result = invoke("train-teachers", staged["config"], "-o", teachers)
    assert "all teachers already trained" in ok(result)
    assert {p: p.stat().st_mtime_ns for p in teachers.rglob("*") if p.is_file()} == stamps
    # an interrupted stage (no manifest yet): finished teachers are skipped, the manifest is rewritten
    old_manifest = read_json(teachers / "manifest.json")
    (teachers / "manifest.json").unlink()
    shutil.rmtree(teachers / TEACHERS[1])
    result = invoke("train-teachers", staged["config"], "-o", teachers)
    output = ok(result)
    assert f"teacher 1/2 {TEACHERS[0]}: already trained, skipped" in output
    assert f"teacher 2/2 {TEACHERS[1]}: training" in output
    for path, stamp in stamps.items():
        if TEACHERS[0] in str(path):
            assert path.stat().st_mtime_ns == stamp, path
    new_manifest = read_json(teachers / "manifest.json")
    for entry in old_manifest["teachers"] + new_manifest["teachers"]:
        entry["metrics"].pop("seconds")
    assert new_manifest["teachers"] == old_manifest["teachers"]  # same seeds, same training: same results


def test_rerun_with_another_config_is_refused(staged, tmp_path):
    teachers = tmp_path / "teachers"
    shutil.copytree(staged["run"] / "teachers", teachers)
    failed(invoke("train-teachers", staged["config"], "-o", teachers, "--teachers.steps", "4"),
           str(teachers), "different config")


def test_teacher_seeds_come_from_identity(staged, tmp_path):
    """Seeds [2] and [1, 2] train an identical s2 teacher: no shared random stream."""
    from safetensors.torch import load_file

    base = ["--patterns.ids", "[it-was]"]
    ok(invoke("train-teachers", staged["config"], "-o", tmp_path / "a", "--teachers.seeds", "[2]", *base))
    ok(invoke("train-teachers", staged["config"], "-o", tmp_path / "b", "--teachers.seeds", "[1,2]", *base))
    name = "it-was--bad-good--s2"
    a, b = read_json(tmp_path / "a" / "manifest.json"), read_json(tmp_path / "b" / "manifest.json")
    assert [e["name"] for e in a["teachers"]] == [name]
    assert [e["name"] for e in b["teachers"]] == ["it-was--bad-good--s1", name]
    assert a["teachers"][0]["derived_seed"] == b["teachers"][1]["derived_seed"]
    assert a["teachers"][0]["derived_seed"] != b["teachers"][0]["derived_seed"]
    wa, wb = load_file(str(tmp_path / "a" / name / "model.safetensors")), load_file(str(tmp_path / "b" / name / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] == wb[key]).all(), key
    ra, rb = read_json(tmp_path / "a" / name / "teacher.json"), read_json(tmp_path / "b" / name / "teacher.json")
    assert ra["metrics"]["losses"] == rb["metrics"]["losses"]
    # and the s1 teacher differs from s2 (the seed matters)
    w1 = load_file(str(tmp_path / "b" / "it-was--bad-good--s1" / "model.safetensors"))
    assert any(not (w1[k] == wb[k]).all() for k in wb)


# --- stage B ----------------------------------------------------------------------------------------

def check_soft_labels(labels_dir: Path, weights: list[float] | None, temperature: float):
    table = read_parquet(labels_dir / "soft_labels.parquet")
    assert set(table) >= {"id", "text", "teacher_logits", "logits", "probs", "label", "confidence", "agreement", "entropy"}
    teacher = np.array(table["teacher_logits"], dtype=np.float64)  # [N, K, C]
    ensemble = np.array(table["logits"], dtype=np.float64)
    probs = np.array(table["probs"], dtype=np.float64)
    n, k, c = teacher.shape
    assert (k, c) == (2, 2) and ensemble.shape == probs.shape == (n, c)
    w = np.full(k, 1 / k) if weights is None else np.array(weights) / np.sum(weights)
    np.testing.assert_allclose(ensemble, np.einsum("k,nkc->nc", w, teacher), atol=1e-5)
    np.testing.assert_allclose(probs, softmax(ensemble / temperature), atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    predicted = ensemble.argmax(-1)
    assert table["label"] == [["negative", "positive"][i] for i in predicted]
    np.testing.assert_allclose(table["confidence"], probs.max(-1), atol=1e-6)
    np.testing.assert_allclose(table["entropy"], -(probs * np.log(probs)).sum(-1), atol=1e-5)
    np.testing.assert_allclose(table["agreement"], (teacher.argmax(-1) == predicted[:, None]).mean(-1), atol=1e-6)
    return table, teacher


def test_labels_folder_and_manifest(staged):
    labels, teachers = staged["run"] / "labels", staged["run"] / "teachers"
    assert sorted(p.name for p in labels.iterdir()) == ["manifest.json", "soft_labels.parquet"]
    manifest = read_json(labels / "manifest.json")
    teachers_manifest = read_json(teachers / "manifest.json")
    assert manifest["stage"] == "labels" and manifest["schema_version"] == 1
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["teachers"] == TEACHERS
    assert manifest["ensemble"] == "wmean" and manifest["temperature"] == 2.0
    weights = [e["weight"] for e in teachers_manifest["teachers"]]
    if sum(weights) > 0:
        assert manifest["weights"] == pytest.approx([w / sum(weights) for w in weights])
    assert manifest["inputs"] == teachers_manifest["inputs"]
    assert manifest["teachers_fingerprint"] == teachers_manifest["fingerprint"]
    assert manifest["statistics"]["examples"] == 24
    assert sum(manifest["statistics"]["predicted_label_counts"].values()) == 24
    assert manifest["test"]["ensemble"]["examples"] == 12
    assert set(manifest["test"]["teachers"]) == set(TEACHERS)
    assert "24 soft labels in" in staged["outputs"]["labels"].stdout
    assert "ensemble test accuracy" in staged["outputs"]["labels"].stdout


def test_soft_labels_are_the_ensemble_at_temperature(staged):
    labels = staged["run"] / "labels"
    manifest = read_json(labels / "manifest.json")
    weights = [e["weight"] for e in read_json(staged["run"] / "teachers" / "manifest.json")["teachers"]]
    table, _ = check_soft_labels(labels, weights if sum(weights) > 0 else None, 2.0)
    unlabeled = sentiment_rows("u", 24, labelled=False)
    assert table["id"] == [r["id"] for r in unlabeled]
    assert table["text"] == [r["text"] for r in unlabeled]
    assert manifest["statistics"]["mean_entropy"] == pytest.approx(float(np.mean(table["entropy"])), abs=1e-5)


def test_label_weighted_mean_and_mean_by_hand(staged, tmp_path):
    """Unequal weights, to make the weighted mean visible; then the uniform mean at T = 1."""
    teachers = tmp_path / "teachers"
    shutil.copytree(staged["run"] / "teachers", teachers)
    manifest = read_json(teachers / "manifest.json")
    for entry, weight in zip(manifest["teachers"], [0.75, 0.25]):
        entry["weight"] = weight
    (teachers / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    ok(invoke("label", teachers, "-o", tmp_path / "wmean"))
    assert read_json(tmp_path / "wmean" / "manifest.json")["weights"] == [0.75, 0.25]
    _, logits = check_soft_labels(tmp_path / "wmean", [3.0, 1.0], 2.0)
    ok(invoke("label", teachers, "-o", tmp_path / "mean", "--labelling.ensemble", "mean", "--labelling.temperature", "1"))
    mean_manifest = read_json(tmp_path / "mean" / "manifest.json")
    assert mean_manifest["weights"] is None and mean_manifest["temperature"] == 1.0
    _, same = check_soft_labels(tmp_path / "mean", None, 1.0)
    np.testing.assert_allclose(same, logits, atol=1e-6)  # the teachers' scores do not depend on the ensemble


def test_label_rejects_upstream_overrides(staged, tmp_path):
    failed(invoke("label", staged["run"] / "teachers", "-o", tmp_path / "l", "--teachers.steps", "5"),
           "--teachers.steps: cannot be changed at this stage")
    assert not (tmp_path / "l").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="folders are locked with fcntl.flock")
@pytest.mark.parametrize("stage", ["train-teachers", "label", "distill"])
def test_a_stage_refuses_a_folder_another_process_is_writing(staged, tmp_path, stage):
    """Two processes labelling one folder used to race on labels/.partial (one ended in a traceback)."""
    source = {"train-teachers": staged["config"], "label": staged["run"] / "teachers", "distill": staged["run"] / "labels"}[stage]
    output = tmp_path / "out"
    with held_by_another_process(output, "pet label") as holder:
        failed(invoke(stage, source, "-o", output), f"{output}: pet label (pid {holder.pid} on ", "is writing this folder")
        assert [p.name for p in output.iterdir()] == [".pet-lock"]  # nothing of this command's was written
    if stage == "label":  # the holder was killed without cleaning up: the next run takes the folder
        ok(invoke(stage, source, "-o", output))
        assert ".pet-lock" not in {p.name for p in output.iterdir()}
        assert read_json(output / "manifest.json")["stage"] == "labels"


# --- stage C ----------------------------------------------------------------------------------------

def test_student_folder_and_manifest(staged):
    student = staged["run"] / "student"
    files = {p.name for p in student.iterdir()}
    assert {"manifest.json", "config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert not any(name.startswith(".tmp") for name in files)
    config = read_json(student / "config.json")
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    manifest = read_json(student / "manifest.json")
    assert manifest["stage"] == "student" and manifest["schema_version"] == 1
    assert manifest["labels"] == ["negative", "positive"] and manifest["input_fields"] == ["text"]
    assert manifest["temperature"] == 2.0
    assert manifest["labels_fingerprint"] == read_json(staged["run"] / "labels" / "manifest.json")["fingerprint"]
    assert manifest["metrics"]["steps"] == 3
    assert manifest["test"]["examples"] == 12 and 0 <= manifest["test"]["accuracy"] <= 1
    assert f"student in {student}; test accuracy" in staged["outputs"]["student"].stdout


def test_student_loads_with_plain_transformers_pipeline(staged):
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(staged["run"] / "student"), device="cpu")
    out = classifier(["a great movie", "a terrible movie"])
    assert [set(o) for o in out] == [{"label", "score"}] * 2
    assert {o["label"] for o in out} <= {"negative", "positive"}


# --- evaluate and predict ---------------------------------------------------------------------------

def test_evaluate_student_text_and_json(staged):
    student, test = staged["run"] / "student", staged["folder"] / "test.jsonl"
    text = ok(invoke("evaluate", student, "--data", test))
    assert "accuracy" in text and "macro-F1" in text and "student" in text and "(12 examples" in text
    result = ok_json(invoke("evaluate", student, "--data", test, "--json"))
    assert result["stage"] == "student" and result["examples"] == 12
    manifest = read_json(student / "manifest.json")
    assert result["accuracy"] == pytest.approx(manifest["test"]["accuracy"])
    assert result["macro_f1"] == pytest.approx(manifest["test"]["macro_f1"])
    assert f"{result['accuracy']:.4f}" in text
    # each class's F1 in the JSON and on one line of the text, macro-F1 their mean
    per_class = result["per_class_f1"]
    assert sum(per_class.values()) / len(per_class) == pytest.approx(result["macro_f1"])
    assert "per-class F1 (student): " + ", ".join(f"{label} {f1:.4f}" for label, f1 in per_class.items()) in text.splitlines()


def test_evaluate_teachers_folder(staged):
    teachers, test = staged["run"] / "teachers", staged["folder"] / "test.jsonl"
    result = ok_json(invoke("evaluate", teachers, "--data", test, "--json"))
    assert result["stage"] == "teachers"
    assert list(result["teachers"]) == TEACHERS
    assert result["ensemble"]["method"] == "wmean" and result["ensemble"]["examples"] == 12
    labels_manifest = read_json(staged["run"] / "labels" / "manifest.json")
    assert result["ensemble"]["accuracy"] == pytest.approx(labels_manifest["test"]["ensemble"]["accuracy"])
    for name in TEACHERS:
        assert result["teachers"][name]["accuracy"] == pytest.approx(labels_manifest["test"]["teachers"][name])
    text = ok(invoke("evaluate", teachers, "--data", test))
    lines = text.splitlines()
    assert lines[0].split() == ["model", "accuracy", "macro-F1", "ECE", "Brier", "NLL"]
    assert [line.split()[0] for line in lines[1:4]] == [*TEACHERS, "ensemble"]
    assert any(line.startswith("per-class F1 (ensemble (wmean) T=1): ") for line in lines)


def test_evaluate_refuses_a_labels_folder(staged):
    failed(invoke("evaluate", staged["run"] / "labels", "--data", staged["folder"] / "test.jsonl"),
           "holds labels artifacts; evaluate a student or a teachers folder")


def test_predict_student(staged, tmp_path):
    out = tmp_path / "pred" / "student.jsonl"
    assert "24 predictions in" in ok(invoke("predict", staged["run"] / "student", "--data", staged["folder"] / "unlabeled.jsonl", "-o", out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"u-{i}" for i in range(24)]
    for row in rows:
        assert set(row["probs"]) == {"negative", "positive"}
        assert sum(row["probs"].values()) == pytest.approx(1.0)
        assert row["label"] == max(row["probs"], key=row["probs"].get)


def test_predict_teachers_matches_the_soft_labels(staged, tmp_path):
    out = tmp_path / "teachers.jsonl"
    ok(invoke("predict", staged["run"] / "teachers", "--data", staged["folder"] / "unlabeled.jsonl", "-o", out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    table = read_parquet(staged["run"] / "labels" / "soft_labels.parquet")
    assert [r["id"] for r in rows] == table["id"]
    predicted = np.array([[r["probs"]["negative"], r["probs"]["positive"]] for r in rows])
    np.testing.assert_allclose(predicted, np.array(table["probs"]), atol=1e-5)


def test_predict_reads_the_manifest_once_so_a_version_warning_is_said_once(staged, tmp_path, caplog):
    student = tmp_path / "student"
    shutil.copytree(staged["run"] / "student", student)
    manifest = read_json(student / "manifest.json")
    major, minor, *_ = manifest["versions"]["torch"].split("+")[0].split(".")
    manifest["versions"]["torch"] = f"{major}.{int(minor) + 1}.0"  # another minor version: a warning, not an error
    (student / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level("WARNING"):
        ok(invoke("predict", student, "--data", staged["folder"] / "unlabeled.jsonl", "-o", tmp_path / "p.jsonl"))
    said = [r.getMessage() for r in caplog.records if "written with torch" in r.getMessage()]
    assert len(said) == 1, said


# --- pet run ----------------------------------------------------------------------------------------

def test_run_end_to_end_on_tiny_roberta(tmp_path, tiny_roberta):
    config = write_project(tmp_path, tiny_roberta)
    run = tmp_path / "run"
    summary = ok_json(invoke("run", config, "-o", run, "--json", "--teachers.seeds", "[3]"))
    assert summary["run"] == str(run)
    assert summary["teachers"] == 2 and summary["soft_labels"] == 24
    assert summary["ensemble_test"]["examples"] == summary["student_test"]["examples"] == 12
    assert sorted(p.name for p in run.iterdir()) == ["labels", "student", "teachers"]
    teachers = read_json(run / "teachers" / "manifest.json")
    assert [e["name"] for e in teachers["teachers"]] == ["it-was--bad-good--s3", "just--bad-good--s3"]
    assert teachers["config"]["teachers"]["seeds"] == [3]
    # the verbalizer ids are the in-context (leading-space) BPE tokens after "It was"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_roberta))
    record = read_json(run / "teachers" / "it-was--bad-good--s3" / "teacher.json")
    assert record["verbalizer_token_ids"] == [tok(" bad", add_special_tokens=False)["input_ids"],
                                              tok(" good", add_special_tokens=False)["input_ids"]]
    student = read_json(run / "student" / "manifest.json")
    assert student["test"]["accuracy"] == summary["student_test"]["accuracy"]
    # text output of a finished run: every stage is skipped, metrics printed
    text = ok(invoke("run", config, "-o", run, "--teachers.seeds", "[3]"))
    assert "all teachers already trained" in text and "soft labels already written" in text
    assert "student already trained" in text
    assert "student test: accuracy" in text and "ensemble test: accuracy" in text


# --- errors through the CLI ---------------------------------------------------------------------

def test_cli_config_unknown_key(project, tmp_path):
    project.write_text(project.read_text() + "distilation:\n  steps: 3\n", encoding="utf-8")
    failed(invoke("train-teachers", project, "-o", tmp_path / "t"), str(project),
           "unknown key 'distilation'; did you mean 'distillation'?")
    assert not (tmp_path / "t").exists()


def test_cli_unknown_override(project, tmp_path):
    failed(invoke("run", project, "-o", tmp_path / "r", "--teachers.stepss", "5"),
           "--teachers.stepss: unknown setting; did you mean --teachers.steps?")
    assert not (tmp_path / "r").exists()


def test_cli_pattern_without_mask(project, tmp_path):
    patterns = project.parent / "patterns.yaml"
    patterns.write_text("patterns:\n  - id: nomask\n    template: '{text} It was good.'\n", encoding="utf-8")
    failed(invoke("train-teachers", project, "-o", tmp_path / "t"), str(patterns), "pattern 'nomask'", "has no {mask}")
    assert not (tmp_path / "t").exists()


def test_cli_unknown_key_in_verbalizer_file(project, tmp_path):
    verbalizers = project.parent / "verbalizers.yaml"
    verbalizers.write_text("labels: [negative, positive]\nverbalizers:\n  - id: vv\n"
                           "    wrds: {negative: [bad], positive: [good]}\n", encoding="utf-8")
    failed(invoke("run", project, "-o", tmp_path / "r"), f"{verbalizers}:4", "verbalizer 'vv'",
           "unknown key 'verbalizers[0].wrds'; did you mean 'words'?")


def test_cli_two_masks(project, tmp_path):
    patterns = project.parent / "patterns.yaml"
    patterns.write_text("patterns:\n  - id: twice\n    template: '{mask} {text} {mask}'\n", encoding="utf-8")
    failed(invoke("run", project, "-o", tmp_path / "r"), str(patterns), "pattern 'twice'", "has 2 {mask} placeholders")


def test_cli_placeholder_not_a_column(project, tmp_path):
    patterns = project.parent / "patterns.yaml"
    patterns.write_text("patterns:\n  - id: p1\n    template: '{sentence} It was {mask}.'\n", encoding="utf-8")
    failed(invoke("run", project, "-o", tmp_path / "r"), str(patterns), "pattern 'p1'", "'{sentence}'", "not a data field")


def test_cli_label_missing_from_verbalizer(project, tmp_path):
    rows = sentiment_rows("train", 8)
    rows[0]["label"] = "great"
    write_jsonl(project.parent / "train.jsonl", rows)
    failed(invoke("train-teachers", project, "-o", tmp_path / "t"), "train.jsonl", "'train-0'", "label 'great'",
           "verbalizer does not define")


def test_cli_word_not_single_token(project, tmp_path):
    verbalizers = project.parent / "verbalizers.yaml"
    verbalizers.write_text("labels: [negative, positive]\nverbalizers:\n  - id: vv\n"
                           "    words: {negative: [bad], positive: [dogs]}\n", encoding="utf-8")
    failed(invoke("train-teachers", project, "-o", tmp_path / "t"), "verbalizer 'vv'", "pattern 'it-was'",
           "word 'dogs'", "2 tokens")


def test_cli_missing_input_folder(tmp_path):
    failed(invoke("label", tmp_path / "nothing", "-o", tmp_path / "l"), "no such folder")
    failed(invoke("distill", tmp_path / "nothing", "-o", tmp_path / "s"), "no such folder")


# --- start-up ---------------------------------------------------------------------------------------

def test_help_is_fast_and_imports_no_heavy_library():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = "import sys, pet.cli; print(sorted(m for m in ('torch', 'transformers', 'datasets', 'sklearn', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
    # CPU seconds of the child rather than wall time, so that a busy machine does not fail the test
    timings = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pet", "--help"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        timings.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall))
        assert result.returncode == 0
    assert "train-teachers" in result.stdout and "distill" in result.stdout and "evaluate" in result.stdout
    assert min(cpu for cpu, _ in timings) < 0.8, timings
    assert min(wall for _, wall in timings) < 5.0, timings


def test_command_help_lists_options():
    for command, option in [("train-teachers", "--output"), ("evaluate", "--json"), ("predict", "--data"), ("run", "--json")]:
        assert option in ok(invoke(command, "--help"))
