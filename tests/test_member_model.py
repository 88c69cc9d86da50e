"""teachers.supervised_model: the supervised member fine-tuned from its own checkpoint (a sentence encoder,
say) with its own tokenizer, beside pattern teachers on the run's masked LM; on tiny random models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_reruns import error_line, invoke, ok
from test_supervised_member import MEMBER, PATTERN_TEACHERS, digest, plain_classifier_logits, project_with, read, soft_label_columns


@pytest.fixture(scope="module")
def member_run(tmp_path_factory, tiny_bert, tiny_roberta) -> Path:
    """Pattern teachers on tiny_bert (a WordPiece vocabulary), the member on tiny_roberta (byte-level BPE),
    named in the config by a path relative to the config's folder."""
    folder = tmp_path_factory.mktemp("member-model")
    shutil.copytree(tiny_roberta, folder / "encoder")
    config = project_with(folder, tiny_bert)
    text = config.read_text(encoding="utf-8")  # the member in the config's own teachers section
    config.write_text(text.replace("teachers:\n", "teachers:\n  supervised: true\n  supervised_model: encoder\n"), encoding="utf-8")
    ok(invoke("run", config, "-o", folder / "run"))
    return folder


def test_the_member_is_fine_tuned_from_its_own_checkpoint_with_its_own_tokenizer(member_run):
    from transformers import AutoConfig, AutoTokenizer

    teachers = member_run / "run" / "teachers"
    entries = read(teachers / "manifest.json")["teachers"]
    assert [e["name"] for e in entries] == PATTERN_TEACHERS + [MEMBER]
    encoder = str((member_run / "encoder").resolve())
    assert read(teachers / "manifest.json")["config"]["teachers"]["supervised_model"] == encoder  # resolved against the config
    record = read(teachers / MEMBER / "teacher.json")
    assert record["base_checkpoint"] == encoder and record["field_join"] == " </s> "  # roberta's separator, not bert's [SEP]
    assert AutoConfig.from_pretrained(teachers / MEMBER).architectures == ["RobertaForSequenceClassification"]
    assert type(AutoTokenizer.from_pretrained(teachers / MEMBER)).__name__.startswith("Roberta")
    for name in PATTERN_TEACHERS:  # the patterns stay on the run's masked LM and its tokenizer
        assert AutoConfig.from_pretrained(teachers / name).architectures == ["BertForMaskedLM"]
        assert type(AutoTokenizer.from_pretrained(teachers / name)).__name__.startswith("Bert")


def test_stage_b_scores_the_member_with_its_own_tokenizer(member_run):
    run = member_run / "run"
    columns = soft_label_columns(run / "labels")
    assert columns["teacher_logits"].shape == (24, 3, 2)
    expected = plain_classifier_logits(run / "teachers" / MEMBER, columns["text"], max_length=64)
    np.testing.assert_allclose(columns["teacher_logits"][:, 2], expected, atol=1e-5)


def test_the_report_names_the_members_checkpoint(member_run):
    pytest.importorskip("matplotlib")
    run = member_run / "run"
    ok(invoke("report", run))
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert f"fine-tuned from {(member_run / 'encoder').resolve()}" in html


def test_changing_the_members_checkpoint_retrains_the_member_only(tmp_path, tiny_bert, tiny_roberta):
    config = project_with(tmp_path, tiny_bert)
    teachers = tmp_path / "teachers"
    ok(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true"))
    patterns = {name: digest(teachers / name / "model.safetensors") for name in PATTERN_TEACHERS}
    assert read(teachers / MEMBER / "teacher.json")["base_checkpoint"] == str(tiny_bert)
    line = error_line(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true",
                             "--teachers.supervised_model", tiny_roberta))
    assert "teachers.supervised_model" in line and "--overwrite" in line
    output = ok(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true",
                       "--teachers.supervised_model", tiny_roberta, "--overwrite"))
    assert output.count("already trained, skipped") == 2 and "supervised--s1: fine-tuning a sequence classifier" in output
    assert {name: digest(teachers / name / "model.safetensors") for name in PATTERN_TEACHERS} == patterns
    assert read(teachers / MEMBER / "teacher.json")["base_checkpoint"] == str(tiny_roberta)
    # the same settings again: nothing to do
    output = ok(invoke("train-teachers", config, "-o", teachers, "--teachers.supervised", "true",
                       "--teachers.supervised_model", tiny_roberta))
    assert "all teachers already trained" in output


