"""The supervised member of the ensemble (teachers.supervised) and the weights that work for both kinds
of teacher (wmean's rule for the member, and labelling.ensemble: cv), on tiny random models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NEGATIVE, POSITIVE, sentiment_rows, write_jsonl, write_project
from test_reruns import error_line, invoke, ok

import pet
from pet.core.classifier import ClassifierEncoder, classifier_texts
from pet.core.ensemble import ensemble_of, member_weights
from pet.stages.teachers.crossval import fold_assignment
from pet.stages.teachers.specs import derive_seed

MEMBER = "supervised--s1"
PATTERN_TEACHERS = ["it-was--bad-good--s1", "just--bad-good--s1"]
# the wmean run adds a verbalizer with the words swapped: on two labels its accuracy is 1 - the other's,
# so the pattern teachers' weights differ and their mean is 1/2, which no accuracy on 9 examples is
WMEAN_TEACHERS = ["it-was--bad-good--s1", "it-was--good-bad--s1", "just--bad-good--s1", "just--good-bad--s1"]


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unbalanced_train(folder: Path) -> list[dict]:
    """6 positive and 3 negative examples: a teacher that always says one label scores 2/3 or 1/3, not 1/2."""
    rows = [{"id": f"train-p{i}", "text": POSITIVE[i], "label": "positive"} for i in range(6)]
    rows += [{"id": f"train-n{i}", "text": NEGATIVE[i], "label": "negative"} for i in range(3)]
    write_jsonl(folder / "train.jsonl", rows)
    return rows


def project_with(folder: Path, model: Path, extra: str = "") -> Path:
    config = write_project(folder, model, extra=extra)
    unbalanced_train(folder)
    return config


@pytest.fixture(scope="module")
def wmean_run(tmp_path_factory, tiny_bert) -> Path:
    """`pet run` with the supervised member, wmean weights (the default)."""
    folder = tmp_path_factory.mktemp("wmean")
    config = project_with(folder, tiny_bert)
    with (folder / "verbalizers.yaml").open("a", encoding="utf-8") as handle:
        handle.write("  - id: good-bad\n    words: {negative: [good], positive: [bad]}\n")
    ok(invoke("run", config, "-o", folder / "run", "--teachers.supervised", "true"))
    return folder


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, tiny_bert) -> Path:
    """`pet run` with the supervised member and cross-validated weights over 3 folds."""
    folder = tmp_path_factory.mktemp("cv")
    config = project_with(folder, tiny_bert)
    ok(invoke("run", config, "-o", folder / "run", "--teachers.supervised", "true", "--labelling.ensemble", "cv",
              "--teachers.cv_folds", "3"))
    return folder


def soft_label_columns(labels_dir: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(str(labels_dir / "soft_labels.parquet"))
    n = table.num_rows
    out = {"ids": table.column("id").to_pylist(), "text": table.column("text").to_pylist()}
    out["teacher_logits"] = table.column("teacher_logits").combine_chunks().flatten().flatten().to_numpy().reshape(n, -1, 2)
    out["logits"] = table.column("logits").combine_chunks().flatten().to_numpy().reshape(n, 2)
    return out


def plain_classifier_logits(folder: Path, texts: list[str], max_length: int) -> np.ndarray:
    """The saved member run by plain transformers, one text at a time (no pet code, no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return np.stack([model(**tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")).logits[0].numpy()
                         for t in texts])


# --- stage A: the member is trained and saved --------------------------------------------------------

def test_member_is_trained_and_saved_with_the_runs_labels(wmean_run):
    from transformers import AutoConfig

    teachers = wmean_run / "run" / "teachers"
    manifest = read(teachers / "manifest.json")
    entries = manifest["teachers"]
    assert [e["name"] for e in entries] == WMEAN_TEACHERS + [MEMBER]  # the member comes last
    assert [e["kind"] for e in entries] == ["pattern"] * 4 + ["classifier"]
    member = entries[-1]
    assert member["path"] == MEMBER and member["pattern"] is None and member["verbalizer"] is None
    assert member["seed"] == 1 and member["derived_seed"] == derive_seed(MEMBER)
    assert member["metrics"]["steps"] == 3 and "losses" not in member["metrics"]
    record = read(teachers / MEMBER / "teacher.json")
    assert record["kind"] == "classifier" and record["labels"] == ["negative", "positive"]
    assert record["input_fields"] == ["text"] and record["field_join"] == " [SEP] "
    assert len(record["metrics"]["losses"]) == 3 and record["metrics"]["loss_first"] == record["metrics"]["losses"][0]
    assert record["learning_rate"] == 5e-5  # teachers.learning_rate auto, for a model this small
    assert record["training_examples"] == 9 and record["weight"] is None
    assert {p.name for p in (teachers / MEMBER).iterdir()} >= {"config.json", "model.safetensors", "teacher.json",
                                                              "tokenizer_config.json"}
    saved = AutoConfig.from_pretrained(teachers / MEMBER)
    assert saved.id2label == {0: "negative", 1: "positive"} and saved.label2id == {"negative": 0, "positive": 1}
    assert saved.architectures == ["BertForSequenceClassification"]
    for name in WMEAN_TEACHERS:  # the pattern teachers say which kind they are too
        assert read(teachers / name / "teacher.json")["kind"] == "pattern"
    assert all(e["cv_accuracy"] is None for e in entries)  # wmean: no cross-validation
    assert not (teachers / "cv").exists()


def test_member_logits_are_in_the_soft_labels_as_the_saved_classifier_gives_them(wmean_run):
    run = wmean_run / "run"
    labels = read(run / "labels" / "manifest.json")
    assert labels["teachers"] == WMEAN_TEACHERS + [MEMBER]
    columns = soft_label_columns(run / "labels")
    assert columns["teacher_logits"].shape == (24, 5, 2)
    expected = plain_classifier_logits(run / "teachers" / MEMBER, columns["text"], max_length=64)
    np.testing.assert_allclose(columns["teacher_logits"][:, 4], expected, atol=1e-5)
    assert not np.allclose(columns["teacher_logits"][:, 3], expected, atol=1e-3)  # not some other teacher's
    # the ensemble logits are the weighted mean with the weights the manifest reports
    weights = np.array(labels["weights"])
    np.testing.assert_allclose(columns["logits"], np.einsum("k,nkc->nc", weights, columns["teacher_logits"]), atol=1e-5)


def test_wmean_gives_the_member_the_mean_of_the_pattern_teachers_weights(wmean_run):
    run = wmean_run / "run"
    entries = read(run / "teachers" / "manifest.json")["teachers"]
    pattern_weights = [e["weight"] for e in entries[:4]]
    assert all(w * 9 == pytest.approx(round(w * 9)) for w in pattern_weights)  # accuracies on 9 labelled examples
    assert pattern_weights[0] + pattern_weights[1] == pytest.approx(1.0)  # the swapped verbalizer: 1 - the other
    assert len({round(w, 6) for w in pattern_weights}) > 1
    assert entries[4]["weight"] == pytest.approx(sum(pattern_weights) / 4) == pytest.approx(0.5)
    own = read(run / "teachers" / MEMBER / "teacher.json")["metrics"]["train_accuracy_before"]
    assert own != pytest.approx(0.5)  # the member's own accuracy before training (a random head) is not what it gets
    labels = read(run / "labels" / "manifest.json")
    assert labels["ensemble"] == "wmean"
    raw = [*pattern_weights, 0.5]
    assert labels["weights"] == pytest.approx([w / sum(raw) for w in raw])


def test_member_weights_by_hand():
    entries = [{"weight": 0.25}, {"kind": "pattern", "weight": 0.75}, {"weight": 1.0},  # no kind: an older pattern teacher
               {"kind": "classifier", "weight": None, "cv_accuracy": 0.5}]
    assert member_weights(entries, "wmean") == [0.25, 0.75, 1.0, pytest.approx(2 / 3)]
    assert ensemble_of(entries, "wmean").normalised() == pytest.approx([0.25 / (8 / 3), 0.75 / (8 / 3), 1 / (8 / 3), 0.25])
    cv = [{**e, "cv_accuracy": a} for e, a in zip(entries, [0.5, 0.25, 0.25, 1.0])]
    chosen = ensemble_of(cv, "cv")
    assert chosen.method == "cv" and chosen.normalised() == pytest.approx([0.25, 0.125, 0.125, 0.5])
    # every pattern teacher at 0 before training: the uniform mean, the member included (never silently weight 0)
    zeros = [{"weight": 0.0}, {"weight": 0.0}, {"kind": "classifier", "weight": None}]
    fallback = ensemble_of(zeros, "wmean", warn=False)
    assert fallback.method == "mean" and fallback.weights is None
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[3.0, 0.0]]])
    assert fallback.combine(logits).tolist() == [[pytest.approx(4 / 3), pytest.approx(1 / 3)]]
    with pytest.raises(pet.PetError, match="no cross-validated accuracies"):
        ensemble_of(entries[:3], "cv")


