"""Stage A: fine-tune one masked-LM teacher per pattern x verbalizer x seed.

A teacher's class score is the mean MLM logit of its label words at the mask; it is trained with
cross-entropy over those scores. Before training, its accuracy on the labelled set is recorded as
its ensemble weight (PET's "wmean"). Each teacher's random seed is derived from its own name, so a
resumed run trains exactly what an uninterrupted run would have, in any order.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pet import maths
from pet.artifacts import MANIFEST, atomic_dir, base_manifest, prepare_output, read_json, write_json_atomic
from pet.config import RunConfig
from pet.encoding import PatternEncoder, VerbalizerTokens
from pet.errors import PetError
from pet.patterns import Pattern, Verbalizer
from pet.progress import info
from pet.scoring import MaskedLMScorer
from pet.task import Task, prepare_task
from pet.training import EpochSampler, OptimSettings, train

TEACHER_FILE = "teacher.json"


@dataclass(frozen=True)
class TeacherSpec:
    pattern: Pattern
    verbalizer: Verbalizer
    seed: int

    @property
    def name(self) -> str:
        return f"{self.pattern.id}--{self.verbalizer.id}--s{self.seed}"

    @property
    def derived_seed(self) -> int:
        return int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:4], "big") & 0x7FFFFFFF


def teacher_specs(task: Task) -> list[TeacherSpec]:
    return [TeacherSpec(p, v, s) for p in task.patterns for v in task.verbalizers for s in task.config.teachers.seeds]


def fingerprint(config: RunConfig, inputs: dict[str, str]) -> str:
    """Identifies what a teacher was trained from, so a rerun never mixes teachers of two configs."""
    relevant = {"model": config.model, "data": config.data.model_dump(mode="json"), "teachers": config.teachers.model_dump(mode="json"), "inputs": inputs}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(-1) == labels).float().mean()) if len(labels) else 0.0


def train_teachers(config: RunConfig, output: Path, *, task: Task | None = None) -> dict[str, Any]:
    """Train every missing teacher under ``output`` and write the stage manifest last."""
    from pet.modeling import pick_device

    task = task or prepare_task(config)
    stamp = fingerprint(config, task.inputs)
    existing = prepare_output(output, "teachers")
    if existing is not None:
        if existing.get("fingerprint") == stamp:
            info(f"{output}: all teachers already trained")
            return existing
        raise PetError(f"{output}: holds teachers trained with a different config or data; choose another output folder")
    device = pick_device(config.runtime.device)
    specs = teacher_specs(task)
    entries = []
    for number, spec in enumerate(specs, start=1):
        folder = output / spec.name
        if (folder / TEACHER_FILE).exists():
            record = read_json(folder / TEACHER_FILE, "teacher record")
            if record.get("fingerprint") != stamp:
                raise PetError(f"{folder}: teacher was trained with a different config or data; choose another output folder")
            info(f"teacher {number}/{len(specs)} {spec.name}: already trained, skipped")
        else:
            info(f"teacher {number}/{len(specs)} {spec.name}: training on {len(task.train)} examples ({device})")
            record = train_teacher(spec, task, folder, device, stamp)
        entries.append({"name": spec.name, "path": spec.name, "pattern": spec.pattern.id, "verbalizer": spec.verbalizer.id,
                        "seed": spec.seed, "derived_seed": spec.derived_seed, "weight": record["weight"],
                        "metrics": {k: v for k, v in record["metrics"].items() if k != "losses"}})
    manifest = base_manifest("teachers", config.to_json(), task.inputs)
    manifest.update({
        "fingerprint": stamp,
        "labels": list(task.labels),
        "patterns": [p.to_json() for p in task.patterns],
        "verbalizers": [v.to_json() for v in task.verbalizers],
        "teachers": entries,
    })
    write_json_atomic(output / MANIFEST, manifest)
    return manifest


def train_teacher(spec: TeacherSpec, task: Task, folder: Path, device: torch.device, stamp: str) -> dict[str, Any]:
    from pet.modeling import autocast, load_masked_lm

    config = task.config
    settings = config.teachers
    started = time.perf_counter()
    torch.manual_seed(spec.derived_seed)  # dropout and any newly initialised weights
    model = load_masked_lm(config.model, device, config.runtime.trust_remote_code)
    encoder = task.encoder(spec.pattern, settings.max_length)
    tokens = task.verbalizer_tokens(spec.pattern, spec.verbalizer, settings.max_length)
    scorer = MaskedLMScorer(model, tokens, task.tokenizer.mask_token_id, task.tokenizer.pad_token_id or 0)
    sequences = encoder.encode(task.train)
    labels = torch.tensor(task.train.labels)
    precision = config.runtime.precision
    score_all = lambda: scorer.score(sequences, config.runtime.eval_batch_size, lambda: autocast(device, precision))
    before = accuracy(score_all(), labels)
    sampler = EpochSampler(len(sequences), settings.batch_size, torch.Generator().manual_seed(spec.derived_seed))

    def step_loss(step: int) -> torch.Tensor:
        batch = sampler.next()
        scores = scorer.class_scores(*scorer.batch([sequences[i] for i in batch]))
        return maths.class_cross_entropy(scores, labels[batch].to(device))

    optim = OptimSettings(settings.steps, settings.learning_rate, settings.weight_decay, settings.warmup_steps, settings.max_grad_norm)
    losses = train(model, step_loss, optim, device, precision, f"teacher {spec.name}")
    after = accuracy(score_all(), labels)
    record = {
        "name": spec.name,
        "pattern": spec.pattern.to_json(),
        "verbalizer": spec.verbalizer.to_json(),
        "verbalizer_token_ids": tokens.to_json(),
        "seed": spec.seed,
        "derived_seed": spec.derived_seed,
        "fingerprint": stamp,
        "weight": before,
        "metrics": {
            "train_accuracy_before": before,
            "train_accuracy_after": after,
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "steps": len(losses),
            "seconds": round(time.perf_counter() - started, 2),
            "losses": losses,
        },
    }
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        task.tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / TEACHER_FILE, record)
    del model
    return record


@dataclass
class LoadedTeacher:
    name: str
    weight: float
    encoder: PatternEncoder
    scorer: MaskedLMScorer


def load_teacher(teachers_dir: Path, entry: dict[str, Any], patterns: dict[str, Pattern], verbalizers: dict[str, Verbalizer],
                 max_length: int, device: torch.device, trust_remote_code: bool = False) -> LoadedTeacher:
    """Load a finished teacher folder back as an encoder and a scorer."""
    from pet.modeling import load_masked_lm, load_tokenizer

    folder = teachers_dir / entry["path"]
    record_path = folder / TEACHER_FILE
    if not record_path.exists():
        raise PetError(f"{folder}: teacher '{entry['name']}' is missing or incomplete; rerun pet train-teachers")
    record = read_json(record_path, "teacher record")
    try:
        tokenizer = load_tokenizer(str(folder))
        model = load_masked_lm(str(folder), device, trust_remote_code, warn_new_head=False)
    except PetError as err:
        raise PetError(f"{folder}: teacher '{entry['name']}' cannot be loaded ({err}); delete it and rerun pet train-teachers") from None
    encoder = PatternEncoder(patterns[entry["pattern"]], tokenizer, max_length)
    ids = record["verbalizer_token_ids"]
    width = max(len(row) for row in ids)
    tokens = VerbalizerTokens(
        ids=torch.tensor([row + [0] * (width - len(row)) for row in ids]),
        mask=torch.tensor([[True] * len(row) + [False] * (width - len(row)) for row in ids]),
        words=tuple(tuple(verbalizers[entry["verbalizer"]].words[l]) for l in verbalizers[entry["verbalizer"]].labels),
    )
    model.eval()
    return LoadedTeacher(entry["name"], float(entry["weight"]), encoder, MaskedLMScorer(model, tokens, tokenizer.mask_token_id, tokenizer.pad_token_id or 0))
