"""Stage B's scoring: every teacher over the unlabeled (and test) set, resumable teacher by teacher.

Teachers are scored one at a time over the data in chunks, so memory holds one model and an
[N, C] logit matrix per teacher, never the text of the whole file. Each teacher's logits are saved as
they finish (safetensors under ``.partial/``), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pet.core.classifier import CLASSIFIER, teacher_kind
from pet.core.distributed import Ranks, current_ranks, gather_chunks, rank_device
from pet.core.progress import info
from pet.core.scoring import score_table
from pet.errors import PetError
from pet.io.config import RunConfig
from pet.io.data import CHUNK, Table


def check_teachers(teachers_dir: Path, entries: list[dict[str, Any]]) -> None:
    """Every teacher of the manifest is present and readable, checked before any output is written.

    Reads each teacher record and the headers of its safetensors files (which also catches truncated
    files), not the weights themselves, so a broken teacher fails in seconds, not after the others ran.
    """
    from safetensors import safe_open

    for entry in entries:
        folder = teachers_dir / entry["path"]
        hint = f"delete {folder} and rerun pet train-teachers with the same config to retrain it"
        record_path = folder / "teacher.json"
        if not record_path.exists():
            raise PetError(f"{folder}: teacher '{entry['name']}' is missing or incomplete; rerun pet train-teachers with the same config to retrain it")
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PetError(f"{record_path}: teacher record is corrupted ({err}); {hint}") from None
        if not isinstance(record, dict) or ("verbalizer_token_ids" not in record and teacher_kind(record) != CLASSIFIER):
            raise PetError(f"{record_path}: teacher record is corrupted (not a pet teacher record); {hint}")
        if record.get("base_model"):
            continue  # a zero-shot teacher is the base model itself
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise PetError(f"{folder}: teacher '{entry['name']}' has no model.safetensors; {hint}")
        for path in weights:
            try:
                with safe_open(str(path), "pt") as handle:
                    handle.keys()
            except Exception as err:
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise PetError(f"{path}: weights of teacher '{entry['name']}' are corrupted ({first}); {hint}") from None


def teacher_logits(teachers_dir: Path, manifest: dict[str, Any], config: RunConfig, tables: dict[str, Table],
                   partial: Path, stamp: str = "") -> dict[str, torch.Tensor]:
    """{table name: [K, N, C]} logits of every teacher, resuming from saved per-teacher results.

    A saved result is reused only if it was computed with the same ``stamp`` (teachers, labelling
    settings, device and precision) and has one row per example; anything else is recomputed. With
    several ranks (torchrun), each scores every world-th chunk of the data with every teacher and
    saves its share; rank 0 puts the shares back in file order (the others get ``{}``), so the result
    is the one a single process computes (the batches inside a chunk are the same).
    """
    from pet.core.modeling import autocast_dtype, autocast_factory, pick_device
    from pet.stages.teachers.load import TeacherSource

    ranks = current_ranks()
    device = pick_device(rank_device(config.runtime.device, ranks))
    stamp = f"{stamp}|{device.type}|{autocast_dtype(device, config.runtime.precision)}|{ranks.world}"
    source = TeacherSource.of(teachers_dir, manifest, config.labelling.max_length, device, config.runtime.trust_remote_code)
    entries = manifest["teachers"]
    expected = {name: ranks.share(len(table), CHUNK) for name, table in tables.items()}
    for number, entry in enumerate(entries, start=1):
        what = f"teacher {number}/{len(entries)} {entry['name']}"
        path = partial / f"{entry['name']}{ranks.suffix}.safetensors"
        if saved_scores(path, stamp, expected) is not None:
            info(f"{what}: scores already computed")
            continue
        teacher = source.load(entry)
        save_scores(path, stamp, {name: score_table(teacher.encoder, teacher.scorer, table, config.labelling.batch_size,
                                                    autocast_factory(device, config.runtime.precision), f"{what}: {name}",
                                                    select=ranks.owns_chunk)
                                  for name, table in tables.items()})
        del teacher
    ranks.barrier()  # every rank's share is on disk
    if not ranks.main:
        return {}  # rank 0 puts the shares together and writes the artifact
    return {name: torch.stack([all_shares(partial, entry["name"], name, len(table), ranks) for entry in entries])
            for name, table in tables.items()}


def all_shares(partial: Path, teacher: str, table: str, rows: int, ranks: Ranks) -> torch.Tensor:
    """One teacher's [N, C] scores on one table, from every rank's saved share."""
    from safetensors import safe_open

    parts = []
    for rank in range(ranks.world):
        path = partial / f"{teacher}{Ranks(rank, ranks.world).suffix}.safetensors"
        with safe_open(str(path), "pt") as handle:
            parts.append(handle.get_tensor(table))
    return parts[0] if ranks.world == 1 else gather_chunks(parts, rows, CHUNK)


def saved_scores(path: Path, stamp: str, expected: dict[str, int]) -> dict[str, torch.Tensor] | None:
    """A teacher's saved scores, if computed with this ``stamp`` and with the ``expected`` rows of every table."""
    from safetensors import safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as handle:
            if (handle.metadata() or {}).get("stamp") != stamp:
                return None
            saved = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception:
        return None
    if set(saved) == set(expected) and all(saved[name].size(0) == rows for name, rows in expected.items()):
        return saved
    return None


def save_scores(path: Path, stamp: str, scores: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in scores.items()}, str(tmp), metadata={"stamp": stamp})
    tmp.replace(path)  # atomic: a killed run leaves either no file or a complete one


