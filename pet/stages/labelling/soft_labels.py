"""The soft-label artifact: ids, texts, per-teacher and ensemble logits, probabilities, diagnostics.

Written as Parquet chunk by chunk through a temporary name, then renamed into place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pet.core import maths
from pet.core.ensemble import EnsembleWeights
from pet.errors import PetError
from pet.io.data import Table

SOFT_LABELS = "soft_labels.parquet"


@dataclass(frozen=True)
class Summary:
    """The ensemble's soft labels and what they say, for single-label or multi-label tasks."""

    probs: torch.Tensor  # [N, C] softmax(z / T); multi-label: sigmoid(d / T) per label
    confidence: torch.Tensor  # [N] top probability; multi-label: mean over labels of max(p, 1 - p)
    agreement: torch.Tensor  # [N] share of teachers (multi-label: of teacher x label decisions) agreeing with the ensemble
    entropy: torch.Tensor  # [N] nats; multi-label: summed over the labels' binary entropies
    predicted: list[str] | list[list[str]]  # the ensemble's label (multi-label: labels with sigmoid(d) >= threshold)
    counts: list[int]  # examples predicted with each label


def summarise(teacher_logits: torch.Tensor, ensemble: torch.Tensor, temperature: float, labels: list[str],
              threshold: float | None) -> Summary:
    """Soft labels and diagnostics of [K, N, C] teacher logits and their [N, C] ensemble; ``threshold``
    None for single-label tasks, the decision threshold of multi-label ones."""
    if threshold is None:
        probs = maths.soft_labels(ensemble, temperature)
        prediction = ensemble.argmax(-1)
        return Summary(probs, probs.max(-1).values, maths.agreement(teacher_logits, prediction), maths.entropy(probs),
                       [labels[i] for i in prediction.tolist()], torch.bincount(prediction, minlength=len(labels)).tolist())
    probs = maths.multi_label_soft_labels(ensemble, temperature)
    cut = math.log(threshold / (1 - threshold))  # sigmoid(d) >= threshold  <=>  d >= logit(threshold)
    decisions = ensemble >= cut
    predicted = [[labels[j] for j in row.nonzero().flatten().tolist()] for row in decisions]
    return Summary(probs, torch.maximum(probs, 1 - probs).mean(-1), maths.decision_agreement(teacher_logits, decisions, cut),
                   maths.binary_entropy(probs), predicted, decisions.sum(0).tolist())


def write_soft_labels(path: Path, table: Table, logits: torch.Tensor, weights: EnsembleWeights,
                      temperature: float, labels: list[str], threshold: float | None = None) -> dict[str, Any]:
    """Write ids, texts, per-teacher logits, ensemble logits/probabilities and diagnostics as Parquet
    (``threshold``: a multi-label task's decision threshold; then ``label`` holds a list of labels)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ensemble = weights.combine(logits)
    summary = summarise(logits, ensemble, temperature, labels, threshold)
    probs, agreement, entropy = summary.probs, summary.agreement, summary.entropy
    label_type = pa.string() if threshold is None else pa.list_(pa.string())
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
            columns["label"] = pa.array(summary.predicted[start:stop], label_type)
            columns["confidence"] = pa.array(summary.confidence[start:stop].numpy(), pa.float32())
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
    return {
        "examples": n,
        "predicted_label_counts": dict(zip(labels, summary.counts)),
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
