"""teachers.multi_token_rule: "mean" and "pet" against brute force written without the scorer.

The brute force renders each pattern by hand (string ops and the tokenizer, never the encoder or
its mask-deletion trick), runs the model's own full forward on one unpadded row at a time, and for
"pet" decodes with explicit Python loops: at each step the open mask whose target token is the most
probable is filled and the model runs again (PET's MultiMaskTaskHelper, timoschick/pet).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import sentiment_rows, write_project
from typer.testing import CliRunner

from pet.cli import app

# WordPiece pieces of the tiny BERT: bad/great 1 token, hates/badly 2, runsedly 3 (runs ##ed ##ly).
WORDS = {"negative": ["bad", "hates", "badly"], "positive": ["great", "runsedly"]}
VERBALIZERS = ("labels: [negative, positive]\n"
               "verbalizers:\n"
               "  - id: multi\n    words: {negative: [bad, hates, badly], positive: [great, runsedly]}\n")
# The tiny project's two patterns (tests/conftest.py::write_project), rendered by hand with n masks.
RENDER = {
    "it-was": lambda text, n: f"{text} It was {' '.join(['[MASK]'] * n)}.",
    "just": lambda text, n: f"Just {' '.join(['[MASK]'] * n)}! {text}",
}


def project(folder, model, rule: str):
    config = write_project(folder, model)
    (folder / "verbalizers.yaml").write_text(VERBALIZERS, encoding="utf-8")
    config.write_text(config.read_text().replace("teachers:\n", f"teachers:\n  multi_token: true\n  multi_token_rule: {rule}\n"))
    return config


def texts(count: int = 7) -> list[str]:
    # different lengths, so that the scorer's batches are padded
    return [" ".join([r["text"]] * (1 + i % 3)) for i, r in enumerate(sentiment_rows("x", count, labelled=False))]


def hand_ids(tokenizer, pattern_id: str, text: str, n: int) -> list[int]:
    return tokenizer(RENDER[pattern_id](text, n))["input_ids"]


def word_targets(tokenizer, word: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))


def full_log_probs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)


def log_mean_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


def pet_word_brute_force(model, tokenizer, pattern_id: str, text: str, word: str) -> float:
    """PET's decoding of one word on its own n-mask input: n full forward passes, plain loops."""
    targets = word_targets(tokenizer, word)
    ids = hand_ids(tokenizer, pattern_id, text, len(targets))
    slots = [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]
    assert len(slots) == len(targets)
    remaining, total = list(range(len(targets))), 0.0
    while remaining:
        log_probs = full_log_probs(model, ids)
        best, best_lp = None, None
        for j in remaining:
            lp = float(log_probs[slots[j], targets[j]])
            if best_lp is None or lp > best_lp:  # strict: the first of equals, as PET
                best, best_lp = j, lp
        total += best_lp
        ids[slots[best]] = targets[best]
        remaining.remove(best)
    return total


def pet_brute_force(model, tokenizer, pattern_id: str, rows: list[str]) -> torch.Tensor:
    return torch.tensor([[log_mean_exp([pet_word_brute_force(model, tokenizer, pattern_id, text, w) for w in WORDS[label]])
                          for label in ("negative", "positive")] for text in rows])


def one_pass_brute_force(model, tokenizer, pattern_id: str, rows: list[str], rule: str) -> torch.Tensor:
    """One forward pass with M = 3 masks; per word the mean ("mean") or sum ("pet", training form)
    of its tokens' log-probabilities at its first n masks; labels: mean, or log-mean-exp."""
    out = []
    for text in rows:
        ids = hand_ids(tokenizer, pattern_id, text, 3)
        slots = [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]
        log_probs = full_log_probs(model, ids)
        row = []
        for label in ("negative", "positive"):
            per_word = []
            for word in WORDS[label]:
                picked = [float(log_probs[slots[k], t]) for k, t in enumerate(word_targets(tokenizer, word))]
                per_word.append(sum(picked) / len(picked) if rule == "mean" else sum(picked))
            row.append(sum(per_word) / len(per_word) if rule == "mean" else log_mean_exp(per_word))
        out.append(row)
    return torch.tensor(out)


@pytest.fixture(scope="module")
def sharp_bert(tmp_path_factory, tiny_bert):
    """The tiny BERT with its matrices redrawn at std 0.3: peaked, context-dependent predictions, so
    that the decoding order and the number of masks change the scores by far more than the tolerance
    (at the default init of 0.02 every distribution is nearly uniform and they barely do)."""
    from transformers import BertForMaskedLM, BertTokenizer

    folder = tmp_path_factory.mktemp("sharp-bert")
    model = BertForMaskedLM.from_pretrained(str(tiny_bert))
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    BertTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sharp_bert):
    """{rule: task}, the tiny BERT in eval mode and the examples, shared by the module."""
    from pet.core.modeling import load_masked_lm
    from pet.io.config import load_config
    from pet.io.data import Examples
    from pet.stages.teachers.task import prepare_task

    tasks = {rule: prepare_task(load_config(project(tmp_path_factory.mktemp(rule), sharp_bert, rule))) for rule in ("mean", "pet")}
    rows = texts()
    examples = Examples([f"x-{i}" for i in range(len(rows))], {"text": rows})
    return {"tasks": tasks, "model": load_masked_lm(str(sharp_bert), torch.device("cpu")).eval(), "rows": rows, "examples": examples}


