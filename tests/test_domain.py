"""`adapt.enabled: auto`: the untrained model's MLM loss on the unlabeled text (pet/tools/domain.py) decides
whether pet run adapts first. The loss is checked against a second computation through the full MLM
logits; the decision, its record and its line, both ways; stage A alone accepts auto."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_project
from typer.testing import CliRunner

import pet
from pet.cli import app
from pet.io.artifacts import fingerprint_of
from pet.io.config import load_config
from pet.tools.domain import AdaptDecision, DomainLoss, unlabeled_mlm_loss

AUTO = ("--adapt.enabled", "auto", "--adapt.steps", "2", "--adapt.batch_size", "4")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def config_path(tmp_path_factory, tiny_bert):
    return write_project(tmp_path_factory.mktemp("domain"), tiny_bert, unlabeled=40)


def test_the_loss_is_the_mean_cross_entropy_over_every_masked_token(config_path):
    """Recomputed here through AutoModelForMaskedLM's full logits and log_softmax, on the batches the
    function draws (same sample, same masking seeds), summed over the targets of every batch."""
    import torch
    from transformers import AutoModelForMaskedLM

    from pet.core.encoding import pad
    from pet.core.mlm import IGNORE, MlmMasker
    from pet.tools.adapt import Corpus

    config = load_config(config_path)
    measured = unlabeled_mlm_loss(config, examples=20, seed=5)
    corpus = Corpus.open(config, config.adapt)
    model = AutoModelForMaskedLM.from_pretrained(config.model, dtype=torch.float32).eval()
    masker = MlmMasker(corpus.tokenizer, model.get_input_embeddings().num_embeddings, 0.15, seed=6)
    generator = torch.Generator().manual_seed(5)
    chosen = torch.randperm(len(corpus), generator=generator)[:20].sort().values.tolist()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, 20, 32):
            ids, attention = pad(corpus.encode(chosen[start:start + 32], generator), corpus.tokenizer.pad_token_id)
            masked, targets = masker(ids, attention)
            log_probs = torch.log_softmax(model(input_ids=masked, attention_mask=attention).logits, -1)
            where = targets != IGNORE
            total -= float(log_probs[where].gather(-1, targets[where].unsqueeze(-1)).sum())
            count += int(where.sum())
    assert measured.texts == 20 and measured.targets == count > 0
    assert measured.loss == pytest.approx(total / count, rel=1e-5)
    # an untrained head over a vocabulary of V words sits near log V
    assert abs(measured.loss - math.log(corpus.tokenizer.vocab_size)) < 2.0


def test_the_same_seed_gives_the_same_loss_and_another_seed_another_sample(config_path):
    config = load_config(config_path)
    first, again, other = (unlabeled_mlm_loss(config, examples=16, seed=s) for s in (1, 1, 2))
    assert first == again and other != first
    assert unlabeled_mlm_loss(config, examples=1000, seed=1).texts == 40  # at most the whole unlabeled set


def test_the_measurement_shows_a_bar_over_its_texts(config_path, monkeypatch, recorded_progress):
    from pet.tools import domain

    monkeypatch.setattr(domain, "progress", recorded_progress)
    measured = unlabeled_mlm_loss(load_config(config_path), examples=36, seed=1)  # two batches of at most 32
    assert recorded_progress.bars == [{"description": "masked-LM loss on unlabeled text", "total": 36, "done": 36}]
    assert measured.texts == 36


def test_the_decision_is_strictly_above_the_threshold():
    measured = DomainLoss(4.5, 512, 3000)
    assert not AdaptDecision(measured, 4.5).adapt and AdaptDecision(measured, 4.4).adapt
    assert AdaptDecision(measured, 4.4).record() == {"setting": "auto", "adapt": True, "threshold": 4.4,
                                                     "mlm_loss": 4.5, "texts": 512, "targets": 3000, "new_head": False}
    # what pet run writes to RUN/adapt-decision.json reads back as the same decision
    assert AdaptDecision.from_record(AdaptDecision(measured, 4.4).record()) == AdaptDecision(measured, 4.4)
    # a newly initialised head's loss measures random logits, not the text: never a reason to adapt
    random_head = DomainLoss(9.9, 512, 3000, new_head=True)
    assert not AdaptDecision(random_head, 4.3).adapt
    assert AdaptDecision(random_head, 4.3).describe() == (
        "adapt: auto: MLM loss 9.90 on 512 unlabeled texts, from a newly initialised MLM head: no measure of the text: "
        "training from the model as it is (adapt.enabled: true adapts it anyway)")
    assert AdaptDecision(random_head, 4.3).describe(done=True).endswith("no measure of the text: not adapted")
    assert AdaptDecision(measured, 5.0).describe() == (
        "adapt: auto: MLM loss 4.50 on 512 unlabeled texts, not above adapt.auto_threshold 5: training from the model as it is")
    assert AdaptDecision(measured, 4.4).describe() == (
        "adapt: auto: MLM loss 4.50 on 512 unlabeled texts, above adapt.auto_threshold 4.4: adapting the model on it first")


def test_auto_above_the_threshold_adapts_and_records_why(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    result = invoke("run", config, "-o", tmp_path / "run", *AUTO, "--adapt.auto_threshold", "0.5")
    assert result.exit_code == 0, result.output
    run = pet.Run(tmp_path / "run")
    decision = json.loads((tmp_path / "run" / "adapt-decision.json").read_text())
    assert decision["setting"] == "auto" and decision["adapt"] is True and decision["threshold"] == 0.5
    assert decision["mlm_loss"] > 0.5 and decision["texts"] == 24  # write_project's whole unlabeled set
    assert run.adapt_decision == decision and run.summary()["adapt_decision"] == decision
    assert run.adapted == tmp_path / "run" / "adapted"
    teachers = json.loads((tmp_path / "run" / "teachers" / "manifest.json").read_text())
    assert teachers["config"]["model"] == str(run.adapted.resolve()) and teachers["config"]["adapt"]["enabled"] is False
    assert f"adapt: auto: MLM loss {decision['mlm_loss']:.2f} on 24 unlabeled texts, above adapt.auto_threshold 0.5: adapted\n" in result.output


def test_auto_below_the_threshold_trains_from_the_model_as_it_is(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    result = invoke("run", config, "-o", tmp_path / "run", *AUTO, "--adapt.auto_threshold", "1000")
    assert result.exit_code == 0, result.output
    run = pet.Run(tmp_path / "run")
    assert run.adapt_decision["adapt"] is False and run.adapted is None and not (tmp_path / "run" / "adapted").exists()
    teachers = json.loads((tmp_path / "run" / "teachers" / "manifest.json").read_text())
    assert teachers["config"]["model"] == str(tiny_bert) and teachers["config"]["adapt"]["enabled"] == "auto"
    assert "threshold 1000: not adapted" in result.output
    # a rerun that sets adapt.enabled itself removes the decision, which no longer describes the run
    result = invoke("run", config, "-o", tmp_path / "run", "--adapt.enabled", "false", "--overwrite")
    assert result.exit_code == 0, result.output
    assert run.adapt_decision is None and "adapt: auto" not in result.output


def test_a_rerun_reuses_the_recorded_loss_until_what_it_measured_changes(config_path, tmp_path, monkeypatch):
    """The decision file caches the measurement: the same model, text and settings reuse it (and decide
    again against today's threshold); other settings, other text, or a file pet did not write measure again."""
    from pet.tools import domain

    calls = []
    real = domain.unlabeled_mlm_loss
    monkeypatch.setattr(domain, "unlabeled_mlm_loss", lambda config: calls.append(1) or real(config, examples=8))
    record = tmp_path / "adapt-decision.json"
    config = load_config(config_path, overrides={"adapt.enabled": "auto", "adapt.auto_threshold": 1000})
    first = domain.decide_adaptation(config, record)
    assert len(calls) == 1 and not first.adapt
    stamp = json.loads(record.read_text())["fingerprint"]
    assert stamp == fingerprint_of(domain.measurement_reads(config))
    lowered = config.model_copy(update={"adapt": config.adapt.model_copy(update={"auto_threshold": 0.5})})
    again = domain.decide_adaptation(lowered, record)
    assert len(calls) == 1 and again.measured == first.measured and again.adapt  # reused, decided anew
    assert json.loads(record.read_text()) == {**again.record(), "fingerprint": stamp}
    masked_more = config.model_copy(update={"adapt": config.adapt.model_copy(update={"mlm_probability": 0.3})})
    domain.decide_adaptation(masked_more, record)
    assert len(calls) == 2 and json.loads(record.read_text())["fingerprint"] != stamp
    fewer = tmp_path / "unlabeled.jsonl"  # other text under another name: measured again
    fewer.write_text("".join(config.data.unlabeled.read_text().splitlines(keepends=True)[:10]))
    domain.decide_adaptation(config.model_copy(update={"data": config.data.model_copy(update={"unlabeled": fewer})}), record)
    assert len(calls) == 3
    for damaged in ("{not json", '{"fingerprint": "%s", "mlm_loss": "high"}' % stamp, "[]"):
        record.write_text(damaged)
        assert domain.decide_adaptation(config, record).measured == first.measured
    assert len(calls) == 6


def test_stage_a_alone_accepts_auto_and_trains_from_the_model_as_it_is(config_path, tmp_path, tiny_bert):
    result = invoke("train-teachers", config_path, "-o", tmp_path / "teachers", "--adapt.enabled", "auto")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "teachers" / "manifest.json").read_text())["config"]["model"] == str(tiny_bert)


