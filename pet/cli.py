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
    from pet.core.progress import setup_logging
    from pet.errors import PetError

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
    from pet.io.config import command_line_paths, parse_overrides

    return command_line_paths(parse_overrides(list(ctx.args)))


OVERWRITE = typer.Option(False, "--overwrite", help="Recompute results on disk that were made from other settings or data "
                                                     "(finished teachers whose own settings are unchanged are kept).")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command("train-teachers", context_settings=OVERRIDES, help=f"Stage A: train one teacher per pattern x verbalizer x seed, in iPET generations by default (plain PET with --ipet.generations 0; untrained teachers with --teachers.zero_shot true). {OVERRIDE_HELP}")
def train_teachers_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder, e.g. RUN/teachers."),
    overwrite: bool = OVERWRITE,
) -> None:
    with handled():
        from pet.api import train_teachers
        from pet.io.config import load_config

        manifest = train_teachers(load_config(config, _overrides(ctx)), output=output, overwrite=overwrite).manifest
        kind = " zero-shot" if manifest.get("zero_shot") and not manifest.get("ipet") else ""
        if manifest.get("ipet"):
            kind = f" iPET generation-{manifest['ipet']['final_generation']}"
        typer.echo(f"{len(manifest['teachers'])}{kind} teachers in {output}")


