"""Stage C: distil the teachers' soft labels into a plain sequence classifier; writes RUN/student.

Loss: KL(p_soft || softmax(z / T)) * T^2 at the temperature the soft labels were made with, plus
``gold_weight`` x cross-entropy on a labelled batch drawn each step (off by default). Multi-label
tasks: the sum over labels of the binary KL to sigmoid(z / T), times T^2, and binary cross-entropy
on the gold label sets; the student is a multi_label_classification model (a sigmoid per label). The result is
a standard ``save_pretrained`` folder with id2label/label2id, loadable without pet.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from pet.core import maths
from pet.core.calibration import definitions, prediction_metrics
from pet.core.distributed import Ranks, current_ranks, rank_device
from pet.core.modeling import resolved_learning_rate
from pet.core.progress import info
from pet.core.training import EpochSampler, OptimSettings, train
from pet.errors import PetError
from pet.io.artifacts import MANIFEST, base_manifest, check_inputs, file_hash, model_reads, read_manifest, reuse_or_refuse, write_json_atomic
from pet.io.config import RunConfig, check_student_settings, stage_config, task_reads
from pet.io.data import open_table
from pet.io.lock import writing
from pet.stages.distillation import lr_search
from pet.stages.distillation.balance import ClassWeightsChoice, WeightedSampler, balanced_weights, choose_class_weights
from pet.stages.distillation.self_training import hardened_targets
from pet.stages.distillation.student import Student, save_student
from pet.stages.labelling.soft_labels import read_soft_labels


STAGE_KEYS = ("distillation", "runtime", "data.test", "task.threshold")  # what `pet distill` may change


def distill(labels_dir: Path, output: Path, overrides: dict[str, Any] | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Stage C: train the student under ``output``; returns the manifest.

    A finished folder made from the same soft labels, settings and data is returned as it is; one
    made from others is refused, or retrained with ``overwrite``.
    """
    from pet.core.modeling import check_classifier_labels

    manifest = read_manifest(labels_dir, "labels")
    config = stage_config(manifest, overrides, STAGE_KEYS, labels_dir)
    check_student_settings(config)
    check_labelled_set(config, manifest, labels_dir)
    class_weights = class_weights_choice(config, manifest, labels_dir)
    config = with_class_weights(config, class_weights.used)  # what the student trains with, and what it records
    if class_weights.setting == "auto" and class_weights.largest_weight is not None:
        info(f"class_weights: {class_weights.describe()}")
    reads = stage_reads(config, manifest)
    with writing(output, "pet distill", enabled=current_ranks().main):
        stamp, existing = reuse_or_refuse(output, "student", reads, overwrite, "holds a student from other soft labels or settings")
        ranks = current_ranks()
        ranks.barrier()  # every rank has decided before any rank writes
        if existing is not None:
            info(f"{output}: student already trained")
            return existing
        labels = list(manifest["labels"])
        check_classifier_labels(config.distillation.model or config.model, labels, config.runtime.trust_remote_code)
        if ranks.world > 1 and config.distillation.gold_weight > 0:
            raise PetError("distillation.gold_weight > 0 is not supported with several processes yet (two forward passes per "
                           "DDP step); run pet distill in one process, or set it to 0")
        data = DistillationData.read(labels_dir, manifest, config)
        started = time.perf_counter()
        device = rank_device(config.runtime.device, ranks)
        temperature = float(manifest["temperature"])
        student, losses, search = first_student(config, labels, data, temperature, ranks, device)
        trained = lr_search.with_rate(config, search.rate) if search else config  # self-training rounds use the rate kept
        student, losses, rounds = self_train(student, losses, data, trained, labels, temperature, ranks)
        if not ranks.main:
            ranks.barrier()  # while rank 0 measures, saves and writes the manifest
            return read_manifest(output, "student")
        result = student_manifest(labels_dir, manifest, config, stamp, losses)
        result["reads"] = reads
        result["class_weights"] = class_weights.record()
        result["learning_rate"] = resolved_learning_rate(trained.distillation.learning_rate, student.model)  # the value used
        if search:
            result["learning_rate_search"] = search.record
        result["metrics"]["seconds"] = round(time.perf_counter() - started, 2)
        if rounds:  # every student trained, the last one being this folder's (its test metrics are "test")
            result["self_training"] = rounds + [round_record(len(rounds), losses, config, labels, None, ranks)]
        if config.data.test is not None:
            result["test"] = test_metrics(config, labels, student)
            info(f"student test accuracy {result['test']['accuracy']:.4f}, macro-F1 {result['test']['macro_f1']:.4f}")
        save_student(student.model, student.tokenizer, output)
        write_json_atomic(output / MANIFEST, result)
        ranks.barrier()
        return result