# --- cross-validated weights ---------------------------------------------------------------------------

def test_folds_are_stratified_balanced_and_seeded():
    labels = [1] * 6 + [0] * 3 + [1, 0, 1]
    folds = fold_assignment(labels, 3)
    assert folds == fold_assignment(labels, 3)  # deterministic
    assert sorted(set(folds)) == [0, 1, 2]
    assert sorted(folds.count(f) for f in range(3)) == [4, 4, 4]
    for label in (0, 1):
        counts = [sum(1 for f, l in zip(folds, labels) if f == fold and l == label) for fold in range(3)]
        assert max(counts) - min(counts) <= 1 and sum(counts) == labels.count(label)


def test_cv_weights_are_the_held_out_accuracies(cv_run):
    run = cv_run / "run"
    teachers = read(run / "teachers" / "manifest.json")
    gold = {row["id"]: row["label"] for row in (json.loads(l) for l in (cv_run / "train.jsonl").read_text().splitlines())}
    summary = teachers["cross_validation"]
    assert summary["folds"] == 3 and summary["fold_sizes"] == [3, 3, 3]
    assert set(summary["configurations"]) == {"it-was--bad-good", "just--bad-good", "supervised"}
    for configuration, result in summary["configurations"].items():
        records = [read(run / "teachers" / "cv" / f"{configuration}--cv{fold}.json") for fold in range(3)]
        held = [i for r in records for i in r["held_out_ids"]]
        assert sorted(held) == sorted(gold)  # every labelled example held out exactly once
        correct = 0
        for record in records:
            assert record["held_out"] == 3 and record["training_examples"] == 6
            assert [gold[i] for i in record["held_out_ids"]].count("negative") == 1  # stratified: 2 positive, 1 negative
            right = sum(gold[i] == p for i, p in zip(record["held_out_ids"], record["predicted"]))
            assert record["correct"] == right and record["accuracy"] == right / 3
            assert record["metrics"]["steps"] == 3 and len(record["metrics"]["losses"]) == 3
            correct += right
        assert result["correct"] == correct and result["accuracy"] == correct / 9
    for entry in teachers["teachers"]:
        configuration = "supervised" if entry["kind"] == "classifier" else f"{entry['pattern']}--{entry['verbalizer']}"
        assert entry["cv_accuracy"] == summary["configurations"][configuration]["accuracy"]
        assert round(entry["cv_accuracy"] * 9) == pytest.approx(entry["cv_accuracy"] * 9)  # a multiple of 1/9
    labels = read(run / "labels" / "manifest.json")
    raw = [e["cv_accuracy"] for e in teachers["teachers"]]
    assert labels["ensemble"] == "cv" and labels["weights"] == pytest.approx([w / sum(raw) for w in raw])


