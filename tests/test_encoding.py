"""Encoding through patterns, truncation, and masked-LM scoring on the tiny models."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from pet.io.data import Examples
from pet.core.encoding import PatternEncoder, SpecialTokens, length_sorted_batches, pad, trim_lengths, verbalizer_tokens
from pet.errors import PetError
from pet.io.patterns import Pattern, Verbalizer, parse_template


def make_pattern(template: str, shorten: tuple[str, ...] | None = None, pid: str = "p") -> Pattern:
    segments = parse_template(template, "test")
    fields = tuple(dict.fromkeys(s.value for s in segments if s.kind == "field"))
    return Pattern(pid, template, fields if shorten is None else shorten, segments)


def examples(**fields: list[str]) -> Examples:
    count = len(next(iter(fields.values())))
    return Examples([f"ex-{i}" for i in range(count)], {k: list(v) for k, v in fields.items()})


@pytest.fixture(scope="module")
def bert_tok(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


@pytest.fixture(scope="module")
def roberta_tok(tiny_roberta):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_roberta))


@pytest.fixture(params=["bert", "roberta"])
def tok(request, bert_tok, roberta_tok):
    return {"bert": bert_tok, "roberta": roberta_tok}[request.param]


# --- special tokens and the hand-built sequence ---------------------------------------------------

def whole(tok, rendered: str) -> list[int]:
    """Token ids of a whole rendered cloze; the mask absorbs the space before it (lstrip)."""
    return tok(rendered.replace(" " + tok.mask_token, tok.mask_token))["input_ids"]


def test_special_tokens(bert_tok, roberta_tok):
    bert = SpecialTokens.of(bert_tok)
    assert bert.prefix == (bert_tok.cls_token_id,) and bert.suffix == (bert_tok.sep_token_id,) and len(bert) == 2
    roberta = SpecialTokens.of(roberta_tok)
    assert roberta.prefix == (roberta_tok.bos_token_id,) and roberta.suffix == (roberta_tok.eos_token_id,)


def test_encode_bert_equals_hand_built_sequence(bert_tok):
    ids = bert_tok.convert_tokens_to_ids
    encoder = PatternEncoder(make_pattern("{text} It was {mask}."), bert_tok, 64)
    [out] = encoder.encode(examples(text=["A great movie"]))
    hand = ids(["[CLS]", "a", "great", "movie", "it", "was", "[MASK]", ".", "[SEP]"])
    assert out == hand
    assert out.count(bert_tok.mask_token_id) == 1 and out.index(bert_tok.mask_token_id) == 6


def test_encode_roberta_equals_hand_built_sequence(roberta_tok):
    tok = roberta_tok
    piece = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    encoder = PatternEncoder(make_pattern("{text} It was {mask}."), tok, 64)
    [out] = encoder.encode(examples(text=["a great movie"]))
    hand = [tok.bos_token_id] + piece("a great movie") + piece(" It was") + [tok.mask_token_id] + piece(".") + [tok.eos_token_id]
    assert out == hand
    # byte-level BPE: the words of the template carry their leading space ("Ġwas", not "was")
    assert tok.convert_ids_to_tokens(piece(" It was"))[-1] == "\u0120was"
    assert out.count(tok.mask_token_id) == 1 and out[-3] == tok.mask_token_id
    # and it is what the tokenizer makes of the whole rendered sentence (with the mask taking the space
    # before it, as roberta-base's <mask> does with lstrip=True)
    assert out == whole(tok, "a great movie It was <mask>.")


@pytest.mark.parametrize("template, text", [
    ("Just {mask}! {text}", "loved it"),
    ("{text} ({mask})", "the best film"),
    ("{mask}: {text}", "sports news"),
    ("[ Category: {mask} ] {text}", "world news"),
])
def test_encode_matches_tokenizing_the_rendered_text(tok, template, text):
    pattern = make_pattern(template)
    encoder = PatternEncoder(pattern, tok, 64)
    [out] = encoder.encode(examples(text=[text]))
    assert out == whole(tok, pattern.render({"text": text}, mask_token=tok.mask_token))
    assert out.count(tok.mask_token_id) == 1


def test_sentence_pair_pattern(tok):
    pattern = make_pattern('"{hypothesis}"? {mask}, "{premise}"')
    encoder = PatternEncoder(pattern, tok, 64)
    batch = examples(premise=["a man sleeps in the park", "the dog runs"], hypothesis=["a man sleeps", "a cat eats"])
    out = encoder.encode(batch)
    for row, (premise, hypothesis) in enumerate(zip(batch.fields["premise"], batch.fields["hypothesis"])):
        rendered = pattern.render({"premise": premise, "hypothesis": hypothesis}, mask_token=tok.mask_token)
        assert out[row] == whole(tok, rendered)
        assert out[row].count(tok.mask_token_id) == 1


def test_literal_mask_in_user_text_is_not_a_second_mask(tok):
    encoder = PatternEncoder(make_pattern("{text} It was {mask}."), tok, 64)
    text = f"a {tok.mask_token} movie"
    assert tok.mask_token_id in tok(text, add_special_tokens=False)["input_ids"]  # the tokenizer would make it a mask
    [out] = encoder.encode(examples(text=[text]))
    assert out.count(tok.mask_token_id) == 1
    replacement = tok.unk_token_id if tok.unk_token_id is not None else tok.pad_token_id
    assert replacement in out[: out.index(tok.mask_token_id)]


# --- truncation -----------------------------------------------------------------------------------

def naive_trim(lengths: list[int], excess: int) -> list[int]:
    """PET's loop: remove one token at a time from the currently longest segment (the last of ties)."""
    lengths = list(lengths)
    for _ in range(excess):
        longest = max(range(len(lengths)), key=lambda i: (lengths[i], i))
        lengths[longest] -= 1
    return lengths


