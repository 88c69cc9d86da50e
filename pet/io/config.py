"""The run configuration: one YAML file with every setting of every stage.

Defaults follow the PET paper (Schick & Schütze, 2021) unless a comment says otherwise. Relative
paths are resolved against the folder of the config file, so a config can travel with its data.
Any value can be overridden on the command line as ``--section.key value``.
"""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from pet.errors import PetError
from pet.io.yamlfile import Strict, load_yaml, model_in, validate


class DataConfig(Strict):
    train: Path | None = None  # labelled examples; may be omitted (or have no rows) only with teachers.zero_shot: true
    unlabeled: Path  # text the teachers label for the student
    test: Path | None = None  # optional: evaluated after distillation, never used for training
    fields: dict[str, str] = Field(default_factory=lambda: {"text": "text"})  # pattern placeholder -> column
    id_column: str = "id"  # rows without this column get ids "row-<n>"
    label_column: str = "label"


class TaskConfig(Strict):
    # single_label: each example has one label (a text in the label column); multi_label: any number
    # (a list in the label column), one yes/no decision per label (README "Multi-label tasks")
    type: Literal["single_label", "multi_label"] = "single_label"
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)  # multi_label: a label is predicted when its probability is at least this
    allow_empty: bool = True  # multi_label: an example may have an empty label list (none of the labels applies)
    # multi_label: labels written as one text, e.g. "food|price" in a CSV column, are split at this separator
    label_separator: str | None = Field(default=None, min_length=1)

    @property
    def multi_label(self) -> bool:
        return self.type == "multi_label"


class SourceConfig(Strict):
    file: Path
    ids: list[str] | None = None  # None: every pattern (or verbalizer) in the file


class TeachersConfig(Strict):
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3])
    steps: PositiveInt = 250
    batch_size: PositiveInt = 4
    # auto: by the model's size, 1e-5 (the paper's, for RoBERTa-large) from 200M parameters, 2e-5 from 60M,
    # 5e-5 below (pet/core/modeling.py auto_learning_rate); a number sets it
    # cv: the rate of learning_rate_grid with the best cross-validated accuracy (teachers.cv_folds folds of the
    # labelled set, the first pattern x verbalizer; pet/stages/teachers/lr_search.py)
    learning_rate: PositiveFloat | Literal["auto", "cv"] = "auto"
    learning_rate_grid: list[PositiveFloat] = Field(default_factory=lambda: [1e-5, 2e-5, 5e-5, 1e-4], min_length=1)
    weight_decay: NonNegativeFloat = 0.01
    warmup_steps: NonNegativeInt = 0
    max_grad_norm: PositiveFloat = 1.0
    max_length: PositiveInt = 256
    # Auxiliary MLM loss (PET paper, section 3.1): loss = (1 - a) * CE + a * MLM on unlabeled text rendered
    # through the same pattern. 0 turns it off; see pet/core/mlm.py for why the default is what it is.
    mlm_weight: float = Field(default=1e-4, ge=0.0, lt=1.0)
    unlabeled_ratio: PositiveInt = 3  # unlabeled examples per labelled example in each step (paper: 3)
    mlm_probability: float = Field(default=0.15, gt=0.0, lt=1.0)  # share of eligible tokens that become MLM targets
    # Zero-shot: no training; each teacher is the pretrained MLM with one pattern x verbalizer, and
    # data.train may be omitted or empty.
    zero_shot: bool = False
    # Label words of several tokens: the mask becomes as many masks as the longest word (pet/core/scoring.py).
    # Off by default so that a word that is unexpectedly several tokens is an error, not a silent change.
    multi_token: bool = False
    multi_token_rule: Literal["mean", "pet"] = "mean"  # how multi-token words score: see README "Multi-token label words"
    supervised: bool = False  # true: per seed, one more teacher, a sequence classifier fine-tuned on the labelled set (README "Supervised member")
    # The supervised member's own starting checkpoint (a folder or a Hub id; relative to the config file), e.g. a
    # sentence encoder such as all-MiniLM-L6-v2; null: the run's model (after pet adapt, the adapted one).
    # Needs supervised: true. Its tokenizer travels with the member, so it may differ from the patterns' model's.
    supervised_model: str | None = None
    cv_folds: int = Field(default=4, ge=2)  # folds of labelling.ensemble: cv (stratified k-fold on the labelled set)


TARGET_IPET_EXAMPLES = 1000  # ipet.generations auto: the final generation's training-set size to reach


