"""Stages A and B stream: their memory does not grow with the texts of the unlabeled file.

A fast stand-in for benchmarks/label_memory.py (which measures peak RSS on 300,000 lines). Python's
tracemalloc counts the Python objects that streaming must avoid keeping: texts, ids and token-id
lists. Stage B runs on 500 and on 3,000 unlabeled texts, in chunks of 250 rows; the growth of its
peak between the two must be a small fraction of what holding 3,000 texts and their token ids
costs, measured the same way. Stage A is checked the same way with the two features that read the
unlabeled set there: the auxiliary MLM loss (random batches) and iPET (scoring the whole set).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from conftest import write_project
from typer.testing import CliRunner

from pet.io.artifacts import read_manifest
from pet.cli import app

ADJECTIVES = ["great", "good", "excellent", "wonderful", "awesome", "fine", "terrible", "bad", "awful", "boring", "poor", "dull"]
pytestmark = pytest.mark.long

SMALL, LARGE, CHUNK = 500, 3_000, 250  # texts in the two unlabeled files; rows per chunk read
NOUNS = ["movie", "film", "book", "food", "hotel", "story", "plot", "acting", "service", "room", "place", "music"]


def project_with_texts(root: Path, model: Path, count: int, mlm_weight: float = 0.0, extra: str = "") -> Path:
    """The test project with ``count`` generated unlabeled texts (``extra``: more config lines)."""
    config = write_project(root, model, extra=extra)
    config.write_text(config.read_text().replace("teachers:\n", f"teachers:\n  mlm_weight: {mlm_weight}\n"))
    with (root / "unlabeled.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(count):
            text = f"the {NOUNS[(i // 12) % 12]} was {ADJECTIVES[i % 12]} and the {NOUNS[i % 12]} {ADJECTIVES[(i // 144) % 12]}"
            handle.write(json.dumps({"id": f"u-{i}", "text": text}) + "\n")
    return config


def teachers_for(root: Path, model: Path, count: int) -> Path:
    config = project_with_texts(root, model, count)
    teachers = root / "run" / "teachers"
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(teachers), "--patterns.ids", "[it-was]"])
    assert result.exit_code == 0, result.output
    return teachers


def traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_labelling_memory_does_not_grow_with_the_texts(tmp_path, tiny_bert, monkeypatch):
    import torch

    import pet.io.data
    import pet.stages.labelling.stage

    monkeypatch.setattr(pet.io.data, "CHUNK", CHUNK)
    monkeypatch.setattr(pet.io.data, "ID_BLOCK", CHUNK)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from more, and a busy machine loses a lot
    try:
        run_comparison(tmp_path, tiny_bert)
    finally:
        torch.set_num_threads(threads)


def run_comparison(tmp_path: Path, tiny_bert: Path) -> None:
    import pet.stages.labelling.stage
    from pet.io.config import config_from_json
    from pet.io.data import open_table

    small, large = teachers_for(tmp_path / "small", tiny_bert, SMALL), teachers_for(tmp_path / "large", tiny_bert, LARGE)
    # A first run warms caches (imports, datasets' Arrow conversion is per file, so convert both first).
    for teachers in (small, large):
        manifest = read_manifest(teachers, "teachers")
        open_table(config_from_json(manifest["config"]), Path(manifest["config"]["data"]["unlabeled"]), "unlabeled", None, False)
    pet.stages.labelling.stage.label(small, tmp_path / "warm")
    peaks = {name: traced_peak(lambda t=t, name=name: pet.stages.labelling.stage.label(t, tmp_path / f"labels-{name}"))
             for name, t in (("small", small), ("large", large))}

    in_memory = holding_everything(read_manifest(large, "teachers"))
    growth = peaks["large"] - peaks["small"]
    print(f"stage B traced peak: {peaks}; all texts and token ids in memory: {in_memory}")
    assert growth < in_memory / 5, f"stage B grew by {growth} bytes for {LARGE - SMALL:,} more texts; holding them costs {in_memory}"


def holding_everything(manifest: dict) -> int:
    """Traced peak of what streaming avoids: every text of the unlabeled file and its token ids at once."""
    from pet.io.config import config_from_json
    from pet.core.encoding import PatternEncoder
    from pet.core.modeling import load_tokenizer
    from pet.io.patterns import pattern_from_json
    from pet.io.data import open_table

    config = config_from_json(manifest["config"])
    tokenizer = load_tokenizer(config.model)

    def everything() -> None:
        examples = open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False).read_all()
        encoded = PatternEncoder(pattern_from_json(manifest["patterns"][0]), tokenizer, 64).encode(examples)
        assert len(encoded) == LARGE

    cost = traced_peak(everything)
    assert cost > 1_000_000  # the comparison means something: 3,000 texts and token ids take megabytes
    return cost


def test_stage_a_memory_does_not_grow_with_the_texts(tmp_path, tiny_bert, monkeypatch):
    """Auxiliary MLM batches and iPET's scoring of the unlabeled set read it from disk, a chunk at a time."""
    import pet.io.data
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    monkeypatch.setattr(pet.io.data, "CHUNK", CHUNK)
    monkeypatch.setattr(pet.io.data, "ID_BLOCK", CHUNK)
    configs = {}
    for name, count in (("small", SMALL), ("large", LARGE)):
        configs[name] = load_config(project_with_texts(tmp_path / name, tiny_bert, count, 0.5, "ipet:\n  generations: 1\n"))
        train_teachers(configs[name], tmp_path / name / "warm")  # converts the file to Arrow, warms caches
    peaks = {name: traced_peak(lambda name=name: train_teachers(configs[name], tmp_path / name / "teachers"))
             for name in configs}
    manifest = read_manifest(tmp_path / "large" / "teachers", "teachers")
    assert manifest["ipet"]["final_generation"] == 1 and manifest["config"]["teachers"]["mlm_weight"] == 0.5
    in_memory = holding_everything(manifest)
    growth = peaks["large"] - peaks["small"]
    print(f"stage A traced peak: {peaks}; all texts and token ids in memory: {in_memory}")
    assert growth < in_memory / 5, f"stage A grew by {growth} bytes for {LARGE - SMALL:,} more texts; holding them costs {in_memory}"