def test_a_cv_fold_of_the_member_is_what_training_on_the_other_folds_gives(cv_run):
    """Fold 0 of the supervised member, recomputed by hand from its documented recipe."""
    from pet.core.classifier import classifier_logits
    from pet.core.encoding import pad
    from pet.core.modeling import load_classifier, load_tokenizer
    from pet.core.training import EpochSampler, OptimSettings, train

    run = cv_run / "run"
    config = read(run / "teachers" / "manifest.json")["config"]
    record = read(run / "teachers" / "cv" / "supervised--cv0.json")
    rows = [json.loads(l) for l in (cv_run / "train.jsonl").read_text().splitlines()]
    held = set(record["held_out_ids"])
    training = [r for r in rows if r["id"] not in held]
    testing = {r["id"]: r for r in rows if r["id"] in held}
    tokenizer = load_tokenizer(config["model"])
    torch.manual_seed(derive_seed("supervised--cv0"))
    model = load_classifier(config["model"], ["negative", "positive"], torch.device("cpu"))
    sequences = tokenizer([r["text"] for r in training], truncation=True, max_length=64)["input_ids"]
    gold = torch.tensor([0 if r["label"] == "negative" else 1 for r in training])
    sampler = EpochSampler(len(sequences), 4, torch.Generator().manual_seed(derive_seed("supervised--cv0")))

    def step_loss(step):
        batch = sampler.next()
        ids, mask = pad([sequences[i] for i in batch], 0)
        return torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, gold[batch])

    losses = train(model, step_loss, OptimSettings(3, 5e-5, 0.01, 0, 1.0), torch.device("cpu"), "fp32", "by hand")
    assert losses == pytest.approx(record["metrics"]["losses"], abs=1e-6)
    held_ids = record["held_out_ids"]
    logits = classifier_logits(model, tokenizer([testing[i]["text"] for i in held_ids], truncation=True, max_length=64)["input_ids"],
                               0, 64, lambda: torch.autocast("cpu", enabled=False))
    assert [["negative", "positive"][int(k)] for k in logits.argmax(-1)] == record["predicted"]


