"""Everything a run needs, loaded and validated before any artifact is written.

Validation happens here, up front, so that a typo in a pattern or a bad data row fails in seconds
with one clear line instead of after an hour of teacher training, and leaves no output behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pet.core.distributed import Ranks
from pet.core.encoding import PatternEncoder, VerbalizerTokens, verbalizer_tokens
from pet.core.multilabel import MultiLabelEncoder, is_multi_label
from pet.core.scoring import check_table_fits
from pet.errors import PetError
from pet.io.artifacts import sha256_file
from pet.io.config import RunConfig, check_student_settings
from pet.io.data import (
    Examples,
    Table,
    check_label_coverage,
    open_table,
)
from pet.io.patterns import (
    LABEL,
    MultiLabelVerbalizer,
    Pattern,
    Verbalizer,
    load_patterns,
    load_verbalizers,
)
from pet.stages.teachers import crossval, supervised
from pet.stages.teachers.context import TeacherContext, TeacherJob
from pet.stages.teachers.specs import TeacherSpec, make_specs


@dataclass
class Task:
    config: RunConfig
    patterns: list[Pattern]
    verbalizers: list[Verbalizer] | list[MultiLabelVerbalizer]
    labels: tuple[str, ...]
    tokenizer: Any
    train: Examples  # may have no rows, with teachers.zero_shot
    inputs: dict[str, str]  # absolute path -> sha256 of every file the run reads
    _unlabeled: Table | None = None

    def encoder(self, pattern: Pattern, max_length: int, num_masks: int = 1,
                verbalizer: Verbalizer | MultiLabelVerbalizer | None = None) -> PatternEncoder | MultiLabelEncoder:
        """The pattern's encoder; with a multi-label verbalizer, one that asks about each of its labels."""
        if verbalizer is not None and is_multi_label(verbalizer):
            return MultiLabelEncoder(pattern, verbalizer, self.tokenizer, max_length, num_masks)
        return PatternEncoder(pattern, self.tokenizer, max_length, num_masks)

    def verbalizer_tokens(self, pattern: Pattern, verbalizer: Verbalizer, max_length: int) -> VerbalizerTokens:
        return verbalizer_tokens(verbalizer, self.encoder(pattern, max_length), self.config.model,
                                 multi_token=self.config.teachers.multi_token, rule=self.config.teachers.multi_token_rule)

    def specs(self, generation: int = 0, zero_shot: bool | None = None) -> list[TeacherSpec]:
        """This run's teachers of one generation (zero-shot ones: no seeds)."""
        zero_shot = self.config.teachers.zero_shot if zero_shot is None else zero_shot
        return make_specs(self.patterns, self.verbalizers, None if zero_shot else self.config.teachers.seeds, generation)

    def context(self, device: torch.device, stamp: str, reads: dict[str, Any] | None = None,
                overwrite: bool = False, ranks: Ranks | None = None) -> TeacherContext:
        config = self.config
        return TeacherContext(config.model, self.tokenizer, config.teachers, config.runtime, device, stamp,
                              self.train, self.unlabeled, reads or {}, overwrite, ranks or Ranks(),
                              config.task.threshold)

    def jobs(self, ctx: TeacherContext) -> list[TeacherJob]:
        """Plain PET (or zero-shot): every teacher trains on the labelled set."""
        return [TeacherJob(spec, spec.name, ctx.labelled, self.config.teachers.steps) for spec in self.specs()]

    def unlabeled(self) -> Table:
        """The unlabeled set, opened once on first use (auxiliary MLM loss, iPET). It stays on disk
        (memory-mapped Arrow): callers read batches with ``take`` or ``chunks``, so a pool of millions
        of texts costs stage A no more memory than a small one."""
        if self._unlabeled is None:
            self._unlabeled = open_table(self.config, self.config.data.unlabeled, "unlabeled", None, labelled=False)
        return self._unlabeled


def check_pattern_fields(patterns: list[Pattern], config: RunConfig) -> None:
    multi_label = config.task.multi_label
    if multi_label and LABEL in config.data.fields:
        raise PetError(f"data.fields maps '{LABEL}', which multi-label patterns use for the label they ask about; "
                       f"name that placeholder differently")
    for pattern in patterns:
        if multi_label and LABEL not in pattern.fields:
            raise PetError(f"{config.patterns.file}: pattern '{pattern.id}' has no {{{LABEL}}} placeholder; a multi-label "
                           f"pattern asks about one label at a time, e.g. \"{{text}} Is this about {{{LABEL}}}? {{mask}}.\"")
        for field in pattern.fields:
            if field not in config.data.fields and not (multi_label and field == LABEL):
                mapped = ", ".join(config.data.fields) or "none"
                hint = f" ({{{LABEL}}} is the label placeholder of multi-label tasks: set task.type: multi_label)" if field == LABEL else ""
                raise PetError(
                    f"{config.patterns.file}: pattern '{pattern.id}' uses placeholder '{{{field}}}', which is not "
                    f"a data field (data.fields maps: {mapped}); add '{field}: <column>' to data.fields{hint}"
                )


