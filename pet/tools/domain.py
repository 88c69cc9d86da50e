"""How far the task's unlabeled text is from the model's own: its masked-LM loss there, before any training.

``pet adapt`` (task-adaptive pretraining) helped where the model's MLM head had not seen text like the
task's and cost points where it had (BENCHMARKS.md, "Task-adaptive pretraining"); the loss the untrained
model reaches on the unlabeled set tells the two apart without labels. It is measured the way
``pet adapt`` trains: the plain texts (pairs as the tokenizer encodes pairs), truncated to the adaptation's
``max_length``, BERT's 15% / 80-10-10 masking from a fixed seed, cross-entropy (log_softmax) at the
targets, averaged over every target token of a seeded sample of at most ``examples`` texts. Same config
and seed, same number; so a rerun of ``pet run`` reuses the loss its decision file recorded when the
model, the unlabeled file and the measuring settings are the ones it was measured on, and decides
again against the threshold set now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pet.core.progress import info, progress
from pet.io.config import RunConfig

SAMPLE = 512  # texts: 15-60 s for a 22M-parameter model on one CPU thread; three samples of a task differed by up to 0.23
BATCH = 32


@dataclass(frozen=True)
class DomainLoss:
    """The untrained model's MLM loss on a sample of the unlabeled set (nats per masked token), and
    whether its MLM head was newly initialised (then the loss measures a random head, not the text)."""

    loss: float
    texts: int
    targets: int
    new_head: bool = False

    def record(self) -> dict[str, Any]:
        return {"mlm_loss": round(self.loss, 4), "texts": self.texts, "targets": self.targets, "new_head": self.new_head}


def measurement_reads(config: RunConfig, examples: int = SAMPLE, seed: int = 0) -> dict[str, Any]:
    """Everything the loss depends on (the threshold is not: a new threshold decides again on the same loss)."""
    from pet.io.artifacts import file_hash, model_reads
    from pet.tools.adapt import text_length

    return {
        **model_reads(config.model),
        "runtime.trust_remote_code": config.runtime.trust_remote_code,
        "data.fields": config.data.fields,
        "inputs.data.unlabeled": file_hash(config.data.unlabeled),
        "adapt.mlm_probability": config.adapt.mlm_probability,
        "adapt.max_length": text_length(config, config.adapt),
        "examples": examples,
        "seed": seed,
    }


def unlabeled_mlm_loss(config: RunConfig, examples: int = SAMPLE, seed: int = 0, *,
                       loaded: tuple[Any, bool] | None = None) -> DomainLoss:
    """The masked-LM loss of ``config.model`` (untrained, eval mode) on up to ``examples`` texts of
    ``config.data.unlabeled``, drawn with ``seed``. ``loaded``: (that model already in memory, whether
    its MLM head was newly initialised), as ``pet check``'s session holds it, instead of a second copy."""
    from pet.core.encoding import pad
    from pet.core.maths import masked_lm_loss
    from pet.core.mlm import IGNORE, MlmMasker
    from pet.core.modeling import load_masked_lm_and_new_head, pick_device
    from pet.core.scoring import MaskedLMScorer
    from pet.tools.adapt import Corpus

    settings = config.adapt.model_copy(update={"prompts": False})
    corpus = Corpus.open(config, settings)
    device = pick_device(config.runtime.device)
    model, new_head = loaded or load_masked_lm_and_new_head(config.model, device, config.runtime.trust_remote_code)
    model.eval()
    scorer = MaskedLMScorer.for_vocabulary(model, corpus.tokenizer)
    masker = MlmMasker(corpus.tokenizer, model.get_input_embeddings().num_embeddings, settings.mlm_probability, seed=seed + 1)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(corpus), generator=generator)[:examples].sort().values.tolist()
    total, targets = 0.0, 0
    with torch.no_grad(), progress("masked-LM loss on unlabeled text", len(chosen)) as advance:
        for start in range(0, len(chosen), BATCH):
            batch = chosen[start:start + BATCH]
            ids, attention = pad(corpus.encode(batch, generator), scorer.pad_token_id)
            masked, labels = masker(ids, attention)
            rows, cols = (labels != IGNORE).nonzero(as_tuple=True)
            if len(rows):
                logits = scorer.logits_at(masked.to(device), attention.to(device), (rows.to(device), cols.to(device)))[0]
                total += float(masked_lm_loss(logits, labels[rows, cols].to(device))) * len(rows)
                targets += len(rows)
            advance(len(batch))
    return DomainLoss(total / max(targets, 1), len(chosen), targets, bool(new_head))


