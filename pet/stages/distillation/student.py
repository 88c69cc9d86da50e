"""The student's view of an example: one text, or a text pair for two-field tasks such as NLI.

The first data field is the first text; any further fields are joined with a space into the pair's
second text (pet/core/classifier.py, shared with the supervised member of the teacher ensemble).
Teachers see fields through patterns; the student sees them plainly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import torch

from pet.core.classifier import classifier_logits, classifier_texts, tokenize_pairs
from pet.core.encoding import pad

TMP_MODEL = ".tmp-student"


class Student:
    """A sequence classifier with the tokenizer, device and settings it is trained and run with."""

    def __init__(self, name: str, model, tokenizer, fields: Sequence[str], max_length: int, runtime):
        from pet.core.modeling import autocast_factory

        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.fields, self.max_length, self.runtime = list(fields), max_length, runtime
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.autocast = autocast_factory(self.device, runtime.precision)

    @classmethod
    def create(cls, config, labels: list[str], device: str | None = None) -> "Student":
        """A new student from ``distillation.model`` (default: the teachers' model), with a fresh head."""
        from pet.core.modeling import load_classifier, load_tokenizer, pick_device

        settings, runtime = config.distillation, config.runtime
        name = settings.model or config.model
        device = pick_device(device or runtime.device)
        tokenizer = load_tokenizer(name, runtime.trust_remote_code)
        torch.manual_seed(settings.seed)  # the new classification head and dropout
        model = load_classifier(name, labels, device, runtime.trust_remote_code, config.task.multi_label)
        return cls(name, model, tokenizer, list(config.data.fields), settings.max_length, runtime)

    @classmethod
    def load(cls, folder, labels: list[str], fields: Sequence[str], config) -> "Student":
        """A trained student folder, run with the settings of the config that made it."""
        from pet.core.modeling import load_classifier, load_tokenizer, pick_device

        device = pick_device(config.runtime.device)
        model = load_classifier(str(folder), labels, device, multi_label=config.task.multi_label)
        return cls(str(folder), model, load_tokenizer(str(folder)), fields, config.distillation.max_length, config.runtime)

    def encode(self, texts: dict[str, list[str]]) -> list[list[int]]:
        return tokenize_pairs(self.tokenizer, *classifier_texts(texts, self.fields), self.max_length)

    def forward(self, sequences: list[list[int]]) -> torch.Tensor:
        """Training-mode logits of one batch."""
        input_ids, attention = pad(sequences, self.pad_id)
        return self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)).logits

    def logits(self, texts: dict[str, list[str]]) -> torch.Tensor:
        """[N, C] float32 inference logits on the CPU, in input order."""
        return classifier_logits(self.model, self.encode(texts), self.pad_id, self.runtime.eval_batch_size, self.autocast)


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
