"""The on-disk contract between stages: atomic writes, manifests, input hashes, versions.

A stage writes everything under its output folder, each file through a temporary name and a
rename, and writes ``manifest.json`` last: a manifest's presence means the stage finished. A
downstream stage refuses a manifest of another schema version or stage, and refuses inputs whose
content hash changed since the upstream stage recorded it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pet.errors import PetError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ADAPT_RECORD = "adapt.json"  # what `pet adapt` writes beside an adapted model's weights (pet/tools/adapt.py)
ADAPT_DECISION = "adapt-decision.json"  # RUN/: adapt.enabled: auto measured and decided (pet/tools/domain.py)
STAGES = ("teachers", "labels", "student")
log = logging.getLogger("pet")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import pet

    out = {"pet": pet.__version__}
    for name in ("torch", "transformers", "datasets", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import, before any worker threads exist


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)  # left over by an interrupted earlier run
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PetError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PetError(f"{path}: {what} is corrupted ({err}); delete the folder and rerun the stage") from None


def read_manifest(folder: Path, stage: str) -> dict[str, Any]:
    """Read and check the manifest of a finished stage."""
    if not folder.is_dir():
        raise PetError(f"{folder}: no such folder; expected the output of the {stage} stage")
    path = folder / MANIFEST
    if not path.exists():
        raise PetError(f"{folder}: no {MANIFEST}, so the {stage} stage did not finish there; rerun it to complete it")
    return checked_manifest(read_json(path, "manifest"), folder, stage)


def checked_manifest(manifest: Any, folder: Path, stage: str) -> dict[str, Any]:
    """A manifest already read from ``folder``, checked as :func:`read_manifest` checks it."""
    path = folder / MANIFEST
    if not isinstance(manifest, dict) or "stage" not in manifest or "schema_version" not in manifest:
        raise PetError(f"{path}: not a pet manifest (no stage or schema_version)")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise PetError(
            f"{path}: manifest schema version {manifest['schema_version']} is not supported by this pet "
            f"(expects {SCHEMA_VERSION}); rerun the stage with this version of pet"
        )
    if manifest["stage"] != stage:
        raise PetError(f"{folder}: holds the output of the {manifest['stage']} stage, not of the {stage} stage; "
                       f"pass the folder that the {stage} stage wrote (e.g. RUN/{stage})")
    check_versions(manifest.get("versions", {}), path)
    return manifest


def check_versions(recorded: dict[str, str], source: Path) -> None:
    """A different major version of a library is an error; a different minor version a warning."""
    current = library_versions()
    for name, old in recorded.items():
        new = current.get(name)
        if new is None or old == new or "missing" in (old, new):
            continue
        old_parts, new_parts = old.split("+")[0].split("."), new.split("+")[0].split(".")
        if old_parts[0] != new_parts[0]:
            raise PetError(f"{source}: written with {name} {old}, but {name} {new} is installed; use {name} {old_parts[0]}.x or rerun the stage")
        if old_parts[:2] != new_parts[:2]:
            log.warning("%s: written with %s %s, running %s %s", source, name, old, name, new)


def check_inputs(recorded: dict[str, str], source: Path) -> None:
    """Inputs recorded upstream must be unchanged: otherwise results would silently mix data."""
    for name, digest in recorded.items():
        path = Path(name)
        if not path.exists():
            raise PetError(f"{path}: input recorded in {source} no longer exists")
        if sha256_file(path) != digest:
            raise PetError(f"{path}: changed since {source} was written (hash mismatch); rerun the upstream stage")


def prepare_output(folder: Path, stage: str) -> dict[str, Any] | None:
    """Check an output folder before writing; returns its manifest if this stage already finished."""
    if folder.exists() and not folder.is_dir():
        raise PetError(f"{folder}: output path is a file, not a folder")
    path = folder / MANIFEST
    if path.exists():
        manifest = read_json(path, "manifest")
        other = manifest.get("stage") if isinstance(manifest, dict) else None
        if other != stage:
            raise PetError(f"{folder}: already holds {other or 'unknown'} artifacts; choose another output folder for the {stage} stage")
        return manifest
    for other in STAGES:
        marker = {"teachers": "teacher.json", "labels": "soft_labels.parquet", "student": "config.json"}[other]
        if other != stage and any(folder.glob(f"*/{marker}") if other == "teachers" else folder.glob(marker)):
            raise PetError(f"{folder}: already holds {other} artifacts; choose another output folder for the {stage} stage")
    return None


def base_manifest(stage: str, config: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "versions": library_versions(),
        "config": config,
        "inputs": inputs,
    }


def fingerprint_of(reads: dict[str, Any]) -> str:
    """A short hash of everything a stage (or a teacher) reads: settings, definitions, input hashes."""
    return hashlib.sha256(json.dumps(reads, sort_keys=True).encode()).hexdigest()[:16]


def describe_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """What differs between two ``reads`` records, for a one-line message: 'teachers.steps 3 -> 4, data.train changed'."""
    if not isinstance(old, dict):
        return "its settings were not recorded by this version of pet"
    changes = []
    for key in sorted(set(old) | set(new), key=lambda k: (k.startswith("inputs."), k)):
        if old.get(key) == new.get(key):
            continue
        if key.startswith("inputs."):
            changes.append(f"{key[len('inputs.'):]} {'content changed' if old.get(key) and new.get(key) else 'added or removed'}")
        else:
            changes.append(f"{key} {_short(old.get(key))} -> {_short(new.get(key))}")
    if not changes:
        return "the same settings, recorded differently"
    more = f", and {len(changes) - 3} more" if len(changes) > 3 else ""
    return ", ".join(changes[:3]) + more


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def reuse_or_refuse(output: Path, stage: str, reads: dict[str, Any], overwrite: bool, refusal: str) -> tuple[str, dict[str, Any] | None]:
    """(fingerprint, the finished manifest if it was made from exactly these reads).

    Results of other settings or data are never returned as if they were new: the stage stops with
    ``refusal`` and the changed keys, or with ``overwrite`` the old manifest is removed first (so the
    folder reads as unfinished until the stage writes a new one) and the stage recomputes.
    """
    stamp = fingerprint_of(reads)
    existing = prepare_output(output, stage)
    if existing is None or existing.get("fingerprint") == stamp:
        return stamp, existing
    changes = describe_changes(existing.get("reads"), reads)
    if not overwrite:
        raise PetError(f"{output}: {refusal} ({changes}); rerun with --overwrite to recompute it, or choose another output folder")
    log.info("%s: %s; recomputing (--overwrite)", output, changes)
    (output / MANIFEST).unlink(missing_ok=True)  # several ranks may get here
    return stamp, None


def adapt_record(model: str | Path) -> dict[str, Any] | None:
    """The adapt.json of a model folder `pet adapt` wrote; None for any other model (or a Hub id)."""
    path = Path(model).expanduser() / ADAPT_RECORD
    if not path.is_file():
        return None
    record = read_json(path, "adapt record")
    return record if isinstance(record, dict) else {}


def model_reads(model: str) -> dict[str, Any]:
    """What a stage records of the model it starts from: its name, and for a folder `pet adapt` wrote, that
    adaptation's fingerprint, so that adapting again into the same folder (other steps, another seed) makes
    the stages trained on the old weights out of date instead of silently reusable."""
    reads: dict[str, Any] = {"model": model}
    record = adapt_record(model)
    if record is not None:
        reads["model.adapted"] = record.get("fingerprint")
    return reads


def file_hash(path: Path | None) -> str | None:
    return None if path is None else sha256_file(path)