def scorer_and_sequences(setup, rule: str, pattern_id: str):
    from pet.core.scoring import MaskedLMScorer

    task = setup["tasks"][rule]
    pattern = next(p for p in task.patterns if p.id == pattern_id)
    tokens = task.verbalizer_tokens(pattern, task.verbalizers[0], 64)
    assert tokens.rule == rule and tokens.num_masks == 3
    sequences = task.encoder(pattern, 64, tokens.num_masks).encode(setup["examples"])
    # the hand rendering is the encoder's M-mask input (so the brute force scores the same text)
    assert sequences == [hand_ids(task.tokenizer, pattern_id, t, 3) for t in setup["rows"]]
    return MaskedLMScorer.for_tokenizer(setup["model"], tokens, task.tokenizer), sequences


@pytest.mark.parametrize("pattern_id", ["it-was", "just"])
@pytest.mark.parametrize("decode_rows", [256, 5])  # 5: one word per decoding chunk (batch of 4)
def test_pet_rule_inference_equals_brute_force(setup, pattern_id, decode_rows, monkeypatch):
    from pet.core import scoring

    monkeypatch.setattr(scoring, "DECODE_ROWS", decode_rows)
    scorer, sequences = scorer_and_sequences(setup, "pet", pattern_id)
    expected = pet_brute_force(setup["model"], setup["tasks"]["pet"].tokenizer, pattern_id, setup["rows"])
    torch.testing.assert_close(scorer.score(sequences, batch_size=4), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern_id", ["it-was", "just"])
def test_pet_rule_training_form_equals_brute_force(setup, pattern_id):
    """class_scores (the teacher's loss input) is PET's train_step: one pass with M masks, sums."""
    from pet.core.mlm import teacher_loss

    scorer, sequences = scorer_and_sequences(setup, "pet", pattern_id)
    expected = one_pass_brute_force(setup["model"], setup["tasks"]["pet"].tokenizer, pattern_id, setup["rows"], "pet")
    with torch.no_grad():
        ids, attention = scorer.batch(sequences)
        torch.testing.assert_close(scorer.class_scores(ids, attention), expected, atol=1e-5, rtol=1e-5)
        labels = torch.tensor([i % 2 for i in range(len(sequences))])
        loss = teacher_loss(scorer, ids, attention, labels, None, 0.0)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(expected, labels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern_id", ["it-was", "just"])
def test_mean_rule_equals_hand_computation(setup, pattern_id):
    scorer, sequences = scorer_and_sequences(setup, "mean", pattern_id)
    expected = one_pass_brute_force(setup["model"], setup["tasks"]["mean"].tokenizer, pattern_id, setup["rows"], "mean")
    torch.testing.assert_close(scorer.score(sequences, batch_size=4), expected, atol=1e-5, rtol=1e-5)


def test_mean_is_the_default_and_unchanged(setup):
    """Tokens built without a rule score exactly (bit for bit) as before the rule existed."""
    from pet.core import maths
    from pet.core.encoding import verbalizer_tokens
    from pet.core.scoring import MaskedLMScorer

    task = setup["tasks"]["mean"]
    pattern = task.patterns[0]
    tokens = verbalizer_tokens(task.verbalizers[0], task.encoder(pattern, 64), task.config.model, multi_token=True)
    assert tokens.rule == "mean" and type(task.config.teachers).model_fields["multi_token_rule"].default == "mean"
    scorer = MaskedLMScorer.for_tokenizer(setup["model"], tokens, task.tokenizer)
    ids, attention = scorer.batch(task.encoder(pattern, 64, 3).encode(setup["examples"]))
    with torch.no_grad():
        logits = scorer.mask_logits(ids, attention).float()
        assert torch.equal(scorer.class_scores(ids, attention),
                           maths.multi_token_class_scores(logits, scorer.word_ids, scorer.token_mask, scorer.word_mask))


def test_pet_rule_keeps_the_single_token_fast_path(setup):
    from pet.core.encoding import verbalizer_tokens
    from pet.core.scoring import MaskedLMScorer
    from pet.io.patterns import Verbalizer

    task = setup["tasks"]["pet"]
    single = Verbalizer("single", ("negative", "positive"), {"negative": ("bad",), "positive": ("good", "great")})
    tokens = verbalizer_tokens(single, task.encoder(task.patterns[0], 64), task.config.model, multi_token=True, rule="pet")
    scorer = MaskedLMScorer.for_tokenizer(setup["model"], tokens, task.tokenizer)
    assert tokens.token_mask is None and scorer.rule == "mean"
    sequences = task.encoder(task.patterns[0], 64).encode(setup["examples"])
    ids, attention = scorer.batch(sequences)
    with torch.no_grad():
        raw = scorer.mask_logits(ids, attention)
    # raw logits, not log-probabilities: the mean of the words' logits at the one mask
    ids_bad, ids_good, ids_great = (task.tokenizer.convert_tokens_to_ids(w) for w in ("bad", "good", "great"))
    torch.testing.assert_close(scorer.score(sequences, 4),
                               torch.stack([raw[:, ids_bad], (raw[:, ids_good] + raw[:, ids_great]) / 2], -1))


def test_decoding_helpers_by_hand():
    from pet.core import maths
    from pet.core.scoring import drop_masks

    assert drop_masks([101, 7, 4, 4, 4, 9, 102], 4, 3, 1) == [101, 7, 4, 9, 102]
    assert drop_masks([101, 4, 4, 102], 4, 2, 2) == [101, 4, 4, 102]
    lp = torch.tensor([[-1.0, -0.5, -0.5], [-2.0, -3.0, -0.1]])
    choice, value = maths.fill_most_probable(lp, torch.tensor([[False, False, False], [False, False, True]]))
    assert choice.tolist() == [1, 0] and value.tolist() == [-0.5, -2.0]  # ties: the first mask
    scores = torch.tensor([[[math.log(0.2), math.log(0.4)], [math.log(0.3), 7.0]]])
    got = maths.log_mean_exp_words(scores, torch.tensor([[True, True], [True, False]]))
    torch.testing.assert_close(got, torch.tensor([[math.log(0.3), math.log(0.3)]]))


def test_run_with_the_pet_rule(tmp_path, sharp_bert):
    """pet run end to end; stage B's teacher logits are the reloaded scorer's and the brute force's."""
    import pyarrow.parquet as pq

    from pet.core.encoding import PatternEncoder, VerbalizerTokens
    from pet.core.modeling import load_masked_lm, load_tokenizer
    from pet.core.scoring import MaskedLMScorer
    from pet.io.data import Examples
    from pet.io.patterns import pattern_from_json
    from pet.stages.teachers.load import TeacherSource

    config = project(tmp_path, sharp_bert, "mean")  # the command line turns the rule on
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(run), "--teachers.multi_token", "true",
                                      "--teachers.multi_token_rule", "pet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "teachers" / "manifest.json").read_text())
    assert manifest["config"]["teachers"]["multi_token_rule"] == "pet"
    table = pq.read_table(str(run / "labels" / "soft_labels.parquet")).to_pydict()
    examples = Examples(table["id"], {"text": table["text"]})
    stage_b = torch.tensor(table["teacher_logits"])  # [N, K, C], teachers in manifest order
    for k, entry in enumerate(manifest["teachers"]):
        folder = run / "teachers" / entry["path"]
        record = json.loads((folder / "teacher.json").read_text())
        assert record["multi_token_rule"] == "pet" and record["num_masks"] == 3
        assert all(math.isfinite(loss) for loss in record["metrics"]["losses"])  # PET's sums + log-mean-exp, with the MLM rows
        tokenizer, model = load_tokenizer(str(folder)), load_masked_lm(str(folder), torch.device("cpu")).eval()
        words = tuple(tuple(WORDS[label]) for label in ("negative", "positive"))
        tokens = VerbalizerTokens.from_json(record["verbalizer_token_ids"], words, record["multi_token_rule"])
        encoder = PatternEncoder(pattern_from_json(record["pattern"]), tokenizer, 64, tokens.num_masks)
        scores = MaskedLMScorer.for_tokenizer(model, tokens, tokenizer).score(encoder.encode(examples), 8)
        torch.testing.assert_close(stage_b[:, k], scores, atol=1e-5, rtol=1e-5)
        expected = pet_brute_force(model, tokenizer, entry["pattern"], table["text"][:4])
        torch.testing.assert_close(stage_b[:4, k], expected, atol=1e-5, rtol=1e-5)
    # Stage B's loader reads the rule from the record; a record from before the rule existed is "mean".
    source = TeacherSource.of(run / "teachers", manifest, 64, torch.device("cpu"))
    entry = manifest["teachers"][0]
    assert source.load(entry).scorer.rule == "pet"
    record_path = run / "teachers" / entry["path"] / "teacher.json"
    old = {k: v for k, v in json.loads(record_path.read_text()).items() if k != "multi_token_rule"}
    record_path.write_text(json.dumps(old))
    assert source.load(entry).scorer.rule == "mean"


def test_an_unknown_rule_is_a_one_line_config_error(tmp_path, tiny_bert):
    config = project(tmp_path, tiny_bert, "sum")
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "t")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "multi_token_rule" in errors[0] and "'mean'" in errors[0] and "'pet'" in errors[0], result.stderr
