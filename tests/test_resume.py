"""Crash safety: a `pet run` killed at any stage and run again gives exactly the uninterrupted result.

Real processes, real signals: `python -m pet run CONFIG -o RUN` on the tiny BERT is SIGKILLed once in
each stage (A: after the first teacher is saved, B: after the first teacher's scores are saved, C:
while the student trains), then run again to completion. The result must match a run that was never
interrupted, bit for bit: teacher weights, soft labels and student weights and predictions. Teachers
that were finished before a kill must not be retrained (their files keep their mtimes). Ctrl-C
(SIGINT) must leave the same clean state, exit with 130 and print one line saying how to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, write_project

TIMEOUT = 600  # seconds for one process; generous because CI machines may be busy


def pet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PET_NO_PROGRESS": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
                # One thread: the tiny model gains nothing from more, and a busy machine loses a lot.
                "OMP_NUM_THREADS": "1"})
    return env


def start(config: Path, run: Path, log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "pet", "run", str(config), "-o", str(run)], cwd=config.parent,
                            env=pet_env(), stdout=handle, stderr=subprocess.STDOUT, preexec_fn=default_sigint)


def default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &`, nohup, some CI
    runners) passes SIGINT on as ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(config: Path, run: Path, log: Path) -> str:
    process = start(config, run, log)
    try:
        code = process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert code == 0, output
    return output


def interrupt_when(process: subprocess.Popen, ready, sig: int, log: Path, delay: float = 0.0) -> int:
    """Send ``sig`` as soon as ``ready()`` is true (after ``delay``); returns the exit code."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the process ended (code {process.returncode}) before the kill point:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the kill point")
        time.sleep(0.005)
    if delay:
        time.sleep(delay)
    process.send_signal(sig)
    return process.wait(TIMEOUT)


def teacher_folders(run: Path) -> list[Path]:
    folder = run / "teachers"
    if not folder.exists():
        return []
    # Not the hidden temporary folders that a teacher is written into before its rename.
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "teacher.json").exists())


def partial_scores(run: Path) -> list[Path]:
    folder = run / "labels" / ".partial"
    return sorted(folder.glob("*.safetensors")) if folder.exists() else []


def mtimes(folders: list[Path]) -> dict[str, int]:
    return {str(f): f.stat().st_mtime_ns for folder in folders for f in folder.rglob("*")}


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(a: Path, b: Path) -> None:
    import torch

    left, right = tensors(a), tensors(b)
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), f"{a} and {b} differ in {key}"


