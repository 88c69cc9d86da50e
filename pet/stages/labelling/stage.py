"""Stage B: score the unlabeled set with every teacher and turn the ensemble into soft labels.

Teachers are scored one at a time over the unlabeled file in chunks, so memory holds one model and
an [N, C] logit matrix per teacher, never the text of the whole file. Each teacher's logits are
saved as they finish (safetensors under ``.partial/``), so an interrupted run resumes where it
stopped. The soft-label dataset is written as Parquet chunk by chunk, then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pet.core import maths
from pet.io.artifacts import MANIFEST, base_manifest, check_inputs, prepare_output, read_manifest, write_json_atomic
from pet.io.config import RunConfig, config_from_json
from pet.io.data import Table
from pet.errors import PetError
from pet.core.metrics import classification_metrics
from pet.io.patterns import pattern_from_json, verbalizer_from_json
from pet.core.progress import info
from pet.core.scoring import score_table
from pet.stages.teachers.task import open_table

SOFT_LABELS = "soft_labels.parquet"
PARTIAL = ".partial"
log = logging.getLogger("pet")


def stage_config(manifest: dict[str, Any], overrides: dict[str, Any] | None, allowed: tuple[str, ...], source: Path) -> RunConfig:
    """The upstream config with overrides, which may only touch this stage's own sections."""
    for key in overrides or {}:
        if key.split(".")[0] not in allowed:
            sections = ", ".join(f"--{s}.*" for s in allowed)
            raise PetError(f"--{key}: cannot be changed at this stage (it was fixed upstream); this stage accepts {sections}")
    return config_from_json(manifest["config"], overrides, str(source / MANIFEST))


def ensemble_weights(entries: list[dict[str, Any]], method: str) -> torch.Tensor | None:
    """None for a uniform mean; for wmean, each teacher's labelled-set accuracy before training."""
    if method == "mean":
        return None
    if any(e.get("weight") is None for e in entries):
        # Zero-shot teachers without a labelled set have no accuracy to weight by.
        log.warning("wmean needs each teacher's accuracy on labelled examples, and these teachers had none "
                    "(zero-shot without a labelled set); using the uniform mean ensemble")
        return None
    weights = torch.tensor([float(e["weight"]) for e in entries])
    if weights.sum() <= 0:
        log.warning("every teacher had accuracy 0 before training; using a uniform ensemble")
        return None
    return weights


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
        if not isinstance(record, dict) or "verbalizer_token_ids" not in record:
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
    settings, device and precision) and has one row per example; anything else is recomputed.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from pet.core.modeling import autocast, autocast_dtype, pick_device
    from pet.stages.teachers.train import load_teacher

    device = pick_device(config.runtime.device)
    stamp = f"{stamp}|{device.type}|{autocast_dtype(device, config.runtime.precision)}"
    patterns = {p["id"]: pattern_from_json(p) for p in manifest["patterns"]}
    verbalizers = {v["id"]: verbalizer_from_json(v) for v in manifest["verbalizers"]}
    entries = manifest["teachers"]
    results: dict[str, list[torch.Tensor]] = {name: [] for name in tables}
    for number, entry in enumerate(entries, start=1):
        path = partial / f"{entry['name']}.safetensors"
        if path.exists():
            saved: dict[str, torch.Tensor] = {}
            try:
                with safe_open(str(path), "pt") as handle:
                    if (handle.metadata() or {}).get("stamp") == stamp:
                        saved = {key: handle.get_tensor(key) for key in handle.keys()}
            except Exception:
                saved = {}
            if set(saved) == set(tables) and all(saved[name].size(0) == len(tables[name]) for name in tables):
                for name in tables:
                    results[name].append(saved[name])
                info(f"teacher {number}/{len(entries)} {entry['name']}: scores already computed")
                continue
        teacher = load_teacher(teachers_dir, entry, patterns, verbalizers, config.labelling.max_length, device,
                               config.runtime.trust_remote_code)
        scores = {}
        for name, table in tables.items():
            scores[name] = score_table(teacher.encoder, teacher.scorer, table, config.labelling.batch_size,
                                       lambda: autocast(device, config.runtime.precision),
                                       f"teacher {number}/{len(entries)} {entry['name']}: {name}")
            results[name].append(scores[name])
        partial.mkdir(parents=True, exist_ok=True)
        tmp = partial / f".{path.name}.tmp"
        save_file({k: v.contiguous() for k, v in scores.items()}, str(tmp), metadata={"stamp": stamp})
        tmp.replace(path)  # atomic: a killed run leaves either no file or a complete one
        del teacher
    return {name: torch.stack(parts) for name, parts in results.items()}