def first_student(config: RunConfig, labels: list[str], data: "DistillationData", temperature: float, ranks: Ranks,
                  device: torch.device) -> tuple[Student, list[float], lr_search.SearchResult | None]:
    """The student before any self-training round, its losses, and with ``learning_rate: search`` the search."""

    def fresh_student(settings: RunConfig) -> tuple[Student, list[float]]:
        student = Student.create(settings, labels, device)
        return student, train_student(student, data, settings, temperature, ranks)

    def measure(student: Student) -> dict[str, Any] | None:  # the search reports each rate's test metrics
        return test_metrics(config, labels, student) if config.data.test is not None and ranks.main else None

    if config.distillation.learning_rate != lr_search.SEARCH:
        return *fresh_student(config), None
    search = lr_search.search_learning_rate(config, labels, fresh_student, measure)
    return search.student, search.losses, search


def self_train(student: Student, losses: list[float], data: "DistillationData", config: RunConfig, labels: list[str],
               temperature: float, ranks: Ranks) -> tuple[Student, list[float], list[dict[str, Any]]]:
    """``distillation.self_training_rounds`` rounds (pet/stages/distillation/self_training.py): the final
    student, its losses, and one record per earlier student."""
    rounds: list[dict[str, Any]] = []
    for round_number in range(1, config.distillation.self_training_rounds + 1):
        rounds.append(round_record(round_number - 1, losses, config, labels, student, ranks))
        targets, hardened = hardened_targets(data.targets, student.logits(data.texts), config.distillation.self_training_threshold,
                                             config.task.multi_label)
        rounds[-1]["made_hard_for_next_round"] = hardened
        info(f"self-training round {round_number}: {hardened} of {targets.numel() if config.task.multi_label else len(targets)} "
             f"targets made hard from the student's confident predictions")
        data = dataclasses.replace(data, targets=targets)
        student = Student.create(config, labels, student.device)  # a fresh student learns the new targets
        losses = train_student(student, data, config, temperature, ranks)
    return student, losses, rounds


def round_record(number: int, losses: list[float], config: RunConfig, labels: list[str], student: Student | None,
                 ranks: Ranks) -> dict[str, Any]:
    """One self-training round's student: its losses and (``student`` given, with a test set) its test
    metrics, which are reported and never used to choose anything."""
    record: dict[str, Any] = {"round": number, "loss_first": losses[0], "loss_last": losses[-1]}
    if student is not None and config.data.test is not None and ranks.main:
        record["test"] = test_metrics(config, labels, student)
    return record


def test_metrics(config: RunConfig, labels: list[str], student: Student) -> dict[str, Any]:
    test = open_table(config, config.data.test, "test", labels, labelled=True).read_all()
    return {**prediction_metrics(test.gold, student.logits(test.fields), labels, config.task.threshold),
            "calibration_definitions": definitions(test.gold)}


def class_weights_choice(config: RunConfig, manifest: dict[str, Any], labels_dir: Path) -> ClassWeightsChoice:
    """distillation.class_weights for these soft labels: auto decided on the classes they predict (stage B's counts)."""
    statistics = manifest.get("statistics")
    counts = statistics.get("predicted_label_counts") if isinstance(statistics, dict) else None
    if not (isinstance(counts, dict) and all(isinstance(c, int) and c >= 0 for c in counts.values())):
        counts = None  # missing or not counts: a labels folder from elsewhere, or edited
    if config.distillation.class_weights == "auto" and not config.task.multi_label and counts is None:
        raise PetError(f"{labels_dir / MANIFEST}: no valid statistics.predicted_label_counts, which distillation.class_weights: "
                       "auto decides on; rerun pet label, or set class_weights to none or balanced")
    return choose_class_weights(config.distillation.class_weights, config.task.multi_label, counts)


def with_class_weights(config: RunConfig, used: str) -> RunConfig:
    return config.model_copy(update={"distillation": config.distillation.model_copy(update={"class_weights": used})})


def reads_labelled_set(config: RunConfig) -> bool:
    """Stage C reads the labelled set for gold labels in the loss, or to score the learning-rate search."""
    return config.distillation.gold_weight > 0 or config.distillation.learning_rate == lr_search.SEARCH


def check_labelled_set(config: RunConfig, manifest: dict[str, Any], labels_dir: Path) -> None:
    """The labelled set stage C reads is there, and is the file stage A trained on."""
    if not reads_labelled_set(config):
        return
    if config.data.train is None:
        raise PetError("distillation.gold_weight > 0 needs a labelled set (data.train); set it to 0 for this run")
    check_inputs({str(config.data.train): manifest["inputs"][str(config.data.train)]}, labels_dir / MANIFEST)


def stage_reads(config: RunConfig, labels: dict[str, Any]) -> dict[str, Any]:
    """Everything stage C reads: the soft labels (by fingerprint), its settings, the gold and test sets."""
    settings = config.distillation
    reads: dict[str, Any] = {"labels": labels["fingerprint"], **model_reads(settings.model or config.model),
                             "runtime.trust_remote_code": config.runtime.trust_remote_code,
                             "inputs.data.test": file_hash(config.data.test)}
    distillation = settings.model_dump(mode="json")
    if not settings.self_training_rounds:  # a run without rounds reads what it read before they existed
        del distillation["self_training_rounds"], distillation["self_training_threshold"]
    if settings.class_weights == "none":  # likewise a run without class weights
        del distillation["class_weights"]
    if settings.learning_rate != lr_search.SEARCH:  # likewise a run without the search
        del distillation["learning_rate_grid"]
    reads.update({f"distillation.{key}": value for key, value in distillation.items()})
    reads.update(task_reads(config))
    if reads_labelled_set(config):
        reads["inputs.data.train"] = file_hash(config.data.train)
    return reads


