"""`pet check`: exact lines and exit codes on tiny offline models (tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl, write_project
from typer.testing import CliRunner

import pet
from pet.cli import app

DISTINCT_TEST = [{"id": f"t-{i}", "text": text, "label": label} for i, (text, label) in
                 enumerate([("the music was fine", "positive"), ("a dull plot", "negative")] * 3)]


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_bert):
    """The sentiment project with a test set that shares no text with the labelled set."""
    folder = tmp_path_factory.mktemp("check-clean")
    config = write_project(folder, tiny_bert)
    write_jsonl(folder / "test.jsonl", DISTINCT_TEST)
    return config


@pytest.fixture(scope="module")
def clean_report(clean):
    return pet.check(clean)


def lines(report) -> list[str]:
    return report.render().splitlines()


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_clean_project_passes_with_exact_lines(clean_report):
    text = lines(clean_report)
    assert clean_report.passed
    for expected in [
        "=== Labelled set ===",
        "✔ label counts: negative 4, positive 4 (imbalance 1.0 : 1)",
        "✔ no labelled text is in the test set (6 texts)",
        'ℹ it-was: "{text} It was {mask}." uses 6 of 64 tokens before any text; with the text: median 9, longest 12',
        "  positive: [CLS] a great movie it was [MASK]. [SEP]  (9 tokens)",
        "  negative: [CLS] just [MASK]! a terrible movie [SEP]  (8 tokens)",
        "✔ it-was: no labelled example is truncated at teachers.max_length 64",
        "✔ bad-good with it-was: bad -> bad, good -> good",
        "✔ bad-good with just: bad -> bad, good -> good",
    ]:
        assert expected in text
    assert text[-1].startswith("✔ ") and text[-1].endswith(", 0 errors")


def test_leakage_into_unlabeled_warns(clean_report):
    assert ("⚠ 8 of 8 labelled texts are also in the unlabeled set (24 texts), e.g. train-0, train-1, train-2, ...: "
            "harmless for PET's labelling, but the student then trains on these texts twice") in lines(clean_report)


def test_zero_shot_and_ranking_sections(clean_report):
    sections = {s.title: s for s in clean_report.sections}
    zero_shot = sections["Zero-shot accuracy on the labelled set (no training)"].lines
    assert [line.data["pattern"] for line in zero_shot] == ["it-was", "just"]
    assert all(line.text.startswith(f"{line.data['pattern']} x bad-good: accuracy {line.data['accuracy']:.4f}") for line in zero_shot)
    ranking = sections["Pattern ranking by pseudo-perplexity (label-free)"].lines
    ranked = [line.data for line in ranking if line.status == "info"]
    assert [r["rank"] for r in ranked] == [1, 2] and ranked[0]["perplexity"] <= ranked[1]["perplexity"]
    assert {r["pattern"] for r in ranked} == {"it-was", "just"}


def test_json_form(clean):
    code, out, _ = run("check", clean, "--json")
    data = json.loads(out)
    assert code == 0 and data["passed"] is True and data["summary"]["errors"] == 0
    titles = [s["title"] for s in data["sections"]]
    assert titles[:3] == ["Config", "Labelled set", "Leakage"]
    assert {"status": "ok", "text": "✔ label counts"[2:] + ": negative 4, positive 4 (imbalance 1.0 : 1)",
            "data": {"counts": {"negative": 4, "positive": 4}, "imbalance": 1.0}} in data["sections"][1]["lines"]


def test_test_leakage_fails_with_exit_code_1(project):
    code, out, _ = run("check", project)
    assert code == 1
    assert ("✘ 8 of 8 labelled texts are also in the test set (12 texts), e.g. train-0, train-1, train-2, ...: "
            "remove them from one of the files, or the test accuracy is inflated") in out.splitlines()
    assert out.splitlines()[-1].endswith(", 1 error")


def test_multi_token_word_fails_with_the_fix(clean, tmp_path):
    verbalizers = tmp_path / "v.yaml"
    verbalizers.write_text("labels: [negative, positive]\nverbalizers:\n  - id: mine\n    words: {negative: [bad], positive: [goods]}\n")
    code, out, _ = run("check", clean, "--verbalizers.file", verbalizers)
    assert code == 1
    assert ("✘ mine with it-was: 'goods' (positive) is 2 tokens ['good', '##s']; choose a single-token word, "
            "or set teachers.multi_token: true to score it with 2 masks") in out.splitlines()
    code, out, _ = run("check", clean, "--verbalizers.file", verbalizers, "--teachers.multi_token", "true")
    assert code == 0 and "✔ mine with it-was: bad -> bad, goods -> good ##s" in out.splitlines()


def test_a_word_of_two_labels_is_a_config_error(clean, tmp_path):
    verbalizers = tmp_path / "v.yaml"
    verbalizers.write_text("labels: [negative, positive]\nverbalizers:\n  - id: same\n    words: {negative: [bad], positive: [good, bad]}\n")
    code, out, err = run("check", clean, "--verbalizers.file", verbalizers)
    assert code == 1 and out == "" and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_truncation_is_counted_and_marked(clean):
    code, out, _ = run("check", clean, "--teachers.max_length", "9")
    text = out.splitlines()
    assert code == 0
    assert ("⚠ it-was: 2 of 8 labelled examples are truncated at teachers.max_length 9 (by 3.0 tokens on average, "
            "at most 3, in 'train-5'); raise teachers.max_length if the end of the text matters") in text
    code, out, _ = run("check", clean, "--teachers.max_length", "8")
    assert "  negative: [CLS] a terrible [...1 token cut...] it was [MASK]. [SEP]  (8 tokens)" in out.splitlines()


def test_imbalance_and_data_option(clean, tmp_path):
    rows = [{"id": f"d-{i}", "text": "a great movie" if i < 6 else "a boring book", "label": "positive" if i < 6 else "negative"}
            for i in range(8)]
    data = write_jsonl(tmp_path / "other.jsonl", rows)
    code, out, _ = run("check", clean, "--data", data)
    text = out.splitlines()
    assert code == 0, out
    assert f"ℹ 8 labelled examples in {data}" in text
    assert ("ℹ with 8 labelled examples, consider iPET (ipet.generations: auto): at 10 it lifted the student by 3.5-8.6 "
            "points in BENCHMARKS.md, for about 3x the teachers' time") in text
    assert not any("iPET" in line and "generations after the first" in line for line in text)  # plain PET
    code, out, _ = run("check", clean, "--data", data, "--ipet.generations", "auto")
    assert code == 0 and "consider iPET" not in out, out  # already on
    # 8 labelled x 5^3 = 1000: 992 pseudo-labelled examples from the 24 unlabeled texts
    assert ("ℹ iPET: 3 generations after the first; the last trains each teacher on 1000 examples (8 labelled + 992 "
            "labelled by other teachers), and stage A trains 4 times the teachers of plain PET (ipet.generations: 0); "
            "the 24 unlabeled texts are too few to draw them once, so each is drawn about 41.3 times") in out.splitlines(), out
    many = write_jsonl(tmp_path / "many.jsonl", rows + [{**r, "id": f"e-{i}"} for i, r in enumerate(rows)])
    code, out, _ = run("check", clean, "--data", many)
    assert code == 0 and "ℹ 16 labelled examples" in out and "consider iPET" not in out, out
    default = clean.parent / "default.yaml"  # no ipet section: pet's default
    default.write_text(clean.read_text().replace("ipet:\n  generations: 0\n", ""), encoding="utf-8")
    code, out, _ = run("check", default, "--data", many)
    assert code == 0 and ("ℹ iPET (pet's default): 3 generations after the first; the last trains each teacher on 2000 "
                          "examples (16 labelled + 1984 labelled by other teachers)") in out, out
    code, out, _ = run("check", default, "--data", many, "--patterns.ids", "[it-was]", "--teachers.seeds", "[1]")
    assert code == 0 and ("ℹ plain PET: iPET needs at least two teachers per generation, since each is taught by the "
                          "others, and this run has 1 (1 pattern x verbalizer pair x 1 seed); for iPET, pet's default, add a "
                          "pattern, a verbalizer or a teachers.seeds entry") in out.splitlines(), out
    assert "generations after the first" not in out and "consider iPET" not in out
    assert ("⚠ label counts: negative 2, positive 6; imbalanced 3.0 : 1 (add examples of 'negative', "
            "or expect a bias towards the larger labels)") in text


def test_doubled_punctuation_warns(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    write_jsonl(tmp_path / "test.jsonl", DISTINCT_TEST)
    rows = [{"id": f"p-{i}", "text": "a great movie." if i % 2 else "a dull plot.", "label": "positive" if i % 2 else "negative"}
            for i in range(4)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    (tmp_path / "patterns.yaml").write_text('patterns:\n  - id: all\n    template: "{text}. All in all, it was {mask}."\n')
    code, out, _ = run("check", config)
    assert ("⚠ all: 4 of 4 labelled examples end {text} with punctuation right before the pattern's '.', which doubles it "
            "(\"...ll plot..\"); add strip_final_punctuation: [text] to the pattern") in out.splitlines()
    assert "  negative: [CLS] a dull plot.. all in all, it was [MASK]. [SEP]  (15 tokens)" in out.splitlines()


def test_config_errors_are_one_line(clean, tmp_path):
    code, _, err = run("check", clean, "--teachers.step", "5")
    assert code == 1 and err.strip() == "error: --teachers.step: unknown setting; did you mean --teachers.steps?"
    code, _, err = run("check", tmp_path / "missing.yaml")
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_api_returns_a_report(clean_report):
    assert isinstance(clean_report, pet.CheckReport)
    data = clean_report.to_json()
    assert data["passed"] is True and [s["title"] for s in data["sections"]] == [s.title for s in clean_report.sections]


def test_the_domain_section_says_what_adapt_auto_would_decide(clean_report, clean):
    from pet.io.config import load_config
    from pet.tools.domain import unlabeled_mlm_loss

    [line, detail] = {s.title: s for s in clean_report.sections}["Unlabeled text against the model's own (masked-LM loss)"].lines
    expected = unlabeled_mlm_loss(load_config(clean))  # the number pet run's adapt.enabled: auto would decide on
    assert line.status == "info" and line.data["mlm_loss"] == round(expected.loss, 4) and line.data["texts"] == 24
    # the tiny model's untrained head: far above any threshold a real model's own text gets
    assert line.text == (f"MLM loss {expected.loss:.2f} on 24 unlabeled texts, above adapt.auto_threshold 4.3: adapt.enabled: "
                         "auto adapts the model on it before stage A (or run pet adapt and use the result as model:)")
    assert detail.text.startswith("(adapt.enabled is false in this config;")
    low = pet.check(clean, overrides={"adapt.auto_threshold": 1000.0})
    [line, _] = {s.title: s for s in low.sections}["Unlabeled text against the model's own (masked-LM loss)"].lines
    assert line.text.endswith("not above adapt.auto_threshold 1000: adapt.enabled: auto trains from the model as it is")


def test_ranking_examples_sets_the_ranking_sample_and_zero_skips_it(clean):
    from pet.tools.perplexity import MAX_EXAMPLES

    code, out, _ = run("check", clean, "--json", "--ranking-examples", "0")
    sections = {s["title"]: s["lines"] for s in json.loads(out)["sections"]}
    assert code == 0
    assert sections["Pattern ranking by pseudo-perplexity (label-free)"] == [
        {"status": "info", "text": "skipped (--ranking-examples 0)"}]
    code, out, _ = run("check", clean, "--json", "--ranking-examples", "5")
    [detail] = [line for line in {s["title"]: s["lines"] for s in json.loads(out)["sections"]}
                ["Pattern ranking by pseudo-perplexity (label-free)"] if line["status"] == "detail"]
    assert code == 0 and {r["examples"] for r in detail["data"]["results"]} == {5}
    code, _, err = run("check", clean, "--ranking-examples", "-1")
    assert code == 1 and err.strip() == "error: --ranking-examples must be 0 (no ranking) or more, not -1"
    # the CLI's default is the ranking's own (the CLI imports neither torch nor the ranking to read it)
    defaults = next(c for c in app.registered_commands if c.name == "check").callback.__defaults__
    [option] = [o for o in defaults if "--ranking-examples" in (getattr(o, "param_decls", None) or ())]
    assert option.default == MAX_EXAMPLES