def assert_same_results(run: Path, reference: Path) -> None:
    import pyarrow.parquet as pq

    names = [p.name for p in teacher_folders(reference)]
    assert [p.name for p in teacher_folders(run)] == names
    for name in names:
        assert_same_tensors(run / "teachers" / name / "model.safetensors", reference / "teachers" / name / "model.safetensors")
    ours, theirs = pq.read_table(run / "labels" / "soft_labels.parquet"), pq.read_table(reference / "labels" / "soft_labels.parquet")
    assert ours.column_names == theirs.column_names
    for column in ours.column_names:
        assert ours.column(column).equals(theirs.column(column)), f"soft-label column {column} differs"
    assert_same_tensors(run / "student" / "model.safetensors", reference / "student" / "model.safetensors")
    assert predictions(run) == predictions(reference)
    leftovers = [p for p in run.rglob("*") if p.name.startswith(".tmp") or p.name == ".partial" or p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def predictions(run: Path) -> list[str]:
    from typer.testing import CliRunner

    from pet.cli import app

    out = run.parent / f"{run.name}-predictions.jsonl"
    result = CliRunner().invoke(app, ["predict", str(run / "student"), "--data", str(run.parent / "project" / "test.jsonl"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text().splitlines()


def run_in_process(config: Path, run: Path) -> None:
    """The uninterrupted reference, in this process with one thread like the subprocesses."""
    import torch
    from typer.testing import CliRunner

    from pet.cli import app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["run", str(config), "-o", str(run)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def resumable(tmp_path_factory, tiny_bert):
    """A project with enough work per stage to be stopped inside it, and its uninterrupted run."""
    root = tmp_path_factory.mktemp("resume")
    config = write_project(root / "project", tiny_bert, unlabeled=400, test=40)
    text = config.read_text()
    text = text.replace("seeds: [1]", "seeds: [1, 2]").replace("  steps: 3\n  batch_size: 4\n  max_length: 64\nlabelling",
                                                              "  steps: 8\n  batch_size: 4\n  max_length: 64\nlabelling")
    text = text.replace("distillation:\n  steps: 3", "distillation:\n  steps: 120")
    config.write_text(text)
    reference = root / "reference"
    run_in_process(config, reference)
    assert len(teacher_folders(reference)) == 4
    return root, config, reference


@pytest.mark.long
def test_sigkill_and_ctrl_c_in_each_stage_then_resume(resumable):
    root, config, reference = resumable
    run = root / "killed"
    log = root / "killed.log"

    # Stage A, SIGKILL right after the first teacher is complete.
    code = interrupt_when(start(config, run, log), lambda: teacher_folders(run), signal.SIGKILL, log)
    assert code == -signal.SIGKILL
    assert not (run / "teachers" / "manifest.json").exists()
    done = teacher_folders(run)
    assert 1 <= len(done) < 4
    before = mtimes(done)

    # Stage A again, Ctrl-C once one more teacher is complete: exit 130 and one line on how to resume.
    code = interrupt_when(start(config, run, log), lambda: len(teacher_folders(run)) > len(done), signal.SIGINT, log)
    output = log.read_text()
    assert code == 130, output
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "run the same command again to resume" in last, output
    assert "already trained, skipped" in output
    assert mtimes(done) == before, "a finished teacher was retrained"
    assert not [p for p in run.rglob("*") if p.name.startswith(".tmp") or p.name.endswith(".tmp")], "temporary files left"
    assert not (run / "teachers" / "manifest.json").exists()
    done = teacher_folders(run)
    before = mtimes(done)

    # Stage B, SIGKILL right after the first teacher's scores are saved.
    code = interrupt_when(start(config, run, log), lambda: partial_scores(run), signal.SIGKILL, log)
    assert code == -signal.SIGKILL
    assert mtimes(done) == before, "a finished teacher was retrained"
    assert (run / "teachers" / "manifest.json").exists()
    assert not (run / "labels" / "manifest.json").exists()
    teachers_after_a = mtimes(teacher_folders(run))

    # Stage C, SIGKILL as the student starts training (its 120 steps follow that message).
    code = interrupt_when(start(config, run, log), lambda: "distilling" in log.read_text(), signal.SIGKILL, log)
    assert code == -signal.SIGKILL
    assert "scores already computed" in log.read_text()
    assert not (run / "student" / "manifest.json").exists()
    assert not (run / "labels" / ".partial").exists()

    output = finish(config, run, log)
    assert "all teachers already trained" in output and "soft labels already written" in output
    assert mtimes(teacher_folders(run)) == teachers_after_a
    assert_same_results(run, reference)


def test_resume_ignores_scores_of_other_settings(tmp_path, tiny_bert):
    """Saved per-teacher scores are reused only if computed for the same teachers and labelling settings."""
    import json

    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from pet.cli import app

    config = write_project(tmp_path / "project", tiny_bert)
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, ["train-teachers", str(config), "-o", str(run / "teachers")]).exit_code == 0
    clean = runner.invoke(app, ["label", str(run / "teachers"), "-o", str(run / "clean")])
    assert clean.exit_code == 0, clean.output
    # Leftovers of an interrupted stage B with other settings (say --labelling.max_length 16), same names.
    partial = run / "labels" / ".partial"
    partial.mkdir(parents=True)
    for entry in json.loads((run / "teachers" / "manifest.json").read_text())["teachers"]:
        save_file({"unlabeled": torch.zeros(24, 2), "test": torch.zeros(12, 2)}, str(partial / f"{entry['name']}.safetensors"),
                  metadata={"stamp": "computed with other settings"})
    result = runner.invoke(app, ["label", str(run / "teachers"), "-o", str(run / "labels")])
    assert result.exit_code == 0, result.output
    assert "scores already computed" not in result.output
    assert pq.read_table(run / "labels" / "soft_labels.parquet").equals(pq.read_table(run / "clean" / "soft_labels.parquet"))
    assert not partial.exists()
