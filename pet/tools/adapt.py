"""`pet adapt`: continued masked-LM training of the backbone on the task's own unlabeled text.

Task-adaptive pretraining (TAPT, Gururangan et al., ACL 2020): a few hundred MLM steps on the
unlabeled pool move the model's language model towards the task's domain before PET trains any
teacher. The result is a plain ``save_pretrained`` masked LM (model + tokenizer) that a run config
names as ``model:``; it loads with ``AutoModelForMaskedLM.from_pretrained`` without pet.

Two kinds of text:

- plain (default): each unlabeled example as the tokenizer encodes it (two fields as a pair, more
  fields joined by spaces), truncated to ``max_length``.
- ``prompts``: prompt-based continued pretraining (PCP, Shi & Lipani, NeurIPS 2023): each example
  rendered through one of the config's patterns (drawn per example from the seeded generator), exactly
  as a teacher will see it, with the mask token left at the mask slot. The slot is never a target
  (``MlmMasker`` never targets a mask token), so the model learns the pattern's wording around an
  open slot without being taught an answer. PCP fills the slot with pseudo-labels from a model trained on the
  labelled set; here that would need labels (or the untrained model's guesses, which would teach it its own
  zero-shot mistakes), so this tool stays label-free and leaves the slot open.

Masking is BERT's (pet/core/mlm.py): 15% of eligible tokens, 80/10/10, never padding or special tokens.
The optimisation is the loop every stage shares (pet/core/training.py): AdamW, linear decay,
clipping, NaN guard. Same seed and settings give the same weights on the CPU.

The folder also holds ``adapt.json`` (base model, settings, losses, the unlabeled file's hash,
versions, and the fingerprint of what the adaptation read: the same adaptation again is kept, another
is refused unless overwrite, and stages trained from the folder record the fingerprint, so that
adapting again makes them out of date). It is deliberately not called manifest.json: that name marks
a finished pet stage, and an adapted model is a model, not a stage output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pet.core.progress import info
from pet.errors import PetError
from pet.io.artifacts import ADAPT_RECORD as RECORD
from pet.io.config import AdaptConfig, RunConfig
from pet.io.lock import writing
from pet.io.yamlfile import validate

# Not settings (the settings and their a-priori defaults are the config's `adapt` section, AdaptConfig):
WEIGHT_DECAY = 0.01
WARMUP_STEPS = 0  # the MLM head is already trained: there is no new layer to protect with a warm-up
MAX_GRAD_NORM = 1.0
LOSS_WINDOW = 50  # the first/last loss recorded is the mean over this many steps (a tenth of short runs)

# The settings of one adaptation: the config's `adapt` section without `enabled` and `auto_threshold`, which
# only `pet run` reads (whether to adapt, not how).
AdaptSettings = AdaptConfig
SETTINGS = tuple(name for name in AdaptConfig.model_fields if name not in ("enabled", "auto_threshold"))


def adapt(config: RunConfig | str | Path, output: str | Path, *, overwrite: bool = False,
          overrides: dict[str, Any] | None = None, **settings: Any) -> Path:
    """Continue masked-LM training of ``config.model`` on ``config.data.unlabeled``; write the masked LM
    (model, tokenizer, adapt.json) to ``output`` and return its path.

    ``settings`` (steps, batch_size, learning_rate, mlm_probability, prompts, seed, max_length) override
    the config's ``adapt`` section. A folder this function wrote from the same model, settings and data
    is returned as it is (a second run would train the same model again: on the CPU, the same weights);
    one written from others is refused unless ``overwrite``.
    """
    from pet.tools.session import as_config

    run_config = as_config(config, overrides=overrides)
    chosen = chosen_settings(run_config, settings)
    output = Path(output)
    with writing(output, "pet adapt", beside=True):  # atomic_dir replaces the folder whole: the lock sits beside it
        check_output(output, run_config.model, overwrite)
        corpus = Corpus.open(run_config, chosen)  # every input checked before the model loads
        reads = adapt_reads(run_config, corpus, chosen)
        if finished_with(output, reads, overwrite):
            info(f"{output}: already adapted from these settings and data")
            return output
        return train_and_save(run_config, corpus, chosen, reads, output)


def chosen_settings(config: RunConfig, settings: dict[str, Any]) -> AdaptConfig:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise PetError(f"adapt: unknown setting '{unknown[0]}'; settings are {', '.join(SETTINGS)}")
    merged = {**config.adapt.model_dump(mode="json"), **settings}
    return validate(AdaptConfig, merged, "adapt settings")


def adapt_reads(config: RunConfig, corpus: "Corpus", settings: AdaptConfig) -> dict[str, Any]:
    """Everything an adaptation reads, so that a second one can tell whether it would write the same model."""
    from pet.io.artifacts import file_hash, model_reads

    reads: dict[str, Any] = {
        **model_reads(config.model),  # adapting an adapted model: the first adaptation is part of what this one reads
        "runtime.trust_remote_code": config.runtime.trust_remote_code,
        "data.fields": config.data.fields,
        "inputs.data.unlabeled": file_hash(config.data.unlabeled),
        **{f"adapt.{name}": getattr(settings, name) for name in SETTINGS},
        "adapt.max_length": corpus.max_length,  # resolved: teachers.max_length when unset
    }
    if settings.prompts:  # by definition, as stage A reads them: an unused pattern's edit changes nothing
        reads["patterns"] = [e.pattern.to_json() for e in corpus.encoders]
    return reads


def finished_with(output: Path, reads: dict[str, Any], overwrite: bool) -> bool:
    """True when ``output`` holds an adaptation of exactly ``reads``; refuse one of other reads unless ``overwrite``."""
    from pet.io.artifacts import adapt_record, describe_changes, fingerprint_of

    record = adapt_record(output)
    if record is None:
        return False
    if record.get("fingerprint") == fingerprint_of(reads):
        return True
    if not overwrite:
        raise PetError(f"{output}: holds a model adapted from other settings or data ({describe_changes(record.get('reads'), reads)}); "
                       "rerun with --overwrite to adapt again, or choose another folder")
    return False


def check_output(output: Path, model: str, overwrite: bool) -> None:
    """Refuse a file, the base model's own folder, and a non-empty folder that no adaptation wrote (unless overwrite)."""
    if output.exists() and not output.is_dir():
        raise PetError(f"{output}: output path is a file, not a folder; choose another -o")
    base = Path(model).expanduser()
    if base.exists() and output.exists() and output.resolve() == base.resolve():
        raise PetError(f"{output}: is the base model's own folder; write the adapted model to another -o")
    if output.is_dir() and any(output.iterdir()) and not (output / RECORD).is_file() and not overwrite:
        raise PetError(f"{output}: exists and is not empty; choose another -o, or pass --overwrite to replace it")


