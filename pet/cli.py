"""The `pet` command line: thin wrappers over importable functions.

Heavy libraries (torch, transformers, datasets) are imported inside commands so that `pet --help`
answers instantly. Problems the user can fix are PetErrors, shown as one line with exit code 1;
`--verbose` shows tracebacks instead.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers warns when it detects forks

app = typer.Typer(
    name="pet",
    help="Pattern-Exploiting Training: few-shot text classification with cloze patterns, teacher ensembles and distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDE_HELP = "Extra --section.key value pairs override the config, e.g. --teachers.steps 50."
state = {"verbose": False}


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug messages and full tracebacks.")) -> None:
    state["verbose"] = verbose


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def handled() -> Iterator[None]:
    """Turn failures into one line on stderr and an exit code."""
    from pet.errors import PetError
    from pet.core.progress import setup_logging

    setup_logging(state["verbose"])
    try:
        yield
    except PetError as err:
        if state["verbose"]:
            raise
        _stderr(f"error: {err}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _stderr("interrupted: finished work is kept; run the same command again to resume")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as err:  # a bug or an environment problem we did not anticipate
        if state["verbose"]:
            raise
        _stderr(f"error: unexpected {type(err).__name__}: {err} (rerun with --verbose for the traceback)")
        raise typer.Exit(1) from None


def _overrides(ctx: typer.Context) -> dict[str, Any]:
    from pet.io.config import parse_overrides

    return parse_overrides(list(ctx.args))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command("train-teachers", context_settings=OVERRIDES, help=f"Stage A: train one teacher per pattern x verbalizer x seed (iPET generations with --ipet.generations N; untrained teachers with --teachers.zero_shot true). {OVERRIDE_HELP}")
def train_teachers_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder, e.g. RUN/teachers."),
) -> None:
    with handled():
        from pet.api import train_teachers
        from pet.io.config import load_config

        manifest = train_teachers(load_config(config, _overrides(ctx)), output=output).manifest
        kind = " zero-shot" if manifest.get("zero_shot") and not manifest.get("ipet") else ""
        if manifest.get("ipet"):
            kind = f" iPET generation-{manifest['ipet']['final_generation']}"
        typer.echo(f"{len(manifest['teachers'])}{kind} teachers in {output}")


@app.command("label", context_settings=OVERRIDES, help="Stage B: score unlabeled text with every teacher and write soft labels. Accepts --labelling.* and --runtime.* overrides.")
def label_cmd(
    ctx: typer.Context,
    teachers: Path = typer.Argument(..., help="Teachers folder written by train-teachers."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder, e.g. RUN/labels."),
) -> None:
    with handled():
        from pet.api import label

        manifest = label(teachers, output, **_overrides(ctx)).manifest
        line = f"{manifest['statistics']['examples']} soft labels in {output}"
        if "test" in manifest:
            line += f"; ensemble test accuracy {manifest['test']['ensemble']['accuracy']:.4f}"
        typer.echo(line)


@app.command("distill", context_settings=OVERRIDES, help="Stage C: train a sequence classifier on the soft labels. Accepts --distillation.* and --runtime.* overrides.")
def distill_cmd(
    ctx: typer.Context,
    labels: Path = typer.Argument(..., help="Labels folder written by label."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder, e.g. RUN/student."),
) -> None:
    with handled():
        from pet.api import distill

        manifest = distill(labels, output, **_overrides(ctx)).manifest
        line = f"student in {output}"
        if "test" in manifest:
            line += f"; test accuracy {manifest['test']['accuracy']:.4f}, macro-F1 {manifest['test']['macro_f1']:.4f}"
        typer.echo(line)


@app.command("run", context_settings=OVERRIDES, help=f"Stages A, B, C, then test metrics, into one run folder. {OVERRIDE_HELP}")
def run_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    with handled():
        from pet.api import run
        from pet.io.config import load_config

        summary = run(load_config(config, _overrides(ctx)), output).summary()
        if as_json:
            _print_json(summary)
            return
        typer.echo(f"run folder: {output}  teachers: {summary['teachers']}  soft labels: {summary['soft_labels']}")
        for name in ("ensemble_test", "student_test"):
            if summary[name]:
                m = summary[name]
                typer.echo(f"{name.replace('_', ' ')}: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  ({m['examples']} examples)")


@app.command("evaluate", help="Accuracy and macro-F1 of a student, or of each teacher and the ensemble, on a labelled file. Given a run config (YAML) instead of a folder: each pattern's zero-shot accuracy with the untrained model.")
def evaluate_cmd(
    model_dir: Path = typer.Argument(..., help="A student folder, a teachers folder, or a run config for zero-shot accuracy."),
    data: Path = typer.Option(..., "--data", "-d", help="Labelled data file (.jsonl, .csv, .parquet)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    with handled():
        from pet.evaluation import evaluate, evaluate_zero_shot

        zero_shot = model_dir.is_file() and model_dir.suffix.lower() in (".yaml", ".yml")
        result = evaluate_zero_shot(model_dir, data) if zero_shot else evaluate(model_dir, data)
        if as_json:
            _print_json(result)
            return
        rows = [(name, m) for name, m in result.get("teachers", {}).items()]
        rows.append(("ensemble (" + result["ensemble"]["method"] + ")", result["ensemble"]) if "ensemble" in result else ("student", result))
        width = max(len(name) for name, _ in rows)
        typer.echo(f"{'model':<{width}}  accuracy  macro-F1")
        for name, m in rows:
            typer.echo(f"{name:<{width}}  {m['accuracy']:8.4f}  {m['macro_f1']:8.4f}")
        typer.echo(f"({rows[-1][1]['examples']} examples from {data})")


@app.command("predict", help="Write predicted labels and probabilities as JSON lines.")
def predict_cmd(
    model_dir: Path = typer.Argument(..., help="A student folder or a teachers folder (ensemble)."),
    data: Path = typer.Option(..., "--data", "-d", help="Data file; labels are not needed."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .jsonl file."),
) -> None:
    with handled():
        from pet.evaluation import predict

        count = predict(model_dir, data, output)
        typer.echo(f"{count} predictions in {output}")


def main(argv: Optional[list[str]] = None) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app(args=argv, prog_name="pet")
