"""The Python API: the three stages as functions that take data and settings and return typed results.

    import pet
    teachers = pet.train_teachers("path/to/mlm", train=rows, unlabeled=texts,
                                  patterns=[pet.Pattern("it-was", "{text} It was {mask}.")],
                                  verbalizers=[pet.Verbalizer("tg", {"negative": ["terrible"], "positive": ["great"]})],
                                  output="runs/x/teachers", steps=100)
    soft = pet.label(teachers)              # runs/x/labels
    student = pet.distill(soft)             # runs/x/student
    student.predict(["A wonderful film."])

Settings are the run config's (pet/io/config.py), validated the same way: a stage's own settings by
name (``steps=100`` for train_teachers, ``temperature=2`` for label, ``steps=300`` for distill), any
section as a mapping or config object (``runtime={"device": "cpu"}``), or dotted keys as on the
command line (``**{"teachers.steps": 100}``). The CLI is a thin layer over these functions, so an API
run and a CLI run with the same inputs and settings write the same artifacts.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pet.errors import PetError
from pet.io.config import (DataConfig, DistillationConfig, LabellingConfig, RunConfig, TeachersConfig, apply_overrides,
                           config_from_json, load_config, resolve_paths)
from pet.io.inputs import INPUTS, InputWriter, data_file, patterns_file, verbalizers_file
from pet.io.lock import LOCK, writing
from pet.io.yamlfile import validate
from pet.results import Run, SoftLabels, Student, Teachers

SECTIONS = tuple(name for name in RunConfig.model_fields if name != "model")  # data, task, ..., adapt, runtime


def dotted_settings(settings: dict[str, Any], own: dict[str, type[BaseModel]], where: str) -> dict[str, Any]:
    """Keyword settings as ``section.key`` overrides: plain names belong to the ``own`` sections'
    schemas, whole sections come as mappings or config objects, dotted keys pass through."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if "." in key:
            out[key] = value
        elif key in SECTIONS or key == "model":
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_unset=True)
            if isinstance(value, dict) and key != "model":
                out.update({f"{key}.{name}": item for name, item in value.items()})
            else:
                out[key] = value
        else:
            section = next((name for name, schema in own.items() if key in schema.model_fields), None)
            if section is None:
                known = [f for schema in own.values() for f in schema.model_fields] + list(SECTIONS)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; settings here: {', '.join(known)}"
                raise PetError(f"{where}: unknown setting '{key}'{hint}")
            out[f"{section}.{key}"] = value
    return out


def build_config(model: str | Path, sources: dict[str, Path | None], settings: dict[str, Any]) -> RunConfig:
    """A run config from a model, input files and keyword settings, validated like a YAML config."""
    overrides = dotted_settings(settings, {"teachers": TeachersConfig, "data": DataConfig}, "pet.train_teachers")
    raw: dict[str, Any] = {
        "model": str(model),
        "data": {k: str(sources[k]) for k in ("train", "unlabeled", "test") if sources.get(k) is not None},
        "patterns": {"file": str(sources["patterns"])},
        "verbalizers": {"file": str(sources["verbalizers"])},
    }
    config = validate(RunConfig, apply_overrides(raw, overrides), "pet.train_teachers")
    return resolve_paths(config, Path.cwd())


def write_inputs(writer: InputWriter, data: dict[str, Any], settings: dict[str, Any]) -> dict[str, Path | None]:
    fields = settings.get("fields") or settings.get("data.fields") or {"text": "text"}
    text_column = next(iter(fields.values())) if isinstance(fields, dict) and fields else "text"
    sources: dict[str, Path | None] = {}
    for role in ("train", "unlabeled", "test"):
        sources[role] = None if data[role] is None else data_file(data[role], role, writer, text_column)
    sources["patterns"] = patterns_file(data["patterns"], writer)
    sources["verbalizers"] = verbalizers_file(data["verbalizers"], writer)
    return sources


