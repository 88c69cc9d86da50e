"""Multi-token verbalizers: opt-in, exact batched scoring against brute force, single-token fast path kept."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import sentiment_rows, write_project
from typer.testing import CliRunner

from pet.cli import app

MULTI = ("labels: [negative, positive]\n"
         "verbalizers:\n"
         "  - id: multi\n    words: {negative: [bad, hates, badly], positive: [great, runsedly]}\n"
         "  - id: single\n    words: {negative: [bad], positive: [good, great]}\n")


def multi_project(folder, model, multi_token=True):
    config = write_project(folder, model)
    (folder / "verbalizers.yaml").write_text(MULTI, encoding="utf-8")
    if multi_token:
        config.write_text(config.read_text().replace("teachers:\n", "teachers:\n  multi_token: true\n"))
    return config


def test_multi_token_words_are_an_error_by_default(tmp_path, tiny_bert):
    config = multi_project(tmp_path, tiny_bert, multi_token=False)
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "t")])
    assert result.exit_code == 1
    assert "single token" in result.output and "teachers.multi_token: true" in result.output


def brute_force(model, task, pattern, verbalizer, examples):
    """Per example, per label, per word: a full forward pass on one unpadded sequence, no shortcuts."""
    tokens = task.verbalizer_tokens(pattern, verbalizer, 64)
    words = tokens.to_json()  # [label][word] -> token ids
    longest = max(len(w) for row in words for w in row)
    sequences = task.encoder(pattern, 64, longest).encode(examples)
    out = torch.empty(len(examples), len(words))
    for i, sequence in enumerate(sequences):
        ids = torch.tensor([sequence])
        first = sequence.index(task.tokenizer.mask_token_id)
        assert sequence[first : first + longest] == [task.tokenizer.mask_token_id] * longest
        with torch.no_grad():
            log_probs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].log_softmax(-1)
        for c, row in enumerate(words):
            per_word = []
            for word in row:
                per_word.append(sum(float(log_probs[first + k, t]) for k, t in enumerate(word)) / len(word))
            out[i, c] = sum(per_word) / len(per_word)
    return out, longest


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_batched_scores_equal_brute_force(tmp_path, model, request):
    from pet.io.config import load_config
    from pet.io.data import Examples
    from pet.core.modeling import load_masked_lm
    from pet.core.scoring import MaskedLMScorer
    from pet.stages.teachers.task import prepare_task

    model_dir = request.getfixturevalue(model)
    task = prepare_task(load_config(multi_project(tmp_path, model_dir)))
    rows = sentiment_rows("x", 11, labelled=False)
    examples = Examples([r["id"] for r in rows], {"text": [" ".join([r["text"]] * (1 + i % 3)) for i, r in enumerate(rows)]})
    lm = load_masked_lm(str(model_dir), torch.device("cpu")).eval()
    multi = next(v for v in task.verbalizers if v.id == "multi")
    for pattern in task.patterns:
        expected, longest = brute_force(lm, task, pattern, multi, examples)
        tokens = task.verbalizer_tokens(pattern, multi, 64)
        assert tokens.num_masks == longest > 1
        scorer = MaskedLMScorer(lm, tokens, task.tokenizer.mask_token_id, task.tokenizer.pad_token_id)
        got = scorer.score(task.encoder(pattern, 64, tokens.num_masks).encode(examples), batch_size=4)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_single_token_verbalizers_keep_the_fast_path(tmp_path, tiny_bert):
    from pet.io.config import load_config
    from pet.io.data import Examples
    from pet.core.modeling import load_masked_lm
    from pet.core.scoring import MaskedLMScorer
    from pet.stages.teachers.task import prepare_task

    task = prepare_task(load_config(multi_project(tmp_path, tiny_bert)))
    single = next(v for v in task.verbalizers if v.id == "single")
    lm = load_masked_lm(str(tiny_bert), torch.device("cpu")).eval()
    rows = sentiment_rows("x", 6, labelled=False)
    examples = Examples([r["id"] for r in rows], {"text": [r["text"] for r in rows]})
    pattern = task.patterns[0]
    tokens = task.verbalizer_tokens(pattern, single, 64)
    assert tokens.token_mask is None and tokens.num_masks == 1 and tokens.ids.dim() == 2
    sequences = task.encoder(pattern, 64, tokens.num_masks).encode(examples)
    assert all(s.count(task.tokenizer.mask_token_id) == 1 for s in sequences)
    got = MaskedLMScorer(lm, tokens, task.tokenizer.mask_token_id, 0).score(sequences, 4)
    # Raw logits at the mask, mean over each label's words, exactly as without multi_token.
    with torch.no_grad():
        expected = []
        for s in sequences:
            logits = lm(input_ids=torch.tensor([s])).logits[0, s.index(task.tokenizer.mask_token_id)]
            expected.append([float(logits[row].mean()) for row in [[w for w in r] for r in tokens.to_json()]])
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_multi_token_scores_by_hand():
    from pet.core import maths

    # B=1, M=2 masks, V=4. Label 0: word [1] ; label 1: words [2, 3] (two tokens) and [0].
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]]])
    lp = logits.log_softmax(-1)[0]
    ids = torch.tensor([[[1, 0], [0, 0]], [[2, 3], [0, 0]]])
    token_mask = torch.tensor([[[True, False], [False, False]], [[True, True], [True, False]]])
    ids[1, 1, 0] = 0
    word_mask = torch.tensor([[True, False], [True, True]])
    got = maths.multi_token_class_scores(logits, ids, token_mask, word_mask)
    expected = torch.tensor([[float(lp[0, 1]), (float((lp[0, 2] + lp[1, 3]) / 2) + float(lp[0, 0])) / 2]])
    torch.testing.assert_close(got, expected)


def test_multi_token_teachers_train_label_and_evaluate(tmp_path, tiny_roberta):
    config = multi_project(tmp_path, tiny_roberta)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(run)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "teachers" / "manifest.json").read_text())
    assert manifest["config"]["teachers"]["multi_token"] is True
    multi = [e for e in manifest["teachers"] if e["verbalizer"] == "multi"]
    for entry in multi:
        record = json.loads((run / "teachers" / entry["path"] / "teacher.json").read_text())
        assert record["num_masks"] > 1 and isinstance(record["verbalizer_token_ids"][0][0], list)
    # Loading a teacher back gives the same scores as the stage-B soft labels were made from.
    from pet.io.config import config_from_json
    from pet.evaluation import read_examples, teachers_logits

    cfg = config_from_json(manifest["config"])
    examples = read_examples(cfg, tmp_path / "test.jsonl", manifest["labels"], labelled=True)
    logits = teachers_logits(run / "teachers", manifest, cfg, examples)
    assert logits.shape == (len(manifest["teachers"]), 12, 2) and torch.isfinite(logits).all()
    evaluated = CliRunner().invoke(app, ["evaluate", str(run / "teachers"), "--data", str(tmp_path / "test.jsonl"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output


def test_zero_shot_with_multi_token_words(tmp_path, tiny_bert):
    """Untrained teachers keep their multi-token verbalizer through the record and pet evaluate."""
    config = multi_project(tmp_path, tiny_bert)
    out = tmp_path / "zs"
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(out), "--teachers.zero_shot", "true",
                                      "--verbalizers.ids", "[multi]"])
    assert result.exit_code == 0, result.output
    folder = json.loads(CliRunner().invoke(app, ["evaluate", str(out), "--data", str(tmp_path / "test.jsonl"), "--json"]).stdout)
    direct = json.loads(CliRunner().invoke(app, ["evaluate", str(config), "--data", str(tmp_path / "test.jsonl"), "--json",
                                                 ]).stdout)
    assert {k: v for k, v in direct["teachers"].items() if "--multi--" in k} == folder["teachers"]