# --- reruns: toggling the member and the cross-validation ---------------------------------------------

def test_turning_the_member_and_cv_on_trains_only_what_is_new(tmp_path, tiny_bert):
    config = project_with(tmp_path, tiny_bert)
    teachers = tmp_path / "run" / "teachers"
    ok(invoke("train-teachers", config, "-o", teachers))
    pattern_files = {p: (digest(p), p.stat().st_mtime_ns) for name in PATTERN_TEACHERS for p in (teachers / name).iterdir()}
    assert [e["kind"] for e in read(teachers / "manifest.json")["teachers"]] == ["pattern", "pattern"]
    line = error_line(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true"))
    assert "teachers.supervised null -> true" in line and "--overwrite" in line
    output = ok(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true", "--overwrite"))
    assert "teacher 1/3 it-was--bad-good--s1: already trained, skipped" in output
    assert "teacher 2/3 just--bad-good--s1: already trained, skipped" in output
    assert "teacher 3/3 supervised--s1: fine-tuning a sequence classifier on 9 examples" in output
    assert [e["name"] for e in read(teachers / "manifest.json")["teachers"]] == PATTERN_TEACHERS + [MEMBER]
    member = digest(teachers / MEMBER / "model.safetensors")
    # cross-validation on top: no teacher is retrained, only the fold models are computed
    output = ok(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true", "--labelling.ensemble", "cv",
                       "--teachers.cv_folds", "3", "--overwrite"))
    assert output.count("already trained, skipped") == 3 and "fine-tuning" not in output
    assert output.count(": training on 6 examples, scoring 3 held out") == 9
    assert digest(teachers / MEMBER / "model.safetensors") == member
    assert {p: (digest(p), p.stat().st_mtime_ns) for p in pattern_files} == pattern_files
    assert all(e["cv_accuracy"] is not None for e in read(teachers / "manifest.json")["teachers"])
    output = ok(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true", "--labelling.ensemble", "cv",
                       "--teachers.cv_folds", "3"))
    assert "all teachers already trained" in output


