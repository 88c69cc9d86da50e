"""What the teachers of one stage-A run share, and what one teacher is asked to do.

A ``TeacherContext`` holds the base model, its tokenizer, the stage's settings and the data every
teacher reads; a ``TeacherJob`` is one teacher's spec, folder and training set. The training code
takes these two small objects instead of the whole run config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from pet.core.distributed import Ranks
from pet.core.encoding import PatternEncoder, VerbalizerTokens, verbalizer_tokens
from pet.core.modeling import autocast_factory
from pet.core.multilabel import teacher_encoder
from pet.core.progress import info
from pet.core.scoring import MaskedLMScorer
from pet.errors import PetError
from pet.io.artifacts import fingerprint_of, read_json
from pet.io.config import RuntimeConfig, TeachersConfig
from pet.io.data import Examples, Table
from pet.io.patterns import MultiLabelVerbalizer, Pattern, Verbalizer
from pet.stages.teachers.specs import ClassifierSpec, TeacherSpec

# Which members the stage trains and how it weights them; no one teacher's training reads these.
MEMBER_KEYS = ("teachers.supervised", "teachers.cv_folds")
# How many iPET generations follow: no teacher's training reads it, so raising it keeps every generation trained.
IPET_COUNT = "ipet.generations"
# What only the supervised member reads: the pattern teachers' fingerprints leave these out.
MEMBER_ONLY = ("teachers.supervised_model", "teachers.supervised_model.adapted")
# What only pattern teachers read: the supervised member's fingerprint leaves these out.
CLASSIFIER_IGNORES = ("patterns", "verbalizers", "teachers.seeds", *MEMBER_KEYS, "teachers.mlm_weight", "teachers.unlabeled_ratio",
                      "teachers.mlm_probability", "teachers.zero_shot", "teachers.multi_token", "teachers.multi_token_rule",
                      "inputs.data.unlabeled")


def is_ipet_setting(key: str) -> bool:
    """A read only iPET's generations >= 1 depend on (labelling.ensemble: the ensembles that label their sets)."""
    return key.startswith("ipet.") or key == "labelling.ensemble"


@dataclass(frozen=True)
class TeacherContext:
    model: str  # the base masked LM every teacher starts from
    tokenizer: Any
    settings: TeachersConfig
    runtime: RuntimeConfig
    device: torch.device
    stamp: str  # fingerprint of the stage's inputs and settings, recorded in every teacher
    labelled: Examples  # the original labelled set: every teacher's ensemble weight is measured on it
    unlabeled: Callable[[], Table]  # opened on first use (auxiliary MLM loss, iPET scoring)
    reads: dict[str, Any] = field(default_factory=dict)  # what the stage reads (pet/stages/teachers/manifest.py)
    overwrite: bool = False  # retrain a finished teacher whose fingerprint differs, instead of refusing
    ranks: Ranks = field(default_factory=Ranks)  # several processes (torchrun): each trains its share of teachers
    threshold: float = 0.5  # multi-label tasks: the decision threshold of the labelled-set F1 (task.threshold)

    def fingerprint(self, spec: TeacherSpec | ClassifierSpec) -> str:
        """What this one teacher was trained from: the stage's reads without the lists of patterns,
        verbalizers and seeds, plus its own. Adding a seed or a pattern keeps the teachers already
        trained; an iPET generation >= 1 teacher depends on the whole previous generation. Which
        members the stage adds (the supervised member, cross-validation) changes no teacher; the
        supervised member leaves out the settings only a pattern teacher reads, and a pattern teacher the
        member's own checkpoint. No teacher depends on how many iPET generations follow it, and
        generation 0 on no iPET setting at all."""
        if spec.generation > 0:  # trained on what the previous generation (all its members, their weights) labelled
            own = {k: v for k, v in self.reads.items() if k != IPET_COUNT}
            return fingerprint_of({**own, "generation": spec.generation, "teacher": spec.name})
        own = {k: v for k, v in self.reads.items() if not is_ipet_setting(k)}
        if isinstance(spec, ClassifierSpec):
            own = {k: v for k, v in own.items() if k not in CLASSIFIER_IGNORES}
            return fingerprint_of({**own, "classifier": spec.to_json(), "seed": spec.seed})
        own = {k: v for k, v in own.items() if k not in ("patterns", "verbalizers", "teachers.seeds") + MEMBER_KEYS + MEMBER_ONLY}
        return fingerprint_of({**own, "pattern": spec.pattern.to_json(), "verbalizer": spec.verbalizer.to_json(), "seed": spec.seed})

    def finished(self, path: Path, fingerprint: str, what: str, *, thing: str, made: str, redo: str, done: str) -> dict[str, Any] | None:
        """The record at ``path`` (a teacher's, a fold model's) if it was made from ``fingerprint``, else None.

        A record of other settings or data is refused in one line, or with ``overwrite`` reported and
        left to be remade: a finished result is never mixed into a run it was not made for.
        """
        if not path.exists():
            return None
        record = read_json(path, f"{thing} record")
        if record.get("fingerprint") != fingerprint:
            if self.overwrite:
                info(f"{what}: {made} with other settings or data; --overwrite: {redo} it")
                return None
            raise PetError(f"{path}: {thing} was {made} with a different config or data; "
                           f"rerun with --overwrite to {redo} it, or choose another output folder")
        info(f"{what}: already {done}, skipped")
        return record

    def tokens(self, pattern: Pattern, verbalizer: Verbalizer | MultiLabelVerbalizer) -> VerbalizerTokens:
        encoder = PatternEncoder(pattern, self.tokenizer, self.settings.max_length)
        return verbalizer_tokens(verbalizer, encoder, self.model, multi_token=self.settings.multi_token, rule=self.settings.multi_token_rule)

    def encoder(self, pattern: Pattern, verbalizer: Verbalizer | MultiLabelVerbalizer, num_masks: int = 1):
        """One teacher's encoder: a row per example, or (multi-label) a row per example and label."""
        return teacher_encoder(pattern, verbalizer, self.tokenizer, self.settings.max_length, num_masks)

    def autocast(self):
        return autocast_factory(self.device, self.runtime.precision)

    def score(self, scorer: MaskedLMScorer, encoder: PatternEncoder, examples: Examples) -> torch.Tensor:
        """[N, C] class scores of ``examples`` (none: an empty [0, C])."""
        if len(examples) == 0:
            return torch.empty(0, scorer.num_classes)
        return scorer.score(encoder.encode(examples), self.runtime.eval_batch_size, self.autocast())


@dataclass(frozen=True)
class TeacherJob:
    spec: TeacherSpec
    path: str  # the teacher's folder, relative to the stage's output folder
    train_set: Examples
    steps: int
    score_unlabeled: bool = False  # iPET: keep the class scores on the unlabeled set for the next generation
    extra: dict[str, Any] = field(default_factory=dict)  # recorded as they are (iPET's training-set details)