@pytest.mark.parametrize("lengths, excess, expected", [
    ([10, 3], 4, [6, 3]),
    ([5, 5], 1, [5, 4]),
    ([4, 5], 2, [4, 3]),
    ([3, 5, 5], 3, [3, 4, 3]),
    ([7, 2, 9], 0, [7, 2, 9]),
    ([7, 2, 9], 18, [0, 0, 0]),
])
def test_trim_lengths_examples(lengths, excess, expected):
    assert trim_lengths(lengths, excess) == expected
    assert naive_trim(lengths, excess) == expected


def test_trim_lengths_equals_naive_loop_randomised():
    rng = random.Random(1234)
    for _ in range(2000):
        lengths = [rng.randint(0, 30) for _ in range(rng.randint(1, 5))]
        excess = rng.randint(0, sum(lengths))
        got = trim_lengths(lengths, excess)
        assert got == naive_trim(lengths, excess), (lengths, excess)
        assert sum(got) == sum(lengths) - excess and all(0 <= g <= n for g, n in zip(got, lengths))


def test_trim_lengths_rejects_impossible():
    with pytest.raises(ValueError):
        trim_lengths([1, 2], 4)


LONG = " ".join(["the movie was really very good and the acting was great"] * 6)


@pytest.mark.parametrize("max_length", [12, 16, 23])
def test_truncation_respects_max_length_and_keeps_the_mask(tok, max_length):
    pattern = make_pattern("{text} It was {mask}.")
    encoder = PatternEncoder(pattern, tok, max_length)
    short, long = encoder.encode(examples(text=["good", LONG]))
    assert len(long) == max_length
    assert long.count(tok.mask_token_id) == 1
    # the template's literal tokens and the special tokens are intact; the text keeps its first tokens
    full = PatternEncoder(pattern, tok, 512).encode(examples(text=[LONG]))[0]
    text_ids = tok(LONG, add_special_tokens=False)["input_ids"]
    fixed = len(full) - len(text_ids)
    keep = max_length - fixed
    assert keep > 0
    assert long == full[: 1 + keep] + full[1 + len(text_ids):]
    assert short == PatternEncoder(pattern, tok, 512).encode(examples(text=["good"]))[0]  # untouched


