"""`pet adapt`: continued MLM training writes a plain masked LM that loads with transformers and as a
run's model; the loss falls on a repetitive corpus; prompts mode trains only on rendered texts and
never targets the mask slot; bad input leaves nothing behind; a seed fixes the weights."""

from __future__ import annotations

import json

import pytest
from conftest import held_by_another_process, write_project
from typer.testing import CliRunner

import pet
from pet.cli import app

FAST = {"steps": 4, "batch_size": 4}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def weights(folder):
    import torch
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def bert_project(tmp_path_factory, tiny_bert):
    return write_project(tmp_path_factory.mktemp("adapt-project"), tiny_bert)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, bert_project):
    return pet.adapt(bert_project, tmp_path_factory.mktemp("adapted") / "mlm", seed=3, **FAST)


def test_output_is_a_plain_masked_lm_with_its_record(adapted, tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    assert AutoModelForMaskedLM.from_pretrained(adapted) is not None
    assert AutoTokenizer.from_pretrained(adapted).mask_token == "[MASK]"
    record = json.loads((adapted / "adapt.json").read_text())
    assert record["base_model"] == str(tiny_bert) and record["text"] == "plain"
    assert record["settings"]["steps"] == 4 and record["settings"]["learning_rate"] == 5e-5  # auto, below 60M
    assert len(record["loss"]["per_step"]) == 4 and len(record["inputs"]) == 1
    assert not (adapted / "manifest.json").exists()  # not a pet stage folder


def test_weights_move_and_a_seed_fixes_them(adapted, bert_project, tiny_bert, tmp_path):
    import torch

    base, first = weights(tiny_bert), weights(adapted)
    assert any(not torch.equal(base[k], first[k]) for k in base)
    again = weights(pet.adapt(bert_project, tmp_path / "again", seed=3, **FAST))
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = weights(pet.adapt(bert_project, tmp_path / "other", seed=4, **FAST))
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_loss_falls_on_a_repetitive_corpus(bert_project, tmp_path):
    folder = pet.adapt(bert_project, tmp_path / "mlm", steps=40, batch_size=8, learning_rate=1e-3)
    losses = json.loads((folder / "adapt.json").read_text())["loss"]["per_step"]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.2  # 4.7 -> 4.3 here; the tiny model starts random


def test_adapted_model_runs_as_a_runs_model(tmp_path, adapted):
    config = write_project(tmp_path, adapted)
    result = invoke("run", config, "-o", tmp_path / "run", "--model", adapted)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "teachers" / "manifest.json").read_text())
    assert manifest["config"]["model"] == str(adapted)
    assert pet.Run(tmp_path / "run").adapted is None and "adapted model" not in result.output  # adapted by hand, not by the run


def test_prompts_mode_trains_on_rendered_texts_without_targeting_the_slot(bert_project, tiny_roberta, tmp_path):
    import torch

    from pet.core.encoding import pad
    from pet.core.mlm import IGNORE, MlmMasker
    from pet.tools.adapt import AdaptSettings, Corpus
    from pet.tools.session import as_config

    for model in (bert_project, write_project(tmp_path / "roberta", tiny_roberta)):
        corpus = Corpus.open(as_config(model), AdaptSettings(prompts=True))
        tokenizer = corpus.tokenizer
        rows = list(range(len(corpus)))
        sequences = corpus.encode(rows, torch.Generator().manual_seed(0))
        renderings = [[e.encode(corpus.table.take([i]))[0] for e in corpus.encoders] for i in rows]
        assert all(seq in options for seq, options in zip(sequences, renderings))  # each row is a pattern's rendering
        assert len({options.index(seq) for seq, options in zip(sequences, renderings)}) == 2  # both patterns drawn
        ids, attention = pad(sequences, tokenizer.pad_token_id)
        masker = MlmMasker(tokenizer, len(tokenizer), probability=0.9, seed=0)
        _, targets = masker(ids, attention)
        special = set(tokenizer.all_special_ids)
        assert (ids == tokenizer.mask_token_id).sum(-1).tolist() == [1] * len(rows)  # the slot is kept, once per row
        chosen = ids[targets != IGNORE].tolist()
        assert chosen and not special & set(chosen)  # never the mask slot, [CLS]/[SEP]/<s>/</s> or padding
        assert (targets[targets != IGNORE] == ids[targets != IGNORE]).all()


