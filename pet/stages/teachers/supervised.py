"""The supervised member of the ensemble (``teachers.supervised``): plain fine-tuning as one more teacher.

A pattern teacher knows what its pattern lets the masked LM see; where the patterns are weak, an
ensemble of them can fall far below ordinary fine-tuning on the same labelled set. The supervised
member *is* ordinary fine-tuning, trained in stage A as one more teacher per seed
(``supervised--s<seed>``, after the pattern teachers): ``AutoModelForSequenceClassification`` from the
run's model (or from ``teachers.supervised_model``, with that checkpoint's own tokenizer) with the
verbalizer's labels in their order (``id2label``/``label2id``), trained with cross-entropy on the
labelled set (multi-label tasks: a ``multi_label_classification`` model trained with binary
cross-entropy on the label sets, whose logits are per-label decision logits like a multi-label pattern
teacher's) by the shared loop (pet/core/training.py), with the teachers' steps, batch size, learning
rate (``auto`` too), weight decay, warm-up, clipping and max_length, its seed derived from its name. It reads the data fields as the student does (pet/core/classifier.py):
one field is the text, two a tokenizer pair, further ones joined to the second with the tokenizer's
separator token.

Its folder holds a ``save_pretrained`` classifier, the tokenizer and ``teacher.json`` (``"kind":
"classifier"``), written in one rename like every teacher's; stage B, ``pet evaluate`` and the
report score it as [N, C] logits in label order. Under iPET it is a member of every generation: in
generation j >= 1 it trains on that generation's training set (the labelled set plus what the other
teachers of generation j - 1 labelled), and teaches the pattern teachers of generation j + 1 as they
teach it. Its ensemble weight is chosen in
pet/core/ensemble.py: its accuracy before training is that of a random head, so ``wmean`` gives it the
mean of the pattern teachers' weights; ``cv`` gives it its cross-validated accuracy (crossval.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pet.core import maths
from pet.core.classifier import CLASSIFIER, ClassifierEncoder, ClassifierScorer, pad_token_id, separator_join
from pet.core.training import EpochSampler, OptimSettings, train
from pet.errors import PetError
from pet.io.config import RunConfig, TeachersConfig
from pet.io.data import Examples
from pet.stages.teachers.context import TeacherContext, TeacherJob
from pet.stages.teachers.specs import ClassifierSpec
from pet.core.metrics import labelled_score
from pet.core.multilabel import multi_hot
from pet.stages.teachers.teacher import save_teacher, training_metrics


def check_settings(config: RunConfig) -> None:
    """Combinations the supervised member cannot be part of: one line each, before anything is read."""
    if not config.teachers.supervised:
        if config.teachers.supervised_model is not None:
            raise PetError("teachers.supervised_model is the supervised member's starting checkpoint, and teachers.supervised "
                           "is false, so there is no member; set teachers.supervised: true, or drop teachers.supervised_model")
        return
    if config.teachers.zero_shot:
        raise PetError("teachers.supervised: true fine-tunes a classifier on the labelled set, and teachers.zero_shot: true "
                       "trains on none; set one of them to false")


def member_spec(config: RunConfig, labels: Sequence[str], seed: int | None, fold: int | None = None,
                generation: int = 0) -> ClassifierSpec:
    return ClassifierSpec(tuple(labels), tuple(config.data.fields), seed, fold, generation)


def member_specs(config: RunConfig, labels: Sequence[str], generation: int = 0) -> list[ClassifierSpec]:
    """One supervised member per seed of one generation (none unless teachers.supervised)."""
    if not config.teachers.supervised:
        return []
    return [member_spec(config, labels, seed, generation=generation) for seed in config.teachers.seeds]


def supervised_jobs(config: RunConfig, labels: Sequence[str], ctx: TeacherContext) -> list[TeacherJob]:
    """One supervised member per seed (none unless teachers.supervised), each trained on the labelled set."""
    return [TeacherJob(spec, spec.name, ctx.labelled, config.teachers.steps) for spec in member_specs(config, labels)]


def member_checkpoint(ctx: TeacherContext) -> str:
    """What the member starts from: teachers.supervised_model, else the pattern teachers' model."""
    return ctx.settings.supervised_model or ctx.model


class LoadedClassifier:
    """A fresh classifier from the member's checkpoint (its head initialised from the spec's seed), with its
    tokenizer, encoder and scorer."""

    def __init__(self, spec: ClassifierSpec, ctx: TeacherContext):
        from pet.core.modeling import load_classifier, load_tokenizer

        self.checkpoint = member_checkpoint(ctx)
        # its own tokenizer when it has its own checkpoint: a sentence encoder's vocabulary need not be the MLM's
        self.tokenizer = ctx.tokenizer if self.checkpoint == ctx.model else load_tokenizer(self.checkpoint, ctx.runtime.trust_remote_code)
        torch.manual_seed(spec.derived_seed)  # the new classification head and dropout
        self.multi_label = ctx.labelled.label_sets is not None  # multi-label task: a sigmoid per label, trained with BCE
        self.model = load_classifier(self.checkpoint, list(spec.labels), ctx.device, ctx.runtime.trust_remote_code, self.multi_label)
        self.encoder = ClassifierEncoder(self.tokenizer, spec.fields, ctx.settings.max_length, separator_join(self.tokenizer))
        self.scorer = ClassifierScorer(self.model, pad_token_id(self.tokenizer))


