"""Patterns and label words through SentencePiece-style (Metaspace) tokenizers and CJK text.

The tokenizers are built offline from a tiny Unigram vocabulary: transformers' own XLM-R, ALBERT,
DeBERTa-v2 and CamemBERT tokenizer classes (which take a vocabulary of (piece, score) pairs), and a
bare ``PreTrainedTokenizerFast`` with Metaspace ``prepend_scheme="first"``. The reference for a
pattern's encoding is the tokenizer's own encoding of the whole cloze with a label word in place
of the mask: the encoder's ids, the mask replaced by that word's ids in context, must equal it.
(The mask itself is no reference: fast tokenizers split text at special tokens and give "▁." after
"<mask>", unlike the "great." the model saw in pretraining.)
"""

from __future__ import annotations

import pytest

from pet.core.encoding import PatternEncoder, marks_segment_starts, verbalizer_tokens, word_tokens_in_context
from pet.errors import PetError
from pet.io.data import Examples
from pet.io.patterns import Pattern, Verbalizer

WORDS = "the a it was is movie film great bad good terrible just all in question answer dog sleeps food".split()
PUNCT = list(".,!?\"()")


def unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    """Specials, word-start pieces, a bare "▁", punctuation and letters (so any text segments)."""
    return ([(s, 0.0) for s in specials] + [("▁" + w, -2.0) for w in WORDS] + [("▁", -3.0)]
            + [(p, -3.0) for p in PUNCT] + [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz"])


def bare_metaspace_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.Unigram(unigram_vocab(specials), unk_id=1, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    backend.decoder = decoders.Metaspace(prepend_scheme="first")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def build(kind: str):
    import transformers

    if kind == "metaspace-first":
        return bare_metaspace_tokenizer()
    specials = {
        "xlm-roberta": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        "albert": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
        "deberta-v2": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        "camembert": ["<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<unk>NOTUSED", "<mask>", "<s>", "</s>"],
    }[kind]
    cls = {"xlm-roberta": "XLMRobertaTokenizer", "albert": "AlbertTokenizer", "deberta-v2": "DebertaV2Tokenizer",
           "camembert": "CamembertTokenizer"}[kind]
    return getattr(transformers, cls)(vocab=unigram_vocab(specials))


KINDS = ["xlm-roberta", "albert", "deberta-v2", "camembert", "metaspace-first"]


@pytest.fixture(scope="module", params=KINDS)
def sp_tok(request):
    return build(request.param)


def examples(**fields: list[str]) -> Examples:
    count = len(next(iter(fields.values())))
    return Examples([f"ex-{i}" for i in range(count)], {k: list(v) for k, v in fields.items()})


def with_word(encoder: PatternEncoder, ids: list[int], word: str) -> list[int]:
    """``ids`` with the mask replaced by ``word``'s tokens in the mask's context."""
    tok = encoder.tokenizer
    before, space = encoder.context_before_mask()
    word_ids = word_tokens_in_context(tok, word, before, space, encoder.starts_sequence(encoder.mask_index()))
    at = ids.index(tok.mask_token_id)
    return ids[:at] + word_ids + ids[at + 1:]


PATTERNS = [
    ("{text} it was {mask}.", {"text": ["a great movie", "the dog sleeps"]}),
    ("just {mask}! {text}", {"text": ["a bad film", "good food"]}),
    ("{text}. all in all, it was {mask}.", {"text": ["the movie", "terrible"]}),
    ('"{hypothesis}"? {mask}, "{premise}"', {"hypothesis": ["it sleeps", "a dog"], "premise": ["the dog sleeps", "it was"]}),
    ("{premise} question: {hypothesis}? answer: {mask}.", {"premise": ["the dog sleeps"], "hypothesis": ["it sleeps."]}),
]


def test_sentencepiece_tokenizers_are_detected(sp_tok, tiny_bert, tiny_roberta):
    from transformers import AutoTokenizer

    assert marks_segment_starts(sp_tok)
    assert not marks_segment_starts(AutoTokenizer.from_pretrained(str(tiny_bert)))
    assert not marks_segment_starts(AutoTokenizer.from_pretrained(str(tiny_roberta)))


def test_no_spurious_word_start_after_the_mask(sp_tok):
    encoder = PatternEncoder(Pattern("p", "{text} it was {mask}."), sp_tok, 64)
    [ids] = encoder.encode(examples(text=["a great movie"]))
    after = sp_tok.convert_ids_to_tokens(ids[ids.index(sp_tok.mask_token_id) + 1:])
    assert after == ["."] + [sp_tok.convert_ids_to_tokens(ids[-1])], after  # "." then the closing special token
    assert "▁" not in after and "▁." not in after


@pytest.mark.parametrize("template, values", PATTERNS)
def test_pattern_ids_equal_the_whole_text_with_a_word(sp_tok, template, values):
    pattern = Pattern("p", template)
    encoder = PatternEncoder(pattern, sp_tok, 64)
    encoded = encoder.encode(examples(**values))
    for row, ids in enumerate(encoded):
        assert ids.count(sp_tok.mask_token_id) == 1
        for word in ("great", "bad"):
            rendered = pattern.render({k: v[row] for k, v in values.items()}, mask_token=word)
            assert with_word(encoder, ids, word) == sp_tok(rendered)["input_ids"], (template, word, rendered)


def test_label_words_are_checked_in_context(sp_tok):
    encoder = PatternEncoder(Pattern("p", "{text} it was {mask}."), sp_tok, 64)
    tokens = verbalizer_tokens(Verbalizer("v", {"negative": ["bad"], "positive": ["great"]}), encoder, "tiny-sp")
    assert tokens.ids.tolist() == [[sp_tok.convert_tokens_to_ids("▁bad")], [sp_tok.convert_tokens_to_ids("▁great")]]
    # a word with no word-start piece of its own is several pieces, named in the error
    with pytest.raises(PetError, match=r"word 'zq' of label 'positive' is 3 tokens \['▁', 'z', 'q'\]"):
        verbalizer_tokens(Verbalizer("w", {"negative": ["bad"], "positive": ["zq"]}), encoder, "tiny-sp")


def test_a_word_glued_to_a_literal_is_no_word_start(sp_tok):
    # '"{mask}"': the word follows the quote directly, so it is tokenized after '"', not alone
    encoder = PatternEncoder(Pattern("p", '{text} "{mask}"'), sp_tok, 64)
    before, space = encoder.context_before_mask()
    assert (before, space) == ('"', False)
    assert word_tokens_in_context(sp_tok, "it", before, space) == sp_tok.convert_tokens_to_ids(["i", "t"])
    # at the very start the word does stand alone and keeps its word start
    start = PatternEncoder(Pattern("q", "{mask}, {text}"), sp_tok, 64)
    assert word_tokens_in_context(sp_tok, "great", *start.context_before_mask(), at_start=True) == [
        sp_tok.convert_tokens_to_ids("▁great")]


def test_truncation_still_keeps_mask_and_literals(sp_tok):
    pattern = Pattern("p", "{text} it was {mask}.", ("text",))
    long_text = " ".join(["the dog sleeps"] * 20)
    encoder = PatternEncoder(pattern, sp_tok, 16)
    [ids] = encoder.encode(examples(text=[long_text]))
    assert len(ids) == 16 and sp_tok.mask_token_id in ids
    assert sp_tok.convert_ids_to_tokens(ids[-4:-1]) == ["▁was", sp_tok.mask_token, "."]


# --- non-Latin scripts ----------------------------------------------------------------------------

CJK = list("这部电影很好坏总之。，的是")


@pytest.fixture(scope="module")
def cjk_wordpiece():
    from transformers import BertTokenizer

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + CJK)}
    return BertTokenizer(vocab=vocab, tokenize_chinese_chars=True)


@pytest.fixture(scope="module")
def japanese_unigram():
    from transformers import XLMRobertaTokenizer

    pieces = list("映画はとても良悪いです。") + ["▁映", "▁a"]
    vocab = [(s, 0.0) for s in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]] + [("▁", -3.0)] + [(p, -2.0) for p in pieces]
    return XLMRobertaTokenizer(vocab=vocab)


