"""Stage A: fine-tune one masked-LM teacher per pattern x verbalizer x seed.

A teacher's class score is the mean MLM logit of its label words at the mask; it is trained with
cross-entropy over those scores, mixed with an auxiliary MLM loss on unlabeled text (pet/mlm.py).
Before training, its accuracy on the labelled set is recorded as its ensemble weight (PET's
"wmean"). Each teacher's random seed is derived from its own name, so a resumed run trains exactly
what an uninterrupted run would have, in any order.

Zero-shot (``teachers.zero_shot: true``): no training. One teacher per pattern x verbalizer is the
pretrained MLM itself; its folder holds only ``teacher.json``, which points at the base model, so
stages B and C and ``pet evaluate`` use it like any other teacher. iPET lives in pet/ipet.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pet.io.artifacts import MANIFEST, atomic_dir, base_manifest, prepare_output, read_json, write_json_atomic
from pet.io.config import RunConfig
from pet.io.data import Examples
from pet.core.encoding import PatternEncoder, VerbalizerTokens, pad
from pet.errors import PetError
from pet.io.patterns import Pattern, Verbalizer
from pet.core.progress import info
from pet.core.scoring import MaskedLMScorer, score_table
from pet.stages.teachers.task import Task, prepare_task
from pet.core.training import EpochSampler, OptimSettings, train

TEACHER_FILE = "teacher.json"
UNLABELED_LOGITS = "unlabeled_logits.safetensors"


@dataclass(frozen=True)
class TeacherSpec:
    pattern: Pattern
    verbalizer: Verbalizer
    seed: int | None  # None: an untrained (zero-shot) teacher
    generation: int = 0  # iPET generation; 0 for plain PET

    @property
    def name(self) -> str:
        tail = "zero-shot" if self.seed is None else f"s{self.seed}"
        return f"{self.pattern.id}--{self.verbalizer.id}--{tail}"

    @property
    def identity(self) -> tuple[str, str, int | None]:
        return (self.pattern.id, self.verbalizer.id, self.seed)

    @property
    def derived_seed(self) -> int:
        key = self.name if self.generation == 0 else f"{self.name}--g{self.generation}"
        return derive_seed(key)


def derive_seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


def teacher_specs(task: Task, generation: int = 0, zero_shot: bool | None = None) -> list[TeacherSpec]:
    zero_shot = task.config.teachers.zero_shot if zero_shot is None else zero_shot
    if zero_shot:
        return [TeacherSpec(p, v, None, generation) for p in task.patterns for v in task.verbalizers]
    return [TeacherSpec(p, v, s, generation) for p in task.patterns for v in task.verbalizers for s in task.config.teachers.seeds]


def fingerprint(config: RunConfig, inputs: dict[str, str]) -> str:
    """Identifies what a teacher was trained from, so a rerun never mixes teachers of two configs."""
    relevant = {"model": config.model, "data": config.data.model_dump(mode="json"), "teachers": config.teachers.model_dump(mode="json"),
                "ipet": config.ipet.model_dump(mode="json"), "inputs": inputs}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(-1) == labels).float().mean()) if len(labels) else 0.0


def train_teachers(config: RunConfig, output: Path, *, task: Task | None = None) -> dict[str, Any]:
    """Train every missing teacher under ``output`` and write the stage manifest last."""
    from pet.core.modeling import pick_device

    task = task or prepare_task(config)
    stamp = fingerprint(config, task.inputs)
    existing = prepare_output(output, "teachers")
    if existing is not None:
        if existing.get("fingerprint") == stamp:
            info(f"{output}: all teachers already trained")
            return existing
        raise PetError(f"{output}: holds teachers trained with a different config or data; choose another output folder")
    device = pick_device(config.runtime.device)
    if config.ipet.generations > 0:
        from pet.stages.teachers.ipet import train_ipet

        return train_ipet(task, output, device, stamp)
    entries = run_generation(task, output, teacher_specs(task), task.train, device, stamp)
    manifest = teachers_manifest(task, stamp, entries)
    write_json_atomic(output / MANIFEST, manifest)
    return manifest


def teachers_manifest(task: Task, stamp: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    manifest = base_manifest("teachers", task.config.to_json(), task.inputs)
    manifest.update({
        "fingerprint": stamp,
        "labels": list(task.labels),
        "patterns": [p.to_json() for p in task.patterns],
        "verbalizers": [v.to_json() for v in task.verbalizers],
        "zero_shot": task.config.teachers.zero_shot,
        "labelled_examples": len(task.train),
        "teachers": entries,
    })
    return manifest


def run_generation(task: Task, output: Path, specs: list[TeacherSpec], train_set: Examples, device: torch.device,
                   stamp: str, *, prefix: str = "", steps: int | None = None, score_unlabeled: bool = False,
                   extra: dict[str, dict[str, Any]] | None = None, train_sets: dict[str, Examples] | None = None) -> list[dict[str, Any]]:
    """Train (or, for zero-shot specs, set up) every teacher of one generation that is not finished yet.

    ``train_sets`` gives a per-teacher training set (iPET); otherwise every teacher trains on ``train_set``.
    """
    entries = []
    for number, spec in enumerate(specs, start=1):
        path = f"{prefix}{spec.name}"
        folder = output / path
        if (folder / TEACHER_FILE).exists():
            record = read_json(folder / TEACHER_FILE, "teacher record")
            if record.get("fingerprint") != stamp:
                raise PetError(f"{folder}: teacher was trained with a different config or data; choose another output folder")
            info(f"teacher {number}/{len(specs)} {path}: already {'set up' if spec.seed is None else 'trained'}, skipped")
        elif spec.seed is None:
            info(f"teacher {number}/{len(specs)} {path}: zero-shot, no training ({device})")
            record = zero_shot_teacher(spec, task, folder, device, stamp, score_unlabeled)
        else:
            examples = train_sets[spec.name] if train_sets is not None else train_set
            info(f"teacher {number}/{len(specs)} {path}: training on {len(examples)} examples ({device})")
            record = train_teacher(spec, task, folder, device, stamp, examples, steps=steps, score_unlabeled=score_unlabeled,
                                   extra=(extra or {}).get(spec.name))
        entries.append({"name": spec.name, "path": path, "pattern": spec.pattern.id, "verbalizer": spec.verbalizer.id,
                        "seed": spec.seed, "derived_seed": spec.derived_seed, "generation": spec.generation,
                        "zero_shot": spec.seed is None, "weight": record["weight"],
                        "metrics": {k: v for k, v in record["metrics"].items() if k != "losses"}})
    return entries


def base_record(spec: TeacherSpec, tokens: VerbalizerTokens, stamp: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "pattern": spec.pattern.to_json(),
        "verbalizer": spec.verbalizer.to_json(),
        "verbalizer_token_ids": tokens.to_json(),
        "num_masks": tokens.num_masks,
        "seed": spec.seed,
        "derived_seed": spec.derived_seed,
        "generation": spec.generation,
        "fingerprint": stamp,
    }


def score_examples(scorer: MaskedLMScorer, encoder: PatternEncoder, examples: Examples, config: RunConfig,
                   device: torch.device) -> torch.Tensor:
    from pet.core.modeling import autocast

    if len(examples) == 0:
        return torch.empty(0, scorer.num_classes)
    precision = config.runtime.precision
    return scorer.score(encoder.encode(examples), config.runtime.eval_batch_size, lambda: autocast(device, precision))


def save_unlabeled_logits(folder: Path, scorer: MaskedLMScorer, encoder: PatternEncoder, task: Task, device: torch.device) -> None:
    """iPET: the teacher's class scores on the whole unlabeled set, kept for labelling the next generation."""
    from safetensors.torch import save_file

    from pet.core.modeling import autocast

    config = task.config
    logits = score_table(encoder, scorer, task.unlabeled(), config.runtime.eval_batch_size,
                         lambda: autocast(device, config.runtime.precision), "iPET: scoring the unlabeled set")
    save_file({"logits": logits.contiguous()}, str(folder / UNLABELED_LOGITS))


