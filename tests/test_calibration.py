"""pet/core/calibration.py against hand computations on tiny explicit arrays."""

from __future__ import annotations

import math

import pytest
import torch

from pet.core.calibration import (ECE_BINS, brier_score, calibration_metrics, expected_calibration_error,
                                  fit_temperature, negative_log_likelihood, reliability_bins)

# Five two-class predictions. Top-class confidence, correct?, and its 15-bin index ceil(15 p) - 1:
#   A 0.90 right -> bin 13   B 0.95 wrong -> bin 14   C 0.70 right -> bin 10
#   D 0.75 wrong -> bin 11   E 0.92 right -> bin 13 (with A)
PROBS = torch.tensor([[0.90, 0.10], [0.95, 0.05], [0.30, 0.70], [0.25, 0.75], [0.92, 0.08]])
LABELS = [0, 1, 1, 0, 0]


def test_reliability_bins_by_hand():
    bins = reliability_bins(PROBS, LABELS)
    assert len(bins) == ECE_BINS == 15
    assert [b["count"] for b in bins] == [0] * 10 + [1, 1, 0, 2, 1]
    assert bins[13]["accuracy"] == 1.0 and bins[13]["confidence"] == pytest.approx(0.91)
    assert bins[14]["accuracy"] == 0.0 and bins[14]["confidence"] == pytest.approx(0.95)
    assert (bins[13]["lower"], bins[13]["upper"]) == pytest.approx((13 / 15, 14 / 15))
    assert math.isnan(bins[0]["accuracy"]) and math.isnan(bins[0]["confidence"])


def test_ece_by_hand():
    # bin 13: 2/5 * |1 - 0.91|; bin 14: 1/5 * |0 - 0.95|; bin 10: 1/5 * |1 - 0.7|; bin 11: 1/5 * |0 - 0.75|
    assert expected_calibration_error(PROBS, LABELS) == pytest.approx((2 * 0.09 + 0.95 + 0.30 + 0.75) / 5)
    # one bin: |accuracy 3/5 - mean confidence 4.22/5|
    assert expected_calibration_error(PROBS, LABELS, bins=1) == pytest.approx(abs(0.6 - 4.22 / 5))


def test_ece_bin_edges_are_right_closed():
    """Confidence 1.0 is in the last bin, 0.5 in (7/15, 8/15]; a perfectly calibrated bin adds nothing."""
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    bins = reliability_bins(probs, [0, 0, 1])
    assert bins[14]["count"] == 1 and bins[7]["count"] == 2
    assert expected_calibration_error(probs, [0, 0, 1]) == pytest.approx(0.0)


def test_brier_multiclass_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    # (0.3^2 + 0.2^2 + 0.1^2) = 0.14 and (0.2^2 + 0.5^2 + 0.7^2) = 0.78
    assert brier_score(probs, [0, 2]) == pytest.approx((0.14 + 0.78) / 2)
    assert brier_score(torch.tensor([[0.0, 1.0]]), [0]) == pytest.approx(2.0)  # the worst possible
    assert brier_score(torch.tensor([[1.0, 0.0]]), [0]) == 0.0


def test_nll_by_hand_and_temperature():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    assert negative_log_likelihood(logits, [0]) == pytest.approx(math.log(1 + 2 * math.exp(-2)))
    assert negative_log_likelihood(logits, [0], temperature=2.0) == pytest.approx(math.log(1 + 2 * math.exp(-1)))
    assert negative_log_likelihood(logits, [1]) == pytest.approx(2 + math.log(1 + 2 * math.exp(-2)))
    with pytest.raises(ValueError):
        negative_log_likelihood(logits, [0], temperature=0.0)


def test_nll_is_finite_for_a_confident_mistake():
    """log(softmax) would give inf here; log_softmax gives the exact 1000."""
    assert negative_log_likelihood(torch.tensor([[1000.0, 0.0]]), [1]) == pytest.approx(1000.0)


def test_calibration_metrics_combine_the_parts_at_a_temperature():
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5], [3.0, 0.0]])
    labels = [0, 0, 0]
    probs = torch.softmax(logits / 2.0, -1)
    got = calibration_metrics(logits, labels, temperature=2.0)
    assert got == pytest.approx({"ece": expected_calibration_error(probs, labels), "brier": brier_score(probs, labels),
                                 "nll": negative_log_likelihood(logits, labels, 2.0)})


def test_fit_temperature_recovers_a_known_temperature():
    """Labels drawn from softmax(z); the model reports 2.5 z (overconfident), so T* should be 2.5."""
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20000, 3, generator=generator, dtype=torch.float64) * 2.0
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=generator).squeeze(-1)
    fitted = fit_temperature(true_logits * 2.5, labels)
    assert fitted == pytest.approx(2.5, rel=0.05)
    assert negative_log_likelihood(true_logits * 2.5, labels, fitted) < negative_log_likelihood(true_logits * 2.5, labels)


def test_fit_temperature_stays_inside_its_bounds():
    """A perfectly classified set wants T -> 0 (NLL keeps falling); the search stops at the bound."""
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert fit_temperature(logits, [0, 1], bounds=(0.1, 10.0)) == pytest.approx(0.1, rel=1e-3)


# --- in the pipeline: manifests and `pet evaluate` --------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert):
    from conftest import write_project
    from test_cli import invoke, ok

    folder = tmp_path_factory.mktemp("calibrated-run")
    ok(invoke("run", write_project(folder, tiny_bert), "-o", folder / "run"))
    return folder