@dataclass
class DistillationData:
    """The soft-label set (texts and target probabilities) and, with gold_weight, the labelled set."""

    texts: dict[str, list[str]]
    targets: torch.Tensor  # [N, C] ensemble probabilities at the labelling temperature
    gold_texts: dict[str, list[str]] | None
    gold_labels: torch.Tensor  # [G] class indices; multi-label: [G, L] 0/1

    @classmethod
    def read(cls, labels_dir: Path, manifest: dict[str, Any], config: RunConfig) -> "DistillationData":
        ids, texts, probs = read_soft_labels(labels_dir, manifest, list(config.data.fields))
        if not ids:
            raise PetError(f"{labels_dir}: the soft-label set is empty; the student has nothing to learn from")
        gold_texts, gold_labels = None, torch.empty(0, dtype=torch.long)
        if config.distillation.gold_weight > 0:
            train_set = open_table(config, config.data.train, "labelled", manifest["labels"], labelled=True).read_all()
            gold_texts, gold_labels = train_set.fields, training_gold(train_set, len(manifest["labels"]))
        return cls(texts, torch.from_numpy(probs.copy()), gold_texts, gold_labels)


def train_student(student: Student, data: DistillationData, config: RunConfig, temperature: float,
                  ranks: Ranks = Ranks()) -> list[float]:
    """The student's training; with several ranks, DistributedDataParallel: each rank draws its own
    batches and gradients are averaged, so one step sees batch_size x ranks soft labels."""
    settings = config.distillation
    info(f"student {student.name}: distilling {len(data.targets)} soft labels at T={temperature} ({student.device})")
    optim = OptimSettings(settings.steps, resolved_learning_rate(settings.learning_rate, student.model), settings.weight_decay,
                          settings.warmup_steps, settings.max_grad_norm)
    step_loss = step_loss_fn(student, data, config, temperature, ranks.rank)
    model = student.model
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        student.model = DistributedDataParallel(model, device_ids=[student.device.index] if student.device.type == "cuda" else None)
    try:
        return train(student.model, step_loss, optim, student.device, config.runtime.precision, "student")
    finally:
        student.model = model


def step_loss_fn(student: Student, data: DistillationData, config: RunConfig, temperature: float,
                 rank: int = 0) -> Callable[[int], torch.Tensor]:
    settings = config.distillation
    sequences = student.encode(data.texts)
    gold_sequences = student.encode(data.gold_texts) if data.gold_texts is not None else []
    generator = torch.Generator().manual_seed(settings.seed + 7919 * rank)  # ranks draw different batches
    sampler = (WeightedSampler(balanced_weights(data.targets), settings.batch_size, generator)
               if settings.class_weights == "balanced" else EpochSampler(len(sequences), settings.batch_size, generator))
    gold_sampler = EpochSampler(len(gold_sequences), settings.batch_size, generator) if gold_sequences else None
    device = student.device
    # multi-label: binary KL per label and BCE on the gold label sets, never a softmax over labels
    soft_loss = maths.multi_label_distillation_loss if config.task.multi_label else maths.distillation_loss
    gold_loss = maths.decision_cross_entropy if config.task.multi_label else F.cross_entropy

    def step_loss(step: int) -> torch.Tensor:
        batch = sampler.next()
        loss = soft_loss(student.forward([sequences[i] for i in batch]), data.targets[batch].to(device), temperature)
        if gold_sampler is not None:
            gold = gold_sampler.next()
            gold_logits = student.forward([gold_sequences[i] for i in gold]).float()
            loss = loss + settings.gold_weight * gold_loss(gold_logits, data.gold_labels[gold].to(device))
        return loss

    return step_loss


def training_gold(examples, num_labels: int) -> torch.Tensor:
    """The labelled set's gold labels as the student's loss takes them: class indices, or multi-hot rows."""
    from pet.core.multilabel import multi_hot

    return multi_hot(examples.label_sets, num_labels) if examples.label_sets is not None else torch.tensor(examples.labels)


def student_manifest(labels_dir: Path, labels: dict[str, Any], config: RunConfig, stamp: str, losses: list[float]) -> dict[str, Any]:
    result = base_manifest("student", config.to_json(), labels["inputs"])
    result.update({
        "fingerprint": stamp,
        "labels_dir": str(labels_dir.resolve()),
        "labels_fingerprint": labels["fingerprint"],
        "labels": list(labels["labels"]),
        "input_fields": list(config.data.fields),
        "temperature": float(labels["temperature"]),
        "metrics": {"loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses), "losses": losses},
    })
    return result
