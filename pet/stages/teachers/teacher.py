"""Training one teacher (or setting up an untrained zero-shot one) and saving it atomically.

A teacher's class score is the mean MLM logit of its label words at the mask; it is trained with
cross-entropy over those scores, mixed with an auxiliary MLM loss on unlabeled text
(pet/core/mlm.py). Before training, its accuracy on the labelled set is recorded as its ensemble
weight (PET's "wmean"). A zero-shot teacher's folder holds only ``teacher.json``, which points at the
base model, so stages B and C and ``pet evaluate`` use it like any other teacher.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from pet.core.classifier import PATTERN
from pet.core.encoding import VerbalizerTokens, pad
from pet.core.modeling import resolved_learning_rate, save_model
from pet.core.metrics import labelled_score
from pet.core.multilabel import is_multi_label, teacher_scorer, training_targets
from pet.core.scoring import score_table
from pet.core.training import EpochSampler, OptimSettings, train
from pet.errors import PetError
from pet.io.artifacts import atomic_dir, write_json_atomic
from pet.stages.teachers.context import TeacherContext, TeacherJob
from pet.stages.teachers.specs import TeacherSpec, derive_seed

TEACHER_FILE = "teacher.json"
UNLABELED_LOGITS = "unlabeled_logits.safetensors"


def base_record(spec: TeacherSpec, tokens: VerbalizerTokens, stamp: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "kind": PATTERN,  # a masked LM read through a pattern and a verbalizer (the supervised member: "classifier")
        "pattern": spec.pattern.to_json(),
        "verbalizer": spec.verbalizer.to_json(),
        "verbalizer_token_ids": tokens.to_json(),
        "num_masks": tokens.num_masks,
        "multi_token_rule": tokens.rule,
        "seed": spec.seed,
        "derived_seed": spec.derived_seed,
        "generation": spec.generation,
        "fingerprint": stamp,
    }


def train_metric(spec: TeacherSpec) -> str:
    return "micro_f1" if is_multi_label(spec.verbalizer) else "accuracy"


class LoadedScorer:
    """A base-model copy with one teacher's pattern encoder and verbalizer scorer."""

    def __init__(self, spec: TeacherSpec, ctx: TeacherContext):
        from pet.core.modeling import load_masked_lm

        self.tokens = ctx.tokens(spec.pattern, spec.verbalizer)
        self.encoder = ctx.encoder(spec.pattern, spec.verbalizer, self.tokens.num_masks)
        self.model = load_masked_lm(ctx.model, ctx.device, ctx.runtime.trust_remote_code)
        self.tokenizer = ctx.tokenizer
        self.scorer = teacher_scorer(self.model, self.tokens, ctx.tokenizer, spec.verbalizer)

    def labelled_accuracy(self, ctx: TeacherContext) -> float | None:
        """The ensemble weight: accuracy (multi-label: micro-F1) on the original labelled set (None without one)."""
        if not len(ctx.labelled):
            return None
        return self.figure(ctx, ctx.labelled)

    def figure(self, ctx: TeacherContext, examples) -> float:
        """Accuracy on ``examples`` (multi-label: micro-F1 at task.threshold): pet/core/metrics.py labelled_score."""
        return labelled_score(ctx.score(self.scorer, self.encoder, examples), examples.gold, ctx.threshold)


def save_teacher(folder: Path, record: dict[str, Any], loaded: LoadedScorer | None, ctx: TeacherContext,
                 job: TeacherJob, weights: bool) -> None:
    """Write the teacher folder in one rename: weights (unless zero-shot), iPET scores, record last."""
    with atomic_dir(folder) as tmp:
        if weights:
            save_model(loaded.model, tmp)
            loaded.tokenizer.save_pretrained(tmp)  # a supervised member's may be its own checkpoint's
        if job.score_unlabeled:
            save_unlabeled_logits(tmp, loaded, ctx)
        write_json_atomic(tmp / TEACHER_FILE, record)


def save_unlabeled_logits(folder: Path, loaded, ctx: TeacherContext) -> None:
    """iPET: the teacher's class scores on the whole unlabeled set, kept for labelling the next generation.
    Written in one rename, so a finished teacher folder that kept none (the last generation of a run since
    given more generations) gets the file whole or not at all."""
    from safetensors.torch import save_file

    logits = score_table(loaded.encoder, loaded.scorer, ctx.unlabeled(), ctx.runtime.eval_batch_size,
                         ctx.autocast(), "iPET: scoring the unlabeled set")
    tmp = folder / f".{UNLABELED_LOGITS}.tmp"
    save_file({"logits": logits.contiguous()}, str(tmp))
    tmp.replace(folder / UNLABELED_LOGITS)


