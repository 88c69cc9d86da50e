"""benchmarks/speed.py: a tiny budget on the CPU gives well-formed measurements and writes its block.

The script runs as a user runs it (a subprocess from the repository root), on the tiny random BERT
and a few agnews-like rows written here, so neither the shared model nor the shared data is needed.
It writes into a temp copy of BENCHMARKS.md, never the real one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO, write_jsonl

STAGE_KEYS = {"stage", "wall_s", "optimizer_steps", "steps_per_s", "tokens", "tokens_per_s", "sequences",
              "sequences_per_s", "model_flops", "model_flops_per_s", "mfu", "peak_memory_mib", "memory"}
TOPICS = {"World": "the world news of the city", "Sports": "sports news and the park", "Business": "business news in the city",
          "Sci/Tech": "tech news of the world"}


def without_block(text: str, workload: str = "c") -> str:
    return re.sub(f"<!-- speed:{workload}:begin -->.*?<!-- speed:{workload}:end -->", "", text, flags=re.S).rstrip("\n")


def load_speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", REPO / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def speed():
    return load_speed()


@pytest.mark.long
def test_tiny_budget_reports_every_stage_and_writes_the_block(tmp_path, tiny_bert):
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "text": f"{text} {i % 3}", "label": label}
                                                   for i, (label, text) in enumerate(list(TOPICS.items()) * 2)])
    unlabeled = write_jsonl(tmp_path / "unlabeled.jsonl", [{"id": f"u{i}", "text": f"{t} is very good"}
                                                           for i, t in enumerate(list(TOPICS.values()) * 3)])
    markdown = tmp_path / "BENCHMARKS.md"
    original = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    markdown.write_text(original, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PET_NO_PROGRESS": "1"}
    done = subprocess.run([sys.executable, "benchmarks/speed.py", "--workload", "c", "--budget", "tiny", "--model", str(tiny_bert),
                           "--train", str(train), "--unlabeled", str(unlabeled), "--texts", "16", "--threads", "1", "--peak-size", "256",
                           "--benchmarks-md", str(markdown), "--work", str(tmp_path / "work")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    peak, *stages = [json.loads(line) for line in done.stdout.splitlines()]
    assert peak["kind"] == "peak" and peak["dtype"] == "float32" and peak["peak_flops_per_s"] > 0
    assert [s["stage"] for s in stages] == ["A teachers", "B labelling", "C student"]
    for row in stages:
        assert STAGE_KEYS <= set(row) and row["device"] == "cpu" and row["workload"] == "c"
        for key in ("wall_s", "tokens", "tokens_per_s", "sequences", "sequences_per_s", "model_flops", "mfu", "peak_memory_mib"):
            assert row[key] > 0, (row["stage"], key)
    teachers, labelling, student = stages
    assert teachers["optimizer_steps"] == 2 and student["optimizer_steps"] == 2  # tiny: 1 teacher x 2 steps, 2 student steps
    assert labelling["optimizer_steps"] is None and labelling["sequences"] == 16  # 12 texts cycled to the budget's 16
    assert teachers["sequences"] == 2 * (4 + 12)  # 4 labelled + 12 auxiliary-MLM rows per step
    written = markdown.read_text(encoding="utf-8")
    assert without_block(written) == without_block(original)  # the rest of the file is left as it was
    block = written.split("<!-- speed:c:begin -->", 1)[1].split("<!-- speed:c:end -->", 1)[0]
    assert "| A teachers |" in block and "| C student |" in block and "MFU" in block and "benchmarks/speed.py" in block
    assert (REPO / "BENCHMARKS.md").read_text(encoding="utf-8") == original
    assert not any((tmp_path / "work").glob("run-*"))  # the run folder is deleted without --keep


def test_block_is_replaced_in_place(tmp_path, speed):
    path = tmp_path / "B.md"
    path.write_text("# top\n\n<!-- speed:a:begin -->\nold\n<!-- speed:a:end -->\n\ntail\n", encoding="utf-8")
    speed.write_block(path, "a", "new")
    speed.write_block(path, "c", "cpu table")
    assert path.read_text(encoding="utf-8") == ("# top\n\n<!-- speed:a:begin -->\nnew\n<!-- speed:a:end -->\n\ntail\n\n"
                                                "<!-- speed:c:begin -->\ncpu table\n<!-- speed:c:end -->\n")


def test_flop_formula_against_a_hand_count(speed):
    shape = speed.Shape(layers=2, hidden=4, intermediate=8, vocab=10)
    # per layer: Q, K, V, O (4 x 4 x 4) + two MLP matrices (2 x 4 x 8) = 128 multiply-adds per token
    assert shape.layer_params == 128
    # L = 3: 2 layers x 2 x 128 x 3 tokens + attention 4 x 2 layers x 4 x 3^2
    assert shape.encoder(3) == 2 * 2 * 128 * 3 + 4 * 2 * 4 * 9
    assert shape.mlm_head == 2 * (16 + 40) and shape.classifier_head(3) == 2 * (16 + 12)


def test_workload_a_is_the_papers_and_budgets_cut_it(speed):
    args = SimpleNamespace(workload="a", budget="full", model=None, device=None, unlabeled=None,
                           shared=str(speed.REPO.parent / "shared"), **{k: None for k in speed.COUNTS})
    full = speed.resolve(args)
    assert len(full["patterns"]) * len(full["verbalizers"]) * len(full["seeds"]) == 9
    assert (full["teachers"]["steps"], full["teachers"]["batch_size"], full["teachers"]["unlabeled_ratio"]) == (250, 4, 3)
    assert full["teachers"]["mlm_weight"] == 1e-4 and full["texts"] == 40_000
    assert (full["distillation"]["steps"], full["distillation"]["batch_size"]) == (5000, 4)
    tiny = speed.resolve(SimpleNamespace(**{**vars(args), "budget": "tiny", "steps": 3}))
    assert (len(tiny["patterns"]), len(tiny["seeds"]), tiny["teachers"]["steps"], tiny["texts"]) == (1, 1, 3, 16)


def test_random_model_follows_the_tokenizer(tmp_path, tiny_bert, speed):
    from transformers import AutoTokenizer, RobertaForMaskedLM

    folder = speed.build_random_mlm(tmp_path / "m", tiny_bert, {"num_hidden_layers": 1, "hidden_size": 8,
                                                                 "num_attention_heads": 2, "intermediate_size": 16})
    model, tokenizer = RobertaForMaskedLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == len(tokenizer) and model.config.pad_token_id == tokenizer.pad_token_id
    # RoBERTa positions start after the padding id: the tokenizer's longest input still fits
    assert model.config.max_position_embeddings >= tokenizer.model_max_length + tokenizer.pad_token_id + 1
