"""`pet report RUN` on the tiny models: the files, and the page's numbers against the manifests."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import held_by_another_process, write_project
from test_cli import failed, invoke, ok

FIGURES = ["teachers.png", "soft_labels.png", "reliability.png", "confusion.png", "losses.png"]


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def row(html: str, table: str, key: str) -> str:
    """The HTML of the row with data-key ``key`` in the table of class ``table``."""
    body = re.search(rf'<table class="{table}">(.*?)</table>', html, re.S).group(1)
    return re.search(rf'<tr data-key="{re.escape(key)}">(.*?)</tr>', body, re.S).group(1)


def cells(html_row: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", html_row, re.S)


@pytest.fixture(scope="module")
def reported(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("reported")
    run = folder / "run"
    ok(invoke("run", write_project(folder, tiny_bert), "-o", run))
    output = ok(invoke("report", run))
    return {"folder": folder, "run": run, "output": output, "html": (run / "report" / "index.html").read_text(encoding="utf-8")}


def test_report_files(reported):
    report = reported["run"] / "report"
    assert f"report in {report / 'index.html'}" in reported["output"]
    assert {p.name for p in report.iterdir()} == {"index.html", *FIGURES}
    for name in FIGURES:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}"' in reported["html"]
    assert not list(reported["run"].glob(".tmp-*"))


def test_report_is_self_contained(reported):
    html = reported["html"]
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all((reported["run"] / "report" / s).is_file() for s in sources)


def test_teacher_rows_match_the_manifests(reported):
    teachers = read(reported["run"] / "teachers" / "manifest.json")
    labels = read(reported["run"] / "labels" / "manifest.json")
    for k, entry in enumerate(teachers["teachers"]):
        values = cells(row(reported["html"], "teachers", entry["name"]))
        assert values[0] == entry["name"]
        assert values[5] == f"{entry['weight']:.4f}"
        assert values[6] == f"{labels['weights'][k]:.4f}"
        assert values[7] == f"{entry['metrics']['train_accuracy_before']:.4f}"
        assert values[8] == f"{entry['metrics']['train_accuracy_after']:.4f}"
        assert values[9] == f"{labels['test']['teachers'][entry['name']]:.4f}"
        assert values[10] == f"{labels['test']['teachers_calibration'][entry['name']]['ece']:.4f}"
        timing = cells(row_of_text(reported["html"], "timings", f"teacher {entry['name']}"))
        assert timing[1] == f"{entry['metrics']['seconds']:.2f}"


def row_of_text(html: str, table: str, first_cell: str) -> str:
    body = re.search(rf'<table class="{table}">(.*?)</table>', html, re.S).group(1)
    return next(r for r in re.findall(r"<tr>(.*?)</tr>", body, re.S) if cells(r) and cells(r)[0] == first_cell)


def test_a_model_pet_adapt_did_not_write_has_no_adaptation_rows(reported):
    assert "adapted (pet adapt)" not in reported["html"] and "adaptation (pet adapt)" not in reported["html"]


def test_test_set_rows_match_the_manifests(reported):
    """The test table is scored afresh; on the CPU it equals what stages B and C recorded."""
    labels = read(reported["run"] / "labels" / "manifest.json")["test"]
    student = read(reported["run"] / "student" / "manifest.json")
    html = reported["html"]
    values = cells(row(html, "test", "student"))
    assert values[1:7] == [f"{student['test'][k]:.4f}" for k in ("accuracy", "macro_f1", "ece", "brier", "nll")] + [str(student["test"]["examples"])]
    ensemble = cells(row(html, "test", "ensemble (wmean), T=1"))
    assert ensemble[1:6] == [f"{labels['ensemble'][k]:.4f}" for k in ("accuracy", "macro_f1", "ece", "brier", "nll")]
    soft = cells(row(html, "test", "ensemble (wmean), T=2 (soft labels)"))
    assert soft[3:6] == [f"{labels['ensemble']['at_labelling_temperature'][k]:.4f}" for k in ("ece", "brier", "nll")]
    for name, accuracy in labels["teachers"].items():
        assert cells(row(html, "test", name))[1] == f"{accuracy:.4f}"
    assert cells(row_of_text(html, "timings", "student (stage C training)"))[1] == f"{student['metrics']['seconds']:.2f}"


def test_the_config_says_which_way_class_weights_auto_went(reported):
    from pet.core.imbalance import largest_weight

    counts = read(reported["run"] / "labels" / "manifest.json")["statistics"]["predicted_label_counts"]
    choice = read(reported["run"] / "student" / "manifest.json")["class_weights"]
    relation = ">" if choice["used"] == "balanced" else "&lt;="
    assert f"class_weights {choice['used']} (auto: largest class weight {largest_weight(counts):.2f} {relation} 2)" in reported["html"]


def test_a_run_without_ipet_has_no_ipet_label_row(reported):
    assert "ipet" not in read(reported["run"] / "teachers" / "manifest.json")  # write_project is plain PET
    assert "iPET added labels" not in reported["html"]


def test_the_config_says_which_way_ipet_label_distribution_went(tmp_path, tiny_bert):
    from pet.core.imbalance import largest_weight

    run = tmp_path / "run"
    config = write_project(tmp_path, tiny_bert, extra="ipet:\n  generations: 1\n")  # label_distribution: auto
    ok(invoke("run", config, "-o", run))
    ok(invoke("report", run))
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    record = read(run / "teachers" / "manifest.json")["ipet"]["label_distribution"]
    assert record["setting"] == "auto"
    weight = largest_weight(record["predicted_label_counts"])
    relation = ">" if record["used"] == "predicted" else "&lt;="
    assert f"<th>iPET added labels</th><td>{record['used']} (auto: largest class weight {weight:.2f} {relation} 2)</td>" in html


def test_soft_label_distribution_matches_the_manifest(reported):
    stats = read(reported["run"] / "labels" / "manifest.json")["statistics"]
    for label, count in stats["predicted_label_counts"].items():
        values = cells(row(reported["html"], "distribution", label))
        assert values[1] == str(count) and values[3] == "4"  # the labelled set has 4 of each label
    assert f"{stats['mean_agreement']:.4f}" in reported["html"]
    assert "per_label_f1.png" not in reported["html"]  # single-label: confusion matrices, no per-label F1 bars


def test_report_rewrites_an_existing_report(reported):
    (reported["run"] / "report" / "stale.txt").write_text("old")
    ok(invoke("report", reported["run"]))
    assert not (reported["run"] / "report" / "stale.txt").exists()


def test_a_report_being_written_is_not_written_twice_at_once(reported):
    before = (reported["run"] / "report" / "index.html").read_bytes()
    with held_by_another_process(reported["run"] / "report", "pet report", beside=True) as holder:
        failed(invoke("report", reported["run"]), f"pet report (pid {holder.pid} on ", "is writing this folder")
    assert (reported["run"] / "report" / "index.html").read_bytes() == before
    assert not list(reported["run"].glob(".tmp-*"))


def test_python_api(reported):
    import pet

    path = pet.report(reported["run"])
    assert path == reported["run"] / "report" / "index.html" and path.is_file()
    assert "report" in pet.__all__


def test_report_without_a_test_set(tmp_path, tiny_bert):
    run = tmp_path / "run"
    ok(invoke("run", write_project(tmp_path, tiny_bert, unlabeled=8), "-o", run, "--data.test", "null", "--teachers.steps", "1",
              "--distillation.steps", "1"))
    ok(invoke("report", run))
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "no test set" in html
    assert not (run / "report" / "reliability.png").exists() and (run / "report" / "losses.png").exists()


def test_report_needs_matplotlib(reported, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    line = failed(invoke("report", reported["run"]))
    assert line == "error: pet report needs matplotlib: pip install 'pet-fewshot[report]'"


def test_report_refuses_a_folder_without_teachers(tmp_path):
    failed(invoke("report", tmp_path), "no finished teachers stage")