def test_truncation_only_shortens_shortenable_fields(bert_tok):
    tok = bert_tok
    pattern = make_pattern("{premise} Question: {hypothesis}? Answer: {mask}.", shorten=("premise",))
    encoder = PatternEncoder(pattern, tok, 20)
    hypothesis = "is the film good"
    [out] = encoder.encode(examples(premise=[LONG], hypothesis=[hypothesis]))
    assert len(out) == 20
    hyp_ids = tok(hypothesis, add_special_tokens=False)["input_ids"]
    tail = hyp_ids + tok("? answer :", add_special_tokens=False)["input_ids"] + [tok.mask_token_id] + tok(".", add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    assert out[-len(tail):] == tail  # the hypothesis is whole
    question = tok("question :", add_special_tokens=False)["input_ids"]
    assert out[-len(tail) - len(question): -len(tail)] == question


def test_truncation_pops_from_the_longest_field(bert_tok):
    tok = bert_tok
    pattern = make_pattern("{premise} ? {mask} , {hypothesis}")
    encoder = PatternEncoder(pattern, tok, 2 + 6 + 1 + 1 + 1)  # specials + budget 6 for the two fields
    premise = " ".join(["the"] * 8)
    hypothesis = " ".join(["dog"] * 2)
    [out] = encoder.encode(examples(premise=[premise], hypothesis=[hypothesis]))
    the, dog = tok.convert_tokens_to_ids(["the", "dog"])
    assert out.count(the) == 4 and out.count(dog) == 2  # 8 + 2 - 4 excess -> trim_lengths([8, 2], 4) = [4, 2]
    hypothesis = " ".join(["dog"] * 6)
    [out] = encoder.encode(examples(premise=[premise], hypothesis=[hypothesis]))
    assert out.count(the) == 3 and out.count(dog) == 3  # trim_lengths([8, 6], 8) = [3, 3]


def test_error_when_the_fixed_part_cannot_fit(bert_tok):
    pattern = make_pattern("{premise} Question: {hypothesis}? Answer: {mask}.", shorten=("premise",), pid="qa")
    encoder = PatternEncoder(pattern, bert_tok, 12)
    batch = Examples(["short", "too-long"], {"premise": ["the dog", "the dog"],
                                             "hypothesis": ["a", "is the movie really very good and the acting great"]})
    with pytest.raises(PetError) as err:
        encoder.encode(batch)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("pattern 'qa': example 'too-long' needs ")
    assert "fit max_length 12" in message and "raise max_length" in message


def test_max_length_capped_by_the_tokenizer(bert_tok):
    encoder = PatternEncoder(make_pattern("{text} {mask}"), bert_tok, 10_000)
    assert encoder.max_length == bert_tok.model_max_length == 128


# --- padding and batching -------------------------------------------------------------------------

def test_pad_is_dynamic():
    ids, attention = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert attention.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_length_sorted_batches_cover_every_index_once():
    lengths = [3, 9, 1, 7, 7, 2, 5]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)


# --- scoring --------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["bert", "roberta"])
def scorer_setup(request, tiny_bert, tiny_roberta):
    from transformers import AutoTokenizer

    from pet.core.modeling import load_masked_lm
    from pet.core.scoring import MaskedLMScorer

    folder = {"bert": tiny_bert, "roberta": tiny_roberta}[request.param]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = load_masked_lm(str(folder), torch.device("cpu")).eval()
    pattern = make_pattern("{text} It was {mask}.")
    encoder = PatternEncoder(pattern, tokenizer, 64)
    verbalizer = Verbalizer("v", ("negative", "positive"), {"negative": ("bad", "awful"), "positive": ("good",)})
    tokens = verbalizer_tokens(verbalizer, encoder, request.param)
    scorer = MaskedLMScorer(model, tokens, tokenizer.mask_token_id, tokenizer.pad_token_id)
    texts = ["good", "a really great movie and the best acting", "bad food", "loved it",
             "the worst film with dull and boring music and a poor plot", "fun", "hated the story"]
    return request.param, model, tokenizer, encoder, tokens, scorer, encoder.encode(examples(text=texts))


