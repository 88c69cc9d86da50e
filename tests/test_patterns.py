"""Patterns and verbalizers: parsing, rendering, the shipped files, and every validation error.

Each validation error is asserted on its one-line message: the file, the pattern or verbalizer id
and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED_MODEL, sentiment_rows, write_jsonl, write_project

from pet.errors import PetError
from pet.io.patterns import Pattern, Segment, load_patterns, load_verbalizers, parse_template, pattern_from_json

PATTERN_FILES = sorted((REPO / "patterns").glob("*.yaml"))
VERBALIZER_FILES = sorted((REPO / "verbalizers").glob("*.yaml"))
TASKS = {"sentiment": ["negative", "positive"], "news": ["World", "Sports", "Business", "Sci/Tech"],
         "nli": ["entailment", "not_entailment"], "aspects": ["food", "service", "price", "ambience"]}
MULTI_LABEL = {"aspects"}  # files of multi-label tasks: patterns ask about {label}, verbalizers give yes/no words
NLI_FIELDS = {"premise", "hypothesis"}


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def load_error(load, path: Path) -> str:
    """The one-line error that loading ``path`` raises."""
    with pytest.raises(PetError) as err:
        load(path)
    return one_line(err)


# --- parsing ----------------------------------------------------------------------------------

def seg(kind, value, space=False):
    return Segment(kind, value, space)


@pytest.mark.parametrize("template, expected", [
    ("{text} It was {mask}.",
     (seg("field", "text"), seg("text", "It was", True), seg("mask", "mask", True), seg("text", "."))),
    ("Just {mask}! {text}",
     (seg("text", "Just"), seg("mask", "mask", True), seg("text", "!"), seg("field", "text", True))),
    ("{text} ({mask})",
     (seg("field", "text"), seg("text", "(", True), seg("mask", "mask"), seg("text", ")"))),
    ("{mask}: {text}", (seg("mask", "mask"), seg("text", ":"), seg("field", "text", True))),
    ("{text}{mask}", (seg("field", "text"), seg("mask", "mask"))),
    ("{text}   {mask}", (seg("field", "text"), seg("mask", "mask", True))),
    ('"{hypothesis}"? {mask}, "{premise}"',
     (seg("text", '"'), seg("field", "hypothesis"), seg("text", '"?'), seg("mask", "mask", True),
      seg("text", ', "'), seg("field", "premise"), seg("text", '"'))),
])
def test_segments_and_space_before(template, expected):
    assert parse_template(template, "here") == expected


def test_literal_braces_are_text_not_placeholders():
    segments = parse_template("{{x}} {text} {{ {mask} }}", "here")
    assert [s.kind for s in segments if s.kind != "text"] == ["field", "mask"]
    assert "".join(s.value for s in segments if s.kind == "text").replace(" ", "") == "{x}{}"
    pattern = Pattern("braces", "{{x}} {text} {{ {mask} }}", ("text",), segments)
    assert pattern.render({"text": "hello"}) == "{x} hello { [MASK] }"
    assert pattern.fields == ("text",)


@pytest.mark.parametrize("template, values, rendered", [
    ("{text} It was {mask}.", {"text": "a good film"}, "a good film It was [MASK]."),
    ("Just {mask}! {text}", {"text": "loved it"}, "Just [MASK]! loved it"),
    ("{text} ({mask})", {"text": "news"}, "news ([MASK])"),
    ("[ Category: {mask} ] {text}", {"text": "x"}, "[ Category: [MASK] ] x"),
    ('"{hypothesis}"? {mask}, "{premise}"', {"hypothesis": "H", "premise": "P"}, '"H"? [MASK], "P"'),
    ("{premise} Question: {hypothesis}? Answer: {mask}.", {"hypothesis": "H", "premise": "P"},
     "P Question: H? Answer: [MASK]."),
])
def test_render(template, values, rendered):
    pattern = Pattern("p", template, tuple(values), parse_template(template, "here"))
    assert pattern.render(values) == rendered
    assert pattern.render(values, mask_token="<mask>") == rendered.replace("[MASK]", "<mask>")


def test_fields_in_order_of_first_appearance():
    pattern = Pattern("p", "", (), parse_template("{b} {a} {mask} {b}", "here"))
    assert pattern.fields == ("b", "a")


@pytest.mark.parametrize("template, problem", [
    ("{text} It was great.", "has no {mask}"),
    ("{mask} {text} {mask}", "has 2 {mask} placeholders"),
    ("{mask} and {mask} and {mask} {text}", "has 3 {mask} placeholders"),
    ("It was {mask}.", "has no input placeholder"),
    ("{text:>10} {mask}", "may not have a format spec or conversion"),
    ("{text!r} {mask}", "may not have a format spec or conversion"),
    ("{text.upper} {mask}", "must be a plain name"),
    ("{text} {mask", "template is not valid"),
    ("{text} }} } {mask}", "template is not valid"),
])
def test_template_errors(template, problem):
    with pytest.raises(PetError) as err:
        parse_template(template, "f.yaml: pattern 'p'")
    message = one_line(err)
    assert message.startswith("f.yaml: pattern 'p': ")
    assert problem in message


# --- loading pattern and verbalizer files ---------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_patterns_defaults_and_selection(tmp_path):
    path = write(tmp_path / "p.yaml", "patterns:\n"
                 "  - id: a\n    template: '{premise} {mask} {hypothesis}'\n"
                 "  - id: b\n    name: B\n    template: '{mask} {text}'\n    shorten: []\n")
    a, b = load_patterns(path)
    assert (a.id, a.shorten, a.fields) == ("a", ("premise", "hypothesis"), ("premise", "hypothesis"))  # default: all fields
    assert (b.id, b.name, b.shorten) == ("b", "B", ())
    assert [p.id for p in load_patterns(path, ["b", "a"])] == ["b", "a"]
    with pytest.raises(PetError) as err:
        load_patterns(path, ["bb"])
    assert one_line(err) == f"{path}: no pattern with id 'bb'; did you mean 'b'?"


def test_pattern_unknown_key_suggests_nearest(tmp_path):
    path = write(tmp_path / "p.yaml", "patterns:\n  - id: first\n    templte: '{text} {mask}'\n")
    message = load_error(load_patterns, path)
    assert message.startswith(f"{path}:3: pattern 'first': unknown key 'patterns[0].templte'; did you mean 'template'?")


def test_pattern_file_unknown_top_level_key(tmp_path):
    path = write(tmp_path / "p.yaml", "patterns:\n  - id: a\n    template: '{text} {mask}'\npaterns: []\n")
    assert load_error(load_patterns, path) == f"{path}:4: unknown key 'paterns'; did you mean 'patterns'?"


@pytest.mark.parametrize("template, problem", [
    ("{text} It was great.", "template has no {mask}"),
    ("{mask} {text} {mask}", "template has 2 {mask} placeholders"),
])
def test_pattern_file_mask_errors_name_file_and_id(tmp_path, template, problem):
    path = write(tmp_path / "p.yaml", f"patterns:\n  - id: ok\n    template: '{{text}} {{mask}}'\n"
                                      f"  - id: broken-one\n    template: '{template}'\n")
    message = load_error(load_patterns, path)
    assert message.startswith(f"{path}: pattern 'broken-one': {problem}")


def test_pattern_duplicate_id_and_bad_shorten(tmp_path):
    dup = write(tmp_path / "dup.yaml", "patterns:\n  - id: a\n    template: '{text} {mask}'\n"
                                       "  - id: a\n    template: '{mask} {text}'\n")
    with pytest.raises(PetError) as err:
        load_patterns(dup)
    assert one_line(err) == f"{dup}: pattern 'a': duplicate pattern id"
    bad = write(tmp_path / "bad.yaml", "patterns:\n  - id: a\n    template: '{text} {mask}'\n    shorten: [txt]\n")
    with pytest.raises(PetError) as err:
        load_patterns(bad)
    assert one_line(err) == f"{bad}: pattern 'a': shorten names 'txt', which is not a placeholder of the template (text)"


def test_load_verbalizers_several_words_and_int_labels(tmp_path):
    path = write(tmp_path / "v.yaml", "labels: [0, 1]\nverbalizers:\n"
                 "  - id: multi\n    words: {0: [bad, awful], 1: good}\n")
    [v] = load_verbalizers(path)
    assert v.labels == ("0", "1")
    assert v.words == {"0": ("bad", "awful"), "1": ("good",)}


def test_labels_default_to_the_first_verbalizers_in_the_order_written(tmp_path):
    path = write(tmp_path / "v.yaml", "verbalizers:\n  - id: fact-opinion\n    words: {1: [opinion], 0: fact}\n"
                                      "  - id: other\n    words: {0: [report], 1: [view]}\n")
    first, second = load_verbalizers(path)
    assert first.labels == second.labels == ("1", "0")  # class 0 is the label written first
    assert first.words == {"1": ("opinion",), "0": ("fact",)} and second.words == {"1": ("view",), "0": ("report",)}
    odd = write(tmp_path / "odd.yaml", "verbalizers:\n  - id: a\n    words: {x: [one], y: [two]}\n"
                                       "  - id: b\n    words: {x: [three], z: [four]}\n")
    assert load_error(load_verbalizers, odd) == f"{odd}: verbalizer 'b': no words for label 'y'"
    with pytest.raises(PetError) as err:
        load_verbalizers(path, multi_label=True)
    assert one_line(err) == (f"{path}: a multi-label verbalizers file lists its labels at the top level, e.g. labels: "
                             "[food, service]; its words are the yes/no answer words")


def test_verbalizer_unknown_key_suggests_nearest(tmp_path):
    path = write(tmp_path / "v.yaml", "labels: [negative, positive]\nverbalizers:\n"
                                      "  - id: bg\n    word: {negative: [bad], positive: [good]}\n")
    assert load_error(load_verbalizers, path).startswith(f"{path}:4: verbalizer 'bg': unknown key 'verbalizers[0].word'; did you mean 'words'?")
    top = write(tmp_path / "top.yaml", "label: [negative, positive]\nverbalizers:\n"
                                       "  - id: bg\n    words: {negative: [bad], positive: [good]}\n")
    with pytest.raises(PetError) as err:
        load_verbalizers(top)
    assert one_line(err).startswith(f"{top}:1: unknown key 'label'; did you mean 'labels'?")


@pytest.mark.parametrize("words, problem", [
    ("{negative: [bad]}", "verbalizer 'bg': no words for label 'positive'"),
    ("{negative: [bad], positive: [good], neutral: [fine]}",
     "verbalizer 'bg': words given for 'neutral', which is not in labels (negative, positive)"),
    ("{negative: [bad], positive: []}", "verbalizer 'bg': label 'positive' has an empty word list"),
    ("{negative: [bad], positive: ['  ']}", "verbalizer 'bg': label 'positive' has an empty word"),
])
def test_verbalizer_label_errors(tmp_path, words, problem):
    path = write(tmp_path / "v.yaml", f"labels: [negative, positive]\nverbalizers:\n  - id: bg\n    words: {words}\n")
    assert load_error(load_verbalizers, path) == f"{path}: {problem}"


def test_verbalizer_bare_yes_no_hint(tmp_path):
    path = write(tmp_path / "v.yaml", "labels: [a, b]\nverbalizers:\n  - id: yn\n    words: {a: [yes], b: [no]}\n")
    message = load_error(load_verbalizers, path)
    assert message.startswith(f"{path}:4: verbalizer 'yn': ")
    assert "quote the word" in message


# --- shipped files --------------------------------------------------------------------------------

def test_shipped_files_cover_the_three_tasks():
    assert {p.stem for p in PATTERN_FILES} >= set(TASKS)
    assert {p.stem for p in VERBALIZER_FILES} >= set(TASKS)


@pytest.mark.parametrize("path", PATTERN_FILES, ids=lambda p: p.stem)
def test_shipped_patterns_load(path):
    patterns = load_patterns(path)
    assert len(patterns) >= 3
    raw_ids = [item["id"] for item in yaml.safe_load(path.read_text())["patterns"]]
    assert len(raw_ids) == len(set(raw_ids)) == len(patterns)
    for pattern in patterns:
        assert sum(s.kind == "mask" for s in pattern.segments) == 1
        assert pattern.shorten, f"{pattern.id}: nothing may be shortened"
        expected_fields = NLI_FIELDS if path.stem == "nli" else {"text", "label"} if path.stem in MULTI_LABEL else {"text"}
        assert set(pattern.fields) == expected_fields, pattern.id
        assert "[MASK]" in pattern.render({f: "x" for f in pattern.fields})


@pytest.mark.parametrize("path", VERBALIZER_FILES, ids=lambda p: p.stem)
def test_shipped_verbalizers_load(path):
    verbalizers = load_verbalizers(path, multi_label=path.stem in MULTI_LABEL)
    raw_ids = [item["id"] for item in yaml.safe_load(path.read_text())["verbalizers"]]
    assert len(raw_ids) == len(set(raw_ids)) == len(verbalizers)
    for verbalizer in verbalizers:
        assert list(verbalizer.labels) == TASKS[path.stem]
        words = verbalizer.words
        assert all(words[key] for key in (("yes", "no") if path.stem in MULTI_LABEL else verbalizer.labels))


@pytest.mark.skipif(not SHARED_MODEL.exists(), reason="../shared/models/minilm-l6-mlm not present")
@pytest.mark.parametrize("task", sorted(TASKS))
def test_shipped_words_are_single_tokens_in_every_pattern_context(task):
    from transformers import AutoTokenizer

    from pet.core.encoding import PatternEncoder, verbalizer_tokens, word_tokens_in_context
    from pet.io.patterns import scored_verbalizer

    tokenizer = AutoTokenizer.from_pretrained(str(SHARED_MODEL))
    for pattern in load_patterns(REPO / "patterns" / f"{task}.yaml"):
        encoder = PatternEncoder(pattern, tokenizer, 128)
        before, space = encoder.context_before_mask()
        for verbalizer in load_verbalizers(REPO / "verbalizers" / f"{task}.yaml", multi_label=task in MULTI_LABEL):
            tokens = verbalizer_tokens(verbalizer, encoder, "minilm")
            verbalizer = scored_verbalizer(verbalizer)  # multi-label: the yes/no answer words
            for label, row in zip(verbalizer.labels, tokens.to_json()):
                assert len(row) == len(verbalizer.words[label])
                for word, token in zip(verbalizer.words[label], row):
                    assert word_tokens_in_context(tokenizer, word, before, space) == [token]
                    assert token != tokenizer.unk_token_id, (pattern.id, verbalizer.id, word)


# --- validation against data and tokenizer (through prepare_task) ---------------------------------

def load_task(config_path: Path, **overrides):
    from pet.io.config import load_config
    from pet.stages.teachers.task import prepare_task

    return prepare_task(load_config(config_path, overrides or None))


def test_valid_project_prepares(project):
    task = load_task(project)
    assert task.labels == ("negative", "positive")
    assert [p.id for p in task.patterns] == ["it-was", "just"]
    assert task.train.labels == [1, 0] * 4
    assert set(task.inputs) == {str(project.parent / n) for n in
                                ("train.jsonl", "unlabeled.jsonl", "test.jsonl", "patterns.yaml", "verbalizers.yaml")}


def test_placeholder_not_a_data_column(project):
    patterns = project.parent / "patterns.yaml"
    write(patterns, "patterns:\n  - id: uses-review\n    template: '{review} It was {mask}.'\n")
    with pytest.raises(PetError) as err:
        load_task(project)
    message = one_line(err)
    assert message.startswith(f"{patterns}: pattern 'uses-review' uses placeholder '{{review}}', which is not a data field")
    assert "data.fields maps: text" in message


def test_mapped_field_missing_from_data_file(project):
    with pytest.raises(PetError) as err:
        load_task(project, **{"data.fields": {"text": "sentence"}})
    message = one_line(err)
    assert message.startswith(f"{project.parent / 'train.jsonl'}: labelled file has no column 'sentence'")


def test_label_in_data_missing_from_verbalizer(project):
    rows = sentiment_rows("train", 8)
    rows[3]["label"] = "neutral"
    write_jsonl(project.parent / "train.jsonl", rows)
    with pytest.raises(PetError) as err:
        load_task(project)
    message = one_line(err)
    assert message == (f"{project.parent / 'train.jsonl'}: example 'train-3' has label 'neutral', which the verbalizer "
                       f"does not define (labels: negative, positive)")


def test_label_in_verbalizer_missing_from_data(project):
    write_jsonl(project.parent / "train.jsonl", [r for r in sentiment_rows("train", 8) if r["label"] == "positive"])
    with pytest.raises(PetError) as err:
        load_task(project)
    verbalizers = project.parent / "verbalizers.yaml"
    assert one_line(err) == (f"{verbalizers}: label 'negative' has no example in the labelled set "
                             f"{project.parent / 'train.jsonl'}; add examples or remove the label")


def test_label_in_test_set_missing_from_verbalizer(project):
    rows = sentiment_rows("test", 4)
    rows[1]["label"] = "mixed"
    write_jsonl(project.parent / "test.jsonl", rows)
    with pytest.raises(PetError) as err:
        load_task(project)
    assert "example 'test-1' has label 'mixed', which the verbalizer does not define" in one_line(err)


def set_verbalizer(config: Path, negative: str, positive: str, vid: str = "custom") -> Path:
    path = config.parent / "verbalizers.yaml"
    return write(path, f"labels: [negative, positive]\nverbalizers:\n  - id: {vid}\n"
                       f"    words: {{negative: [{negative}], positive: [{positive}]}}\n")


@pytest.mark.parametrize("word, problem", [
    ("dogs", "is 2 tokens ['dog', '##s']"),
    ("zebra", "is the unknown token"),
])
def test_verbalizer_word_not_single_token_bert(tmp_path, tiny_bert, word, problem):
    config = write_project(tmp_path, tiny_bert)
    set_verbalizer(config, "bad", word, vid="animals")
    with pytest.raises(PetError) as err:
        load_task(config)
    message = one_line(err)
    verbalizers = config.parent / "verbalizers.yaml"
    assert message.startswith(f"{verbalizers}: verbalizer 'animals' with pattern 'it-was': word '{word}' of label 'positive' {problem}")
    assert str(tiny_bert) in message


def test_verbalizer_word_not_single_token_roberta(tmp_path, tiny_roberta):
    config = write_project(tmp_path, tiny_roberta)
    set_verbalizer(config, "bad", "politics", vid="pol")
    with pytest.raises(PetError) as err:
        load_task(config)
    message = one_line(err)
    assert message.startswith(f"{config.parent / 'verbalizers.yaml'}: verbalizer 'pol' with pattern 'it-was': "
                              f"word 'politics' of label 'positive' is ")
    assert "tokens" in message and "choose a word that is a single token" in message


# --- BPE leading space ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def roberta_tokenizer(tiny_roberta):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_roberta))


def test_bpe_leading_space_changes_the_token(roberta_tokenizer):
    tok = roberta_tokenizer
    bare = tok("great", add_special_tokens=False)["input_ids"]
    spaced = tok(" great", add_special_tokens=False)["input_ids"]
    assert len(bare) == len(spaced) == 1 and bare != spaced
    assert tok.convert_ids_to_tokens(spaced) == ["\u0120great"]  # "Ġgreat"
    assert tok.convert_ids_to_tokens(bare) == ["great"]


@pytest.mark.parametrize("template, spaced", [
    ("{text} It was {mask}.", True),   # the word follows a space: "Ġgreat"
    ("{text} ({mask})", False),        # the word follows "(": "great"
    ("{mask}: {text}", False),         # the word starts the text
    ("Just {mask}! {text}", True),
])
def test_pet_picks_the_in_context_form(roberta_tokenizer, template, spaced):
    from pet.core.encoding import PatternEncoder, verbalizer_tokens, word_tokens_in_context
    from pet.io.patterns import Verbalizer

    tok = roberta_tokenizer
    expected = {w: tok((" " if spaced else "") + w, add_special_tokens=False)["input_ids"] for w in ("great", "bad")}
    pattern = Pattern("p", template, ("text",), parse_template(template, "here"))
    encoder = PatternEncoder(pattern, tok, 64)
    before, space = encoder.context_before_mask()
    assert space is spaced
    assert word_tokens_in_context(tok, "great", before, space) == expected["great"]
    verbalizer = Verbalizer("v", ("negative", "positive"), {"negative": ("bad",), "positive": ("great",)})
    tokens = verbalizer_tokens(verbalizer, encoder, "tiny-roberta")
    assert tokens.to_json() == [expected["bad"], expected["great"]]
    # and the in-context form is exactly what a whole-sentence tokenization puts after the context
    rendered = pattern.render({"text": "a movie"}, mask_token="great")
    whole = tok(rendered, add_special_tokens=False)["input_ids"]
    assert expected["great"][0] in whole


def test_bert_word_tokens_do_not_depend_on_spaces(tiny_bert):
    from transformers import AutoTokenizer

    from pet.core.encoding import word_tokens_in_context

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    great = tok.convert_tokens_to_ids("great")
    for before, space in [("was", True), ("(", False), ("", False), ("", True)]:
        assert word_tokens_in_context(tok, "great", before, space) == [great]


def test_strip_final_punctuation_loads_renders_and_round_trips(tmp_path):
    path = write(tmp_path / "nli.yaml", "patterns:\n  - id: q\n    template: '\"{hypothesis}\"? {mask}, \"{premise}\"'\n"
                                        "    strip_final_punctuation: [hypothesis]\n")
    [pattern] = load_patterns(path)
    assert pattern.strip_final_punctuation == ("hypothesis",)
    values = {"hypothesis": " It rained!?. ", "premise": "The streets were wet."}
    assert pattern.render(values) == '"It rained"? [MASK], "The streets were wet."'  # the premise keeps its period
    assert pattern.field_text("hypothesis", "U.S. troops left...") == "U.S. troops left"
    assert pattern.field_text("premise", "  Done. ") == "Done."
    assert pattern_from_json(pattern.to_json()) == pattern
    older_manifest = {k: v for k, v in pattern.to_json().items() if k != "strip_final_punctuation"}
    assert pattern_from_json(older_manifest).strip_final_punctuation == ()


def test_strip_final_punctuation_unknown_field(tmp_path):
    bad = write(tmp_path / "bad.yaml", "patterns:\n  - id: a\n    template: '{text} {mask}'\n"
                                       "    strip_final_punctuation: [hypothesis]\n")
    with pytest.raises(PetError) as err:
        load_patterns(bad)
    assert one_line(err) == (f"{bad}: pattern 'a': strip_final_punctuation names 'hypothesis', "
                             "which is not a placeholder of the template (text)")


def test_shipped_nli_patterns_strip_the_hypothesis_period():
    for pattern in load_patterns(REPO / "patterns" / "nli.yaml"):
        rendered = pattern.render({"premise": "A man sleeps.", "hypothesis": "A man rests."}, "___")
        assert "rests?" in rendered or 'rests"?' in rendered, (pattern.id, rendered)
        assert "A man sleeps." in rendered