@app.command("label", context_settings=OVERRIDES, help="Stage B: score unlabeled text with every teacher and write soft labels. Accepts --labelling.* and --runtime.* overrides, and --data.unlabeled / --data.test to label other files with the same teachers.")
def label_cmd(
    ctx: typer.Context,
    teachers: Path = typer.Argument(..., help="Teachers folder written by train-teachers."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder, e.g. RUN/labels."),
    overwrite: bool = OVERWRITE,
) -> None:
    with handled():
        from pet.api import label

        manifest = label(teachers, output, overwrite=overwrite, **_overrides(ctx)).manifest
        line = f"{manifest['statistics']['examples']} soft labels in {output}"
        if "test" in manifest:
            ensemble = manifest["test"]["ensemble"]
            line += (f"; ensemble test micro-F1 {ensemble['micro_f1']:.4f}" if "micro_f1" in ensemble
                     else f"; ensemble test accuracy {ensemble['accuracy']:.4f}")
        typer.echo(line)


@app.command("distill", context_settings=OVERRIDES, help="Stage C: train a sequence classifier on the soft labels. Accepts --distillation.* and --runtime.* overrides, and --data.test.")
def distill_cmd(
    ctx: typer.Context,
    labels: Path = typer.Argument(..., help="Labels folder written by label."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder, e.g. RUN/student."),
    overwrite: bool = OVERWRITE,
) -> None:
    with handled():
        from pet.api import distill

        manifest = distill(labels, output, overwrite=overwrite, **_overrides(ctx)).manifest
        line = f"student in {output}"
        if "learning_rate_search" in manifest:
            line += f"; learning rate {manifest['learning_rate']:g}, kept by the search"
        if "test" in manifest:
            test = manifest["test"]
            line += (f"; test micro-F1 {test['micro_f1']:.4f}, subset accuracy {test['subset_accuracy']:.4f}" if "micro_f1" in test
                     else f"; test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}")
        typer.echo(line)


@app.command("run", context_settings=OVERRIDES, help=f"Stages A, B, C, then test metrics, into one run folder. {OVERRIDE_HELP}")
def run_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    overwrite: bool = OVERWRITE,
) -> None:
    with handled():
        from pet.api import run
        from pet.io.config import load_config

        summary = run(load_config(config, _overrides(ctx)), output, overwrite=overwrite).summary()
        if as_json:
            _print_json(summary)
            return
        typer.echo(f"run folder: {output}  teachers: {summary['teachers']}  soft labels: {summary['soft_labels']}")
        if summary["adapt_decision"]:
            from pet.tools.domain import AdaptDecision

            typer.echo(AdaptDecision.from_record(summary["adapt_decision"]).describe(done=True))
        if summary["adapted"]:
            typer.echo(f"adapted model: {summary['adapted']} (every stage started from it)")
        for name in ("ensemble_test", "student_test"):
            if summary[name]:
                m = summary[name]
                extra = f"  micro-F1 {m['micro_f1']:.4f}" if "micro_f1" in m else ""
                typer.echo(f"{name.replace('_', ' ')}: accuracy {m['accuracy']:.4f}{extra}  macro-F1 {m['macro_f1']:.4f}  ({m['examples']} examples)")


@app.command("evaluate", help="Accuracy, macro-F1 and calibration (ECE over 15 bins, Brier, NLL) of a student, or of each teacher and the ensemble, on a labelled file. Given a run config (YAML) instead of a folder: each pattern's zero-shot scores with the untrained model.")
def evaluate_cmd(
    model_dir: Path = typer.Argument(..., help="A student folder, a teachers folder, or a run config for zero-shot accuracy."),
    data: Path = typer.Option(..., "--data", "-d", help="Labelled data file (.jsonl, .csv, .parquet)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Fit a calibration temperature T* on the run's labelled set (data.train) by minimising NLL, and also report the metrics at T*."),
    calibrate_on: Optional[Path] = typer.Option(None, "--calibrate-on", help="Fit T* on this held-out labelled file instead of data.train (which the models were trained on); implies --calibrate."),
    generation: Optional[int] = typer.Option(None, "--generation", help="An iPET teachers folder: measure this generation's teachers and ensemble (0 = plain PET's) instead of the last."),
) -> None:
    with handled():
        from pet.errors import PetError
        from pet.evaluation import evaluate, evaluate_zero_shot

        zero_shot = model_dir.is_file() and model_dir.suffix.lower() in (".yaml", ".yml")
        if zero_shot and (calibrate or calibrate_on or generation is not None):
            option = "--generation needs an iPET teachers folder" if generation is not None else "--calibrate needs a student or teachers folder"
            raise PetError(f"{option}; a run config is evaluated zero-shot, untrained")
        result = evaluate_zero_shot(model_dir, data) if zero_shot else evaluate(model_dir, data, calibrate=calibrate,
                                                                                  calibrate_on=calibrate_on, generation=generation)
        if as_json:
            _print_json(result)
            return
        rows = _evaluation_rows(result)
        width = max(len(name) for name, _ in rows)
        if result.get("task") == "multi_label":
            _print_multi_label_rows(rows, width, data)
        else:
            typer.echo(f"{'model':<{width}}  accuracy  macro-F1     ECE   Brier      NLL")
            for name, m in rows:
                typer.echo(f"{name:<{width}}  {m['accuracy']:8.4f}  {m['macro_f1']:8.4f}  {m['ece']:6.4f}  {m['brier']:6.4f}  {m['nll']:7.4f}")
            name, final = _decision_row(rows)
            if "per_class_f1" in final:
                typer.echo(f"per-class F1 ({name}): " + ", ".join(f"{label} {f1:.4f}" for label, f1 in final["per_class_f1"].items()))
            generation = f"; iPET generation {result['generation']}" if "generation" in result else ""
            typer.echo(f"({rows[-1][1]['examples']} examples from {data}{generation})")
            typer.echo("ECE: 15 equal-width confidence bins; Brier: mean over examples of sum_c (p_c - y_c)^2; NLL: mean -log softmax(z / T)_y")
        fitted = (result.get("ensemble") or result).get("calibrated")
        if fitted:
            typer.echo(f"T* = {fitted['fitted_temperature']:.4f}: calibration temperature fitted by minimising NLL on "
                       f"{fitted['fitted_on']} ({fitted['fit_examples']} examples); not the distillation temperature"
                       + ("; it is at the edge of the search range [0.01, 100], so it says little" if fitted["at_search_bound"] else ""))


def _print_multi_label_rows(rows: list[tuple[str, dict[str, Any]]], width: int, data: Path) -> None:
    """The multi-label table: subset accuracy, micro-/macro-F1 and calibration per row, then per-label F1."""
    typer.echo(f"{'model':<{width}}  subset-acc  micro-F1  macro-F1     ECE   Brier      NLL")
    for name, m in rows:
        typer.echo(f"{name:<{width}}  {m['subset_accuracy']:10.4f}  {m['micro_f1']:8.4f}  {m['macro_f1']:8.4f}  "
                   f"{m['ece']:6.4f}  {m['brier']:6.4f}  {m['nll']:7.4f}")
    name, final = _decision_row(rows)
    typer.echo(f"per-label F1 ({name}): " + ", ".join(f"{label} {f1:.4f}" for label, f1 in final["per_label_f1"].items()))
    typer.echo(f"({final['examples']} examples from {data}; a label is predicted when its probability is at least {final['threshold']:g})")
    typer.echo("ECE: 15 equal-width bins of every (example, label) decision's confidence; Brier: mean over decisions of (p - y)^2; "
               "NLL: mean binary cross-entropy per decision")


def _decision_row(rows: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """The row whose predictions the per-class (per-label) F1s describe. Decisions are taken at T = 1,
    so the ensemble's T=1 row (or the student's) stands for every row of that model."""
    return next(((n, m) for n, m in rows if n.startswith("ensemble") and n.endswith("T=1")), rows[-1])


def _evaluation_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Table rows: each teacher, then the ensemble at T = 1, at the labelling temperature and at T*; or the student."""
    rows = [(name, m) for name, m in result.get("teachers", {}).items()]
    model = result.get("ensemble") or result
    name = f"ensemble ({model['method']})" if "ensemble" in result else "student"
    rows.append((f"{name} T=1" if "ensemble" in result else name, model))
    if "at_labelling_temperature" in model:
        at_t = model["at_labelling_temperature"]
        rows.append((f"{name} T={at_t['temperature']:g} (soft labels)", {**model, **at_t}))
    if "calibrated" in model:
        rows.append((f"{name} T*={model['calibrated']['fitted_temperature']:.3f} (fitted)", {**model, **model["calibrated"]}))
    return rows


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


@app.command("check", context_settings=OVERRIDES, help=f"Lint a run config before training: each pattern as the model sees it, label words in context, label counts, truncation, leakage, zero-shot accuracy and a label-free pattern ranking. Exit code 1 when anything is ✘. {OVERRIDE_HELP}")
def check_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Check this labelled file instead of data.train."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ranking_examples: int = typer.Option(32, "--ranking-examples", help="Unlabeled texts the pattern ranking reads (one forward pass per pattern token and label word each: most of the time on long texts); 0 skips the ranking."),
) -> None:
    with handled():
        from pet.tools.check import check

        report = check(config, data, overrides=_overrides(ctx), ranking_examples=ranking_examples)
        if as_json:
            _print_json(report.to_json())
        else:
            typer.echo(report.render())
        if not report.passed:
            raise typer.Exit(1)


@app.command("search-words", context_settings=OVERRIDES, help=f"Propose label words from the model and the labelled set, written as a verbalizers file that train-teachers accepts. {OVERRIDE_HELP}")
def search_words_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    output: Path = typer.Option(..., "--output", "-o", help="Verbalizers file to write, e.g. verbalizers/found.yaml."),
    words_per_label: int = typer.Option(1, "--words-per-label", "-k", help="Words per label."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labelled file to learn from instead of data.train."),
    verbalizer_id: str = typer.Option("found", "--id", help="Id of the verbalizer in the file."),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
) -> None:
    with handled():
        from pet.errors import PetError
        from pet.tools.words import search_words

        if output.exists() and not force:  # before loading the model, not after
            raise PetError(f"{output} exists; choose another -o, or pass --force to overwrite it")
        found = search_words(config, words_per_label, data=data, verbalizer_id=verbalizer_id, overrides=_overrides(ctx))
        found.write(output, force=force)
        for note in found.notes:
            _stderr(f"warning: {note}")
        for label, scores in found.scores.items():
            typer.echo(f"{label}: " + ", ".join(f"{s.word} ({s.score:+.2f})" for s in scores))
        typer.echo(f"verbalizer '{verbalizer_id}' in {output}")


@app.command("report", help="Write RUN/report/index.html: config, timings, teachers, soft labels, calibration (reliability diagrams), confusion matrices and losses of a run folder. Needs matplotlib (the 'report' extra).")
def report_cmd(
    run: Path = typer.Argument(..., help="Run folder written by pet run (with teachers/, labels/, student/)."),
) -> None:
    with handled():
        from pet.report import report

        typer.echo(f"report in {report(run)}")


@app.command("adapt", context_settings=OVERRIDES, help=f"Task-adaptive pretraining: continue masked-LM training of the config's model on its unlabeled text (plain, or rendered through the patterns with --prompts) and write a masked LM to use as model: in a run config. {OVERRIDE_HELP}")
def adapt_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run config (YAML): model, data.unlabeled, patterns (for --prompts), the adapt section (settings), teachers.max_length (the default text length)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the adapted masked LM (model, tokenizer, adapt.json)."),
    # unset options take the config's adapt section (its defaults: pet.io.config.AdaptConfig)
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (default: adapt.steps, 1000)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Texts per step (default: adapt.batch_size, 16)."),
    learning_rate: Optional[str] = typer.Option(None, "--learning-rate", help="A number, or auto: by model size, as teachers.learning_rate (default: adapt.learning_rate, auto)."),
    mlm_probability: Optional[float] = typer.Option(None, "--mlm-probability", help="Share of eligible tokens that become targets (default: adapt.mlm_probability, 0.15)."),
    prompts: Optional[bool] = typer.Option(None, "--prompts/--plain", help="Train on the texts rendered through the config's patterns, mask slot left open (never a target), or on the plain texts (default: adapt.prompts, plain)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of batches, masking and dropout (default: adapt.seed, 0)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder, or a model adapted there from other settings."),
) -> None:
    with handled():
        from pet.errors import PetError
        from pet.io.artifacts import adapt_record
        from pet.io.config import load_config
        from pet.tools.adapt import adapt

        rate: float | str | None = learning_rate
        if learning_rate not in (None, "auto"):
            try:
                rate = float(learning_rate)
            except ValueError:
                raise PetError(f"--learning-rate: expected a number or auto, got {learning_rate!r}") from None
        given = {"steps": steps, "batch_size": batch_size, "learning_rate": rate, "mlm_probability": mlm_probability,
                 "prompts": prompts, "seed": seed}
        folder = adapt(load_config(config, _overrides(ctx)), output, overwrite=overwrite,
                       **{name: value for name, value in given.items() if value is not None})
        loss = adapt_record(folder)["loss"]
        typer.echo(f"adapted masked LM in {folder}; MLM loss {loss['first']:.3f} -> {loss['last']:.3f}; use it as model: {folder}")


def main(argv: Optional[list[str]] = None) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app(args=argv, prog_name="pet")
