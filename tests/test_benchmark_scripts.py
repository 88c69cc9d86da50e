"""The benchmark scripts still run against this pet: tiny budgets on the real shared model and data.

They are run as a user runs them (a subprocess from the repository root), so an API change in pet
that breaks benchmarks/fewshot.py or benchmarks/throughput.py fails here, not on a rented GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED, SHARED_DATA, SHARED_MODEL, cores_per_worker

pytestmark = [pytest.mark.long, pytest.mark.skipif(not (SHARED_MODEL.exists() and (SHARED_DATA / "rte").exists()),
                                                   reason="needs ../shared/models/minilm-l6-mlm and ../shared/data")]


def script_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PET_NO_PROGRESS": "1"}


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)


def test_fewshot_runs_a_job_and_writes_a_result_line(tmp_path):
    out = tmp_path / "results"
    done = run_script("benchmarks/fewshot.py", "--profile", "full", "--tasks", "rte", "--methods", "supervised",
                      "--ns", "10", "--seeds", "1", "--set", "supervised.steps", "2", "--set", "test_limit", "30", "--device", "cpu",
                      "--threads", "1", "--shared", str(SHARED), "--out", str(out), "--work", str(tmp_path / "work"))
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = [json.loads(line) for line in (out / "fewshot.jsonl").read_text().splitlines()]
    # 30 of rte's 277 test pairs, and the row says it was a sample
    assert (row["task"], row["n"], row["seed"], row["method"], row["test_examples"]) == ("rte", 10, 1, "supervised", 30)
    assert row["test_limit"] == 30
    assert "model" not in row  # the benchmark's own model; a line says its model only when --model names another
    assert row["config"]["steps"] == 2 and row["config"]["train_examples"] == 10
    assert 0.0 <= row["accuracy"] <= 1.0 and row["wall_s"] > 0
    # each class's F1 (rounded), whose mean is the macro-F1
    assert set(row["per_class_f1"]) == {"entailment", "not_entailment"}
    assert sum(row["per_class_f1"].values()) / 2 == pytest.approx(row["macro_f1"], abs=1e-4)
    assert not (out / "failures.jsonl").exists()
    # a rerun resumes: the finished job is skipped, nothing is appended
    again = run_script("benchmarks/fewshot.py", "--profile", "full", "--tasks", "rte", "--methods", "supervised",
                       "--ns", "10", "--seeds", "1", "--device", "cpu", "--shared", str(SHARED), "--out", str(out),
                       "--work", str(tmp_path / "work"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 jobs" in again.stderr
    assert len((out / "fewshot.jsonl").read_text().splitlines()) == 1


def test_fewshot_stopped_by_sigterm_stops_its_workers_too(tmp_path):
    """Workers left running after their run was stopped went on writing into its run folders."""
    import signal
    import time

    import psutil

    running: list[psutil.Process] = []
    proc = subprocess.Popen([sys.executable, "benchmarks/fewshot.py", "--profile", "cpu", "--tasks", "rte", "--methods",
                             "supervised", "--seeds", "1", "2", "--jobs", "2", "--threads", "1", "--device", "cpu",
                             "--shared", str(SHARED), "--out", str(tmp_path / "results"), "--work", str(tmp_path / "work")],
                            cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def workers() -> list[psutil.Process]:
            return [child for child in psutil.Process(proc.pid).children()
                    if "spawn_main" in " ".join(child.cmdline())]
        deadline = time.monotonic() + 120
        while len(workers()) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        running = workers()
        assert len(running) == 2  # both jobs (250 supervised steps each) are still far from done
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(running, timeout=30)
        assert alive == []
    finally:  # a failing run must not leave its processes behind either
        for process in running:
            if process.is_running():
                process.kill()
        if proc.poll() is None:
            proc.kill()


def test_throughput_reports_steps_per_second():
    done = run_script("benchmarks/throughput.py", "--procs", "1", "--steps", "3", "--device", "cpu", "--shared", str(SHARED))
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (row["procs"], row["steps_per_teacher"], row["threads_per_proc"]) == (1, 3, 1)
    assert row["steps_per_s"] == pytest.approx(3 / row["wall_s"], rel=0.02)
    assert row["device"].startswith("cpu") and row["peak_gpu_mib_per_proc"] is None
    assert "teacher steps/s in total" in done.stderr


def test_fewshot_pet_job_measures_the_student_levers_on_the_same_soft_labels(tmp_path, tiny_bert):
    out = tmp_path / "results"
    # sst2 (128 tokens) and samples of its pools on the tiny BERT (--model): the pipeline and its
    # records are checked, not the numbers
    done = run_script("benchmarks/fewshot.py", "--profile", "cpu", "--tasks", "sst2", "--methods", "pet", "--seeds", "1",
                      "--set", "teachers.steps", "2", "--set", "distillation.steps", "2", "--set", "unlabeled_limit", "40",
                      "--set", "test_limit", "24", "--set", "student_st", "false", "--device", "cpu", "--threads", str(cores_per_worker()),
                      "--model", str(tiny_bert), "--shared", str(SHARED), "--out", str(out), "--work", str(tmp_path / "work"))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["method"]: row for row in map(json.loads, (out / "fewshot.jsonl").read_text().splitlines())}
    assert {"pet_ensemble", "pet_student", "pet_student_gold", "pet_student_self_train"} <= set(rows)
    assert rows["pet_student_gold"]["config"]["distillation"]["gold_weight"] == 1.0
    assert rows["pet_student_self_train"]["lever"] == {"distillation.self_training_rounds": 1,
                                                       "distillation.self_training_threshold": 0.9}
    # every line is scored on the same 24-example sample of the test set, and says the --model it ran on
    assert {rows[m]["test_examples"] for m in rows} == {24}
    assert {rows[m]["model"] for m in rows} == {str(tiny_bert)}


def test_a_profile_can_name_its_own_verbalizers_file(tmp_path):
    """cpu_weak (the supervised member's stress test) swaps sst2's verbalizers file for the uninformative one."""
    import argparse

    sys.path.insert(0, str(REPO / "benchmarks"))
    import fewshot

    args = argparse.Namespace(data=str(SHARED_DATA), out=str(tmp_path), device="cpu", model=str(SHARED_MODEL), work=str(tmp_path))
    weak = fewshot.Job(args, fewshot.PROFILES["cpu_weak"], "sst2")
    config = weak.run_config(SHARED_DATA / "sst2" / "fewshot" / "n32-s1.jsonl", SHARED_DATA / "sst2" / "unlabeled.jsonl")
    assert Path(config.verbalizers.file) == REPO / "benchmarks" / "stress" / "sentiment-colours.yaml"
    assert Path(config.patterns.file) == REPO / "patterns" / "sentiment.yaml"  # the patterns stay the task's own
    assert (config.patterns.ids, config.verbalizers.ids) == (["it-was", "it-was-prefix"], ["blue-green"])
    assert config.effective_ipet.generations == 0  # the pet lines are plain PET; the ipet job asks for its generations
    assert weak.labels() == ["negative", "positive"]
    usual = fewshot.Job(args, fewshot.PROFILES["cpu_auto"], "sst2")
    assert usual.definitions("verbalizers") == REPO / "verbalizers" / "sentiment.yaml"


def test_the_benchmarks_ipet_rule_is_pets_auto(tmp_path):
    """fewshot.py keeps its own copy of the rule (it also runs older versions of pet); it must stay pet's."""
    import argparse

    sys.path.insert(0, str(REPO / "benchmarks"))
    import fewshot

    from pet.io.config import IpetConfig

    args = argparse.Namespace(data=str(SHARED_DATA), out=str(tmp_path), device="cpu", model=str(SHARED_MODEL), work=str(tmp_path))
    job = fewshot.Job(args, fewshot.PROFILES["full"], "sst2")
    auto = IpetConfig(generations="auto", growth=fewshot.PROFILES["full"]["ipet"]["growth"])
    assert [job.ipet_generations(n) for n in (1, 10, 32, 40, 100, 200, 999)] == [auto.count(n) for n in (1, 10, 32, 40, 100, 200, 999)]


def test_runs_into_different_results_folders_never_share_run_folders(tmp_path):
    """The default --work is one folder per (profile, --out): two fewshot.py runs side by side, into
    different results folders, can neither mix their run folders nor delete each other's when one ends."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fewshot

    a, b = fewshot.default_work("cpu_auto", tmp_path / "a"), fewshot.default_work("cpu_auto", tmp_path / "b")
    assert a != b and a.parent == b.parent and a.name.startswith("pet-fewshot-cpu_auto-")
    assert fewshot.default_work("cpu_auto", tmp_path / "a") == a  # a rerun into the same folder finds its runs
    assert fewshot.default_work("cpu", tmp_path / "a") != a


def test_the_priority_order_runs_pet_on_every_task_before_ipet():
    """Issue 10's targets need PET against its peers on every task at n = 10 and 32 (rte too), then
    iPET against PET at n = 10: a run stopped early by a device's time limit must leave those cells."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fewshot

    jobs = fewshot.plan(fewshot.PROFILES["gpu_auto"], done={("sst2", "pet", 32, 1)})
    kinds = [(task, kind, n) for task, kind, n, _ in jobs]
    pet = [i for i, (_, kind, _n) in enumerate(kinds) if kind == "pet"]
    assert len(pet) == 17 and pet == list(range(17))  # every PET cell first (one already done)
    assert {task for task, kind, _n in kinds[:17]} == {"sst2", "agnews", "rte"}
    assert kinds[:3] == [("sst2", "pet", 32)] * 2 + [("sst2", "pet", 10)]  # the longest first
    assert {(task, n) for task, kind, n in kinds[17:23]} == {("sst2", 10), ("agnews", 10)}  # then iPET at n = 10
    assert len(jobs) == 35
