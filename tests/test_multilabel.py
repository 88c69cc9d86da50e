"""Multi-label tasks (issue 14, section 1): the formulation's maths against hand computations, the
YAML and data errors of this mode, and the shipped example end to end on a tiny model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, write_jsonl
from test_cli import failed, invoke, ok

from pet.core import maths
from pet.core.calibration import calibration_metrics, prediction_metrics
from pet.core.metrics import labelled_score, multi_label_metrics
from pet.core.multilabel import expand, multi_hot, training_targets
from pet.errors import PetError
from pet.io.data import Examples
from pet.io.patterns import MultiLabelVerbalizer, Verbalizer, parse_verbalizers, VerbalizerFile

EXAMPLE = REPO / "examples" / "multilabel"
LABELS = ["food", "service", "price", "ambience"]


# --- the maths ------------------------------------------------------------------------------------------

def test_decision_loss_is_binary_cross_entropy_and_equals_two_answer_cross_entropy():
    d = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    by_hand = 0.0
    for row in range(2):
        for label in range(3):
            p = 1 / (1 + math.exp(-d[row, label].item()))
            by_hand += -(y[row, label].item() * math.log(p) + (1 - y[row, label].item()) * math.log(1 - p))
    assert maths.decision_cross_entropy(d, y).item() == pytest.approx(by_hand / 2, rel=1e-6)  # summed over labels, mean over rows
    # a teacher's (example, label) rows: the BCE of d = yes - no is the cross-entropy over the two answers
    answers = torch.tensor([[0.3, 1.7], [2.0, -0.5], [0.0, 0.0]])
    targets = torch.tensor([1, 0, 1])
    assert maths.decision_cross_entropy(maths.answer_logits(answers), targets.float()).item() == pytest.approx(
        F.cross_entropy(answers, targets).item(), rel=1e-6)


def test_decision_loss_is_stable_for_large_logits():
    d = torch.tensor([[200.0, -200.0]])
    loss = maths.decision_cross_entropy(d, torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(400.0, rel=1e-6)


def test_soft_labels_are_independent_sigmoids_at_the_temperature():
    d = torch.tensor([[2.0, -2.0, 0.0]])
    probs = maths.multi_label_soft_labels(d, 2.0)
    assert torch.allclose(probs, torch.sigmoid(d / 2))
    raised = maths.multi_label_soft_labels(torch.tensor([[9.0, -2.0, 0.0]]), 2.0)
    assert torch.equal(raised[0, 1:], probs[0, 1:])  # another label's logit never moves a label's probability


def test_multi_label_distillation_loss_is_binary_kl_times_t_squared():
    z = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    p = torch.tensor([[0.9, 0.2], [0.0, 1.0]])
    t = 2.0
    by_hand = 0.0
    for row in range(2):
        for label in range(2):
            q = 1 / (1 + math.exp(-z[row, label].item() / t))
            pp = p[row, label].item()
            by_hand += (pp * math.log(pp / q) if pp else 0.0) + ((1 - pp) * math.log((1 - pp) / (1 - q)) if pp < 1 else 0.0)
    assert maths.multi_label_distillation_loss(z, p, t).item() == pytest.approx(by_hand / 2 * t * t, rel=1e-5)
    assert maths.multi_label_distillation_loss(z, torch.sigmoid(z / t), t).item() == pytest.approx(0.0, abs=1e-6)


def test_expand_asks_about_every_label_in_example_major_order():
    examples = Examples(["a", "b"], {"text": ["x", "y"]}, label_sets=[(0, 2), ()])
    rows = expand(examples, ["the food", "the service", "the prices"])
    assert rows.ids == ["a"] * 3 + ["b"] * 3
    assert rows.fields["label"] == ["the food", "the service", "the prices"] * 2
    assert rows.fields["text"] == ["x"] * 3 + ["y"] * 3
    assert rows.labels == [1, 0, 1, 0, 0, 0]
    assert training_targets(examples, 3).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert multi_hot([(1,), (0, 2)], 3).tolist() == [[0, 1, 0], [1, 0, 1]]


def test_metrics_against_hand_counts():
    gold = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    m = multi_label_metrics(gold, predicted, ["a", "b", "c"])
    # tp 3, fp 1, fn 2 overall; per label: a (2, 0, 0) -> 1, b (1, 0, 1) -> 2/3, c (0, 1, 1) -> 0
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert m["per_label_f1"] == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 0.0})
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["subset_accuracy"] == m["accuracy"] == 0.5
    assert m["examples"] == 4


def test_threshold_decides_and_calibration_is_per_decision():
    logits = torch.tensor([[2.0, -1.0], [0.2, 0.1]])  # sigmoid: .881 .269 / .550 .525
    gold = [(0,), (0, 1)]
    assert prediction_metrics(gold, logits, ["a", "b"], 0.5)["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 0))
    assert prediction_metrics(gold, logits, ["a", "b"], 0.53)["per_label_f1"]["b"] == 0.0
    p = torch.sigmoid(logits.double()).reshape(-1)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    metrics = calibration_metrics(logits, gold)
    assert metrics["brier"] == pytest.approx(float(((p - y) ** 2).mean()))
    assert metrics["nll"] == pytest.approx(float(F.binary_cross_entropy(p, y)))
    # micro-F1 is the teachers' labelled-set figure (their wmean weight)
    assert labelled_score(logits, gold, 0.5) == pytest.approx(1.0)
    assert labelled_score(torch.full((2, 2), -5.0), gold, 0.5) == 0.0


# --- YAML and data --------------------------------------------------------------------------------------

def verbalizers(text: str, multi_label: bool = True):
    import yaml

    spec = VerbalizerFile.model_validate(yaml.safe_load(text))
    return parse_verbalizers(spec, "v.yaml", None, multi_label)


def test_multi_label_verbalizer_reads_bare_yes_no_keys_and_label_texts():
    (v,) = verbalizers("labels: [food, price]\nverbalizers:\n  - id: yn\n    words: {yes: 'yes', no: ['no', 'nope']}\n"
                       "    label_text: {price: the prices}\n")
    assert isinstance(v, MultiLabelVerbalizer)
    assert v.label_text == {"food": "food", "price": "the prices"}
    assert v.answers == Verbalizer("yn", ("no", "yes"), {"no": ("no", "nope"), "yes": ("yes",)})
    assert MultiLabelVerbalizer("yn", ("food", "price"), {"yes": "yes", "no": "no"}).to_json()["kind"] == "multi_label"


@pytest.mark.parametrize("text, message", [
    ("labels: [food, price]\nverbalizers:\n  - id: yn\n    words: {food: 'good', price: 'cheap'}\n",
     "a multi-label verbalizer gives the words of the two answers"),
    ("labels: [food, price]\nverbalizers:\n  - id: yn\n    words: {yes: 'yes', no: 'no'}\n    label_text: {drinks: 'drinks'}\n",
     "label_text names 'drinks', which is not in labels"),
    ("labels: [food, price]\nverbalizers:\n  - id: yn\n    words: {yes: 'yes', no: 'yes'}\n",
     "word 'yes' is given for both"),
])
def test_bad_multi_label_verbalizers(text, message):
    with pytest.raises(PetError, match=message):
        verbalizers(text)


def test_label_text_in_a_single_label_file_is_refused():
    with pytest.raises(PetError, match="label_text is for multi-label tasks; set task.type: multi_label"):
        verbalizers("labels: [a, b]\nverbalizers:\n  - id: v\n    words: {a: x, b: y}\n    label_text: {a: A}\n", multi_label=False)


@pytest.fixture
def project(tmp_path, tiny_bert) -> Path:
    """A copy of the shipped example (config, data, patterns, verbalizers) on the tiny model."""
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLE, folder)
    config = (folder / "config.yaml").read_text(encoding="utf-8")
    config = config.replace("../../patterns/aspects.yaml", str(REPO / "patterns" / "aspects.yaml"))
    config = config.replace("../../verbalizers/aspects.yaml", str(REPO / "verbalizers" / "aspects.yaml"))
    config = config.replace("model: bert-base-uncased", f"model: {tiny_bert}")
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    return folder


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def edit_train(project: Path, row: dict) -> None:
    train = rows(project / "train.jsonl")
    train[0] = {**train[0], **row}
    write_jsonl(project / "train.jsonl", train)


@pytest.mark.parametrize("row, settings, message", [
    ({"labels": "food"}, [], "has label 'food', but the task is multi-label: give a list of labels"),
    ({"labels": ["food", "drinks"]}, [], "has label 'drinks', which the verbalizer does not define"),
    ({"labels": ["food", "food"]}, [], "lists label 'food' twice"),
    ({"labels": []}, ["--task.allow_empty", "false"], "has an empty label list, and task.allow_empty is false"),
    ({"labels": ["food"]}, ["--task.type", "single_label"], "has a list of labels ['food'], but the task is single-label"),
])
def test_bad_label_lists_fail_in_one_line_before_anything_is_written(project, row, settings, message):
    edit_train(project, row)
    if "single_label" in settings:  # a single-label task reads the verbalizer as label words: give it some
        (project / "v.yaml").write_text("labels: [food, service, price, ambience]\nverbalizers:\n  - id: w\n"
                                        "    words: {food: food, service: service, price: good, ambience: music}\n", encoding="utf-8")
        settings = settings + ["--verbalizers.file", str(project / "v.yaml"), "--patterns.file", str(project / "p.yaml"),
                               "--patterns.ids", "null"]
        (project / "p.yaml").write_text("patterns:\n  - id: p\n    template: '{text} It was {mask}.'\n", encoding="utf-8")
    result = invoke("train-teachers", project / "config.yaml", "-o", project / "out", *settings)
    assert message in failed(result)
    assert not (project / "out").exists()


def test_a_label_that_no_labelled_example_carries_is_an_error(project):
    write_jsonl(project / "train.jsonl", [{**r, "labels": [l for l in r["labels"] if l != "price"]} for r in rows(project / "train.jsonl")])
    result = invoke("train-teachers", project / "config.yaml", "-o", project / "out")
    assert "label 'price' has no example in the labelled set" in failed(result)


def test_a_multi_label_pattern_needs_the_label_placeholder(project):
    (project / "p.yaml").write_text("patterns:\n  - id: plain\n    template: '{text} It was {mask}.'\n", encoding="utf-8")
    result = invoke("train-teachers", project / "config.yaml", "-o", project / "out", "--patterns.file", project / "p.yaml",
                    "--patterns.ids", "null")
    assert "pattern 'plain' has no {label} placeholder" in failed(result)


def test_the_label_placeholder_in_a_single_label_task_says_how_to_fix_it(project):
    (project / "v.yaml").write_text("labels: [food, service, price, ambience]\nverbalizers:\n  - id: w\n"
                                    "    words: {food: food, service: service, price: good, ambience: music}\n", encoding="utf-8")
    result = invoke("train-teachers", project / "config.yaml", "-o", project / "out", "--task.type", "single_label",
                    "--verbalizers.file", project / "v.yaml")
    assert "{label} is the label placeholder of multi-label tasks: set task.type: multi_label" in failed(result)


@pytest.mark.parametrize("settings, message", [
    (["--labelling.ensemble", "cv"], "labelling.ensemble: cv is not supported for multi-label tasks yet"),
    (["--teachers.learning_rate", "cv"], "teachers.learning_rate: cv is not supported for multi-label tasks yet"),
    (["--distillation.class_weights", "balanced"], "distillation.class_weights: balanced needs one predicted class per text"),
])
def test_settings_that_need_one_class_per_example_refuse_multi_label_tasks(project, settings, message):
    assert message in failed(invoke("train-teachers", project / "config.yaml", "-o", project / "out", *settings))
    assert not (project / "out").exists()


def test_ipet_and_search_words_refuse_multi_label_tasks(project):
    result = invoke("train-teachers", project / "config.yaml", "-o", project / "out", "--ipet.generations", "1")
    assert "ipet.generations > 0 is not supported for multi-label tasks yet" in failed(result)
    assert "does not apply to multi-label tasks" in failed(invoke("search-words", project / "config.yaml", "-o", project / "found.yaml"))
    assert not (project / "found.yaml").exists()


# --- the example, end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example_run(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("multilabel")
    shutil.copytree(EXAMPLE, folder / "project")
    run = folder / "run"
    ok(invoke("run", folder / "project" / "config.yaml", "-o", run, "--model", tiny_bert, "--teachers.steps", "6",
              "--distillation.steps", "6", "--patterns.file", REPO / "patterns" / "aspects.yaml",
              "--verbalizers.file", REPO / "verbalizers" / "aspects.yaml"))
    return {"run": run, "project": folder / "project"}


def test_soft_labels_are_sigmoids_of_the_weighted_teacher_mean(example_run):
    import pyarrow.parquet as pq

    manifest = json.loads((example_run["run"] / "labels" / "manifest.json").read_text())
    table = pq.read_table(str(example_run["run"] / "labels" / "soft_labels.parquet")).to_pydict()
    teacher_logits = torch.tensor(table["teacher_logits"])  # [N, K, L]
    assert teacher_logits.shape == (200, len(manifest["teachers"]), 4) == (200, 2, 4)
    weights = torch.tensor(manifest["weights"]) if manifest["weights"] else torch.full((2,), 0.5)
    ensemble = torch.einsum("k,nkl->nl", weights, teacher_logits)
    assert torch.allclose(torch.tensor(table["logits"]), ensemble, atol=1e-5)
    assert torch.allclose(torch.tensor(table["probs"]), torch.sigmoid(ensemble / manifest["temperature"]), atol=1e-6)
    predicted = [[label for j, label in enumerate(LABELS) if torch.sigmoid(ensemble[i, j]) >= 0.5] for i in range(200)]
    assert table["label"] == predicted
    counts = manifest["statistics"]["predicted_label_counts"]
    assert counts == {label: sum(label in p for p in predicted) for label in LABELS}


def test_manifests_report_multi_label_metrics(example_run):
    labels = json.loads((example_run["run"] / "labels" / "manifest.json").read_text())
    student = json.loads((example_run["run"] / "student" / "manifest.json").read_text())
    for metrics in (labels["test"]["ensemble"], student["test"]):
        assert {"micro_f1", "macro_f1", "subset_accuracy", "per_label_f1", "ece", "brier", "nll"} <= set(metrics)
        assert set(metrics["per_label_f1"]) == set(LABELS) and metrics["examples"] == 80 and metrics["threshold"] == 0.5
    assert "(example, label) decision" in student["test"]["calibration_definitions"]["ece"]
    teachers = json.loads((example_run["run"] / "teachers" / "manifest.json").read_text())
    assert teachers["task"]["type"] == "multi_label"
    assert all(t["metrics"]["train_metric"] == "micro_f1" for t in teachers["teachers"])


def test_student_loads_with_the_transformers_pipeline_and_gives_sigmoid_scores(example_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    folder = str(example_run["run"] / "student")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(4)] == LABELS
    scores = pipeline("text-classification", model=folder, top_k=None)(["The food was great but the service was slow."])[0]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tokenizer(["The food was great but the service was slow."], return_tensors="pt")).logits[0]
    expected = dict(zip(LABELS, torch.sigmoid(logits).tolist()))
    assert {s["label"]: pytest.approx(s["score"], abs=1e-5) for s in scores} == expected


def test_evaluate_predict_and_report(example_run):
    run, test = example_run["run"], example_run["project"] / "test.jsonl"
    result = json.loads(ok(invoke("evaluate", run / "student", "--data", test, "--json")))
    student = json.loads((run / "student" / "manifest.json").read_text())["test"]
    assert result["task"] == "multi_label"
    assert result["micro_f1"] == pytest.approx(student["micro_f1"]) and result["per_label_f1"] == pytest.approx(student["per_label_f1"])
    table = ok(invoke("evaluate", run / "teachers", "--data", test))
    assert "subset-acc  micro-F1  macro-F1" in table and "per-label F1 (ensemble" in table
    ok(invoke("predict", run / "student", "--data", test, "-o", run / "predictions.jsonl"))
    predictions = rows(run / "predictions.jsonl")
    assert len(predictions) == 80 and set(predictions[0]) == {"id", "labels", "probs"}
    for p in predictions:
        assert p["labels"] == [label for label in LABELS if p["probs"][label] >= 0.5]
    ok(invoke("report", run))
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert (run / "report" / "per_label_f1.png").read_bytes()[:4] == b"\x89PNG" and not (run / "report" / "confusion.png").exists()
    assert f"{student['micro_f1']:.4f}" in html and f"{student['subset_accuracy']:.4f}" in html


def test_threshold_can_change_at_the_labelling_stage_only(example_run, tmp_path):
    run = example_run["run"]
    ok(invoke("label", run / "teachers", "-o", tmp_path / "labels", "--task.threshold", "0.9"))
    manifest = json.loads((tmp_path / "labels" / "manifest.json").read_text())
    assert manifest["test"]["ensemble"]["threshold"] == 0.9
    result = invoke("label", run / "teachers", "-o", tmp_path / "other", "--task.type", "single_label")
    assert "--task.type: cannot be changed at this stage" in failed(result)


def test_python_api_with_in_memory_label_lists(tmp_path, tiny_bert):
    import pet

    train = rows(EXAMPLE / "train.jsonl")
    verbalizer = pet.MultiLabelVerbalizer("yn", tuple(LABELS), {"yes": "yes", "no": "no"}, {"food": "the food"})
    teachers = pet.train_teachers(str(tiny_bert), train=train, unlabeled=[r["text"] for r in train],
                                  patterns=[pet.Pattern("q", "{text} Is it about {label}? {mask}.")], verbalizers=[verbalizer],
                                  output=tmp_path / "teachers", steps=3, seeds=[1], mlm_weight=0.0,
                                  task={"type": "multi_label"}, data={"label_column": "labels"})
    assert teachers.config.task.multi_label and teachers.verbalizers[0].label_text["food"] == "the food"
    predictions = teachers.predict(["The waiter was rude."])
    assert predictions[0].label is None and set(predictions[0].probs) == set(LABELS)
    assert predictions[0].labels == tuple(label for label in LABELS if predictions[0].probs[label] >= 0.5)
    assert teachers.predict_proba(["a", "b"]).shape == (2, 4)


def test_the_supervised_member_of_a_multi_label_run_is_a_multi_label_classifier(project, tiny_bert):
    from transformers import AutoConfig

    run = project / "run"
    ok(invoke("run", project / "config.yaml", "-o", run, "--teachers.steps", "3", "--distillation.steps", "2",
              "--teachers.supervised", "true", "--patterns.ids", "[question]"))
    teachers = json.loads((run / "teachers" / "manifest.json").read_text())
    member = next(e for e in teachers["teachers"] if e["kind"] == "classifier")
    pattern = next(e for e in teachers["teachers"] if e["kind"] == "pattern")
    assert AutoConfig.from_pretrained(run / "teachers" / member["path"]).problem_type == "multi_label_classification"
    record = json.loads((run / "teachers" / member["path"] / "teacher.json").read_text())
    assert record["metrics"]["train_metric"] == "micro_f1"
    labels = json.loads((run / "labels" / "manifest.json").read_text())
    assert labels["teachers"] == [pattern["name"], member["name"]]
    assert "micro_f1" in labels["test"]["teachers_metrics"][member["name"]]
    # its row of teacher_logits is the saved classifier's own output (per-label logits: sigmoid gives the probability)
    import pyarrow.parquet as pq
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    first = pq.read_table(str(run / "labels" / "soft_labels.parquet")).slice(0, 1).to_pylist()[0]
    folder = run / "teachers" / member["path"]
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tokenizer([first["text"]], return_tensors="pt", truncation=True, max_length=128)).logits[0]
    assert first["teacher_logits"][1] == pytest.approx(logits.tolist(), abs=1e-4)


def test_labels_in_a_csv_column_split_at_the_separator(tmp_path):
    from pet.io.data import Columns, MultiLabelRule, Table

    path = tmp_path / "train.csv"
    path.write_text("id,text,labels\na,good food cheap,food| price\nb,nothing,\nc,rude,service\n", encoding="utf-8")
    table = Table(path, "labelled", Columns({"text": "text"}, "id", "labels", tuple(LABELS), MultiLabelRule(True, "|")))
    assert table.read_all().label_sets == [(0, 2), (), (1,)]
    with pytest.raises(PetError, match="set task.label_separator to split a text"):
        Table(path, "labelled", Columns({"text": "text"}, "id", "labels", tuple(LABELS), MultiLabelRule(True))).read_all()
