"""The few-shot benchmark's aggregation (benchmarks/report.py) on hand-made result lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report  # noqa: E402


def line(task, method, n=None, seed=None, accuracy=0.5, **extra):
    return {"task": task, "method": method, "n": n, "seed": seed, "accuracy": accuracy, "macro_f1": accuracy,
            "test_examples": 100, **extra}


def test_teachers_are_averaged_per_seed_then_over_seeds():
    rows = [line("sst2", "pet_teacher", 32, 1, 0.6, teacher="a"), line("sst2", "pet_teacher", 32, 1, 0.8, teacher="b"),
            line("sst2", "pet_teacher", 32, 2, 0.9, teacher="a")]
    groups = report.aggregate(rows)
    assert sorted(groups[("sst2", "pet_teacher", 32)]) == pytest.approx([0.7, 0.9])


def test_zero_shot_mean_and_best_and_repeated_lines():
    rows = [line("agnews", "zero_shot", accuracy=0.4, pattern="p", verbalizer="v"),
            line("agnews", "zero_shot", accuracy=0.6, pattern="q", verbalizer="v"),
            line("agnews", "zero_shot", accuracy=0.2, pattern="q", verbalizer="v")]  # a rerun replaces q/v
    groups = report.aggregate(rows)
    assert groups[("agnews", "zero_shot_mean", None)] == pytest.approx([0.3])
    assert groups[("agnews", "zero_shot_best", None)] == pytest.approx([0.4])


def test_targets_are_decided_only_with_both_tasks():
    rows = []
    for task in ("sst2", "agnews"):
        rows.append(line(task, "full_supervised", accuracy=0.9))
        for seed in (1, 2, 3):
            rows += [line(task, "pet_student", 32, seed, 0.85), line(task, "supervised", 32, seed, 0.70),
                     line(task, "pet_student", 10, seed, 0.80), line(task, "ipet_student", 10, seed, 0.82)]
    text = report.targets(rows)
    assert "+15.0 points" in text and "yes (stretch too)" in text
    assert "94.4%" in text
    assert "| yes |" in text  # iPET above PET at n = 10
    partial = report.targets([r for r in rows if r["task"] == "sst2"])
    assert partial.count("pending") == 4  # issue 3's three and issue 10's +10 row (its every-cell row needs no pair of tasks)


def test_report_writes_table_without_touching_other_docs(tmp_path):
    rows = [line("rte", "supervised", 10, s, 0.5 + s / 100) for s in (1, 2, 3)]
    (tmp_path / "fewshot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"before\n{report.START}\nold\n{report.END}\nafter\n")
    text = report.report(tmp_path, benchmarks_md=doc)
    assert "52.0 ± 1.0" in text
    assert (tmp_path / "table.md").read_text() == text
    assert "old" in doc.read_text()  # only the repository's own results folder refreshes BENCHMARKS.md


def test_rows_scored_on_a_test_sample_are_left_out_of_the_report(tmp_path):
    rows = [line("rte", "supervised", 10, s, 0.5 + s / 100) for s in (1, 2, 3)]
    rows.append(line("rte", "supervised", 10, 4, 0.9, test_limit=30))  # a check of the script, not a figure
    (tmp_path / "fewshot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "52.0 ± 1.0" in report.report(tmp_path, benchmarks_md=None)
    (tmp_path / "fewshot.jsonl").write_text(json.dumps(rows[-1]) + "\n")
    assert report.report(tmp_path, benchmarks_md=None) == ""


def test_cells_with_missing_seeds_are_marked_and_make_verdicts_provisional():
    rows = []
    for task in ("sst2", "agnews"):
        rows.append(line(task, "full_supervised", accuracy=0.9))
        rows += [line(task, "supervised", 32, seed, 0.70) for seed in (1, 2, 3)]
    rows += [line("agnews", "pet_student", 32, seed, 0.80) for seed in (1, 2, 3)]
    rows.append(line("sst2", "pet_student", 32, 1, 0.84))  # one of three seeds so far
    table = report.tables(rows)
    assert "| 5. PET student (distilled) | 84.0 (84.0) [1 of 3 seeds] |" in table
    assert "| 2. supervised fine-tuning on the n examples | 70.0 ± 0.0 (70.0) |" in table
    assert "[" not in table.split("7. supervised")[1].split("\n")[0]  # one-run rows are never marked
    text = report.targets(rows)
    assert "+12.0 points" in text
    assert "91.1%" in text
    assert text.count("| provisional yes (sst2 pet_student n = 32: 1 of 3 seeds) |") == 2
    assert "| iPET student > PET student at n = 10 | results missing for sst2 or agnews | pending |" in text


def test_ipet_against_pet_is_compared_on_the_seeds_both_have():
    # iPET has seed 1 only; PET's seeds 2 and 3 are far lower than its seed 1, so a mean of all of
    # PET's seeds would credit iPET with the seeds' spread (what the 2026-12-04 GPU run showed)
    rows = []
    for task, pet_seeds, ipet_seed1 in (("sst2", (0.80, 0.68, 0.70), 0.83), ("agnews", (0.74, 0.80, 0.72), 0.84)):
        rows += [line(task, "pet_student", 10, seed, acc) for seed, acc in zip((1, 2, 3), pet_seeds)]
        rows.append(line(task, "ipet_student", 10, 1, ipet_seed1))
    text = report.targets(rows)
    assert ("| iPET student > PET student at n = 10 (same seeds) | 83.5 vs 77.0 (+6.5 points; seeds sst2 1; agnews 1) | "
            "provisional yes (sst2 ipet_student n = 10: 1 of 3 seeds; agnews ipet_student n = 10: 1 of 3 seeds) |") in text
    seeds = report.by_seed(rows)
    assert report.paired_means(seeds, "ipet_student", "pet_student", 10) == pytest.approx((0.835, 0.77, "sst2 1; agnews 1"))
    assert report.paired_means(seeds, "ipet_student", "pet_student", 32) is None
    no_shared = [r for r in rows if not (r["task"] == "agnews" and r["method"] == "pet_student" and r["seed"] == 1)]
    assert report.paired_means(report.by_seed(no_shared), "ipet_student", "pet_student", 10) is None


def test_peer_rows_name_the_best_peer_and_pet_margin():
    rows = []
    for seed in (1, 2, 3):
        rows += [line("sst2", "supervised", 32, seed, 0.70), line("sst2", "supervised_st", 32, seed, 0.74),
                 line("sst2", "setfit", 32, seed, 0.80 + seed / 100), line("sst2", "pet_student", 32, seed, 0.78),
                 line("sst2", "pet_student_st", 32, seed, 0.79)]
    table = report.tables(rows)
    assert "| 2c. peer: SetFit 1.2 on all-MiniLM-L6-v2 (default recipe) | 82.0 ± 1.0 (82.0) |" in table
    assert "| 5b. PET student distilled into all-MiniLM-L6-v2 (same soft labels) | 79.0 ± 0.0 (79.0) |" in table
    assert "| best peer (of setfit, supervised, supervised_st; mean accuracy on PET's seeds) | setfit 82.0 |" in table
    assert "| **PET margin**: PET student − best peer, same seeds (points) | -4.0 |" in table


def test_each_seed_is_compared_with_its_own_best_peer():
    # SetFit wins seeds 2 and 3 by a point and loses seed 1 by far: the margin of means (+3.3) hides it
    rows = [line("newsgroups", "pet_student", 32, seed, acc) for seed, acc in ((1, 0.72), (2, 0.73), (3, 0.72))]
    rows += [line("newsgroups", "setfit", 32, seed, acc) for seed, acc in ((1, 0.60), (2, 0.74), (3, 0.73))]
    rows += [line("newsgroups", "supervised_st", 32, 1, 0.66)]  # one seed only: seed 1's best peer
    rows += [line("newsgroups", "ipet_student", 32, seed, acc) for seed, acc in ((1, 0.75), (2, 0.74))]
    table = report.tables(rows)
    assert "| **PET margin**: PET student − best peer, same seeds (points) | +3.3 |" in table
    assert ("| PET student − the best peer of each seed (points; seeds where it is ahead or level) | "
            "+6.0 / -1.0 / -1.0 (1 of 3) |") in table
    # level counts as not behind; a seed no peer ran is left out
    assert ("| iPET student − the best peer of each seed (points; seeds where it is ahead or level) | "
            "+9.0 / +0.0 (2 of 2) |") in table
    seeds = report.by_seed(rows + [line("newsgroups", "pet_student", 32, 4, 0.9)])
    assert report.seed_by_seed(seeds, "newsgroups", 32) == pytest.approx({1: 0.06, 2: -0.01, 3: -0.01})
    assert report.describe_draws({}) == "–"
    one_seed = report.tables([line("sst2", "pet_student", 32, 1, 0.8), line("sst2", "setfit", 32, 1, 0.7)])
    assert "best peer of each seed" not in one_seed  # one draw: the margin row already says it


def test_peer_margin_says_which_peers_are_missing_or_partial():
    rows = [line("agnews", "supervised", 32, seed, 0.70) for seed in (1, 2, 3)]
    rows += [line("agnews", "setfit", 32, 1, 0.60), line("agnews", "pet_student", 32, 1, 0.75)]
    table = report.tables(rows)
    # paired on PET's one seed: supervised 70.0 beats setfit 60.0 there
    assert "| best peer (of setfit, supervised, supervised_st; mean accuracy on PET's seeds) | supervised 70.0 " \
           "[supervised_st not run; on seeds 1: 1 of 3] |" in table
    assert "| **PET margin**: PET student − best peer, same seeds (points) | +5.0 [1 of 3 seeds] |" in table
    assert "2b. peer" not in table  # a peer never run leaves no row of dashes
    assert "best peer" not in report.tables([line("rte", "pet_student", 10, 1, 0.5)])  # no peer at all: no rows


def test_profile_folders_refresh_their_own_block_and_say_where_they_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPO", tmp_path)
    out = tmp_path / "benchmarks" / "results" / "cpu"
    out.mkdir(parents=True)
    rows = [line("rte", "supervised", 10, 1, 0.5, profile="cpu", device="cpu (x86_64, 2 cores, 2 threads)",
                 time="2026-12-01T22:00:00+00:00", wall_s=40.0)]
    (out / "fewshot.jsonl").write_text(json.dumps(rows[0]) + "\n")
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"{report.START}\ngrid\n{report.END}\n<!-- results:cpu:start -->\nold\n<!-- results:cpu:end -->\n")
    report.report(out, benchmarks_md=doc)
    text = doc.read_text()
    assert "grid" in text and "old" not in text
    assert "profile cpu; device cpu (x86_64, 2 cores, 2 threads); date 2026-12-01 (UTC)" in text
    assert "supervised 40 s (1)" in text


def test_seeds_are_counted_against_the_plan_when_the_run_wrote_one(tmp_path):
    rows = [line("sst2", "supervised", 32, 1, 0.7), line("sst2", "pet_student", 32, 1, 0.8)]
    (tmp_path / "fewshot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "plan.json").write_text(json.dumps({"seeds": [1, 2, 3]}))
    text = report.report(tmp_path, benchmarks_md=None)
    assert "| 5. PET student (distilled) | 80.0 (80.0) [1 of 3 seeds] |" in text
    assert "+10.0 [1 of 3 seeds]" in text


def test_issue10_targets_compare_both_students_with_the_best_peer_in_every_cell():
    rows = []
    for seed in (1, 2, 3):
        for task, setfit, pet, ipet in (("sst2", 0.70, 0.84, 0.86), ("agnews", 0.80, 0.78, 0.83), ("rte", 0.55, 0.56, None)):
            rows += [line(task, "setfit", 32, seed, setfit), line(task, "supervised", 32, seed, setfit - 0.05),
                     line(task, "pet_student", 32, seed, pet)]
            if ipet is not None:
                rows.append(line(task, "ipet_student", 32, seed, ipet))
    text = report.targets(rows)
    assert "| PET student ≥ best peer in every measured task x n (issue 10) | 2 of 3 cells; below: agnews n = 32 -2.0 | no |" in text
    assert "| PET student − best peer at n = 32: ≥ +10 points (stretch +15; issue 10) | +6.0 points (sst2 +14.0, agnews -2.0) | no |" in text
    assert ("| PET student ≥ the best peer of the same seed, on every draw (issue 10, seed by seed) | "
            "6 of 9 draws; behind: agnews n = 32 (3 of 3) | no |") in text
    assert "| iPET student ≥ best peer in every measured task x n (issue 10) | 2 of 2 cells | yes |" in text
    assert "| iPET student ≥ the best peer of the same seed, on every draw (issue 10, seed by seed) | 6 of 6 draws | yes |" in text
    assert "| iPET student − best peer at n = 32: ≥ +10 points (stretch +15; issue 10) | +9.5 points (sst2 +16.0, agnews +3.0) | no |" in text
    assert "iPET student at n = 32 / full-data ceiling" not in text  # no ceiling line yet
    rows += [line("sst2", "full_supervised", accuracy=0.9), line("agnews", "full_supervised", accuracy=0.83 / 0.95)]
    assert "| iPET student at n = 32 / full-data ceiling: ≥ 95% (issue 10) | 95.3% (sst2 95.6%, agnews 95.0%) | yes |" in report.targets(rows)
    table = report.tables(rows)
    assert "| **iPET margin**: iPET student − best peer, same seeds (points) | +3.0 |" in table  # agnews
    assert table.count("iPET margin") == 2  # not for rte, which has no iPET student
    assert "5f margin" not in table  # no balanced student was run
    rows.append(line("rte", "pet_student_balanced", 32, 2, 0.60))
    table = report.tables(rows)
    # paired on the balanced student's one seed: 60.0 against setfit's 55.0 there
    assert "| **5f margin**: balanced PET student − best peer, same seeds (points) | +5.0 |" in table
    assert table.count("5f margin") == 1


def test_tasks_outside_the_known_order_get_their_table_and_plot_after_the_known_ones(tmp_path):
    rows = [line("subj15", "pet_student", 32, 1, 0.9), line("sst2", "pet_student", 32, 1, 0.8),
            line("subj15", "pet_student_none", 32, 1, 0.85)]
    assert report.ordered_tasks(rows) == ["sst2", "subj15"]
    (tmp_path / "fewshot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = report.report(tmp_path, benchmarks_md=None)
    assert text.index("**sst2**") < text.index("**subj15**")
    assert "**subj15** (test: 100 examples, 2 classes)" in text  # subj's, the task it was cut from
    assert (tmp_path / "fewshot.png").stat().st_size > 0
