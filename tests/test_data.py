"""pet.io.data.Table: random access to rows without reading the whole file (auxiliary MLM batches, iPET)."""

from __future__ import annotations

from conftest import sentiment_rows, write_jsonl

from pet.io.data import Columns, Table


def test_take_reads_rows_in_any_order_with_repeats_like_read_all(tmp_path):
    path = tmp_path / "u.jsonl"
    write_jsonl(path, sentiment_rows("u", 10, labelled=False))
    table = Table(path, "unlabeled", Columns({"text": "text"}))
    picked = table.take([7, 2, 7, 0])
    assert picked == table.read_all().take([7, 2, 7, 0])
    assert picked.ids == ["u-7", "u-2", "u-7", "u-0"] and picked.labels is None
    empty = table.take([])
    assert (empty.ids, empty.fields) == ([], {"text": []})


def test_take_without_an_id_column_names_rows_by_their_position_in_the_file(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text,label\nfirst,positive\nsecond,negative\nthird,positive\n", encoding="utf-8")
    table = Table(path, "labelled", Columns({"text": "text"}, "id", "label", ("negative", "positive")))
    picked = table.take([2, 1])
    assert (picked.ids, picked.fields["text"], picked.labels) == (["row-2", "row-1"], ["third", "second"], [1, 0])
    assert [chunk.ids for chunk in table.chunks(2)] == [["row-0", "row-1"], ["row-2"]]
