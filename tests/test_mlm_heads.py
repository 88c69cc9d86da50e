"""The mask-only vocabulary projection equals each architecture's full *ForMaskedLM forward.

Tiny random models built from configs (vocab 100, hidden 32, 2 layers, 4 heads, intermediate 37):
the scorer's fast path (base model, then the head at the mask only) must give the logits, class
scores and gradients of the model's own forward. A model whose head pet does not know is scored
with the full forward, with one warning.
"""

from __future__ import annotations

import logging

import pytest
import torch

from pet.core import scoring
from pet.core.encoding import tokens_from_rows
from pet.core.scoring import MaskedLMScorer

VOCAB, MASK, PAD = 100, 4, 0
SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, pad_token_id=PAD)


def _bert_like(config_class, model_class, **extra):
    import transformers

    return lambda: getattr(transformers, model_class)(getattr(transformers, config_class)(**{**SIZES, **extra}))


def _distilbert():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                  max_position_embeddings=64, pad_token_id=PAD))


def _modernbert():
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    config = ModernBertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=37, max_position_embeddings=64, pad_token_id=PAD,
                              bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, mask_token_id=MASK,
                              global_attn_every_n_layers=2, local_attention=16)
    return ModernBertForMaskedLM(config)


ARCHITECTURES = {
    "bert": _bert_like("BertConfig", "BertForMaskedLM"),
    "roberta": _bert_like("RobertaConfig", "RobertaForMaskedLM", pad_token_id=1, type_vocab_size=1),
    "xlm-roberta": _bert_like("XLMRobertaConfig", "XLMRobertaForMaskedLM", pad_token_id=1, type_vocab_size=1),
    "camembert": _bert_like("CamembertConfig", "CamembertForMaskedLM", pad_token_id=1, type_vocab_size=1),
    "albert": _bert_like("AlbertConfig", "AlbertForMaskedLM", embedding_size=16),
    "distilbert": _distilbert,
    "electra": _bert_like("ElectraConfig", "ElectraForMaskedLM", embedding_size=16),
    "deberta": _bert_like("DebertaConfig", "DebertaForMaskedLM"),
    "deberta-legacy-false": _bert_like("DebertaConfig", "DebertaForMaskedLM", legacy=False),
    "deberta-v2": _bert_like("DebertaV2Config", "DebertaV2ForMaskedLM"),
    "deberta-v3": _bert_like("DebertaV2Config", "DebertaV2ForMaskedLM", legacy=False, relative_attention=True,
                             position_buckets=16, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                             position_biased_input=False, max_relative_positions=-1),
    "modernbert": _modernbert,
}


class Records(logging.Handler):
    """Collects the 'pet' logger's records whatever its propagate setting (the CLI turns it off)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_seen():
    handler = Records()
    logger = logging.getLogger("pet")
    logger.addHandler(handler)
    scoring._warned.clear()
    yield handler.messages
    logger.removeHandler(handler)


def tokens():
    # two labels: (7, 9) and (11,); a third label with words 13 and 15 averages two words
    return tokens_from_rows([[[7], [9]], [[11]], [[13], [15]]], (("a", "b"), ("c",), ("d", "e")), multi=False)


def batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (3, 9), generator=generator)
    ids[:, 0] = 1
    ids[0, 4], ids[1, 2], ids[2, 6] = MASK, MASK, MASK
    attention = torch.ones_like(ids)
    ids[1, 7:], attention[1, 7:] = PAD, 0  # one padded row
    return ids, attention, torch.tensor([4, 2, 6])


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def model(request):
    torch.manual_seed(0)
    return request.param, ARCHITECTURES[request.param]().eval()


def test_fast_path_equals_full_forward(model):
    name, model = model
    scorer = MaskedLMScorer(model, tokens(), MASK, PAD)
    assert scorer.head is not None, f"{name}: no mask-only projection"
    ids, attention, positions = batch()
    rows = torch.arange(3)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=attention).logits[rows, positions]
        fast = scorer.mask_logits(ids, attention)
        scores = scorer.class_scores(ids, attention)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    expected = torch.stack([full[:, [7, 9]].mean(-1), full[:, 11], full[:, [13, 15]].mean(-1)], -1)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_fast_path_gradients_equal_full_forward(model):
    name, model = model
    scorer = MaskedLMScorer(model, tokens(), MASK, PAD)
    ids, attention, _ = batch()
    gradients = []
    for head in (scorer.head, None):  # fast path, then the full forward
        scorer.head = head
        model.zero_grad()
        scorer.class_scores(ids, attention).square().sum().backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    fast, full = gradients
    assert fast.keys() == full.keys() and fast, name
    for key in fast:
        torch.testing.assert_close(fast[key], full[key], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name} {key}: {m}")
    model.zero_grad()


def _subclass(scale: float):
    from transformers import BertConfig, BertForMaskedLM

    class ScaledBert(BertForMaskedLM):
        """Not one of transformers' own classes, and its forward does more than the head."""

        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * scale
            return out

    torch.manual_seed(0)
    return ScaledBert(BertConfig(**SIZES)).eval()


def test_unknown_architecture_whose_head_differs_warns_and_uses_full_forward(warnings_seen):
    model = _subclass(2.0)
    scorer = MaskedLMScorer(model, tokens(), MASK, PAD)
    MaskedLMScorer(model, tokens(), MASK, PAD)  # a second scorer: no second warning
    assert scorer.head is None
    assert len(warnings_seen) == 1 and "ScaledBert" in warnings_seen[0] and "full forward" in warnings_seen[0]
    ids, attention, positions = batch()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=attention).logits[torch.arange(3), positions]
        torch.testing.assert_close(scorer.mask_logits(ids, attention), expected)


def test_unknown_architecture_with_a_standard_head_is_checked_and_kept(warnings_seen):
    model = _subclass(1.0)
    model.train()
    scorer = MaskedLMScorer(model, tokens(), MASK, PAD)
    assert scorer.head is not None and not warnings_seen
    assert model.training  # the check ran in eval mode and put the model back


def test_model_without_any_known_head_warns(warnings_seen):
    from transformers import BertConfig, BertForMaskedLM

    class Renamed(BertForMaskedLM):
        def __init__(self, config):
            super().__init__(config)
            self.vocab_head = self.cls
            del self.cls

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return type("Out", (), {"logits": self.vocab_head(hidden)})()

    torch.manual_seed(0)
    model = Renamed(BertConfig(**SIZES)).eval()
    scorer = MaskedLMScorer(model, tokens(), MASK, PAD)
    assert scorer.head is None and len(warnings_seen) == 1 and "Renamed" in warnings_seen[0]
    ids, attention, positions = batch()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=attention).logits[torch.arange(3), positions]
        torch.testing.assert_close(scorer.mask_logits(ids, attention), expected)