def zero_shot_teacher(job: TeacherJob, ctx: TeacherContext, folder: Path) -> dict[str, Any]:
    """An untrained teacher: a record pointing at the base model; weight = labelled accuracy if there are labels."""
    started = time.perf_counter()
    spec = job.spec
    loaded = LoadedScorer(spec, ctx) if len(ctx.labelled) or job.score_unlabeled else None
    weight = loaded.labelled_accuracy(ctx) if loaded is not None else None
    record = base_record(spec, ctx.tokens(spec.pattern, spec.verbalizer), ctx.fingerprint(spec))
    record.update({
        "zero_shot": True,
        "base_model": ctx.model,
        "weight": weight,
        "metrics": {"train_metric": train_metric(spec), "train_accuracy_before": weight, "steps": 0, "seconds": round(time.perf_counter() - started, 2)},
    })
    save_teacher(folder, record, loaded, ctx, job, weights=False)
    return record


def train_teacher(job: TeacherJob, ctx: TeacherContext, folder: Path) -> dict[str, Any]:
    """Fine-tune one teacher from the base model on ``job.train_set`` and save it under ``folder``."""
    spec, examples = job.spec, job.train_set
    if len(examples) == 0:
        raise PetError(f"teacher {spec.name}: no training examples (the labelled set has no rows); "
                       f"set teachers.zero_shot: true to use untrained teachers")
    started = time.perf_counter()
    torch.manual_seed(spec.derived_seed)  # dropout and any newly initialised weights
    loaded = LoadedScorer(spec, ctx)
    before = loaded.figure(ctx, examples)
    # The ensemble weight is the accuracy on the original labelled set (the same set for every iPET generation).
    weight = before if examples is ctx.labelled else loaded.labelled_accuracy(ctx)
    settings = ctx.settings
    learning_rate = resolved_learning_rate(settings.learning_rate, loaded.model)
    optim = OptimSettings(job.steps, learning_rate, settings.weight_decay, settings.warmup_steps, settings.max_grad_norm)
    label = f"teacher {spec.name}" + (f" (generation {spec.generation})" if spec.generation else "")
    losses = train(loaded.model, step_loss_fn(loaded, ctx, spec, examples), optim, ctx.device, ctx.runtime.precision, label)
    after = loaded.figure(ctx, examples)
    record = base_record(spec, loaded.tokens, ctx.fingerprint(spec))
    record.update({
        "weight": weight,
        "training_examples": len(examples),
        "mlm_weight": settings.mlm_weight,
        "learning_rate": learning_rate,  # the value used (teachers.learning_rate may say auto)
        **job.extra,
        "metrics": training_metrics(train_metric(spec), before, after, losses, started),
    })
    save_teacher(folder, record, loaded, ctx, job, weights=True)
    return record


def training_metrics(metric: str, before: float, after: float, losses: list[float], started: float) -> dict[str, Any]:
    """A trained teacher's ``metrics``: its labelled-set figure (``metric``: accuracy or micro_f1) before and
    after training, its losses and its training time (since ``started``, a perf_counter reading)."""
    return {"train_metric": metric, "train_accuracy_before": before, "train_accuracy_after": after,
            "loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses),
            "seconds": round(time.perf_counter() - started, 2), "losses": losses}


def step_loss_fn(loaded: LoadedScorer, ctx: TeacherContext, spec: TeacherSpec, examples) -> Callable[[int], torch.Tensor]:
    """The loss of one training step: a labelled batch, plus a masked unlabeled batch when the auxiliary MLM loss is on."""
    from pet.core.mlm import MlmMasker, teacher_loss

    settings, scorer, encoder = ctx.settings, loaded.scorer, loaded.encoder
    sequences = encoder.encode(examples)  # multi-label: a row per example and label, and labels their 0/1 answers
    labels = training_targets(examples, len(spec.verbalizer.labels))
    sampler = EpochSampler(len(sequences), settings.batch_size, torch.Generator().manual_seed(spec.derived_seed))
    mlm = settings.mlm_weight > 0
    if mlm:
        unlabeled = ctx.unlabeled()
        masker = MlmMasker(ctx.tokenizer, loaded.model.get_input_embeddings().num_embeddings, settings.mlm_probability,
                           seed=derive_seed(f"mlm-mask:{spec.derived_seed}"))
        unlabeled_sampler = EpochSampler(len(unlabeled), settings.unlabeled_ratio * sampler.batch_size,
                                         torch.Generator().manual_seed(derive_seed(f"mlm-batch:{spec.derived_seed}")))

    def step_loss(step: int) -> torch.Tensor:
        batch = sampler.next()
        input_ids, attention = scorer.batch([sequences[i] for i in batch])
        mlm_batch = None
        if mlm:
            ids, mask = pad(encoder.encode(unlabeled.take(unlabeled_sampler.next())), scorer.pad_token_id)
            masked, targets = masker(ids, mask)
            mlm_batch = (masked.to(ctx.device), mask.to(ctx.device), targets)  # targets stay on the host: see teacher_loss
        return teacher_loss(scorer, input_ids, attention, labels[batch].to(ctx.device), mlm_batch, settings.mlm_weight)

    return step_loss