def zero_shot_teacher(spec: TeacherSpec, task: Task, folder: Path, device: torch.device, stamp: str,
                      score_unlabeled: bool = False) -> dict[str, Any]:
    """An untrained teacher: a record pointing at the base model; weight = labelled accuracy if there are labels."""
    from pet.core.modeling import load_masked_lm

    config = task.config
    started = time.perf_counter()
    max_length = config.teachers.max_length
    tokens = task.verbalizer_tokens(spec.pattern, spec.verbalizer, max_length)
    encoder = task.encoder(spec.pattern, max_length, tokens.num_masks)
    weight, scorer = None, None
    if len(task.train) or score_unlabeled:
        model = load_masked_lm(config.model, device, config.runtime.trust_remote_code)
        model.eval()
        scorer = MaskedLMScorer(model, tokens, task.tokenizer.mask_token_id, task.tokenizer.pad_token_id or 0)
    if len(task.train):
        weight = accuracy(score_examples(scorer, encoder, task.train, config, device), torch.tensor(task.train.labels))
    record = base_record(spec, tokens, stamp)
    record.update({
        "zero_shot": True,
        "base_model": config.model,
        "weight": weight,
        "metrics": {"train_accuracy_before": weight, "steps": 0, "seconds": round(time.perf_counter() - started, 2)},
    })
    with atomic_dir(folder) as tmp:
        if score_unlabeled:
            save_unlabeled_logits(tmp, scorer, encoder, task, device)
        write_json_atomic(tmp / TEACHER_FILE, record)
    return record