def test_a_member_checkpoint_without_a_member_is_refused(tmp_path, tiny_bert, tiny_roberta):
    config = project_with(tmp_path, tiny_bert)
    for command in (["train-teachers", config, "-o", tmp_path / "teachers"], ["run", config, "-o", tmp_path / "run"]):
        line = error_line(invoke(*command, "--teachers.supervised_model", tiny_roberta))
        assert line == ("error: teachers.supervised_model is the supervised member's starting checkpoint, and teachers.supervised "
                        "is false, so there is no member; set teachers.supervised: true, or drop teachers.supervised_model")
    assert not (tmp_path / "teachers").exists() and not (tmp_path / "run").exists()


def test_a_missing_or_foreign_member_checkpoint_is_refused_before_training(tmp_path, tiny_bert):
    from transformers import AutoTokenizer, BertForSequenceClassification

    config = project_with(tmp_path, tiny_bert)
    line = error_line(invoke("train-teachers", config, "-o", tmp_path / "teachers", "--teachers.supervised", "true",
                             "--teachers.supervised_model", tmp_path / "no-such-model"))
    assert line.startswith("error: teachers.supervised_model: ") and "no-such-model" in line
    foreign = tmp_path / "topics"  # a classifier trained for other labels: its head would be reused for the wrong classes
    BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2, id2label={0: "sports", 1: "politics"}).save_pretrained(foreign)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(foreign)
    line = error_line(invoke("train-teachers", config, "-o", tmp_path / "teachers", "--teachers.supervised", "true",
                             "--teachers.supervised_model", foreign))
    assert line == (f"error: teachers.supervised_model '{foreign}' is a classifier for labels [sports, politics], but the teachers' "
                    "labels are [negative, positive]; set teachers.supervised_model to a base checkpoint (or one trained for these "
                    "labels, in this order)")
    assert not (tmp_path / "teachers").exists()


def test_the_api_takes_the_members_checkpoint(tmp_path, tiny_bert, tiny_roberta):
    import pet
    from conftest import sentiment_rows

    teachers = pet.train_teachers(
        str(tiny_bert), output=tmp_path / "teachers", train=sentiment_rows("train", 8),
        unlabeled=[r["text"] for r in sentiment_rows("u", 6, labelled=False)],
        patterns=[pet.Pattern("it-was", "{text} It was {mask}.")],
        verbalizers=[pet.Verbalizer("bad-good", {"negative": ["bad"], "positive": ["good"]})],
        seeds=[1], steps=2, max_length=64, supervised=True, supervised_model=str(tiny_roberta), runtime={"device": "cpu"},
        ipet={"generations": 0})
    assert [e["name"] for e in teachers.entries] == ["it-was--bad-good--s1", MEMBER]
    assert teachers.config.teachers.supervised_model == str(tiny_roberta)
    assert read(tmp_path / "teachers" / MEMBER / "teacher.json")["base_checkpoint"] == str(tiny_roberta)
    assert pet.label(teachers).teacher_logits.shape == (6, 2, 2)


def test_under_ipet_and_cv_the_member_of_every_generation_starts_from_its_checkpoint(tmp_path, tiny_bert, tiny_roberta):
    from test_ipet_members import train

    train(tmp_path, tiny_bert, **{"labelling.ensemble": "cv", "teachers.cv_folds": 2, "teachers.supervised_model": str(tiny_roberta)})
    entries = read(tmp_path / "teachers" / "manifest.json")["teachers"]
    members = [e for e in entries if e["kind"] == "classifier"]
    assert [e["name"] for e in members] == ["supervised--s1", "supervised--s2"]  # the final generation's
    records = [read(path) for path in sorted((tmp_path / "teachers").rglob("teacher.json")) if read(path)["kind"] == "classifier"]
    assert len(records) == 6  # a member per seed in each of the 3 generations
    assert {r["base_checkpoint"] for r in records} == {str(tiny_roberta)} and {r["generation"] for r in records} == {0, 1, 2}
    folds = [read(path) for path in (tmp_path / "teachers" / "cv").glob("supervised--cv*.json")]
    assert len(folds) == 2 and all(e["cv_accuracy"] is not None for e in entries)
