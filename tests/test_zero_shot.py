"""Zero-shot runs: no labelled examples, untrained teachers, uniform ensemble, per-pattern evaluation."""

from __future__ import annotations

import json

import pytest
from conftest import write_project
from typer.testing import CliRunner

from pet.cli import app


def zero_shot_config(folder, model, train: str | None):
    config = write_project(folder, model, extra="")
    text = config.read_text()
    if train is None:
        text = text.replace("  train: train.jsonl\n", "")
    else:
        (folder / train).write_text("", encoding="utf-8")
        text = text.replace("  train: train.jsonl\n", f"  train: {train}\n")
    text = text.replace("teachers:\n", "teachers:\n  zero_shot: true\n")
    config.write_text(text)
    return config


@pytest.mark.parametrize("train", [None, "empty.jsonl"])
def test_zero_shot_run_end_to_end(tmp_path, tiny_bert, train):
    config = zero_shot_config(tmp_path, tiny_bert, train)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(run)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "teachers" / "manifest.json").read_text())
    assert manifest["zero_shot"] is True and manifest["labelled_examples"] == 0
    # One untrained teacher per pattern x verbalizer (seeds are irrelevant), no weights copied.
    assert [e["name"] for e in manifest["teachers"]] == ["it-was--bad-good--zero-shot", "just--bad-good--zero-shot"]
    for entry in manifest["teachers"]:
        assert entry["zero_shot"] is True and entry["weight"] is None
        folder = run / "teachers" / entry["path"]
        assert sorted(p.name for p in folder.iterdir()) == ["teacher.json"]
        assert json.loads((folder / "teacher.json").read_text())["base_model"] == str(tiny_bert)
    labels = json.loads((run / "labels" / "manifest.json").read_text())
    assert labels["ensemble"] == "mean" and labels["weights"] is None  # wmean (the default) fell back
    assert labels["statistics"]["examples"] == 24
    assert (run / "student" / "config.json").exists()


def test_zero_shot_wmean_warns(tmp_path, tiny_bert, caplog):
    from pet.io.config import load_config
    from pet.stages.labelling.stage import label
    from pet.stages.teachers.stage import train_teachers

    config = load_config(zero_shot_config(tmp_path, tiny_bert, None))
    train_teachers(config, tmp_path / "teachers")
    with caplog.at_level("WARNING", logger="pet"):
        manifest = label(tmp_path / "teachers", tmp_path / "labels")
    assert manifest["ensemble"] == "mean"
    assert any("uniform mean" in r.getMessage() for r in caplog.records)


def test_evaluate_reports_each_patterns_zero_shot_accuracy(tmp_path, tiny_bert):
    from pet.io.config import load_config
    from pet.stages.teachers.task import prepare_task
    from pet.stages.teachers.stage import train_teachers

    config = load_config(zero_shot_config(tmp_path, tiny_bert, None))
    train_teachers(config, tmp_path / "teachers")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "teachers"), "--data", str(tmp_path / "test.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["teachers"]) == {"it-was--bad-good--zero-shot", "just--bad-good--zero-shot"}
    assert report["ensemble"]["method"] == "mean"
    # The numbers are the untrained model's: recompute them directly from the base model.
    import torch
    from pet.core.modeling import load_masked_lm
    from pet.core.scoring import MaskedLMScorer

    task = prepare_task(config)
    test = json.loads("[" + ",".join((tmp_path / "test.jsonl").read_text().split("\n")[:-1]) + "]")
    gold = torch.tensor([0 if r["label"] == "negative" else 1 for r in test])
    from pet.io.data import Examples

    examples = Examples([r["id"] for r in test], {"text": [r["text"] for r in test]}, gold.tolist())
    model = load_masked_lm(str(tiny_bert), torch.device("cpu")).eval()
    for pattern in task.patterns:
        tokens = task.verbalizer_tokens(pattern, task.verbalizers[0], 64)
        scorer = MaskedLMScorer(model, tokens, task.tokenizer.mask_token_id, 0)
        scores = scorer.score(task.encoder(pattern, 64).encode(examples), 8)
        expected = float((scores.argmax(-1) == gold).float().mean())
        assert report["teachers"][f"{pattern.id}--bad-good--zero-shot"]["accuracy"] == pytest.approx(expected)


def test_zero_shot_with_labels_records_weights(tmp_path, tiny_bert):
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    config = load_config(write_project(tmp_path, tiny_bert), {"teachers.zero_shot": True})
    manifest = train_teachers(config, tmp_path / "teachers")
    assert manifest["labelled_examples"] == 8
    assert all(isinstance(e["weight"], float) for e in manifest["teachers"])  # PET's wmean: accuracy of the untrained model


def test_empty_labelled_set_without_zero_shot_is_an_error(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "teachers")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no rows" in lines[0] and "teachers.zero_shot: true" in lines[0], result.output
    assert not (tmp_path / "teachers" / "manifest.json").exists()


def test_missing_labelled_set_without_zero_shot_is_an_error(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    config.write_text(config.read_text().replace("  train: train.jsonl\n", ""))
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "teachers")])
    assert result.exit_code == 1
    assert "teachers.zero_shot: true" in result.output


def test_zero_shot_override_from_cli(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    config.write_text(config.read_text().replace("  train: train.jsonl\n", ""))
    out = tmp_path / "teachers"
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(out), "--teachers.zero_shot", "true"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["config"]["teachers"]["zero_shot"] is True


def test_evaluate_a_run_config_gives_zero_shot_accuracy_per_pattern(tmp_path, tiny_bert):
    """`pet evaluate CONFIG --data FILE` equals evaluating a zero-shot teachers folder, without writing one."""
    config = write_project(tmp_path, tiny_bert)
    direct = CliRunner().invoke(app, ["evaluate", str(config), "--data", str(tmp_path / "test.jsonl"), "--json"])
    assert direct.exit_code == 0, direct.output
    report = json.loads(direct.stdout)
    assert report["stage"] == "zero-shot" and report["ensemble"]["method"] == "mean"
    out = tmp_path / "zs"
    assert CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(out), "--teachers.zero_shot", "true"]).exit_code == 0
    folder = json.loads(CliRunner().invoke(app, ["evaluate", str(out), "--data", str(tmp_path / "test.jsonl"), "--json"]).stdout)
    assert report["teachers"] == folder["teachers"]
    assert folder["ensemble"]["method"] == "wmean"  # the folder's teachers have labelled accuracies as weights
    table = CliRunner().invoke(app, ["evaluate", str(config), "--data", str(tmp_path / "test.jsonl")])
    assert table.exit_code == 0 and "it-was--bad-good--zero-shot" in table.stdout and "ensemble (mean)" in table.stdout