def test_chinese_label_words_through_wordpiece(cjk_wordpiece):
    tok = cjk_wordpiece
    pattern = Pattern("zh", "{text}。总之，很{mask}。")
    encoder = PatternEncoder(pattern, tok, 64)
    tokens = verbalizer_tokens(Verbalizer("v", {"negative": ["坏"], "positive": ["好"]}), encoder, "tiny-zh")
    assert tokens.ids.tolist() == [[tok.convert_tokens_to_ids("坏")], [tok.convert_tokens_to_ids("好")]]
    [ids] = encoder.encode(examples(text=["这部电影的"]))
    for word in ("好", "坏"):
        assert with_word(encoder, ids, word) == tok(pattern.render({"text": "这部电影的"}, mask_token=word))["input_ids"]


def test_japanese_label_words_through_sentencepiece(japanese_unigram):
    tok = japanese_unigram
    assert marks_segment_starts(tok)
    pattern = Pattern("ja", "{text}とても{mask}です。")
    encoder = PatternEncoder(pattern, tok, 64)
    tokens = verbalizer_tokens(Verbalizer("v", {"negative": ["悪"], "positive": ["良"]}), encoder, "tiny-ja")
    assert tokens.ids.tolist() == [[tok.convert_tokens_to_ids("悪")], [tok.convert_tokens_to_ids("良")]]  # no "▁"
    [ids] = encoder.encode(examples(text=["映画は"]))
    for word in ("良", "悪"):
        assert with_word(encoder, ids, word) == tok(pattern.render({"text": "映画は"}, mask_token=word))["input_ids"]