def optim_settings(settings: TeachersConfig, steps: int, learning_rate: float) -> OptimSettings:
    return OptimSettings(steps, learning_rate, settings.weight_decay, settings.warmup_steps, settings.max_grad_norm)


def fit_classifier(loaded: LoadedClassifier, spec: ClassifierSpec, ctx: TeacherContext, examples: Examples,
                   steps: int) -> tuple[list[float], float]:
    """Train ``loaded`` on ``examples`` for ``steps`` steps; returns (the loss of every step, the learning rate used)."""
    from pet.core.modeling import resolved_learning_rate

    learning_rate = resolved_learning_rate(ctx.settings.learning_rate, loaded.model)
    losses = train(loaded.model, step_loss_fn(loaded, ctx, spec, examples), optim_settings(ctx.settings, steps, learning_rate),
                   ctx.device, ctx.runtime.precision, f"supervised member {spec.name}")
    return losses, learning_rate


def step_loss_fn(loaded: LoadedClassifier, ctx: TeacherContext, spec: ClassifierSpec, examples: Examples) -> Callable[[int], torch.Tensor]:
    """Cross-entropy of one labelled batch (multi-label: binary cross-entropy on the label sets); batches
    from a generator seeded by the member's name."""
    sequences = loaded.encoder.encode(examples)
    if loaded.multi_label:
        labels, loss = multi_hot(examples.label_sets, len(spec.labels)), maths.decision_cross_entropy
    else:
        labels, loss = torch.tensor(examples.labels), maths.class_cross_entropy
    sampler = EpochSampler(len(sequences), ctx.settings.batch_size, torch.Generator().manual_seed(spec.derived_seed))

    def step_loss(step: int) -> torch.Tensor:
        batch = sampler.next()
        logits = loaded.scorer.class_scores(*loaded.scorer.batch([sequences[i] for i in batch]))
        return loss(logits, labels[batch].to(ctx.device))

    return step_loss


def train_classifier(job: TeacherJob, ctx: TeacherContext, folder: Path) -> dict[str, Any]:
    """Fine-tune one supervised member on ``job.train_set`` and save it under ``folder``."""
    spec, examples = job.spec, job.train_set
    if len(examples) == 0:
        raise PetError(f"teacher {spec.name}: no training examples (the labelled set has no rows); set teachers.supervised: false")
    started = time.perf_counter()
    loaded = LoadedClassifier(spec, ctx)
    before = labelled_score(ctx.score(loaded.scorer, loaded.encoder, examples), examples.gold, ctx.threshold)
    losses, learning_rate = fit_classifier(loaded, spec, ctx, examples, job.steps)
    after = labelled_score(ctx.score(loaded.scorer, loaded.encoder, examples), examples.gold, ctx.threshold)
    record = {
        "name": spec.name,
        "kind": CLASSIFIER,
        "base_checkpoint": loaded.checkpoint,  # what it was fine-tuned from (not "base_model", which marks a zero-shot teacher)
        "labels": list(spec.labels),
        "input_fields": list(spec.fields),
        "field_join": loaded.encoder.join,  # between a pair's second and further fields
        "seed": spec.seed,
        "derived_seed": spec.derived_seed,
        "generation": spec.generation,
        "fingerprint": ctx.fingerprint(spec),
        "weight": None,  # a new head's accuracy before training is chance: the wmean weight is chosen in pet/core/ensemble.py
        "training_examples": len(examples),
        "learning_rate": learning_rate,  # the value used (teachers.learning_rate may say auto)
        **job.extra,
        "metrics": training_metrics("micro_f1" if loaded.multi_label else "accuracy", before, after, losses, started),
    }
    save_teacher(folder, record, loaded, ctx, job, weights=True)
    return record


def load_member(folder: Path, record: dict[str, Any], labels: Sequence[str], max_length: int, device: torch.device,
                trust_remote_code: bool = False) -> tuple[ClassifierEncoder, ClassifierScorer]:
    """A saved supervised member as an encoder and a scorer; its classes must be the run's labels, in order."""
    from pet.core.modeling import load_classifier, load_model_config, load_tokenizer

    config = load_model_config(str(folder), trust_remote_code)
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    theirs = [id2label[i] for i in sorted(id2label)]
    if theirs != list(labels):
        raise PetError(f"it classifies into [{', '.join(theirs)}], not the teachers' labels [{', '.join(labels)}]")
    tokenizer = load_tokenizer(str(folder), trust_remote_code)
    multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
    model = load_classifier(str(folder), list(labels), device, trust_remote_code, multi_label)
    model.eval()
    encoder = ClassifierEncoder(tokenizer, record["input_fields"], max_length, record.get("field_join", separator_join(tokenizer)))
    return encoder, ClassifierScorer(model, pad_token_id(tokenizer))