def text_length(config: RunConfig, settings: AdaptConfig) -> int:
    """The adaptation's max_length: its own, else the teachers' (the length stage A trains at)."""
    return settings.max_length or config.teachers.max_length


class Corpus:
    """The unlabeled set as token ids, read from disk one batch at a time (never all in memory)."""

    def __init__(self, table, tokenizer, patterns: list, max_length: int, field_names: list[str]):
        from pet.core.encoding import PatternEncoder

        self.table, self.tokenizer, self.max_length, self.field_names = table, tokenizer, max_length, field_names
        self.encoders = [PatternEncoder(p, tokenizer, max_length) for p in patterns]

    @classmethod
    def open(cls, config: RunConfig, settings: AdaptConfig) -> "Corpus":
        from pet.core.modeling import check_masked_lm, load_tokenizer
        from pet.io.data import open_table
        from pet.io.patterns import load_patterns
        from pet.stages.teachers.task import check_pattern_fields

        patterns = []
        if settings.prompts:
            if config.task.multi_label:
                raise PetError("--prompts renders texts through the patterns, and multi-label patterns need a label in "
                               "{label}; adapt multi-label tasks on the plain texts (without --prompts)")
            patterns = load_patterns(config.patterns.file, config.patterns.ids)
            check_pattern_fields(patterns, config)
        table = open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False)
        tokenizer = load_tokenizer(config.model, config.runtime.trust_remote_code)
        if tokenizer.mask_token_id is None:
            raise PetError(f"tokenizer of '{config.model}' has no mask token; pet adapt needs a masked language model")
        check_masked_lm(config.model, config.runtime.trust_remote_code)
        return cls(table, tokenizer, patterns, text_length(config, settings), list(config.data.fields))

    def __len__(self) -> int:
        return len(self.table)

    def encode(self, indices: list[int], generator: torch.Generator) -> list[list[int]]:
        """Token ids of the rows at ``indices``: plain, or each through a pattern drawn from ``generator``."""
        examples = self.table.take(indices)
        if not self.encoders:
            return self._plain([examples.fields[name] for name in self.field_names])
        choice = torch.randint(len(self.encoders), (len(indices),), generator=generator).tolist()
        out: list[list[int]] = [[] for _ in indices]
        for k, encoder in enumerate(self.encoders):
            rows = [i for i, c in enumerate(choice) if c == k]
            if rows:
                for row, ids in zip(rows, encoder.encode(examples.take(rows))):
                    out[row] = ids
        return out

    def _plain(self, columns: list[list[str]]) -> list[list[int]]:
        if len(columns) == 2:  # a pair task: encoded as the tokenizer encodes pairs (separator, token types)
            encoded = self.tokenizer(columns[0], columns[1], truncation=True, max_length=self.max_length)
        else:
            texts = [" ".join(parts) for parts in zip(*columns)]
            encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return encoded["input_ids"]


