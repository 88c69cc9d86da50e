"""Stage C: distil the teachers' soft labels into a plain sequence classifier.

Loss: KL(p_soft || softmax(z / T)) * T^2 at the temperature the soft labels were made with, plus
``gold_weight`` x cross-entropy on a labelled batch drawn each step (off by default). The result is
a standard ``save_pretrained`` folder with id2label/label2id, loadable without pet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pet.core import maths
from pet.io.artifacts import MANIFEST, base_manifest, check_inputs, prepare_output, read_manifest, write_json_atomic
from pet.errors import PetError
from pet.stages.labelling.stage import read_soft_labels, stage_config
from pet.core.metrics import classification_metrics
from pet.core.progress import info
from pet.stages.distillation.student import classifier_logits, student_texts, tokenize_pairs
from pet.stages.teachers.task import open_table
from pet.core.training import EpochSampler, OptimSettings, train

TMP_MODEL = ".tmp-student"


def distill(labels_dir: Path, output: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage C: train the student under ``output``; returns the manifest."""
    from pet.core.modeling import autocast, check_classifier_labels, load_classifier, load_tokenizer, pick_device

    manifest = read_manifest(labels_dir, "labels")
    config = stage_config(manifest, overrides, ("distillation", "runtime"), labels_dir)
    settings = config.distillation
    if settings.gold_weight > 0 and config.data.train is None:
        raise PetError("distillation.gold_weight > 0 needs a labelled set (data.train); set it to 0 for this run")
    if settings.gold_weight > 0:
        check_inputs({str(config.data.train): manifest["inputs"][str(config.data.train)]}, labels_dir / MANIFEST)
    stamp = hashlib.sha256(json.dumps([manifest["fingerprint"], settings.model_dump(mode="json")]).encode()).hexdigest()[:16]
    existing = prepare_output(output, "student")
    if existing is not None:
        if existing.get("fingerprint") == stamp:
            info(f"{output}: student already trained")
            return existing
        raise PetError(f"{output}: holds a student from other soft labels or settings; choose another output folder")
    labels = list(manifest["labels"])
    check_classifier_labels(settings.model or config.model, labels, config.runtime.trust_remote_code)
    fields = list(config.data.fields)
    ids, texts, probs = read_soft_labels(labels_dir, manifest, fields)
    if not ids:
        raise PetError(f"{labels_dir}: the soft-label set is empty; the student has nothing to learn from")
    started = time.perf_counter()
    device = pick_device(config.runtime.device)
    name = settings.model or config.model
    tokenizer = load_tokenizer(name, config.runtime.trust_remote_code)
    sequences = tokenize_pairs(tokenizer, *student_texts(texts, fields), settings.max_length)
    targets = torch.from_numpy(probs.copy())
    gold_sequences, gold_labels = [], torch.empty(0, dtype=torch.long)
    if settings.gold_weight > 0:
        train_set = open_table(config, config.data.train, "labelled", tuple(labels), labelled=True).read_all()
        gold_sequences = tokenize_pairs(tokenizer, *student_texts(train_set.fields, fields), settings.max_length)
        gold_labels = torch.tensor(train_set.labels)
    torch.manual_seed(settings.seed)  # the new classification head and dropout
    model = load_classifier(name, labels, device, config.runtime.trust_remote_code)
    pad_id = tokenizer.pad_token_id or 0
    generator = torch.Generator().manual_seed(settings.seed)
    sampler = EpochSampler(len(sequences), settings.batch_size, generator)
    gold_sampler = EpochSampler(len(gold_sequences), settings.batch_size, generator) if gold_sequences else None
    temperature = float(manifest["temperature"])

    def forward(batch_sequences: list[list[int]]) -> torch.Tensor:
        from pet.core.encoding import pad

        input_ids, attention = pad(batch_sequences, pad_id)
        return model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits

    def step_loss(step: int) -> torch.Tensor:
        batch = sampler.next()
        loss = maths.distillation_loss(forward([sequences[i] for i in batch]), targets[batch].to(device), temperature)
        if gold_sampler is not None:
            gold = gold_sampler.next()
            gold_logits = forward([gold_sequences[i] for i in gold]).float()
            loss = loss + settings.gold_weight * F.cross_entropy(gold_logits, gold_labels[gold].to(device))
        return loss

    info(f"student {name}: distilling {len(sequences)} soft labels at T={temperature} ({device})")
    optim = OptimSettings(settings.steps, settings.learning_rate, settings.weight_decay, settings.warmup_steps, settings.max_grad_norm)
    losses = train(model, step_loss, optim, device, config.runtime.precision, "student")
    result = base_manifest("student", config.to_json(), manifest["inputs"])
    result.update({
        "fingerprint": stamp,
        "labels_dir": str(labels_dir.resolve()),
        "labels_fingerprint": manifest["fingerprint"],
        "labels": labels,
        "input_fields": fields,
        "temperature": temperature,
        "metrics": {"loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses),
                    "seconds": round(time.perf_counter() - started, 2)},
    })
    if config.data.test is not None:
        test = open_table(config, config.data.test, "test", tuple(labels), labelled=True).read_all()
        logits = classifier_logits(model, tokenize_pairs(tokenizer, *student_texts(test.fields, fields), settings.max_length),
                                   pad_id, config.runtime.eval_batch_size, lambda: autocast(device, config.runtime.precision))
        result["test"] = classification_metrics(test.labels, logits.argmax(-1).tolist(), labels)
        info(f"student test accuracy {result['test']['accuracy']:.4f}, macro-F1 {result['test']['macro_f1']:.4f}")
    save_student(model, tokenizer, output)
    write_json_atomic(output / MANIFEST, result)
    return result


def save_student(model, tokenizer, output: Path) -> None:
    """Save into a temporary folder inside ``output``, then move the files up: the folder itself is the
    model (so ``pipeline(model=output)`` works) and nothing is written outside it."""
    tmp = output / TMP_MODEL
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for item in tmp.iterdir():
        os.replace(item, output / item.name)
    tmp.rmdir()