def prepare_task(config: RunConfig, tokenizer=None) -> Task:
    """Load and check everything the run will read, before anything is written or trained.

    A typo in any stage's settings, a row of any file that cannot fit its pattern, or settings that
    can only give an empty or useless result fail here in seconds, with one line.
    """
    from pet.core.modeling import check_masked_lm, load_tokenizer

    check_settings(config)
    patterns = load_patterns(config.patterns.file, config.patterns.ids)
    verbalizers = load_verbalizers(config.verbalizers.file, config.verbalizers.ids, config.task.multi_label)
    config = default_ipet_or_plain(config, len(patterns) * len(verbalizers))
    labels = verbalizers[0].labels
    check_pattern_fields(patterns, config)
    train = read_labelled(config, labels)
    if config.distillation.gold_weight > 0 and len(train) == 0:
        raise PetError("distillation.gold_weight is above 0 but there are no labelled examples (zero-shot); set it to 0")
    if not config.teachers.zero_shot:
        check_label_coverage(train, labels, config.data.train, config.verbalizers.file)
        crossval.check_folds(config, train, labels)
    open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False)  # the file and its columns;
    if config.data.test is not None:  # every row is read by check_every_row_fits below
        open_table(config, config.data.test, "test", labels, labelled=True)
    tokenizer = tokenizer or load_tokenizer(config.model, config.runtime.trust_remote_code)
    if tokenizer.mask_token_id is None:
        raise PetError(f"tokenizer of '{config.model}' has no mask token; PET teachers need a masked language model")
    check_masked_lm(config.model, config.runtime.trust_remote_code)  # before any training, not after the first teacher
    check_classifier_models(config, labels)  # the member's and stage C's models, before anything trains
    task = Task(config, patterns, verbalizers, labels, tokenizer, train, input_hashes(config))
    check_every_row_fits(task)
    return task


def teachers_per_generation(config: RunConfig, pairs: int) -> int:
    """The fewest teachers any iPET generation has for ``pairs`` pattern x verbalizer pairs: one per pair
    and seed (zero-shot iPET's generation 0: one per pair), plus the supervised members (one per seed)."""
    teachers = config.teachers
    members = len(teachers.seeds) if teachers.supervised else 0
    first = pairs * (1 if teachers.zero_shot else len(teachers.seeds)) + members
    return min(first, pairs * len(teachers.seeds) + members)


IPET_NEEDS_TWO = "iPET needs at least two teachers per generation, since each is taught by the others"


def default_ipet_or_plain(config: RunConfig, pairs: int) -> RunConfig:
    """The run's config with pet's default iPET decided for its teachers. iPET is the default for trained
    single-label teachers, and it needs two teachers per generation: a run that left ipet.generations
    unset with one (a new user's one pattern x one verbalizer x one seed) trains plain PET, and stage A
    and `pet check` say so (plain_pet_note); one that asked for iPET is refused (ipet.check_ipet)."""
    if config.ipet.generations is not None or not config.effective_ipet.enabled or teachers_per_generation(config, pairs) >= 2:
        return config
    return config.model_copy(update={"ipet": config.ipet.model_copy(update={"generations": 0})})


def plain_pet_note(written: RunConfig, task: Task) -> str | None:
    """The line saying that ``written``, left on pet's default iPET, trains plain PET in ``task``; None when it does not."""
    if not written.effective_ipet.enabled or task.config.effective_ipet.enabled:
        return None
    pairs, seeds = len(task.patterns) * len(task.verbalizers), len(task.config.teachers.seeds)
    return (f"plain PET: {IPET_NEEDS_TWO}, and this run has {teachers_per_generation(task.config, pairs)} ({pairs} pattern x "
            f"verbalizer pair{'s' if pairs != 1 else ''} x {seeds} seed{'s' if seeds != 1 else ''}); for iPET, pet's default, "
            "add a pattern, a verbalizer or a teachers.seeds entry")


def check_settings(config: RunConfig) -> None:
    """Settings that are valid one by one but can only produce no teachers, or the same teacher twice."""
    seeds = config.teachers.seeds
    if not config.teachers.zero_shot and not seeds:
        raise PetError("teachers.seeds is empty, so no teacher would be trained; give at least one seed, e.g. [1]")
    repeated = next((seed for seed in seeds if seeds.count(seed) > 1), None)
    if repeated is not None:
        raise PetError(f"teachers.seeds lists {repeated} twice: the two teachers would be the same teacher; remove the repeat")
    if config.task.multi_label and config.effective_ipet.enabled:
        raise PetError("ipet.generations > 0 is not supported for multi-label tasks yet (iPET draws examples per class); "
                       "set ipet.generations: 0")
    supervised.check_settings(config)
    crossval.check_settings(config)
    check_learning_rate_search(config)
    check_student_settings(config)  # stage C's, hours before stage C