class IpetConfig(Strict):
    # iPET (PET paper, section 3.3): generations of teachers, each trained on the labelled set plus
    # examples labelled by a random share of the other teachers of the previous generation.
    # generations after the first; 0 = plain PET; auto = the paper's rule: enough generations for the final
    # training sets to reach about 1,000 examples (ceil(log_d(1000 / |T|)), at least 1; see count below).
    # Unset: auto for trained single-label teachers, where it was measured to help on the benchmark tasks the
    # model can learn (README "iPET by default"), and 0 for zero-shot or multi-label ones (RunConfig.effective_ipet)
    # or for one teacher per generation, which stage A decides once the patterns are read (task.default_ipet_or_plain).
    generations: NonNegativeInt | Literal["auto"] | None = None
    teacher_fraction: float = Field(default=0.25, gt=0.0, le=1.0)  # lambda: share of the other teachers that label
    growth: float = Field(default=5.0, gt=1.0)  # d: the training set of generation j has |T| * d^j examples
    # Each label's share of the examples a generation adds: labelled keeps the labelled set's distribution (the
    # paper's rule; zero-shot: even), predicted follows the classes generation 0's ensemble predicts on the unlabeled
    # set, auto is predicted when generation 0's ensemble predicts some class under half as often as an even split
    # would (the rule of distillation.class_weights: auto, pet/core/imbalance.py), else labelled (README "iPET")
    label_distribution: Literal["auto", "labelled", "predicted"] = "auto"
    zero_shot_examples: PositiveInt = 10  # zero-shot iPET: size of generation 1's training set (then x d)
    zero_shot_candidates: PositiveInt = 100  # zero-shot iPET: the most confident examples per label to draw from
    steps: PositiveInt | None = None  # training steps of generations >= 1; default: teachers.steps

    @property
    def enabled(self) -> bool:
        return self.generations == "auto" or bool(self.generations)

    def resolved(self, zero_shot: bool, multi_label: bool) -> "IpetConfig":
        """These settings with an unset ``generations`` decided: auto for trained single-label teachers, else 0.
        Zero-shot iPET trains teachers, and a zero-shot run promises none: it stays something to ask for."""
        if self.generations is not None:
            return self
        return self.model_copy(update={"generations": 0 if zero_shot or multi_label else "auto"})

    def count(self, labelled: int, zero_shot: bool = False) -> int:
        """Generations after the first for ``labelled`` examples (|T|): the number set, or with auto the
        smallest k >= 1 whose final training sets, |T| * d^k (zero-shot: zero_shot_examples * d^(k-1)),
        reach 1,000 examples (the paper's "about 1,000")."""
        if self.generations != "auto":
            return self.generations or 0
        start, offset = (self.zero_shot_examples, 1) if zero_shot or labelled == 0 else (labelled, 0)
        return max(1, offset + math.ceil(math.log(TARGET_IPET_EXAMPLES / start, self.growth) - 1e-9))


class LabellingConfig(Strict):
    # wmean: weight = teacher accuracy on the labelled set before training (a supervised member: the pattern teachers' mean);
    # cv: weight = k-fold cross-validated accuracy of the teacher's configuration, computed in stage A (README "Ensemble weights")
    ensemble: Literal["mean", "wmean", "cv"] = "wmean"
    temperature: PositiveFloat = 2.0
    batch_size: PositiveInt = 64
    max_length: PositiveInt = 256


class DistillationConfig(Strict):
    model: str | None = None  # default: the teachers' model
    steps: PositiveInt = 1000  # paper: 5000 on full unlabeled sets; fewer suits a few thousand texts
    batch_size: PositiveInt = 16
    # auto: by the student's size, as teachers.learning_rate; a number sets it
    # search: one student per rate of learning_rate_grid, the one with the most labelled examples right is kept
    # (the student never trains on them; pet/stages/distillation/lr_search.py)
    learning_rate: PositiveFloat | Literal["auto", "search"] = "auto"
    learning_rate_grid: list[PositiveFloat] = Field(default_factory=lambda: [1e-5, 2e-5, 5e-5, 1e-4], min_length=1)
    weight_decay: NonNegativeFloat = 0.01
    warmup_steps: NonNegativeInt = 0
    max_grad_norm: PositiveFloat = 1.0
    max_length: PositiveInt = 256
    gold_weight: NonNegativeFloat = 0.0  # weight of cross-entropy on the labelled set, added to the KL term
    # none: batches drawn uniformly from the soft-label set; balanced: drawn so that every class the soft labels
    # predict comes up equally often (pet/stages/distillation/balance.py), for pools where a class is rare;
    # auto: balanced when some predicted class is under half its even share, else none (multi-label: none)
    class_weights: Literal["auto", "none", "balanced"] = "auto"
    seed: int = 42
    # Self-training: after distillation, this many rounds in which a fresh student learns the soft labels with
    # the previous student's confident predictions (probability >= self_training_threshold) made hard (one-hot)
    self_training_rounds: NonNegativeInt = 0
    self_training_threshold: float = Field(default=0.9, gt=0.5, lt=1.0)


