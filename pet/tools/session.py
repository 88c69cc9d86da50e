"""What every tool loads once: the validated run config, its task (patterns, verbalizers, data,
tokenizer) and the untrained masked LM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pet.core.scoring import MaskedLMScorer
from pet.io.config import RunConfig, load_config
from pet.io.data import Examples
from pet.io.patterns import MultiLabelVerbalizer, Pattern, Verbalizer
from pet.stages.teachers.task import Task, prepare_task

ConfigLike = RunConfig | str | Path


def as_config(config: ConfigLike, data: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A validated config from a path (overrides as on the command line) or a RunConfig;
    ``data`` replaces data.train as the labelled set."""
    overrides = dict(overrides or {})
    if data is not None:
        overrides["data.train"] = str(data)
    if not isinstance(config, RunConfig):
        return load_config(Path(config), overrides)
    if not overrides:
        return config
    from pet.io.config import command_line_paths, config_from_json

    return config_from_json(config.to_json(), command_line_paths(overrides), "run config")


def lenient(config: RunConfig) -> RunConfig:
    """The config with teachers.multi_token on, so that a label word of several tokens is reported by
    the tools (with its pieces and the fix) instead of stopping task preparation."""
    teachers = config.teachers.model_copy(update={"multi_token": True})
    return config.model_copy(update={"teachers": teachers})


@dataclass
class Session:
    config: RunConfig  # as the user wrote it (teachers.multi_token as given)
    task: Task  # prepared with multi-token words allowed (see ``lenient``)
    model: Any
    device: torch.device
    new_head: bool = False  # the model's MLM head was newly initialised (pet/core/modeling.py)

    @property
    def tokenizer(self):
        return self.task.tokenizer

    def question_rows(self, examples: Examples) -> Examples:
        """Multi-label tasks: each example once per label, as the teachers see it (the first verbalizer's
        label texts in {label}, the 0/1 answer as the label); single-label: the examples themselves."""
        from pet.core.multilabel import expand, is_multi_label

        verbalizer = self.task.verbalizers[0]
        if not is_multi_label(verbalizer):
            return examples
        return expand(examples, [verbalizer.label_text[label] for label in verbalizer.labels])

    def mask_scorer(self) -> MaskedLMScorer:
        """A scorer used only for vocabulary logits (its placeholder verbalizer is never read)."""
        return MaskedLMScorer.for_vocabulary(self.model, self.tokenizer)

    def zero_shot_scores(self, pattern: Pattern, verbalizer: Verbalizer | MultiLabelVerbalizer, examples: Examples) -> torch.Tensor:
        """[N, C] class scores (multi-label: [N, L] decision logits) of the untrained model with one
        pattern x verbalizer (as a zero-shot teacher)."""
        from pet.core.modeling import autocast_factory

        from pet.core.multilabel import teacher_scorer

        max_length = self.config.teachers.max_length
        tokens = self.task.verbalizer_tokens(pattern, verbalizer, max_length)
        encoder = self.task.encoder(pattern, max_length, tokens.num_masks, verbalizer)
        scorer = teacher_scorer(self.model, tokens, self.tokenizer, verbalizer)
        autocast = autocast_factory(self.device, self.config.runtime.precision)
        return scorer.score(encoder.encode(examples), self.config.runtime.eval_batch_size, autocast)


def open_session(config: RunConfig) -> Session:
    from pet.core.modeling import load_masked_lm_and_new_head, pick_device, warn_if_new_head

    task = prepare_task(lenient(config))
    device = pick_device(config.runtime.device)
    model, new_head = load_masked_lm_and_new_head(config.model, device, config.runtime.trust_remote_code)
    warn_if_new_head(config.model, new_head)
    return Session(config, task, model.eval(), device, bool(new_head))