def mlm_step_loss(scorer, masker, corpus: Corpus, sampler, generator: torch.Generator, device: torch.device):
    """``step_loss(step)`` for the shared loop: one masked batch, cross-entropy at its targets only."""
    from pet.core.encoding import pad
    from pet.core.maths import masked_lm_loss
    from pet.core.mlm import IGNORE

    def step_loss(step: int) -> torch.Tensor:
        ids, attention = pad(corpus.encode(sampler.next(), generator), scorer.pad_token_id)
        masked, targets = masker(ids, attention)
        rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
        # logits only at the targets: the vocabulary projection of every position would be most of the step
        logits = scorer.logits_at(masked.to(device), attention.to(device), (rows.to(device), cols.to(device)))[0]
        return masked_lm_loss(logits, targets[rows, cols].to(device))

    return step_loss


def train_and_save(config: RunConfig, corpus: Corpus, settings: AdaptConfig, reads: dict[str, Any], output: Path) -> Path:
    from pet.core.mlm import MlmMasker
    from pet.core.modeling import load_masked_lm, pick_device, resolved_learning_rate, save_model
    from pet.core.scoring import MaskedLMScorer
    from pet.core.training import EpochSampler, OptimSettings, train
    from pet.io.artifacts import atomic_dir, write_json_atomic

    started = time.monotonic()
    device = pick_device(config.runtime.device)
    model = load_masked_lm(config.model, device, config.runtime.trust_remote_code)
    rate = resolved_learning_rate(settings.learning_rate, model)
    torch.manual_seed(settings.seed)  # dropout
    generator = torch.Generator().manual_seed(settings.seed)  # batches and pattern choice
    masker = MlmMasker(corpus.tokenizer, model.get_input_embeddings().num_embeddings, settings.mlm_probability,
                       seed=settings.seed + 1)
    step_loss = mlm_step_loss(MaskedLMScorer.for_vocabulary(model, corpus.tokenizer), masker, corpus,
                              EpochSampler(len(corpus), settings.batch_size, generator), generator, device)
    optim = OptimSettings(settings.steps, rate, WEIGHT_DECAY, WARMUP_STEPS, MAX_GRAD_NORM)
    losses = train(model, step_loss, optim, device, config.runtime.precision, "adapt")
    record = adapt_record(config, corpus, settings, reads, rate, losses, time.monotonic() - started)
    with atomic_dir(output) as tmp:
        save_model(model, tmp)
        corpus.tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / RECORD, record)
    return output




def adapt_record(config: RunConfig, corpus: Corpus, settings: AdaptConfig, reads: dict[str, Any], rate: float,
                 losses: list[float], seconds: float) -> dict[str, Any]:
    from pet.io.artifacts import fingerprint_of, library_versions, sha256_file

    window = max(1, min(LOSS_WINDOW, len(losses) // 10))
    files = [Path(config.data.unlabeled)] + ([Path(config.patterns.file)] if settings.prompts else [])
    return {
        "tool": "pet adapt",
        "base_model": config.model,
        # what stage A records of an adapted model (pet/stages/teachers/manifest.py), and what a rerun compares
        "fingerprint": fingerprint_of(reads),
        "reads": reads,
        "settings": {**settings.model_dump(mode="json", exclude={"enabled"}), "max_length": corpus.max_length, "learning_rate": rate,
                     "weight_decay": WEIGHT_DECAY, "warmup_steps": WARMUP_STEPS, "max_grad_norm": MAX_GRAD_NORM},
        "text": "prompts" if settings.prompts else "plain",
        "patterns": [e.pattern.id for e in corpus.encoders],
        "unlabeled_examples": len(corpus),
        "inputs": {str(path.resolve()): sha256_file(path) for path in files},
        "loss": {"window": window, "first": sum(losses[:window]) / window, "last": sum(losses[-window:]) / window,
                 "per_step": losses},
        "seconds": round(seconds, 1),
        "versions": library_versions(),
    }