def train_teachers(model: str | Path | RunConfig, *, output: str | Path, train: Any = None, unlabeled: Any = None,
                   patterns: Any = None, verbalizers: Any = None, test: Any = None, overwrite: bool = False,
                   **settings: Any) -> Teachers:
    """Stage A: train every teacher (pattern x verbalizer x seed) into ``output``; resumes a finished part.

    ``model`` is a masked LM (folder or Hub id), or a whole :class:`RunConfig` (then the data and
    pattern arguments stay unset and ``settings`` override it). Data: a file path, a list of dicts, a
    list of texts (unlabeled), a pandas DataFrame or a ``datasets.Dataset``. Patterns and
    verbalizers: a YAML file, YAML text, or :class:`pet.Pattern` / :class:`pet.Verbalizer` objects.
    A folder holding teachers of other settings or data is refused; ``overwrite=True`` keeps the
    teachers whose own settings are unchanged and retrains the others.
    """
    from pet.stages.teachers.stage import train_teachers as run_stage

    output = Path(output)
    if isinstance(model, RunConfig):
        given = [name for name, value in (("train", train), ("unlabeled", unlabeled), ("patterns", patterns),
                                          ("verbalizers", verbalizers), ("test", test)) if value is not None]
        if given:
            raise PetError(f"pet.train_teachers: {given[0]}= cannot be combined with a RunConfig; set it in the config")
        overrides = dotted_settings(settings, {"teachers": TeachersConfig}, "pet.train_teachers")
        config = config_from_json(model.to_json(), overrides, "pet.train_teachers") if overrides else model
        return Teachers(output, run_stage(config, output, overwrite=overwrite))
    for name, value in (("unlabeled", unlabeled), ("patterns", patterns), ("verbalizers", verbalizers)):
        if value is None:
            raise PetError(f"pet.train_teachers: {name}= is required")
    existed = output.exists()
    with writing(output, "pet.train_teachers", enabled=main_rank()):  # its inputs/ too
        writer = InputWriter(output / INPUTS)
        try:
            sources = write_inputs(writer, {"train": train, "unlabeled": unlabeled, "test": test, "patterns": patterns,
                                            "verbalizers": verbalizers}, settings)
            config = build_config(model, sources, settings)
            return Teachers(output, run_stage(config, output, overwrite=overwrite))
        except BaseException:
            if not (output / "manifest.json").exists():
                writer.discard()  # bad input leaves nothing behind
                if not existed and output.is_dir() and not any(p.is_file() for p in output.rglob("*") if p.name != LOCK):
                    shutil.rmtree(output)
            raise


def main_rank() -> bool:
    """False on the ranks of a torchrun/accelerate run other than rank 0 (which locks the folder for all)."""
    from pet.core.distributed import current_ranks

    return current_ranks().main


def text_column(teachers: Teachers | str | Path) -> str:
    """The column of the first pattern field, where a plain list of texts goes."""
    found = teachers if isinstance(teachers, Teachers) else Teachers(Path(teachers))
    return next(iter(found.config.data.fields.values()))


def sibling(result: Any, name: str) -> Path:
    """RUN/<name> next to RUN/teachers or RUN/labels: the default output of the next stage."""
    return Path(getattr(result, "path", result)).parent / name


def label(teachers: Teachers | str | Path, output: str | Path | None = None, *, unlabeled: Any = None, test: Any = None,
          overwrite: bool = False, **settings: Any) -> SoftLabels:
    """Stage B: score the unlabeled set with every teacher and write soft labels (default: RUN/labels).

    ``unlabeled`` / ``test`` label other data with the same teachers (a path, rows, a DataFrame, a Dataset).
    """
    from pet.stages.labelling.stage import label as run_stage

    output = Path(output) if output is not None else sibling(teachers, "labels")
    overrides = dotted_settings(settings, {"labelling": LabellingConfig}, "pet.label")
    with writing(output, "pet.label", enabled=main_rank()):  # its inputs/ too
        writer = InputWriter(output / INPUTS)
        for role, data in (("unlabeled", unlabeled), ("test", test)):
            if data is not None:
                overrides[f"data.{role}"] = str(data_file(data, role, writer, text_column(teachers)))
        try:
            return SoftLabels(output, run_stage(Path(getattr(teachers, "path", teachers)), output, overrides, overwrite=overwrite))
        except BaseException:
            if not (output / "manifest.json").exists():
                writer.discard()
            raise


def distill(soft_labels: SoftLabels | str | Path, output: str | Path | None = None, *, overwrite: bool = False,
            **settings: Any) -> Student:
    """Stage C: train a sequence classifier on the soft labels (default: RUN/student)."""
    from pet.stages.distillation.stage import distill as run_stage

    output = Path(output) if output is not None else sibling(soft_labels, "student")
    overrides = dotted_settings(settings, {"distillation": DistillationConfig}, "pet.distill")
    return Student(output, run_stage(Path(getattr(soft_labels, "path", soft_labels)), output, overrides, overwrite=overwrite))


def run(config: RunConfig | str | Path, output: str | Path, *, overwrite: bool = False, **settings: Any) -> Run:
    """Stages A, B and C into one run folder (RUN/teachers, RUN/labels, RUN/student)."""
    if not isinstance(config, RunConfig):
        config = load_config(Path(config), dotted_settings(settings, {}, "pet.run"))
    elif settings:
        config = config_from_json(config.to_json(), dotted_settings(settings, {}, "pet.run"), "pet.run")
    from pet.pipeline import run as run_stages

    run_stages(config, Path(output), overwrite=overwrite)
    return Run(output)
