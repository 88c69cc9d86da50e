"""The soft-label artifact: ids, texts, per-teacher and ensemble logits, probabilities, diagnostics.

Written as Parquet chunk by chunk through a temporary name, then renamed into place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pet.core import maths
from pet.core.ensemble import EnsembleWeights
from pet.errors import PetError
from pet.io.data import Table

SOFT_LABELS = "soft_labels.parquet"


def write_soft_labels(path: Path, table: Table, logits: torch.Tensor, weights: EnsembleWeights,
                      temperature: float, labels: list[str]) -> dict[str, Any]:
    """Write ids, texts, per-teacher logits, ensemble logits/probabilities and diagnostics as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ensemble = weights.combine(logits)
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
