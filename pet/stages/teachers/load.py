"""Loading a finished teacher back as an encoder and a scorer (stage B, `pet evaluate`): a pattern
teacher as a pattern encoder and a masked-LM scorer, the supervised member as a classifier's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pet.core.classifier import CLASSIFIER, ClassifierEncoder, ClassifierScorer, teacher_kind
from pet.core.encoding import PatternEncoder, VerbalizerTokens
from pet.core.multilabel import MultiLabelEncoder, MultiLabelScorer, teacher_encoder, teacher_scorer
from pet.core.scoring import MaskedLMScorer
from pet.errors import PetError
from pet.io.artifacts import read_json
from pet.io.patterns import MultiLabelVerbalizer, Pattern, Verbalizer, pattern_from_json, scored_verbalizer, verbalizer_from_json
from pet.stages.teachers.supervised import load_member
from pet.stages.teachers.teacher import TEACHER_FILE


@dataclass
class LoadedTeacher:
    name: str
    weight: float
    encoder: PatternEncoder | MultiLabelEncoder | ClassifierEncoder
    scorer: MaskedLMScorer | MultiLabelScorer | ClassifierScorer  # the same surface: encode, then score to [N, C]


@dataclass(frozen=True)
class TeacherSource:
    """Where the teachers of one manifest live, and how to read them back."""

    folder: Path
    patterns: dict[str, Pattern]
    verbalizers: dict[str, Verbalizer | MultiLabelVerbalizer]
    max_length: int
    device: torch.device
    trust_remote_code: bool = False
    labels: tuple[str, ...] = ()  # class order: a supervised member's must be the same

    @classmethod
    def of(cls, folder: Path, manifest: dict[str, Any], max_length: int, device: torch.device,
           trust_remote_code: bool = False) -> "TeacherSource":
        patterns = {p["id"]: pattern_from_json(p) for p in manifest["patterns"]}
        verbalizers = {v["id"]: verbalizer_from_json(v) for v in manifest["verbalizers"]}
        return cls(folder, patterns, verbalizers, max_length, device, trust_remote_code, tuple(manifest["labels"]))

    def load(self, entry: dict[str, Any]) -> LoadedTeacher:
        """Load a finished teacher folder back as an encoder and a scorer."""
        from pet.core.modeling import load_masked_lm, load_tokenizer

        folder = self.folder / entry["path"]
        record_path = folder / TEACHER_FILE
        if not record_path.exists():
            raise PetError(f"{folder}: teacher '{entry['name']}' is missing or incomplete; rerun pet train-teachers")
        record = read_json(record_path, "teacher record")
        if teacher_kind(entry) == CLASSIFIER:  # the supervised member: a sequence classifier, no pattern
            try:
                encoder, scorer = load_member(folder, record, self.labels, self.max_length, self.device, self.trust_remote_code)
            except PetError as err:
                raise PetError(f"{folder}: teacher '{entry['name']}' cannot be loaded ({err}); delete it and rerun pet train-teachers") from None
            return LoadedTeacher(entry["name"], float("nan") if entry.get("weight") is None else float(entry["weight"]), encoder, scorer)
        source = record.get("base_model") or str(folder)  # zero-shot teachers are the base model itself
        try:
            tokenizer = load_tokenizer(source, self.trust_remote_code)
            model = load_masked_lm(source, self.device, self.trust_remote_code, warn_new_head=False)
        except PetError as err:
            raise PetError(f"{folder}: teacher '{entry['name']}' cannot be loaded ({err}); delete it and rerun pet train-teachers") from None
        verbalizer = self.verbalizers[entry["verbalizer"]]
        scored = scored_verbalizer(verbalizer)  # multi-label: the yes/no answer words
        tokens = VerbalizerTokens.from_json(record["verbalizer_token_ids"], tuple(tuple(scored.words[l]) for l in scored.labels),
                                           record.get("multi_token_rule", "mean"))  # older records: "mean"
        encoder = teacher_encoder(self.patterns[entry["pattern"]], verbalizer, tokenizer, self.max_length, tokens.num_masks)
        model.eval()
        weight = entry.get("weight")
        return LoadedTeacher(entry["name"], float("nan") if weight is None else float(weight), encoder,
                             teacher_scorer(model, tokens, tokenizer, verbalizer))