def test_prompts_mode_writes_a_model_and_records_the_patterns(bert_project, tmp_path):
    folder = pet.adapt(bert_project, tmp_path / "mlm", prompts=True, **FAST)
    record = json.loads((folder / "adapt.json").read_text())
    assert record["text"] == "prompts" and record["patterns"] == ["it-was", "just"] and len(record["inputs"]) == 2


def test_cli_adapts_and_reports(bert_project, tmp_path):
    out = tmp_path / "mlm"
    result = invoke("adapt", bert_project, "-o", out, "--steps", "2", "--batch-size", "4", "--teachers.max_length", "32")
    assert result.exit_code == 0, result.output
    assert "MLM loss" in result.output and (out / "config.json").exists()
    assert json.loads((out / "adapt.json").read_text())["settings"]["max_length"] == 32


def test_existing_output_is_refused_unless_overwrite(bert_project, tmp_path):
    out = tmp_path / "mlm"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("adapt", bert_project, "-o", out, "--steps", "2")
    assert result.exit_code == 1 and "exists and is not empty" in result.output and "--overwrite" in result.output
    assert len(result.output.strip().splitlines()) == 1 and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    result = invoke("adapt", bert_project, "-o", out, "--steps", "2", "--batch-size", "4", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and (out / "adapt.json").exists()


def test_a_second_adapt_into_the_same_folder_stops_at_once(bert_project, tmp_path):
    """pet adapt replaces its folder whole, so its lock sits beside it (.mlm.pet-lock)."""
    out = tmp_path / "mlm"
    with held_by_another_process(out, "pet adapt", beside=True) as holder:
        result = invoke("adapt", bert_project, "-o", out, "--steps", "2")
        assert result.exit_code == 1 and f"pet adapt (pid {holder.pid} on " in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not out.exists()
        assert [p.name for p in tmp_path.iterdir()] == [".mlm.pet-lock"]


@pytest.mark.parametrize("args, message", [
    (["--data.unlabeled", "missing.jsonl"], "unlabeled file not found"),
    (["--steps", "0"], "adapt settings: 'steps': input should be greater than 0 (got 0)"),
    (["--adapt.mlm_probability", "1.5"], "'adapt.mlm_probability': input should be less than 1"),
    (["--learning-rate", "fast"], "--learning-rate: expected a number or auto"),
    (["--teachers.stepz", "3"], "did you mean --teachers.steps"),
])
def test_bad_input_is_one_line_and_writes_nothing(bert_project, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke("adapt", bert_project, "-o", tmp_path / "out" / "mlm", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_refuses_to_write_into_the_base_model(bert_project, tiny_bert):
    with pytest.raises(pet.PetError, match="base model's own folder"):
        pet.adapt(bert_project, tiny_bert, overwrite=True, **FAST)


def test_unknown_setting_is_a_pet_error(bert_project, tmp_path):
    with pytest.raises(pet.PetError, match="settings are steps"):
        pet.adapt(bert_project, tmp_path / "x", stepz=3)


def test_the_configs_adapt_section_sets_what_options_do_not(bert_project, tmp_path):
    out = tmp_path / "mlm"
    result = invoke("adapt", bert_project, "-o", out, "--adapt.steps", "3", "--adapt.seed", "5", "--batch-size", "4", "--seed", "7")
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "adapt.json").read_text())["settings"]
    assert (settings["steps"], settings["seed"], settings["batch_size"], settings["mlm_probability"]) == (3, 7, 4, 0.15)


def test_the_same_adaptation_again_is_kept_and_another_is_refused(bert_project, tmp_path, monkeypatch):
    out = tmp_path / "mlm"
    first = pet.adapt(bert_project, out, seed=3, **FAST)
    record = (out / "adapt.json").read_text()
    import pet.tools.adapt as adapt_module

    monkeypatch.setattr(adapt_module, "train_and_save", lambda *a, **k: pytest.fail("adapted again"))
    assert pet.adapt(bert_project, out, seed=3, **FAST) == first and (out / "adapt.json").read_text() == record
    result = invoke("adapt", bert_project, "-o", out, "--seed", "4", "--steps", "4", "--batch-size", "4")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "adapted from other settings or data (adapt.seed 3 -> 4)" in result.output and "--overwrite" in result.output
    assert (out / "adapt.json").read_text() == record
    monkeypatch.undo()
    result = invoke("adapt", bert_project, "-o", out, "--seed", "4", "--steps", "4", "--batch-size", "4", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "adapt.json").read_text())["settings"]["seed"] == 4


# pet run with adapt.enabled: RUN/adapted first, every stage from it, reruns compare the adaptation too