def train_teacher(spec: TeacherSpec, task: Task, folder: Path, device: torch.device, stamp: str,
                  train_set: Examples | None = None, *, steps: int | None = None, score_unlabeled: bool = False,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from pet.core.mlm import MlmMasker, teacher_loss
    from pet.core.modeling import load_masked_lm

    config = task.config
    settings = config.teachers
    train_set = task.train if train_set is None else train_set
    if len(train_set) == 0:
        raise PetError(f"teacher {spec.name}: no training examples (the labelled set has no rows); "
                       f"set teachers.zero_shot: true to use untrained teachers")
    started = time.perf_counter()
    torch.manual_seed(spec.derived_seed)  # dropout and any newly initialised weights
    model = load_masked_lm(config.model, device, config.runtime.trust_remote_code)
    tokens = task.verbalizer_tokens(spec.pattern, spec.verbalizer, settings.max_length)
    encoder = task.encoder(spec.pattern, settings.max_length, tokens.num_masks)
    pad_id = task.tokenizer.pad_token_id or 0
    scorer = MaskedLMScorer(model, tokens, task.tokenizer.mask_token_id, pad_id)
    sequences = encoder.encode(train_set)
    labels = torch.tensor(train_set.labels)
    score_all = lambda: score_examples(scorer, encoder, train_set, config, device)
    before = accuracy(score_all(), labels)
    # The ensemble weight is the accuracy on the original labelled set (the same set for every iPET generation).
    if train_set is task.train:
        weight = before
    elif len(task.train):
        weight = accuracy(score_examples(scorer, encoder, task.train, config, device), torch.tensor(task.train.labels))
    else:
        weight = None
    sampler = EpochSampler(len(sequences), settings.batch_size, torch.Generator().manual_seed(spec.derived_seed))
    mlm = settings.mlm_weight > 0
    if mlm:
        unlabeled = task.unlabeled()
        masker = MlmMasker(task.tokenizer, model.get_input_embeddings().num_embeddings, settings.mlm_probability,
                           seed=derive_seed(f"mlm-mask:{spec.derived_seed}"))
        unlabeled_sampler = EpochSampler(len(unlabeled), settings.unlabeled_ratio * sampler.batch_size,
                                         torch.Generator().manual_seed(derive_seed(f"mlm-batch:{spec.derived_seed}")))

    def step_loss(step: int) -> torch.Tensor:
        batch = sampler.next()
        input_ids, attention = scorer.batch([sequences[i] for i in batch])
        mlm_batch = None
        if mlm:
            ids, mask = pad(encoder.encode(unlabeled.take(unlabeled_sampler.next())), pad_id)
            masked, targets = masker(ids, mask)
            mlm_batch = (masked.to(device), mask.to(device), targets)  # targets stay on the host: see teacher_loss
        return teacher_loss(scorer, input_ids, attention, labels[batch].to(device), mlm_batch, settings.mlm_weight)

    total = steps or settings.steps
    optim = OptimSettings(total, settings.learning_rate, settings.weight_decay, settings.warmup_steps, settings.max_grad_norm)
    label = f"teacher {spec.name}" + (f" (generation {spec.generation})" if spec.generation else "")
    losses = train(model, step_loss, optim, device, config.runtime.precision, label)
    after = accuracy(score_all(), labels)
    record = base_record(spec, tokens, stamp)
    record.update({
        "weight": weight,
        "training_examples": len(train_set),
        "mlm_weight": settings.mlm_weight,
        **(extra or {}),
        "metrics": {
            "train_accuracy_before": before,
            "train_accuracy_after": after,
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "steps": len(losses),
            "seconds": round(time.perf_counter() - started, 2),
            "losses": losses,
        },
    })
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        task.tokenizer.save_pretrained(tmp)
        if score_unlabeled:
            save_unlabeled_logits(tmp, scorer, encoder, task, device)
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
    from pet.core.modeling import load_masked_lm, load_tokenizer

    folder = teachers_dir / entry["path"]
    record_path = folder / TEACHER_FILE
    if not record_path.exists():
        raise PetError(f"{folder}: teacher '{entry['name']}' is missing or incomplete; rerun pet train-teachers")
    record = read_json(record_path, "teacher record")
    source = record.get("base_model") or str(folder)  # zero-shot teachers are the base model itself
    try:
        tokenizer = load_tokenizer(source, trust_remote_code)
        model = load_masked_lm(source, device, trust_remote_code, warn_new_head=False)
    except PetError as err:
        raise PetError(f"{folder}: teacher '{entry['name']}' cannot be loaded ({err}); delete it and rerun pet train-teachers") from None
    verbalizer = verbalizers[entry["verbalizer"]]
    tokens = VerbalizerTokens.from_json(record["verbalizer_token_ids"], tuple(tuple(verbalizer.words[l]) for l in verbalizer.labels))
    encoder = PatternEncoder(patterns[entry["pattern"]], tokenizer, max_length, tokens.num_masks)
    model.eval()
    weight = entry.get("weight")
    return LoadedTeacher(entry["name"], float("nan") if weight is None else float(weight), encoder,
                         MaskedLMScorer(model, tokens, tokenizer.mask_token_id, tokenizer.pad_token_id or 0))