def check_learning_rate_search(config: RunConfig) -> None:
    """teachers.learning_rate: cv (lr_search.py) needs labelled examples of a single-label task."""
    if config.teachers.learning_rate == "cv":
        crossval.require_labelled_folds(config, "teachers.learning_rate: cv", "searches a rate by training", "set a rate or auto")


def check_classifier_models(config: RunConfig, labels: tuple[str, ...]) -> None:
    """distillation.model and teachers.supervised_model (when set) load as a tokenizer and a config, and
    neither is a classifier for other labels."""
    from pet.core.modeling import check_classifier_labels, load_tokenizer

    for key, name in (("teachers.supervised_model", config.teachers.supervised_model), ("distillation.model", config.distillation.model)):
        if name is None:
            continue  # the teachers' own model, already checked
        try:
            load_tokenizer(name, config.runtime.trust_remote_code)
        except PetError as err:
            raise PetError(f"{key}: {err}") from None
        check_classifier_labels(name, list(labels), config.runtime.trust_remote_code, key)


def check_every_row_fits(task: Task) -> None:
    """Every labelled, unlabeled and test row fits every pattern at the max_length each stage uses it with
    (multi-label: with every label's text in the pattern's {label})."""
    config = task.config
    unlabeled_in_stage_a = config.teachers.mlm_weight > 0 or config.effective_ipet.enabled
    # A row that fits max_length L fits any longer one (only the shortenable fields are cut, by the
    # excess over L), so each table is checked once, at the shortest length a stage reads it with:
    # on a long-text task every pass over the unlabeled file is a tokenization of all of it.
    unlabeled_length = (min(config.labelling.max_length, config.teachers.max_length) if unlabeled_in_stage_a
                        else config.labelling.max_length)
    tables = [(config.data.unlabeled, task.unlabeled(), unlabeled_length)]
    if config.data.test is not None:
        tables.append((config.data.test, open_table(config, config.data.test, "test", task.labels, labelled=True),
                       config.labelling.max_length))
    for pattern in task.patterns:
        # multi-label: the label texts are part of each row, so every verbalizer is checked
        needs = {(pattern_masks(task, pattern, verbalizer), verbalizer.id if config.task.multi_label else None): verbalizer
                 for verbalizer in task.verbalizers}
        for (num_masks, multi_label_id), verbalizer in sorted(needs.items(), key=lambda item: (item[0][0], item[0][1] or "")):
            verbalizer = verbalizer if multi_label_id is not None else None
            if len(task.train):
                try:
                    task.encoder(pattern, config.teachers.max_length, num_masks, verbalizer).encode(task.train)
                except PetError as err:
                    raise PetError(f"{config.data.train}: {err}") from None
            for _, table, max_length in tables:
                check_table_fits(task.encoder(pattern, max_length, num_masks, verbalizer), table)


def pattern_masks(task: Task, pattern: Pattern, verbalizer: Verbalizer) -> int:
    """The number of mask slots this pattern gets with this verbalizer (checks the label words on the way)."""
    try:
        return task.verbalizer_tokens(pattern, verbalizer, task.config.teachers.max_length).num_masks
    except PetError as err:  # name the file the user has to edit
        raise PetError(f"{task.config.verbalizers.file}: {err}") from None


def empty_examples(config: RunConfig) -> Examples:
    if config.task.multi_label:
        return Examples(ids=[], fields={name: [] for name in config.data.fields}, label_sets=[])
    return Examples(ids=[], fields={name: [] for name in config.data.fields}, labels=[])


def read_labelled(config: RunConfig, labels: tuple[str, ...]) -> Examples:
    """The labelled set. No rows (or no file) is only allowed for zero-shot runs, and never means "all data"."""
    path = config.data.train
    zero_shot = config.teachers.zero_shot
    if path is None:
        if not zero_shot:
            raise PetError("data.train: no labelled set given; name one, or set teachers.zero_shot: true to run zero-shot")
        return empty_examples(config)
    hint = "set teachers.zero_shot: true if you meant to run zero-shot (no labelled examples)"
    if path.exists() and path.is_file() and path.suffix.lower() != ".parquet" and not path.read_bytes().strip():
        if not zero_shot:
            raise PetError(f"{path}: labelled file has no rows; add labelled examples, or {hint}")
        return empty_examples(config)
    table = open_table(config, path, "labelled", labels, labelled=True, allow_empty=True)
    if len(table) == 0 and not zero_shot:
        raise PetError(f"{path}: labelled file has no rows; add labelled examples, or {hint}")
    return table.read_all() if len(table) else empty_examples(config)


def input_hashes(config: RunConfig) -> dict[str, str]:
    files = [config.data.train, config.data.unlabeled, config.data.test, config.patterns.file, config.verbalizers.file]
    return {str(path): sha256_file(path) for path in files if path is not None}
