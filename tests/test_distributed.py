"""Several processes through torchrun (2 CPU processes, gloo): the same artifacts as one process.

Stage A spreads whole teachers over the ranks, stage B scores every other chunk of the data on each
rank (tiny chunks here, so that 24 texts span both ranks) and rank 0 writes one soft-label file,
stage C trains the student with DistributedDataParallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_project

import pet

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.long


def launch(config: Path, run: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PET_CHUNK_ROWS": "5", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, "-m", "pet", "run", str(config), "-o", str(run), *extra]
    else:
        command = [str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", "-m", "pet", "run", str(config),
                   "-o", str(run), *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


# The supervised member and cv weights too: the member is one more job of run_generation, and the
# fold models are split over the ranks the same way as teachers. adapt.enabled: auto with a threshold the
# tiny model's loss is above: the main process measures and adapts, every rank reads the same decision.
EXTRA = ("--teachers.supervised", "true", "--labelling.ensemble", "cv", "--teachers.cv_folds", "2",
         "--adapt.enabled", "auto", "--adapt.auto_threshold", "0.5", "--adapt.steps", "2", "--adapt.batch_size", "4")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert):
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed next to this Python")
    folder = tmp_path_factory.mktemp("distributed")
    # 2 patterns x 2 seeds = 4 pattern teachers and 2 members (supervised x 2 seeds): three per rank
    config = write_project(folder, tiny_bert, extra="")
    config.write_text(config.read_text().replace("seeds: [1]", "seeds: [1, 2]"))
    single = launch(config, folder / "one", 1, *EXTRA)
    assert single.returncode == 0, single.stderr
    double = launch(config, folder / "two", 2, *EXTRA)
    assert double.returncode == 0, double.stderr
    return folder, double


def test_two_processes_write_the_soft_labels_of_one(runs):
    folder, _ = runs
    one, two = pet.Run.load(folder / "one"), pet.Run.load(folder / "two")
    assert np.array_equal(one.soft_labels.probs, two.soft_labels.probs)
    assert np.array_equal(one.soft_labels.teacher_logits, two.soft_labels.teacher_logits)
    assert one.soft_labels.ids == two.soft_labels.ids
    strip = lambda entries: [{k: v for k, v in e.items() if k != "metrics"} | {"steps": e["metrics"]["steps"]} for e in entries]
    assert strip(one.teachers.entries) == strip(two.teachers.entries)
    assert one.soft_labels.manifest["test"]["ensemble"] == two.soft_labels.manifest["test"]["ensemble"]


def test_each_rank_trained_its_own_teachers_and_nothing_is_left_half_written(runs):
    folder, result = runs
    log = result.stderr
    # rank 0 trains teachers 1, 3 and 5, rank 1 teachers 2, 4 and 6: each teacher once
    for number in range(1, 7):
        assert log.count(f"teacher {number}/6 ") >= 1
    assert not list((folder / "two").rglob("*.tmp")) and not (folder / "two" / "labels" / ".partial").exists()
    student = pet.Student.load(folder / "two" / "student")
    assert student.manifest["metrics"]["steps"] == 3 and student.test_metrics["examples"] == 12
    assert len(student.predict(["a great movie"])) == 1


def test_a_rerun_with_two_processes_resumes(runs):
    folder, _ = runs
    again = launch(folder / "config.yaml", folder / "two", 2, *EXTRA)
    assert again.returncode == 0, again.stderr
    assert "all teachers already trained" in again.stderr and "student already trained" in again.stderr


def test_two_processes_decide_and_adapt_once_as_one_process_does(runs):
    folder, double = runs
    one, two = pet.Run.load(folder / "one"), pet.Run.load(folder / "two")
    assert one.adapt_decision == two.adapt_decision and two.adapt_decision["adapt"] is True
    assert double.stderr.count("adapt: auto: MLM loss") == 1  # measured and said by the main process only
    assert two.adapted == folder / "two" / "adapted"
    record = lambda run: json.loads((run.adapted / "adapt.json").read_text())
    assert record(one)["fingerprint"] == record(two)["fingerprint"] and record(one)["loss"] == record(two)["loss"]
    assert pet.Teachers.load(folder / "two" / "teachers").manifest["config"]["model"] == str(two.adapted.resolve())


def test_two_processes_train_the_supervised_member_and_the_folds_as_one(runs):
    folder, double = runs
    one, two = pet.Run.load(folder / "one"), pet.Run.load(folder / "two")
    assert [e["name"] for e in two.teachers.entries][-2:] == ["supervised--s1", "supervised--s2"]
    assert one.teachers.manifest["cross_validation"] == two.teachers.manifest["cross_validation"]
    assert two.soft_labels.manifest["ensemble"] == "cv"
    for number in range(1, 7):  # 3 configurations x 2 folds, each trained once
        assert double.stderr.count(f"cross-validation {number}/6 ") == 1