def test_a_bad_threshold_or_setting_is_one_line(config_path, tmp_path):
    for args, message in ((("--adapt.auto_threshold", "-1"), "auto_threshold"), (("--adapt.enabled", "sometimes"), "enabled")):
        result = invoke("run", config_path, "-o", tmp_path / "run", *args)
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
        assert not (tmp_path / "run").exists()


def test_the_benchmark_script_prints_the_loss_and_the_decision_per_seed(config_path):
    from test_benchmark_scripts import run_script

    done = run_script("benchmarks/domain_loss.py", str(config_path), "--seeds", "3", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    rows = [json.loads(line) for line in lines[:2]]
    config = load_config(config_path)
    for row, seed in zip(rows, (3, 4)):
        measured = unlabeled_mlm_loss(config, seed=seed)
        assert row["seed"] == seed and row["mlm_loss"] == round(measured.loss, 4) and row["adapt"] is True
    mean = (rows[0]["mlm_loss"] + rows[1]["mlm_loss"]) / 2
    assert lines[-1].startswith(f"| {config_path} | {mean:.2f} (")


@pytest.fixture(scope="module")
def headless_bert(tmp_path_factory, tiny_bert):
    """tiny_bert's encoder saved without its MLM head, as sentence encoders are: loading it as a masked
    LM initialises the head at random."""
    from transformers import AutoTokenizer, BertForMaskedLM

    folder = tmp_path_factory.mktemp("headless")
    BertForMaskedLM.from_pretrained(tiny_bert).bert.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


def test_a_newly_initialised_head_is_measured_but_never_adapted(tmp_path, headless_bert):
    config = write_project(tmp_path, headless_bert)
    measured = unlabeled_mlm_loss(load_config(config), examples=8)
    assert measured.new_head and measured.texts == 8
    result = invoke("run", config, "-o", tmp_path / "run", *AUTO, "--adapt.auto_threshold", "0.5")
    assert result.exit_code == 0, result.output
    decision = pet.Run(tmp_path / "run").adapt_decision
    assert decision["new_head"] is True and decision["adapt"] is False and decision["mlm_loss"] > 0.5
    assert not (tmp_path / "run" / "adapted").exists()
    assert "24 unlabeled texts, from a newly initialised MLM head: no measure of the text: not adapted\n" in result.output


def test_pet_check_says_a_new_heads_loss_is_no_measure_of_the_text(tmp_path, headless_bert):
    report = pet.check(write_project(tmp_path, headless_bert))
    [line, _] = {s.title: s for s in report.sections}["Unlabeled text against the model's own (masked-LM loss)"].lines
    assert line.status == "info" and line.data["new_head"] is True
    assert line.text == (f"MLM loss {line.data['mlm_loss']:.2f} on 24 unlabeled texts, from a newly initialised MLM head: no "
                         "measure of the text: adapt.enabled: auto trains from the model as it is")
