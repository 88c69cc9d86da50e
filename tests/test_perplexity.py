"""The label-free pattern ranking: rendering with character spans, which tokens are scored, the
batched pseudo-log-likelihood against a hand computation, and the public function."""

from __future__ import annotations

import math

import pytest
from conftest import write_project

import pet
from pet.io.patterns import Pattern
from pet.tools.perplexity import masked_token_log_probs, rank_patterns, rendered_parts, scored_tokens


def test_rendered_parts_mark_literal_text_and_word():
    pattern = Pattern("p", "{text} It was {mask}.")
    parts, spans = rendered_parts(pattern, {"text": " a great movie "}, "good")
    assert parts == ["a great movie It was good."]
    assert [parts[0][a:b] for a, b in spans[0]] == ["It was", "good", "."]
    assert parts[0] == pattern.render({"text": " a great movie "}, "good")


def test_rendered_parts_of_a_pair_pattern():
    pattern = Pattern("pair", "{hypothesis}? {mask}, {premise}", second_segment="premise", strip_final_punctuation=("hypothesis",))
    parts, spans = rendered_parts(pattern, {"hypothesis": "it rained.", "premise": "the dog sleeps"}, "yes")
    assert parts == ["it rained? yes,", "the dog sleeps"]
    assert [parts[0][a:b] for a, b in spans[0]] == ["?", "yes", ","] and spans[1] == []


@pytest.fixture(scope="module")
def bert(tiny_bert):
    import torch
    from transformers import AutoTokenizer

    from pet.core.encoding import VerbalizerTokens
    from pet.core.modeling import load_masked_lm
    from pet.core.scoring import MaskedLMScorer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = load_masked_lm(str(tiny_bert), torch.device("cpu")).eval()
    placeholder = VerbalizerTokens(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool), (("",),))
    return tokenizer, model, MaskedLMScorer.for_tokenizer(model, placeholder, tokenizer)


def test_scored_tokens_are_the_patterns_words_and_the_filled_word(bert):
    tokenizer, _, _ = bert
    ids, positions = scored_tokens(tokenizer, Pattern("p", "{text} It was {mask}."), {"text": "a great movie"}, "good")
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "a", "great", "movie", "it", "was", "good", ".", "[SEP]"]
    assert positions == [4, 5, 6, 7]


def test_batched_log_probs_equal_one_full_forward_each(bert):
    import torch

    tokenizer, model, scorer = bert
    ids, positions = scored_tokens(tokenizer, Pattern("p", "Just {mask}! {text}"), {"text": "really bad food"}, "bad")
    short, short_positions = scored_tokens(tokenizer, Pattern("p", "{text} It was {mask}."), {"text": "fun"}, "good")
    items = [(ids, p) for p in positions] + [(short, p) for p in short_positions]
    got = masked_token_log_probs(scorer, items, batch_size=3)
    expected = []
    for sequence, position in items:
        masked = torch.tensor([sequence])
        masked[0, position] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=masked, attention_mask=torch.ones_like(masked)).logits[0, position]
        expected.append(float(torch.log_softmax(logits, -1)[sequence[position]]))
    assert got.tolist() == pytest.approx(expected, abs=1e-4)
    assert masked_token_log_probs(scorer, items, batch_size=64).tolist() == pytest.approx(got.tolist(), abs=1e-5)


def test_pattern_perplexity_api(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    results = pet.pattern_perplexity(config, max_examples=10)
    assert [(r.pattern, r.verbalizer) for r in results] == [("it-was", "bad-good"), ("just", "bad-good")]
    for r in results:
        assert isinstance(r, pet.PatternPerplexity)
        assert r.examples == 10 and r.tokens > 0 and r.log_likelihood < 0
        assert r.perplexity == pytest.approx(math.exp(-r.log_likelihood))
    ranked = rank_patterns(results)
    assert [p for p, _ in ranked] == [r.pattern for r in sorted(results, key=lambda r: r.perplexity)]
    assert pet.pattern_perplexity(config, max_examples=10) == results  # a fixed sample: the same numbers again


def test_the_ranking_shows_one_bar_over_every_forward_pass(tmp_path, tiny_bert, monkeypatch, recorded_progress):
    from pet.tools import perplexity

    monkeypatch.setattr(perplexity, "progress", recorded_progress)
    results = pet.pattern_perplexity(write_project(tmp_path, tiny_bert), max_examples=6)
    passes = sum(r.tokens for r in results)  # one forward pass per scored token
    assert recorded_progress.bars == [{"description": "pattern ranking (pseudo-perplexity)", "total": passes, "done": passes}]
