"""The auxiliary MLM loss of stage A: masking statistics and exclusions, loss mixing, wiring."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import sentiment_rows, write_project
from typer.testing import CliRunner

from pet.cli import app


def encode_batch(config_path, rows: int):
    from pet.io.config import load_config
    from pet.io.data import Examples
    from pet.core.encoding import pad
    from pet.stages.teachers.task import prepare_task

    task = prepare_task(load_config(config_path))
    texts = sentiment_rows("u", rows, labelled=False)
    # Vary lengths a lot so that every batch has padding.
    examples = Examples([r["id"] for r in texts], {"text": [" ".join([r["text"]] * (1 + i % 4)) for i, r in enumerate(texts)]})
    sequences = task.encoder(task.patterns[0], 64).encode(examples)
    input_ids, attention = pad(sequences, task.tokenizer.pad_token_id)
    return task, input_ids, attention


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_masking_never_targets_padding_special_tokens_or_the_pattern_mask(tmp_path, model, request):
    from pet.core.mlm import MlmMasker

    model_dir = request.getfixturevalue(model)
    task, input_ids, attention = encode_batch(write_project(tmp_path, model_dir), 64)
    tokenizer = task.tokenizer
    assert (attention == 0).any() and (input_ids == tokenizer.mask_token_id).sum() == 64  # padding and one mask per row
    masker = MlmMasker(tokenizer, len(tokenizer), 0.15, seed=0)
    special = set(tokenizer.all_special_ids) | {tokenizer.mask_token_id, tokenizer.pad_token_id}
    never = (attention == 0) | torch.isin(input_ids, torch.tensor(sorted(special)))
    expected_eligible = ~never
    assert torch.equal(masker.eligible(input_ids, attention), expected_eligible)
    # A large sample in one call: the same rendered batch 300 times over.
    input_ids, attention, never = input_ids.repeat(300, 1), attention.repeat(300, 1), never.repeat(300, 1)
    eligible_total = int((~never).sum())
    masked, targets = masker(input_ids, attention)
    chosen = targets != -100
    assert not (chosen & never).any()  # exactly: no padding, special token or pattern mask is a target
    assert torch.equal(targets[chosen], input_ids[chosen])  # targets are the original tokens
    assert torch.equal(masked[~chosen], input_ids[~chosen])  # nothing else is touched
    replaced = masked[chosen]
    random = (replaced != tokenizer.mask_token_id) & (replaced != input_ids[chosen])
    assert not torch.isin(replaced[random], torch.tensor(sorted(special))).any()  # random tokens are real words
    counts = {"mask": int((replaced == tokenizer.mask_token_id).sum()), "random": int(random.sum()),
              "kept": int((replaced == input_ids[chosen]).sum())}
    chosen_total = int(chosen.sum())
    share = chosen_total / eligible_total
    assert share == pytest.approx(0.15, abs=0.005)
    # 80/10/10 (a random token equal to the original counts as kept: probability 1/vocabulary).
    assert counts["mask"] / chosen_total == pytest.approx(0.8, abs=0.01)
    assert counts["random"] / chosen_total == pytest.approx(0.1, abs=0.01)
    assert counts["kept"] / chosen_total == pytest.approx(0.1, abs=0.01)


def test_masking_is_seeded(tmp_path, tiny_bert):
    from pet.core.mlm import MlmMasker

    task, input_ids, attention = encode_batch(write_project(tmp_path, tiny_bert), 16)
    first = MlmMasker(task.tokenizer, len(task.tokenizer), 0.15, seed=7)
    second = MlmMasker(task.tokenizer, len(task.tokenizer), 0.15, seed=7)
    for _ in range(3):
        a, b = first(input_ids, attention), second(input_ids, attention)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other = MlmMasker(task.tokenizer, len(task.tokenizer), 0.15, seed=8)(input_ids, attention)
    assert not torch.equal(other[1], MlmMasker(task.tokenizer, len(task.tokenizer), 0.15, seed=7)(input_ids, attention)[1])


@pytest.mark.parametrize("model_name", ["tiny_bert", "tiny_roberta"])
def test_loss_is_one_minus_a_ce_plus_a_mlm(tmp_path, model_name, request):
    """teacher_loss against a hand computation from the full model output on a fixed batch."""
    from pet.core.mlm import MlmMasker, teacher_loss
    from pet.core.modeling import load_masked_lm
    from pet.core.scoring import MaskedLMScorer

    model_dir = request.getfixturevalue(model_name)
    task, input_ids, attention = encode_batch(write_project(tmp_path, model_dir), 12)
    model = load_masked_lm(str(model_dir), torch.device("cpu")).eval()  # eval: no dropout, so passes agree
    tokens = task.verbalizer_tokens(task.patterns[0], task.verbalizers[0], 64)
    scorer = MaskedLMScorer(model, tokens, task.tokenizer.mask_token_id, task.tokenizer.pad_token_id)
    labelled, labelled_attention = input_ids[:4], attention[:4]
    labels = torch.tensor([1, 0, 1, 0])
    masked, targets = MlmMasker(task.tokenizer, len(task.tokenizer), 0.15, seed=3)(input_ids, attention)
    assert (targets != -100).sum() > 5
    with torch.no_grad():
        # By hand: CE over the class scores (mean raw logit of each label's words at the mask) ...
        logits = model(input_ids=labelled, attention_mask=labelled_attention).logits
        at_mask = logits[torch.arange(4), (labelled == task.tokenizer.mask_token_id).int().argmax(-1)]
        scores = at_mask[:, tokens.ids[:, 0]]  # one word per label
        ce = -(scores.log_softmax(-1)[torch.arange(4), labels]).mean()
        # ... and the mean negative log-likelihood of every MLM target.
        mlm_logits = model(input_ids=masked, attention_mask=attention).logits.log_softmax(-1)
        where = targets != -100
        mlm = -mlm_logits[where].gather(-1, targets[where][:, None]).mean()
        for a in (0.0, 1e-4, 0.3):
            got = teacher_loss(scorer, labelled, labelled_attention, labels, (masked, attention, targets), a)
            assert float(got) == pytest.approx(float((1 - a) * ce + a * mlm), rel=1e-5, abs=1e-6)
        assert float(teacher_loss(scorer, labelled, labelled_attention, labels, None, 0.3)) == pytest.approx(float(ce), rel=1e-5)
        # The two batches share one forward pass, padded to the longer one: padding either must not matter.
        pad_id = task.tokenizer.pad_token_id
        wider_mlm = (F.pad(masked, (0, 3), value=pad_id), F.pad(attention, (0, 3)), F.pad(targets, (0, 3), value=-100))
        wider_labelled = (F.pad(labelled, (0, 5), value=pad_id), F.pad(labelled_attention, (0, 5)))
        for batch, mlm_batch in (((labelled, labelled_attention), wider_mlm), (wider_labelled, (masked, attention, targets))):
            got = teacher_loss(scorer, *batch, labels, mlm_batch, 0.3)
            assert float(got) == pytest.approx(float(0.7 * ce + 0.3 * mlm), rel=1e-5, abs=1e-6)
    # A batch without any MLM target adds nothing but still backpropagates.
    no_targets = torch.full_like(targets, -100)
    loss = teacher_loss(scorer, labelled, labelled_attention, labels, (masked, attention, no_targets), 0.3)
    assert float(loss.detach()) == pytest.approx(float(0.7 * ce), rel=1e-5)
    loss.backward()


def test_no_targets_gives_zero_mlm_loss(tmp_path, tiny_bert):
    from pet.core import maths

    logits = torch.randn(3, 5, 10, requires_grad=True)
    loss = maths.masked_lm_loss(logits, torch.full((3, 5), -100))
    assert float(loss.detach()) == 0.0
    loss.backward()
    targets = torch.full((3, 5), -100)
    targets[0, 1], targets[2, 4] = 3, 7
    expected = F.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1), ignore_index=-100)
    assert float(maths.masked_lm_loss(logits, targets).detach()) == pytest.approx(float(expected.detach()))
    assert float(maths.mixed_loss(torch.tensor(2.0), torch.tensor(10.0), 0.25)) == pytest.approx(0.75 * 2 + 0.25 * 10)


def test_each_step_draws_three_times_as_many_unlabeled_examples(tmp_path, tiny_bert, monkeypatch):
    from pet.core import mlm
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    shapes = []
    original = mlm.MlmMasker.__call__

    def spy(self, input_ids, attention_mask):
        shapes.append(tuple(input_ids.shape))
        return original(self, input_ids, attention_mask)

    monkeypatch.setattr(mlm.MlmMasker, "__call__", spy)
    config = load_config(write_project(tmp_path, tiny_bert), {"teachers.mlm_weight": 1e-4, "patterns.ids": ["it-was"]})
    manifest = train_teachers(config, tmp_path / "teachers")
    assert [s[0] for s in shapes] == [12, 12, 12]  # batch 4 labelled, 3 steps -> 12 unlabeled per step
    record = json.loads((tmp_path / "teachers" / manifest["teachers"][0]["path"] / "teacher.json").read_text())
    assert record["mlm_weight"] == 1e-4


def test_aux_loss_changes_training_and_is_deterministic(tmp_path, tiny_bert):
    from pet.io.config import load_config
    from pet.stages.teachers.stage import train_teachers

    def losses(folder, weight):
        project = write_project(tmp_path / folder, tiny_bert)
        config = load_config(project, {"teachers.mlm_weight": weight, "patterns.ids": ["it-was"], "teachers.steps": 4})
        manifest = train_teachers(config, tmp_path / folder / "teachers")
        path = tmp_path / folder / "teachers" / manifest["teachers"][0]["path"] / "teacher.json"
        return json.loads(path.read_text())["metrics"]["losses"]

    with_mlm, again, without = losses("a", 0.5), losses("b", 0.5), losses("c", 0.0)
    assert with_mlm == again  # masking and unlabeled batches are seeded from the teacher's identity
    assert with_mlm != without


def test_mlm_weight_from_cli_and_validation(tmp_path, tiny_bert):
    config = write_project(tmp_path, tiny_bert)
    out = tmp_path / "teachers"
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(out), "--teachers.mlm_weight", "1e-4",
                                      "--teachers.unlabeled_ratio", "2", "--patterns.ids", "[just]"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "manifest.json").read_text())["config"]["teachers"]
    assert recorded["mlm_weight"] == 1e-4 and recorded["unlabeled_ratio"] == 2 and recorded["mlm_probability"] == 0.15
    bad = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "t2"), "--teachers.mlm_weight", "1.5"])
    assert bad.exit_code == 1 and "mlm_weight" in bad.output
    typo = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "t3"), "--teachers.mlm_wieght", "0"])
    assert typo.exit_code == 1 and "did you mean --teachers.mlm_weight" in typo.output


def test_default_is_the_paper_value():
    from pet.io.config import TeachersConfig

    settings = TeachersConfig()
    assert settings.mlm_weight == 1e-4 and settings.unlabeled_ratio == 3 and settings.mlm_probability == 0.15