@dataclass(frozen=True)
class AdaptDecision:
    """``adapt.enabled: auto`` decided: adapt when the untrained model's MLM loss is above the threshold."""

    measured: DomainLoss
    threshold: float

    @property
    def adapt(self) -> bool:
        # A newly initialised head's loss is that of random logits (about log V), whatever the text: it says
        # nothing about the domain, and adapting such a model was never measured, so auto leaves it alone.
        return not self.measured.new_head and self.measured.loss > self.threshold

    def record(self) -> dict[str, Any]:
        return {"setting": "auto", "adapt": self.adapt, "threshold": self.threshold, **self.measured.record()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "AdaptDecision":
        """The decision ``record()`` wrote (``adapt`` is derived again, not read)."""
        measured = DomainLoss(float(record["mlm_loss"]), int(record["texts"]), int(record["targets"]), bool(record["new_head"]))
        return cls(measured, record["threshold"])

    def finding(self) -> str:
        """What was measured, against what: the one wording of the decision's reason, shared by ``pet run``'s
        log line and closing summary and by ``pet check``'s domain section."""
        measured = f"MLM loss {self.measured.loss:.2f} on {self.measured.texts} unlabeled texts"
        if self.measured.new_head:
            return f"{measured}, from a newly initialised MLM head: no measure of the text"
        return f"{measured}, {'above' if self.adapt else 'not above'} adapt.auto_threshold {self.threshold:g}"

    def describe(self, done: bool = False) -> str:
        """``pet run``'s line: while deciding, what it does next; once ``done``, what it did."""
        if done:
            action = "adapted" if self.adapt else "not adapted"
        elif self.adapt:
            action = "adapting the model on it first"
        else:
            action = "training from the model as it is" + (" (adapt.enabled: true adapts it anyway)" if self.measured.new_head else "")
        return f"adapt: auto: {self.finding()}: {action}"


def decide_adaptation(config: RunConfig, record: Path) -> AdaptDecision:
    """Measure and decide once (the main process, under torchrun), write the decision to ``record`` (JSON)
    and return it; every process reads the same file, so all of them take the same branch. A loss that
    ``record`` already holds for exactly these reads is reused instead of measured again."""
    from pet.core.distributed import current_ranks
    from pet.io.artifacts import fingerprint_of, write_json_atomic

    ranks = current_ranks()
    if ranks.main:
        stamp = fingerprint_of(measurement_reads(config))
        measured = recorded_loss(record, stamp)
        if measured is None:
            measured = unlabeled_mlm_loss(config)
        else:
            info(f"adapt: auto: reusing the MLM loss {record} recorded for this model, text and settings")
        decision = AdaptDecision(measured, config.adapt.auto_threshold)
        write_json_atomic(record, {**decision.record(), "fingerprint": stamp})
        info(decision.describe())
    ranks.barrier()
    return AdaptDecision.from_record(json.loads(record.read_text(encoding="utf-8")))


def recorded_loss(record: Path, stamp: str) -> DomainLoss | None:
    """The loss a decision file holds when it was measured on the reads ``stamp`` names; None when there is
    none, it was measured on other reads, or the file is not a decision pet wrote (then it is measured again
    and the file rewritten: it is a cache of a measurement, not an input)."""
    try:
        written = json.loads(record.read_text(encoding="utf-8"))
        if written.get("fingerprint") != stamp:
            return None
        return AdaptDecision.from_record(written).measured
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
