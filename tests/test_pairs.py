"""Pair patterns (``second_segment``): encoded as the tokenizer encodes a pair, scored with token types."""

from __future__ import annotations

import pytest
import torch

from test_tokenizers import build as build_sentencepiece

from pet.core.encoding import PatternEncoder, pad, verbalizer_tokens, word_tokens_in_context
from pet.core.scoring import MaskedLMScorer, pair_separator, pair_token_types
from pet.errors import PetError
from pet.io.data import Examples
from pet.io.patterns import Pattern, PatternFile, Verbalizer, parse_patterns, pattern_from_json

NLI = '"{hypothesis}"? {mask}, "{premise}"'
QA = "{premise} question: {hypothesis}? answer: {mask}."
VALUES = {"hypothesis": ["the dog sleeps", "a man runs in the park"], "premise": ["the dog sleeps.", "it was a dog"]}


def examples(**fields: list[str]) -> Examples:
    count = len(next(iter(fields.values())))
    return Examples([f"ex-{i}" for i in range(count)], {k: list(v) for k, v in fields.items()})


@pytest.fixture(scope="module")
def tokenizers(tiny_bert, tiny_roberta):
    from transformers import AutoTokenizer

    built = {"bert": AutoTokenizer.from_pretrained(str(tiny_bert)), "roberta": AutoTokenizer.from_pretrained(str(tiny_roberta))}
    built.update({kind: build_sentencepiece(kind) for kind in ("albert", "xlm-roberta")})
    return built


@pytest.fixture(scope="module")
def bert(tiny_bert):
    from pet.core.modeling import load_masked_lm

    return load_masked_lm(str(tiny_bert), torch.device("cpu")).eval()


def render_parts(pattern: Pattern, values: dict[str, str], word: str) -> tuple[str, str]:
    """The two parts of a pair pattern as text, ``word`` in place of the mask."""
    parts: list[list[str]] = [[], []]
    for index, seg in enumerate(pattern.segments):
        part = parts[int(index >= pattern.second_segment_start)]
        text = {"text": seg.value, "mask": word, "field": pattern.field_text(seg.value, values.get(seg.value, ""))}[seg.kind]
        part.append((" " if seg.space_before and part else "") + text)
    return "".join(parts[0]), "".join(parts[1])


# --- the pattern key --------------------------------------------------------------------------------

def test_second_segment_must_name_a_later_placeholder():
    assert Pattern("p", NLI, second_segment="premise").second_segment_start == 5
    assert Pattern("p", NLI).second_segment_start is None
    with pytest.raises(PetError, match=r"^pattern 'p': second_segment names 'text', which is not a placeholder"):
        Pattern("p", NLI, second_segment="text")
    with pytest.raises(PetError, match=r"^pattern 'p': second_segment 'hypothesis' starts the template"):
        Pattern("p", "{hypothesis}? {mask}, {premise}", second_segment="hypothesis")


def test_second_segment_is_read_from_yaml_and_manifests():
    spec = PatternFile.model_validate({"patterns": [{"id": "qa", "template": QA, "second_segment": "hypothesis"}]})
    [pattern] = parse_patterns(spec, "patterns.yaml")
    assert pattern.second_segment == "hypothesis"
    assert pattern.to_json()["second_segment"] == "hypothesis"
    assert pattern_from_json(pattern.to_json()) == pattern
    older = {k: v for k, v in pattern.to_json().items() if k != "second_segment"}
    assert pattern_from_json(older).second_segment is None
    with pytest.raises(PetError, match=r"^patterns.yaml: pattern 'qa': second_segment names 'premis'"):
        parse_patterns(PatternFile.model_validate({"patterns": [{"id": "qa", "template": QA, "second_segment": "premis"}]}), "patterns.yaml")


# --- encoding -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bert", "roberta", "albert", "xlm-roberta"])
@pytest.mark.parametrize("template, second", [(NLI, "premise"), (QA, "hypothesis")])
def test_pair_ids_equal_the_tokenizers_pair(tokenizers, kind, template, second):
    tok = tokenizers[kind]
    pattern = Pattern("p", template, second_segment=second)
    encoder = PatternEncoder(pattern, tok, 64)
    before, space = encoder.context_before_mask()
    word_ids = word_tokens_in_context(tok, "good", before, space, encoder.starts_sequence(encoder.mask_index()))
    for row, ids in enumerate(encoder.encode(examples(**VALUES))):
        first, second_part = render_parts(pattern, {k: v[row] for k, v in VALUES.items()}, "good")
        reference = tok(first, second_part, return_token_type_ids=True)
        at = ids.index(tok.mask_token_id)
        assert ids[:at] + word_ids + ids[at + 1:] == reference["input_ids"], (kind, first, second_part)
        if pair_separator(tok) is not None:  # tokenizers that type a pair's second part
            assert len(word_ids) == 1
            types = pair_token_types(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), pair_separator(tok))
            assert types[0].tolist() == reference["token_type_ids"]


def test_pair_separators_and_types_per_tokenizer(tokenizers):
    bert, roberta = tokenizers["bert"], tokenizers["roberta"]
    assert pair_separator(bert) == bert.sep_token_id and pair_separator(tokenizers["albert"]) is not None
    assert pair_separator(roberta) is None and pair_separator(tokenizers["xlm-roberta"]) is None
    assert PatternEncoder(Pattern("p", NLI, second_segment="premise"), bert, 64).separator == (bert.sep_token_id,)
    assert PatternEncoder(Pattern("p", NLI, second_segment="premise"), roberta, 64).separator == (roberta.sep_token_id,) * 2
    assert PatternEncoder(Pattern("p", NLI), bert, 64).separator == ()


