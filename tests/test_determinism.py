"""Determinism on the CPU: the same config and seeds give bit-identical teachers, soft labels and students.

Each teacher seeds itself from its own identity (pattern, verbalizer, seed), so a teacher does not
depend on which teachers ran before it: training only seed 2 gives exactly the seed-2 teacher of a
run with seeds 1 and 2. docs/reliability.md says what is and is not deterministic on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_project
from safetensors.torch import load_file
from typer.testing import CliRunner

from pet.cli import app


def invoke_ok(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("determinism")
    config = write_project(root / "project", tiny_bert)
    config.write_text(config.read_text().replace("seeds: [1]", "seeds: [1, 2]"))
    for name in ("run1", "run2"):
        invoke_ok("run", config, "-o", root / name)
    return root, config


def test_same_config_same_teachers(two_runs):
    root, _ = two_runs
    names = sorted(p.name for p in (root / "run1" / "teachers").iterdir() if p.is_dir())
    assert len(names) == 4
    for name in names:
        assert same_weights(root / "run1" / "teachers" / name / "model.safetensors", root / "run2" / "teachers" / name / "model.safetensors")
    # The comparison is meaningful: two seeds of one pattern do differ.
    assert not same_weights(root / "run1" / "teachers" / "it-was--bad-good--s1" / "model.safetensors",
                            root / "run1" / "teachers" / "it-was--bad-good--s2" / "model.safetensors")


def test_same_config_same_soft_labels(two_runs):
    import pyarrow.parquet as pq

    root, _ = two_runs
    first, second = (pq.read_table(root / name / "labels" / "soft_labels.parquet") for name in ("run1", "run2"))
    assert first.equals(second)


def test_same_config_same_student(two_runs):
    root, _ = two_runs
    assert same_weights(root / "run1" / "student" / "model.safetensors", root / "run2" / "student" / "model.safetensors")
    outputs = []
    for name in ("run1", "run2"):
        out = root / f"{name}.jsonl"
        invoke_ok("predict", root / name / "student", "--data", root / "project" / "test.jsonl", "-o", out)
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]


def test_teacher_does_not_depend_on_the_others(two_runs):
    """Seed 2 trained alone (as a resumed run would) equals seed 2 trained after seed 1."""
    root, config = two_runs
    alone = root / "seed2-alone"
    invoke_ok("train-teachers", config, "-o", alone, "--teachers.seeds", "[2]", "--patterns.ids", "[just]")
    assert same_weights(alone / "just--bad-good--s2" / "model.safetensors",
                        root / "run1" / "teachers" / "just--bad-good--s2" / "model.safetensors")
