"""`pet search-words`: proposed label words are whole, single-token words, one label each, written
as a verbalizers file that loads and that task preparation (pet train-teachers) accepts as it is."""

from __future__ import annotations

import pytest
from conftest import write_project
from typer.testing import CliRunner

import pet
from pet.cli import app
from pet.io.config import load_config
from pet.io.patterns import load_verbalizers
from pet.stages.teachers.task import prepare_task
from pet.tools.words import stop_words


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def bert_project(tmp_path_factory, tiny_bert):
    return write_project(tmp_path_factory.mktemp("words-bert"), tiny_bert)


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_roberta"])
def search(request, tmp_path_factory):
    config = write_project(tmp_path_factory.mktemp(f"words-{request.param}"), request.getfixturevalue(request.param))
    return config, pet.search_words(config, words_per_label=2)


def test_words_are_whole_single_tokens_of_one_label(search):
    config, found = search
    assert isinstance(found, pet.WordSearch)
    assert found.verbalizer.labels == ("negative", "positive")  # the verbalizer file's order
    words = [w for label in found.verbalizer.labels for w in found.verbalizer.words[label]]
    assert [len(found.verbalizer.words[label]) for label in found.verbalizer.labels] == [2, 2]
    assert len(set(words)) == len(words)
    assert all(w.isalpha() and len(w) >= 2 and w.lower() not in stop_words() for w in words)
    for label, scores in found.scores.items():
        assert [s.rank for s in scores] == [1, 2] and scores[0].score >= scores[1].score > 0
        assert all(s.score == pytest.approx(s.label_log_prob - s.other_log_prob, abs=1e-4) for s in scores)
    # single tokens in every pattern's context: preparing a task with them raises nothing
    task = prepare_task(load_config(config).model_copy(update={"verbalizers": load_config(config).verbalizers.model_copy(
        update={"file": found.write(config.parent / "api-found.yaml", force=True), "ids": None})}))
    tokens = task.verbalizer_tokens(task.patterns[0], task.verbalizers[0], 64)
    assert tokens.num_masks == 1


def test_cli_writes_a_file_train_teachers_accepts(bert_project):
    output = bert_project.parent / "verbalizers" / "found.yaml"
    code, out, err = run("search-words", bert_project, "-o", output, "--words-per-label", "2")
    assert code == 0, err
    assert out.splitlines()[-1] == f"verbalizer 'found' in {output}"
    assert out.splitlines()[0].startswith("negative: ")
    text = output.read_text()
    assert "labels: [\"negative\", \"positive\"]" in text and "# score " in text and text.count("rank ") == 4
    [verbalizer] = load_verbalizers(output)
    assert verbalizer.id == "found" and verbalizer.labels == ("negative", "positive")
    config = load_config(bert_project, {"verbalizers.file": str(output)})
    task = prepare_task(config)  # what pet train-teachers validates before training
    assert [v.id for v in task.verbalizers] == ["found"]


def test_refuses_to_overwrite_without_force(bert_project):
    output = bert_project.parent / "taken.yaml"
    output.write_text("keep me\n")
    code, _, err = run("search-words", bert_project, "-o", output)
    assert code == 1 and err.strip() == f"error: {output} exists; choose another -o, or pass --force to overwrite it"
    assert output.read_text() == "keep me\n"
    code, _, err = run("search-words", bert_project, "-o", output, "--force", "--id", "mine")
    assert code == 0, err
    assert load_verbalizers(output)[0].id == "mine"
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".taken.yaml")]  # no temporary file left


def test_bad_requests_are_one_line_errors(bert_project):
    code, _, err = run("search-words", bert_project, "-o", bert_project.parent / "x.yaml", "-k", "0")
    assert code == 1 and err.strip() == "error: --words-per-label must be at least 1"
    code, _, err = run("search-words", bert_project, "-o", bert_project.parent / "x.yaml", "--teachers.stepz", "1")
    assert code == 1 and err.startswith("error: --teachers.stepz: unknown setting")