def test_token_types_of_a_mixed_padded_batch():
    sep, cls, pad_id = 3, 2, 0
    rows = [[cls, 7, sep, 8, 9, sep], [cls, 7, 8, sep], [cls, 7, sep, sep]]  # pair, single, pair with empty part two
    ids, attention = pad(rows, pad_id)
    assert pair_token_types(ids, attention, sep).tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]]


def test_truncation_budget_counts_the_separator(tokenizers):
    tok = tokenizers["bert"]
    pattern = Pattern("p", "{hypothesis}? {mask}, {premise}", ("premise",), second_segment="premise")
    batch = examples(hypothesis=["the dog sleeps"], premise=["the man runs in the park and the dog sleeps"])
    fitted = PatternEncoder(pattern, tok, 12).encode(batch)[0]
    assert len(fitted) == 12 and fitted.count(tok.sep_token_id) == 2
    assert fitted[:8] == PatternEncoder(pattern, tok, 64).encode(batch)[0][:8]  # part one and the separator untouched


def test_user_text_cannot_fake_a_separator(tokenizers):
    tok = tokenizers["bert"]
    [ids] = PatternEncoder(Pattern("p", "{text} it was {mask}."), tok, 64).encode(examples(text=["the dog [SEP] sleeps"]))
    assert ids.count(tok.sep_token_id) == 1 and tok.unk_token_id in ids


# --- scoring --------------------------------------------------------------------------------------

def bert_pair_setup(tok, bert, second: str | None):
    pattern = Pattern("p", "{hypothesis}? {mask}, {premise}", second_segment=second)
    encoder = PatternEncoder(pattern, tok, 64)
    tokens = verbalizer_tokens(Verbalizer("v", {"no": ["no"], "yes": ["yes"]}), encoder, "tiny-bert")
    scorer = MaskedLMScorer.for_tokenizer(bert, tokens, tok)
    ids, attention = pad(encoder.encode(examples(**VALUES)), tok.pad_token_id)
    return scorer, tokens, ids, attention


def reference_types(tok, second: bool) -> torch.Tensor:
    pattern = Pattern("p", "{hypothesis}? {mask}, {premise}", second_segment="premise" if second else None)
    rows = []
    for row in range(2):
        values = {k: v[row] for k, v in VALUES.items()}
        rows.append(tok(*render_parts(pattern, values, "yes"), return_token_type_ids=True)["token_type_ids"])
    return pad(rows, 0)[0]


def recorded_kwargs(module) -> tuple[list[set[str]], object]:
    calls: list[set[str]] = []
    handle = module.register_forward_pre_hook(lambda m, args, kwargs: calls.append(set(kwargs)), with_kwargs=True)
    return calls, handle


def test_pair_scores_use_token_types(tokenizers, bert):
    tok = tokenizers["bert"]
    scorer, tokens, ids, attention = bert_pair_setup(tok, bert, "premise")
    types = reference_types(tok, True)
    rows, positions = scorer.mask_positions(ids)
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=attention, token_type_ids=types).logits[rows, positions]
        untyped = bert(input_ids=ids, attention_mask=attention).logits[rows, positions]
        got = scorer.mask_logits(ids, attention)
        scorer_head, scorer.head = scorer.head, None
        slow = scorer.mask_logits(ids, attention)  # the full forward gets the types too
        scorer.head = scorer_head
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(slow, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, untyped, atol=1e-4)  # the types do matter


def test_single_segment_patterns_pass_no_token_types(tokenizers, bert):
    tok = tokenizers["bert"]
    scorer, tokens, ids, attention = bert_pair_setup(tok, bert, None)
    calls, handle = recorded_kwargs(bert.base_model)
    try:
        with torch.no_grad():
            scorer.class_scores(ids, attention)
    finally:
        handle.remove()
    assert calls == [{"input_ids", "attention_mask"}]


def test_teacher_loss_on_pairs_matches_a_hand_computation(tokenizers, bert):
    from pet.core import maths
    from pet.core.mlm import MlmMasker, teacher_loss

    tok = tokenizers["bert"]
    scorer, tokens, ids, attention = bert_pair_setup(tok, bert, "premise")
    types = reference_types(tok, True)
    labels = torch.tensor([1, 0])
    masked, targets = MlmMasker(tok, len(tok), 0.5, seed=1)(ids, attention)
    assert (targets != -100).sum() > 2
    with torch.no_grad():
        logits = bert(input_ids=ids, attention_mask=attention, token_type_ids=types).logits
        scores = logits[torch.arange(2), (ids == tok.mask_token_id).int().argmax(-1)][:, tokens.ids[:, 0]]
        ce = maths.class_cross_entropy(scores, labels)
        mlm_logits = bert(input_ids=masked, attention_mask=attention, token_type_ids=types).logits
        where = targets != -100
        mlm = maths.masked_lm_loss(mlm_logits[where], targets[where])
        got = teacher_loss(scorer, ids, attention, labels, (masked, attention, targets), 0.3)
    assert float(got) == pytest.approx(float(0.7 * ce + 0.3 * mlm), rel=1e-5, abs=1e-6)