def test_old_artifacts_without_kinds_label_as_pattern_teachers(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    teachers = tmp_path / "teachers"
    ok(invoke("train-teachers", config, "-o", teachers))
    ok(invoke("label", teachers, "-o", tmp_path / "labels"))
    manifest = read(teachers / "manifest.json")
    for entry in manifest["teachers"]:  # as pet wrote them before kinds existed
        del entry["kind"], entry["cv_accuracy"]
        record = read(teachers / entry["path"] / "teacher.json")
        del record["kind"]
        (teachers / entry["path"] / "teacher.json").write_text(json.dumps(record))
    (teachers / "manifest.json").write_text(json.dumps(manifest))
    ok(invoke("label", teachers, "-o", tmp_path / "labels-old"))
    old, new = soft_label_columns(tmp_path / "labels-old"), soft_label_columns(tmp_path / "labels")
    np.testing.assert_array_equal(old["teacher_logits"], new["teacher_logits"])
    assert read(tmp_path / "labels-old" / "manifest.json")["weights"] == read(tmp_path / "labels" / "manifest.json")["weights"]


# --- bad combinations ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--teachers.supervised", "true", "--teachers.zero_shot", "true"],
     "teachers.supervised: true fine-tunes a classifier on the labelled set, and teachers.zero_shot: true trains on none"),
    (["--labelling.ensemble", "cv", "--teachers.zero_shot", "true"],
     "labelling.ensemble: cv weights teachers by cross-validation on the labelled set, and teachers.zero_shot: true trains on none"),
    (["--labelling.ensemble", "cv", "--teachers.cv_folds", "4"],
     "label 'negative' has 3 example(s), so a fold would hold none; set teachers.cv_folds to 3 or fewer"),
    (["--teachers.cv_folds", "1"], "'teachers.cv_folds': input should be greater than or equal to 2 (got 1)"),
])
def test_bad_combinations_are_one_line_errors(tmp_path, tiny_bert, args, fragment):
    config = project_with(tmp_path, tiny_bert)
    for command in (["train-teachers", config, "-o", tmp_path / "teachers"], ["run", config, "-o", tmp_path / "run"]):
        line = error_line(invoke(*command, *args))
        assert fragment in line
    assert not (tmp_path / "teachers").exists() and not (tmp_path / "run").exists()


def test_cv_of_teachers_trained_without_it_is_refused_by_pet_label(wmean_run, tmp_path):
    line = error_line(invoke("label", wmean_run / "run" / "teachers", "-o", tmp_path / "labels", "--labelling.ensemble", "cv"))
    assert "labelling.ensemble is cv, but these teachers have no cross-validated accuracies" in line
    assert not (tmp_path / "labels").exists()


# --- pet evaluate and the API ---------------------------------------------------------------------------

def test_pet_evaluate_lists_the_member(wmean_run):
    teachers = wmean_run / "run" / "teachers"
    test = wmean_run / "test.jsonl"
    result = json.loads(ok(invoke("evaluate", teachers, "--data", test, "--json")))
    assert list(result["teachers"]) == WMEAN_TEACHERS + [MEMBER]
    rows = [json.loads(l) for l in test.read_text().splitlines()]
    predicted = plain_classifier_logits(teachers / MEMBER, [r["text"] for r in rows], 64).argmax(-1)
    accuracy = float(np.mean([["negative", "positive"][p] == r["label"] for p, r in zip(predicted, rows)]))
    assert result["teachers"][MEMBER]["accuracy"] == pytest.approx(accuracy)
    assert result["teachers"][MEMBER]["examples"] == 12 and result["ensemble"]["method"] == "wmean"
    text = ok(invoke("evaluate", teachers, "--data", test))
    assert any(line.startswith(f"{MEMBER} ") for line in text.splitlines())