def test_scorer_fast_path_equals_full_forward(scorer_setup):
    name, model, tokenizer, encoder, tokens, scorer, sequences = scorer_setup
    assert scorer.head is not None, f"{name}: the fast path should find the MLM head"
    input_ids, attention = pad(sequences, tokenizer.pad_token_id)
    with torch.inference_mode():
        fast = scorer.mask_logits(input_ids, attention)
        full = model(input_ids=input_ids, attention_mask=attention).logits
    rows = torch.arange(len(sequences))
    positions = torch.tensor([s.index(tokenizer.mask_token_id) for s in sequences])
    assert fast.shape == (len(sequences), model.config.vocab_size)
    torch.testing.assert_close(fast, full[rows, positions], atol=1e-5, rtol=1e-5)
    # without the fast path (head None) the scorer uses the full forward and agrees
    scorer_head, scorer.head = scorer.head, None
    try:
        with torch.inference_mode():
            slow = scorer.mask_logits(input_ids, attention)
    finally:
        scorer.head = scorer_head
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # class scores = mean of the words' logits at the mask
    expected = torch.stack([full[rows, positions][:, tokens.ids[0, :2]].mean(-1), full[rows, positions][:, tokens.ids[1, 0]]], -1)
    with torch.inference_mode():
        torch.testing.assert_close(scorer.class_scores(input_ids, attention), expected, atol=1e-5, rtol=1e-5)


def test_score_returns_rows_in_input_order(scorer_setup):
    name, model, tokenizer, encoder, tokens, scorer, sequences = scorer_setup
    assert len({len(s) for s in sequences}) > 2  # lengths differ, so batches are reordered
    batched = scorer.score(sequences, batch_size=2)
    assert batched.shape == (len(sequences), 2) and batched.dtype == torch.float32
    one_by_one = torch.cat([scorer.score([s], batch_size=1) for s in sequences])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    assert not model.training


def test_prepare_task_fails_early_when_a_pattern_cannot_fit(project):
    """The check runs before any training: the fixed part of 'it-was' ([CLS] it was [MASK] . [SEP]) is 6 tokens."""
    from pet.io.config import load_config
    from pet.stages.teachers.task import prepare_task

    with pytest.raises(PetError) as err:
        prepare_task(load_config(project, {"teachers.max_length": 5}))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{project.parent / 'train.jsonl'}: pattern 'it-was': example 'train-0' needs ")
    assert "to fit max_length 5" in message
    prepare_task(load_config(project, {"teachers.max_length": 7}))  # 6 fixed tokens + 1 token of text fits


@pytest.mark.parametrize("teachers_length, labelling_length, mlm_weight, checked_at", [
    (64, 32, 0.5, 32),   # both stages read the unlabeled file: the shorter length decides
    (16, 32, 0.5, 16),
    (16, 32, 0.0, 32),   # stage A does not read it (no MLM loss, no iPET): labelling's length alone
])
def test_the_unlabeled_file_is_checked_once_at_the_shortest_length_read(project, monkeypatch, teachers_length,
                                                                        labelling_length, mlm_weight, checked_at):
    """A row that fits the shorter length fits the longer one, so the (long) unlabeled file is tokenized
    once per pattern, not once per stage; the test file is read by stage B (and evaluation) alone."""
    from pet.io.config import load_config
    from pet.stages.teachers import task as task_module

    checked = []
    monkeypatch.setattr(task_module, "check_table_fits", lambda encoder, table: checked.append((Path(table.path).name, encoder.max_length)))
    config = load_config(project, {"teachers.max_length": teachers_length, "labelling.max_length": labelling_length,
                                   "teachers.mlm_weight": mlm_weight, "ipet.generations": 0})
    task = task_module.prepare_task(config)
    assert checked == [("unlabeled.jsonl", checked_at), ("test.jsonl", labelling_length)] * len(task.patterns)


def test_encoding_uses_the_stripped_field_text(bert_tok):
    tok = bert_tok
    segments = parse_template("{hypothesis}? {mask}, {premise}", "test")
    stripping = Pattern("p", "{hypothesis}? {mask}, {premise}", ("premise",), segments, None, ("hypothesis",))
    plain = Pattern("p", "{hypothesis}? {mask}, {premise}", ("premise",), segments)
    batch = examples(hypothesis=["the dog sleeps."], premise=["the dog sleeps."])
    [stripped] = PatternEncoder(stripping, tok, 64).encode(batch)
    [kept] = PatternEncoder(plain, tok, 64).encode(batch)
    period = tok.convert_tokens_to_ids(".")
    assert kept.count(period) == 2 and stripped.count(period) == 1  # only the premise's period is left
    assert stripped == [t for i, t in enumerate(kept) if i != kept.index(period)]