def label(teachers_dir: Path, output: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage B: write soft labels for the unlabeled set under ``output``; returns the manifest."""
    manifest = read_manifest(teachers_dir, "teachers")
    config = stage_config(manifest, overrides, ("labelling", "runtime"), teachers_dir)
    reads = [config.data.unlabeled] + ([config.data.test] if config.data.test else [])
    check_inputs({str(p): manifest["inputs"][str(p)] for p in reads}, teachers_dir / MANIFEST)
    stamp = hashlib.sha256(json.dumps([manifest["fingerprint"], config.labelling.model_dump(mode="json")]).encode()).hexdigest()[:16]
    existing = prepare_output(output, "labels")
    if existing is not None:
        if existing.get("fingerprint") == stamp:
            info(f"{output}: soft labels already written")
            return existing
        raise PetError(f"{output}: holds soft labels from other teachers or settings; choose another output folder")
    labels = manifest["labels"]
    tables = {"unlabeled": open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False)}
    if config.data.test is not None:
        tables["test"] = open_table(config, config.data.test, "test", tuple(labels), labelled=True)
    check_teachers(teachers_dir, manifest["teachers"])
    logits = teacher_logits(teachers_dir, manifest, config, tables, output / PARTIAL, stamp)
    entries = manifest["teachers"]
    weights = ensemble_weights(entries, config.labelling.ensemble)
    temperature = config.labelling.temperature
    stats = write_soft_labels(output / SOFT_LABELS, tables["unlabeled"], logits["unlabeled"], weights, temperature, labels)
    result = base_manifest("labels", config.to_json(), manifest["inputs"])
    result.update({
        "fingerprint": stamp,
        "teachers_dir": str(teachers_dir.resolve()),
        "teachers_fingerprint": manifest["fingerprint"],
        "labels": labels,
        "teachers": [e["name"] for e in entries],
        "ensemble": "mean" if weights is None else "wmean",  # wmean falls back to mean without weights
        "weights": None if weights is None else [float(w) for w in weights / weights.sum()],
        "temperature": temperature,
        "soft_labels": SOFT_LABELS,
        "statistics": stats,
    })
    if "test" in logits:
        gold = tables["test"].read_all().labels
        ensemble = maths.ensemble_logits(logits["test"], weights)
        result["test"] = {
            "ensemble": classification_metrics(gold, ensemble.argmax(-1).tolist(), labels),
            "teachers": {e["name"]: classification_metrics(gold, logits["test"][k].argmax(-1).tolist(), labels)["accuracy"]
                         for k, e in enumerate(entries)},
        }
        info(f"ensemble test accuracy {result['test']['ensemble']['accuracy']:.4f} on {len(gold)} examples")
    write_json_atomic(output / MANIFEST, result)
    shutil.rmtree(output / PARTIAL, ignore_errors=True)
    return result


def write_soft_labels(path: Path, table: Table, logits: torch.Tensor, weights: torch.Tensor | None,
                      temperature: float, labels: list[str]) -> dict[str, Any]:
    """Write ids, texts, per-teacher logits, ensemble logits/probabilities and diagnostics as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ensemble = maths.ensemble_logits(logits, weights)
    probs = maths.soft_labels(ensemble, temperature)
    prediction = ensemble.argmax(-1)
    agreement = maths.agreement(logits, prediction)
    entropy = maths.entropy(probs)
    k, n, c = logits.shape
    tmp = path.with_name(f".{path.name}.tmp")
    writer = None
    start = 0
    try:
        for chunk in table.chunks():
            stop = start + len(chunk)
            columns: dict[str, Any] = {"id": pa.array(chunk.ids, pa.string())}
            for field, values in chunk.fields.items():
                columns[field] = pa.array(values, pa.string())
            columns["teacher_logits"] = _matrix_column(logits[:, start:stop].permute(1, 0, 2).numpy())
            columns["logits"] = _matrix_column(ensemble[start:stop].numpy())
            columns["probs"] = _matrix_column(probs[start:stop].numpy())
            columns["label"] = pa.array([labels[i] for i in prediction[start:stop].tolist()], pa.string())
            columns["confidence"] = pa.array(probs[start:stop].max(-1).values.numpy(), pa.float32())
            columns["agreement"] = pa.array(agreement[start:stop].numpy(), pa.float32())
            columns["entropy"] = pa.array(entropy[start:stop].numpy(), pa.float32())
            batch = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), batch.schema)
            writer.write_table(batch)
            start = stop
        if writer is not None:
            writer.close()
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    counts = torch.bincount(prediction, minlength=c).tolist()
    return {
        "examples": n,
        "predicted_label_counts": dict(zip(labels, counts)),
        "mean_agreement": float(agreement.mean()) if n else 0.0,
        "mean_entropy": float(entropy.mean()) if n else 0.0,
    }


def _matrix_column(values: np.ndarray):
    """A (nested) list column of float32 from an array whose first axis is the row."""
    import pyarrow as pa

    array = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def read_soft_labels(labels_dir: Path, manifest: dict[str, Any], fields: list[str]) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
    """Ids, texts and [N, C] ensemble probabilities from a labels folder."""
    import pyarrow.parquet as pq

    path = labels_dir / manifest["soft_labels"]
    try:
        table = pq.read_table(str(path), columns=["id", *fields, "probs"])
    except FileNotFoundError:
        raise PetError(f"{path}: soft labels are missing; rerun pet label") from None
    except Exception as err:
        raise PetError(f"{path}: soft labels are corrupted ({err}); delete {labels_dir} and rerun pet label") from None
    probs = table.column("probs").combine_chunks().flatten().to_numpy().reshape(table.num_rows, len(manifest["labels"]))
    return table.column("id").to_pylist(), {f: table.column(f).to_pylist() for f in fields}, probs