def read(path):
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def test_manifests_record_calibration(run):
    labels, student = read(run / "run" / "labels" / "manifest.json"), read(run / "run" / "student" / "manifest.json")
    ensemble = labels["test"]["ensemble"]
    assert {"accuracy", "macro_f1", "examples", "ece", "brier", "nll"} <= set(ensemble)
    assert ensemble["at_labelling_temperature"]["temperature"] == labels["temperature"] == 2.0
    assert set(labels["test"]["teachers_calibration"]) == set(labels["test"]["teachers"]) == set(labels["teachers"])
    assert all(set(m) == {"ece", "brier", "nll"} for m in labels["test"]["teachers_calibration"].values())
    assert labels["test"]["calibration_definitions"]["ece_bins"] == 15
    assert {"accuracy", "macro_f1", "examples", "ece", "brier", "nll"} <= set(student["test"])
    assert 0 <= student["test"]["ece"] <= 1 and 0 <= student["test"]["brier"] <= 2 and student["test"]["nll"] > 0
    assert len(student["metrics"]["losses"]) == student["metrics"]["steps"] == 3
    assert student["metrics"]["losses"][0] == student["metrics"]["loss_first"]


def test_evaluate_reports_the_manifests_calibration(run):
    from test_cli import invoke, ok, ok_json

    test = run / "test.jsonl"
    labels = read(run / "run" / "labels" / "manifest.json")["test"]
    teachers = ok_json(invoke("evaluate", run / "run" / "teachers", "--data", test, "--json"))
    for key in ("ece", "brier", "nll"):
        assert teachers["ensemble"][key] == pytest.approx(labels["ensemble"][key])
        assert teachers["ensemble"]["at_labelling_temperature"][key] == pytest.approx(labels["ensemble"]["at_labelling_temperature"][key])
        for name, metrics in labels["teachers_calibration"].items():
            assert teachers["teachers"][name][key] == pytest.approx(metrics[key])
    assert teachers["calibration_definitions"]["ece_bins"] == 15
    student = ok_json(invoke("evaluate", run / "run" / "student", "--data", test, "--json"))
    manifest = read(run / "run" / "student" / "manifest.json")["test"]
    assert student["nll"] == pytest.approx(manifest["nll"]) and student["ece"] == pytest.approx(manifest["ece"])
    text = ok(invoke("evaluate", run / "run" / "teachers", "--data", test))
    assert text.splitlines()[0].split() == ["model", "accuracy", "macro-F1", "ECE", "Brier", "NLL"]
    assert "ensemble (wmean) T=1" in text and "ensemble (wmean) T=2 (soft labels)" in text and "15 equal-width" in text


def test_evaluate_calibrate_fits_on_the_labelled_set(run):
    """T* is the NLL minimiser on data.train, recomputed here from the student's logits on that file."""
    from test_cli import invoke, ok, ok_json

    from pet.evaluation import read_examples, student_logits
    from pet.io.artifacts import read_manifest
    from pet.io.config import config_from_json

    student_dir, test = run / "run" / "student", run / "test.jsonl"
    result = ok_json(invoke("evaluate", student_dir, "--data", test, "--json", "--calibrate"))
    fitted = result["calibrated"]
    manifest = read_manifest(student_dir, "student")
    config = config_from_json(manifest["config"])
    train = read_examples(config, run / "train.jsonl", manifest["labels"], labelled=True)
    expected = fit_temperature(student_logits(student_dir, manifest, config, train), train.labels)
    assert fitted["fitted_temperature"] == pytest.approx(expected, rel=1e-4)
    assert fitted["fitted_on"] == str(run / "train.jsonl") and fitted["fit_examples"] == 8
    examples = read_examples(config, test, manifest["labels"], labelled=True)
    logits = student_logits(student_dir, manifest, config, examples)
    assert fitted["nll"] == pytest.approx(negative_log_likelihood(logits, examples.labels, fitted["fitted_temperature"]), rel=1e-4)
    teachers = ok_json(invoke("evaluate", run / "run" / "teachers", "--data", test, "--json", "--calibrate"))
    assert teachers["ensemble"]["calibrated"]["fitted_temperature"] > 0
    text = ok(invoke("evaluate", student_dir, "--data", test, "--calibrate"))
    assert "student T*=" in text and "T* = " in text and "not the distillation temperature" in text


def test_calibrate_needs_a_labelled_set(tmp_path, tiny_bert):
    from conftest import write_project
    from test_cli import failed, invoke, ok

    config = write_project(tmp_path, tiny_bert)
    ok(invoke("train-teachers", config, "-o", tmp_path / "teachers", "--teachers.zero_shot", "true", "--data.train", "null"))
    failed(invoke("evaluate", tmp_path / "teachers", "--data", tmp_path / "test.jsonl", "--calibrate"),
           "--calibrate fits a temperature on the run's labelled set", "data.train")
    failed(invoke("evaluate", config, "--data", tmp_path / "test.jsonl", "--calibrate"), "--calibrate needs a student or teachers folder")


def test_calibrate_on_a_held_out_file(tmp_path, tiny_bert):
    """--calibrate-on fits T* on the file named, not on data.train, and says which file it used."""
    import json

    from conftest import sentiment_rows, write_jsonl, write_project
    from typer.testing import CliRunner

    from pet.cli import app

    config = write_project(tmp_path, tiny_bert)
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(config), "-o", str(tmp_path / "run")]).exit_code == 0
    held_out = write_jsonl(tmp_path / "held-out.jsonl", sentiment_rows("h", 6))
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run" / "student"), "--data", str(tmp_path / "test.jsonl"),
                                 "--calibrate-on", str(held_out), "--json"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.stdout)["calibrated"]
    assert fitted["fitted_on"] == str(held_out) and fitted["fit_examples"] == 6