class AdaptConfig(Strict):
    # Task-adaptive pretraining (pet/tools/adapt.py): masked-LM training of `model` on data.unlabeled.
    # `pet adapt` reads these settings (its options override them).
    # pet run: adapt into RUN/adapted before stage A, and every stage starts from that model. auto (the default
    # since 2026-12-07): only when the model's MLM loss on the unlabeled text is above auto_threshold
    # (pet/tools/domain.py): it helped on newswire (agnews, r8) and cost points on the model's own text (sst2).
    enabled: bool | Literal["auto"] = "auto"
    # nats per masked token; read by enabled: auto only. Midway between the highest loss of a task where adaptation
    # was not measured to help (rte, 3.88) and the lowest where it helped (agnews, 4.72) (BENCHMARKS.md, 2026-12-07)
    auto_threshold: PositiveFloat = 4.3
    # Defaults fixed a priori, not tuned on any benchmark. TAPT ran 100 epochs with batch 256; out of reach
    # on a CPU, so 1000 steps x 16 texts = 16k texts, about 1.6 passes over a 10k-text pool.
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 16
    learning_rate: PositiveFloat | Literal["auto"] = "auto"  # auto: by model size, as teachers.learning_rate
    mlm_probability: float = Field(default=0.15, gt=0.0, lt=1.0)  # BERT's share of masked tokens
    prompts: bool = False  # train on the texts rendered through the patterns, mask slot left open
    seed: int = 0
    max_length: int | None = Field(default=None, ge=8)  # default: teachers.max_length, the length teachers train with


class RuntimeConfig(Strict):
    device: str = "auto"  # auto: CUDA when present, else CPU; or "cpu", "cuda", "cuda:1"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    eval_batch_size: PositiveInt = 64
    trust_remote_code: bool = False


class RunConfig(Strict):
    model: str  # a masked LM: a local folder or a Hugging Face Hub id
    data: DataConfig
    task: TaskConfig = Field(default_factory=TaskConfig)
    patterns: SourceConfig
    verbalizers: SourceConfig
    teachers: TeachersConfig = Field(default_factory=TeachersConfig)
    ipet: IpetConfig = Field(default_factory=IpetConfig)
    labelling: LabellingConfig = Field(default_factory=LabellingConfig)
    distillation: DistillationConfig = Field(default_factory=DistillationConfig)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def effective_ipet(self) -> IpetConfig:
        """The ipet settings as they apply to this run: ``generations`` decided when it is unset. Every
        reader goes through this, so that the config itself keeps "unset" (a copy with teachers.zero_shot
        turned on must not inherit an auto decided for trained teachers)."""
        return self.ipet.resolved(self.teachers.zero_shot, self.task.multi_label)


def check_student_settings(config: RunConfig) -> None:
    """Stage C's settings that depend on the rest of the run; checked by stage A too, so that a run stops
    before its teachers, not after them."""
    check_student_learning_rate(config)
    if config.distillation.class_weights == "balanced" and config.task.multi_label:
        raise PetError("distillation.class_weights: balanced needs one predicted class per text and this task is multi-label; "
                       "set class_weights: none")


def check_student_learning_rate(config: RunConfig) -> None:
    """distillation.learning_rate: search (pet/stages/distillation/lr_search.py) needs labelled examples that the
    student does not train on. Checked by stage A too, so that a run stops before its teachers, not after them."""
    settings = config.distillation
    if settings.learning_rate != "search":
        return
    if config.data.train is None:
        raise PetError("distillation.learning_rate: search scores each student on the labelled set (data.train), and this "
                       "run has none; set a rate or auto")
    if settings.gold_weight > 0:
        raise PetError("distillation.learning_rate: search scores the students on the labelled set, which "
                       "distillation.gold_weight > 0 trains them on; set gold_weight: 0, or a rate or auto")
    if config.task.multi_label:
        raise PetError("distillation.learning_rate: search is not supported for multi-label tasks yet; set a rate or auto")


def decision_threshold(config: RunConfig) -> float | None:
    """A multi-label task's decision threshold (task.threshold); None for single-label tasks, which take the top class."""
    return config.task.threshold if config.task.multi_label else None