def test_the_api_takes_the_settings(tmp_path, tiny_bert):
    teachers = pet.train_teachers(
        str(tiny_bert), output=tmp_path / "teachers", train=sentiment_rows("train", 8),
        unlabeled=[r["text"] for r in sentiment_rows("u", 6, labelled=False)],
        patterns=[pet.Pattern("it-was", "{text} It was {mask}.")],
        verbalizers=[pet.Verbalizer("bad-good", {"negative": ["bad"], "positive": ["good"]})],
        seeds=[1, 2], steps=2, max_length=64, supervised=True, cv_folds=2, labelling={"ensemble": "cv"},
        runtime={"device": "cpu"}, ipet={"generations": 0})
    assert [e["name"] for e in teachers.entries] == ["it-was--bad-good--s1", "it-was--bad-good--s2", "supervised--s1",
                                                    "supervised--s2"]
    seeds = [read(tmp_path / "teachers" / name / "teacher.json")["derived_seed"] for name in ("supervised--s1", "supervised--s2")]
    assert seeds == [derive_seed("supervised--s1"), derive_seed("supervised--s2")]
    assert teachers.entries[2]["cv_accuracy"] == teachers.entries[3]["cv_accuracy"]  # one configuration, one weight
    assert teachers.config.teachers.supervised and teachers.config.labelling.ensemble == "cv"
    soft = pet.label(teachers)
    cv = [e["cv_accuracy"] for e in teachers.entries]
    assert soft.teacher_logits.shape == (6, 4, 2)
    assert soft.manifest["ensemble"] == ("cv" if sum(cv) > 0 else "mean")


# --- what the member reads -------------------------------------------------------------------------------

def test_member_encodes_one_two_and_three_fields(tiny_bert):
    from transformers import AutoTokenizer

    from pet.io.data import Examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    fields = {"premise": ["a man sleeps"], "hypothesis": ["a dog runs"], "extra": ["the park"]}
    examples = Examples(["x"], fields, [0])
    one = ClassifierEncoder(tokenizer, ["premise"], 64, " [SEP] ").encode(examples)
    assert one == [tokenizer("a man sleeps")["input_ids"]]
    two = ClassifierEncoder(tokenizer, ["premise", "hypothesis"], 64, " [SEP] ").encode(examples)
    assert two == [tokenizer("a man sleeps", "a dog runs")["input_ids"]]
    three = ClassifierEncoder(tokenizer, ["premise", "hypothesis", "extra"], 64, " [SEP] ").encode(examples)
    assert three == [tokenizer("a man sleeps", "a dog runs [SEP] the park")["input_ids"]]
    assert tokenizer.sep_token_id in three[0][len(two[0]) - 1:-1]  # a separator between the second and third fields
    # the student keeps joining further fields with a space
    assert classifier_texts(fields, ["premise", "hypothesis", "extra"]) == (["a man sleeps"], ["a dog runs the park"])


def test_pet_report_shows_the_member_and_the_cv_accuracies(cv_run):
    import re

    pytest.importorskip("matplotlib")
    run = cv_run / "run"
    ok(invoke("report", run))
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    body = re.search(r'<table class="teachers">(.*?)</table>', html, re.S).group(1)
    rows = {cells[0]: cells for cells in ([re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r)]
                                          for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S))}
    assert rows["teacher"][-1] == "cv accuracy"
    for entry in read(run / "teachers" / "manifest.json")["teachers"]:
        assert rows[entry["name"]][-1] == f"{entry['cv_accuracy']:.4f}"
    assert rows[MEMBER][1] == "(supervised classifier)"