ADAPT_IN_RUN = ("--adapt.enabled", "true", "--adapt.steps", "2", "--adapt.batch_size", "4")


@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("adapted-run")
    config = write_project(folder, tiny_bert)
    result = invoke("run", config, "-o", folder / "run", *ADAPT_IN_RUN)
    assert result.exit_code == 0, result.output
    return config, folder / "run", result.output


def test_run_adapts_first_and_every_stage_starts_from_the_adapted_model(adapted_run, tiny_bert):
    _, run, output = adapted_run
    adapted = run / "adapted"
    record = json.loads((adapted / "adapt.json").read_text())
    assert record["base_model"] == str(tiny_bert) and record["settings"]["steps"] == 2
    assert f"adapted model: {adapted.resolve()} (every stage started from it)" in output
    teachers = json.loads((run / "teachers" / "manifest.json").read_text())
    assert teachers["config"]["model"] == str(adapted.resolve()) and teachers["config"]["adapt"]["enabled"] is False
    assert teachers["reads"]["model.adapted"] == record["fingerprint"]
    student = json.loads((run / "student" / "manifest.json").read_text())
    assert student["reads"]["model"] == str(adapted.resolve()) and student["reads"]["model.adapted"] == record["fingerprint"]
    assert pet.Run(run).summary()["adapted"] == str(adapted)


def test_a_rerun_keeps_the_adaptation_and_a_changed_one_is_refused(adapted_run, monkeypatch):
    import pet.tools.adapt as adapt_module

    config, run, _ = adapted_run
    record = (run / "adapted" / "adapt.json").read_text()
    monkeypatch.setattr(adapt_module, "train_and_save", lambda *a, **k: pytest.fail("adapted again"))
    result = invoke("run", config, "-o", run, *ADAPT_IN_RUN)
    assert result.exit_code == 0 and "already adapted" in result.output, result.output
    result = invoke("run", config, "-o", run, *ADAPT_IN_RUN, "--adapt.seed", "1")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "adapted from other settings or data (adapt.seed 0 -> 1)" in result.output
    assert (run / "adapted" / "adapt.json").read_text() == record


def test_adapting_again_makes_the_teachers_out_of_date(tmp_path, tiny_bert):
    """A manual adaptation named as model: re-adapting into the same folder is a change stage A sees."""
    config = write_project(tmp_path, tiny_bert)
    model = pet.adapt(config, tmp_path / "mlm", seed=1, **FAST)
    result = invoke("train-teachers", config, "-o", tmp_path / "teachers", "--model", model)
    assert result.exit_code == 0, result.output
    pet.adapt(config, model, seed=2, overwrite=True, **FAST)
    result = invoke("train-teachers", config, "-o", tmp_path / "teachers", "--model", model)
    assert result.exit_code == 1 and "model.adapted" in result.output and "--overwrite" in result.output, result.output


def test_stage_a_alone_refuses_adapt_enabled(bert_project, tmp_path):
    result = invoke("train-teachers", bert_project, "-o", tmp_path / "teachers", "--adapt.enabled", "true")
    assert result.exit_code == 1 and "only pet run adapts" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "teachers").exists()


def test_the_api_run_adapts_with_an_adapt_mapping(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    run = pet.run(config, tmp_path / "run", adapt={"enabled": True, "steps": 2, "batch_size": 4, "seed": 9})
    assert run.adapted == tmp_path / "run" / "adapted"
    assert json.loads((run.adapted / "adapt.json").read_text())["settings"]["seed"] == 9


def test_the_report_shows_the_adaptation_and_its_time(adapted_run):
    from test_report import cells, row_of_text

    _, run, _ = adapted_run
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    record = json.loads((run / "adapted" / "adapt.json").read_text())
    loss = record["loss"]
    assert f"{loss['first']:.3f} -&gt; {loss['last']:.3f} (mean of the first / last {loss['window']} steps)" in html
    assert "2 MLM steps on 24 plain unlabeled texts" in html
    timings = {name: cells(row_of_text(html, "timings", name))[1] for name in ("adaptation (pet adapt)", "total")}
    assert timings["adaptation (pet adapt)"] == f"{record['seconds']:.2f}"
    teachers = json.loads((run / "teachers" / "manifest.json").read_text())["teachers"]
    student = json.loads((run / "student" / "manifest.json").read_text())["metrics"]["seconds"]
    total = record["seconds"] + sum(t["metrics"]["seconds"] for t in teachers) + student
    assert timings["total"] == f"{total:.2f}"