def task_reads(config: RunConfig) -> dict[str, Any]:
    """The task settings, for multi-label runs only: single-label runs read none, so their fingerprints
    are the ones they had before multi-label tasks existed."""
    if not config.task.multi_label:
        return {}
    return {f"task.{key}": value for key, value in config.task.model_dump(mode="json").items()}


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn ``["--teachers.steps", "50", "--model=x"]`` into ``{"teachers.steps": 50, "model": "x"}``.

    Values are read as YAML scalars/lists (``50`` -> int, ``[1,2]`` -> list), never evaluated.
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise PetError(f"unexpected argument '{arg}'; overrides look like --section.key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise PetError(f"override --{key} needs a value, e.g. --{key} VALUE")
            value = args[i + 1]
            i += 1
        i += 1
        try:
            overrides[key] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            overrides[key] = value
    return overrides


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], schema: type[Strict] = RunConfig) -> dict[str, Any]:
    """Set dotted keys in a copy of a raw config mapping, rejecting keys the schema does not have."""
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        parts = key.split(".")
        model: Any = schema
        node = data
        for depth, part in enumerate(parts):
            fields = getattr(model, "model_fields", None)
            if fields is None or part not in fields:
                valid = list(fields or {})
                prefix = ".".join(parts[:depth])
                close = difflib.get_close_matches(part, valid, n=1)
                options = [f"{prefix}.{c}" if prefix else c for c in close]
                hint = f"; did you mean --{options[0]}?" if options else ""
                raise PetError(f"--{key}: unknown setting{hint}")
            if depth == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {} if child is None else child
                    node[part] = child
                node = child
                model = model_in(fields[part].annotation)
    return data


FILE_KEYS = ("data.train", "data.unlabeled", "data.test", "patterns.file", "verbalizers.file")
MODEL_KEYS = ("model", "distillation.model", "teachers.supervised_model")


def command_line_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """Paths typed on the command line mean what the shell means: relative to the current folder.

    (Paths inside the config file stay relative to the config's folder.) A model override becomes
    absolute only when that folder exists here, so a Hub id or a config-relative folder still works.
    """
    out = dict(overrides)
    for key, value in overrides.items():
        if key not in FILE_KEYS + MODEL_KEYS or not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        if path.is_absolute():
            continue
        if key in FILE_KEYS or path.exists():
            out[key] = str(path.resolve())
    return out


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    return value if value.is_absolute() else (base / value).resolve()


def resolve_model(base: Path, name: str) -> str:
    """A model given as a path relative to the config becomes absolute; a Hub id stays as it is."""
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    return str(candidate.resolve()) if candidate.exists() else name


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read, override, validate and resolve a run config."""
    raw, text = load_yaml(path, "run config")
    if not isinstance(raw, dict):
        raise PetError(f"{path}: expected a mapping of keys to values at the top level, got {type(raw).__name__}")
    if overrides:
        raw = apply_overrides(raw, command_line_paths(overrides))
    config = validate(RunConfig, raw, str(path), text)
    return resolve_paths(config, path.parent.resolve())


def resolve_paths(config: RunConfig, base: Path) -> RunConfig:
    data = config.data.model_copy(
        update={
            "train": _resolve(base, config.data.train),
            "unlabeled": _resolve(base, config.data.unlabeled),
            "test": _resolve(base, config.data.test),
        }
    )
    update: dict[str, Any] = {
        "model": resolve_model(base, config.model),
        "data": data,
        "patterns": config.patterns.model_copy(update={"file": _resolve(base, config.patterns.file)}),
        "verbalizers": config.verbalizers.model_copy(update={"file": _resolve(base, config.verbalizers.file)}),
    }
    if config.distillation.model is not None:
        update["distillation"] = config.distillation.model_copy(
            update={"model": resolve_model(base, config.distillation.model)}
        )
    if config.teachers.supervised_model is not None:
        update["teachers"] = config.teachers.model_copy(
            update={"supervised_model": resolve_model(base, config.teachers.supervised_model)}
        )
    return config.model_copy(update=update)


def config_from_json(data: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "manifest") -> RunConfig:
    """Rebuild a config recorded in a manifest (paths there are already absolute), with overrides."""
    if overrides:
        data = apply_overrides(data, overrides)
    return validate(RunConfig, data, source)


def stage_config(manifest: dict[str, Any], overrides: dict[str, Any] | None, allowed: tuple[str, ...], source: Path) -> RunConfig:
    """The upstream config with overrides, which may only touch this stage's own sections (``labelling``)
    or single keys it reads itself (``data.test``)."""
    for key in overrides or {}:
        if key.split(".")[0] not in allowed and key not in allowed:
            accepted = ", ".join(f"--{s}" if "." in s else f"--{s}.*" for s in allowed)
            raise PetError(f"--{key}: cannot be changed at this stage (it was fixed upstream); this stage accepts {accepted}")
    return config_from_json(manifest["config"], overrides, str(source / "manifest.json"))
