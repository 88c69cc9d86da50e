"""Everything a run needs, loaded and validated before any artifact is written.

Validation happens here, up front, so that a typo in a pattern or a bad data row fails in seconds
with one clear line instead of after an hour of teacher training, and leaves no output behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pet.artifacts import sha256_file
from pet.config import RunConfig
from pet.data import Examples, Table, check_label_coverage
from pet.encoding import PatternEncoder, VerbalizerTokens, verbalizer_tokens
from pet.errors import PetError
from pet.patterns import Pattern, Verbalizer, load_patterns, load_verbalizers


@dataclass
class Task:
    config: RunConfig
    patterns: list[Pattern]
    verbalizers: list[Verbalizer]
    labels: tuple[str, ...]
    tokenizer: Any
    train: Examples
    inputs: dict[str, str]  # absolute path -> sha256 of every file the run reads

    def encoder(self, pattern: Pattern, max_length: int) -> PatternEncoder:
        return PatternEncoder(pattern, self.tokenizer, max_length)

    def verbalizer_tokens(self, pattern: Pattern, verbalizer: Verbalizer, max_length: int) -> VerbalizerTokens:
        return verbalizer_tokens(verbalizer, self.encoder(pattern, max_length), self.config.model)


def open_table(config: RunConfig, path: Path, role: str, labels: tuple[str, ...] | None, labelled: bool) -> Table:
    data = config.data
    return Table(path, role, data.fields, data.id_column, data.label_column if labelled else None, labels if labelled else None)


def check_pattern_fields(patterns: list[Pattern], config: RunConfig) -> None:
    for pattern in patterns:
        for field in pattern.fields:
            if field not in config.data.fields:
                mapped = ", ".join(config.data.fields) or "none"
                raise PetError(
                    f"{config.patterns.file}: pattern '{pattern.id}' uses placeholder '{{{field}}}', which is not "
                    f"a data field (data.fields maps: {mapped}); add '{field}: <column>' to data.fields"
                )


def prepare_task(config: RunConfig, tokenizer=None) -> Task:
    from pet.modeling import load_tokenizer

    patterns = load_patterns(config.patterns.file, config.patterns.ids)
    verbalizers = load_verbalizers(config.verbalizers.file, config.verbalizers.ids)
    labels = verbalizers[0].labels
    check_pattern_fields(patterns, config)
    train_table = open_table(config, config.data.train, "labelled", labels, labelled=True)
    train = train_table.read_all()
    check_label_coverage(train, labels, config.data.train, config.verbalizers.file)
    for chunk in open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False).chunks():
        pass  # reading every chunk checks every row's text fields
    if config.data.test is not None:
        open_table(config, config.data.test, "test", labels, labelled=True).read_all()
    tokenizer = tokenizer or load_tokenizer(config.model, config.runtime.trust_remote_code)
    if tokenizer.mask_token_id is None:
        raise PetError(f"tokenizer of '{config.model}' has no mask token; PET teachers need a masked language model")
    task = Task(config, patterns, verbalizers, labels, tokenizer, train, input_hashes(config))
    for pattern in patterns:
        encoder = task.encoder(pattern, config.teachers.max_length)
        encoder.encode(train)  # fails early if a pattern cannot fit max_length
        for verbalizer in verbalizers:
            verbalizer_tokens(verbalizer, encoder, config.model)
    return task


def input_hashes(config: RunConfig) -> dict[str, str]:
    files = [config.data.train, config.data.unlabeled, config.data.test, config.patterns.file, config.verbalizers.file]
    return {str(path): sha256_file(path) for path in files if path is not None}
