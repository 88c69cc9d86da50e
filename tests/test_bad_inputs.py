"""Bad input, end to end through the CLI: exit code 1, one actionable error line, no traceback, nothing written.

Every case builds a small valid project (tests/conftest.py), breaks one thing, runs a `pet` command
through typer's CliRunner and checks that:
- the exit code is 1;
- stderr holds exactly one ``error:`` line (warnings aside) that names the file and the key, line,
  pattern id or example id where one applies, and the expected hint;
- there is no traceback;
- nothing under the test's folder changed: no new, removed or rewritten file or folder (the output
  folder stays absent, or unchanged when it existed).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from conftest import sentiment_rows, write_jsonl, write_project
from typer.testing import CliRunner

from pet.cli import app


# --------------------------------------------------------------------------------------------------
# helpers


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its size and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        out[str(path.relative_to(root))] = ("dir",) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return out


def invoke(args: list[str], verbose: bool = False):
    return CliRunner().invoke(app, (["--verbose"] if verbose else []) + [str(a) for a in args])


def error_line(result) -> str:
    """The single error line (progress messages and warnings may precede it), and it comes last."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, f"expected one error line, got:\n{result.output}"
    assert lines[-1] == errors[0] and errors[0].startswith("error: "), result.output
    return errors[0]


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def line_number(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


@dataclass
class Ctx:
    """One test's folder: a valid project in ``root/project`` and the run folder ``root/run``."""

    root: Path
    model: Path
    finished: Path | None = None  # a finished run of the shared project, copied on demand
    project: Path = field(init=False)
    config: Path = field(init=False)
    run: Path = field(init=False)

    def __post_init__(self):
        self.project = self.root / "project"
        self.config = write_project(self.project, self.model)
        self.run = self.root / "run"

    def file(self, name: str) -> Path:
        return self.project / name

    def copy_finished_run(self) -> Path:
        """A copy of a finished run (its manifests point at the shared, untouched project data)."""
        assert self.finished is not None
        shutil.copytree(self.finished, self.run)
        return self.run

    def teacher_dirs(self) -> list[Path]:
        return sorted(p for p in (self.run / "teachers").iterdir() if p.is_dir())


# A case returns (command line, substrings the error line must contain).
Case = Callable[[Ctx], tuple[list, list[str]]]
CASES: dict[str, Case] = {}


def case(name: str):
    def register(fn: Case) -> Case:
        assert name not in CASES
        CASES[name] = fn
        return fn
    return register


def run_args(ctx: Ctx, *extra) -> list:
    return ["run", ctx.config, "-o", ctx.run, *extra]


def file_edit_case(name: str, file: str, old: str, new: str, *expected: str) -> None:
    """The common case: one replacement in one project file; the error names that file and ``expected``."""
    def build(ctx: Ctx) -> tuple[list, list[str]]:
        path = ctx.file(file)
        edit(path, old, new)
        return run_args(ctx), [f"{path}", *expected]
    case(name)(build)


# --------------------------------------------------------------------------------------------------
# the run config


@case("config-yaml-does-not-parse")
def _(ctx):
    edit(ctx.config, "  steps: 3\n  batch_size: 4\n  max_length: 64\nlabelling", "  steps: [3\n  batch_size: 4\n  max_length: 64\nlabelling")
    return run_args(ctx), [f"{ctx.config}:", "not valid YAML"]


def unknown_key_case(section: str, typo: str, right: str):
    @case(f"config-unknown-key-{section or 'top'}")
    def _(ctx):
        if section:
            edit(ctx.config, f"\n{section}:\n", f"\n{section}:\n  {typo}: 1\n")
        else:
            edit(ctx.config, "data:\n", f"{typo}: 1\ndata:\n")
        key = f"{section}.{typo}" if section else typo
        return run_args(ctx), [f"{ctx.config}:{line_number(ctx.config, typo + ':')}:", f"unknown key '{key}'", f"did you mean '{right}'"]


for _section, _typo, _right in [("", "modle", "model"), ("data", "label_colum", "label_column"), ("patterns", "fiel", "file"),
                                ("verbalizers", "idss", "ids"), ("teachers", "stesp", "steps"),
                                ("labelling", "temprature", "temperature"), ("distillation", "gold_wieght", "gold_weight"),
                                ("runtime", "devise", "device")]:
    unknown_key_case(_section, _typo, _right)


@case("config-wrong-type-int")
def _(ctx):
    edit(ctx.config, "  steps: 3\n  batch_size: 4\n  max_length: 64\nlabelling", "  steps: many\n  batch_size: 4\n  max_length: 64\nlabelling")
    return run_args(ctx), [f"{ctx.config}:{line_number(ctx.config, 'many')}:", "'teachers.steps'", "'many'"]


@case("config-wrong-type-list")
def _(ctx):
    edit(ctx.config, "seeds: [1]", "seeds: 1")
    return run_args(ctx), [f"{ctx.config}:", "'teachers.seeds'", "list"]


@case("config-wrong-choice")
def _(ctx):
    edit(ctx.config, "labelling:\n", "labelling:\n  ensemble: median\n")
    return run_args(ctx), [f"{ctx.config}:", "'labelling.ensemble'", "'mean', 'wmean' or 'cv'"]


@case("config-negative-number")
def _(ctx):
    edit(ctx.config, "labelling:\n", "labelling:\n  temperature: -2\n")
    return run_args(ctx), [f"{ctx.config}:", "'labelling.temperature'", "greater than 0"]


@case("config-missing-model")
def _(ctx):
    text = ctx.config.read_text()
    ctx.config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("model:")) + "\n")
    return run_args(ctx), [f"{ctx.config}", "missing required key 'model'"]


@case("config-missing-data-unlabeled")
def _(ctx):
    edit(ctx.config, "  unlabeled: unlabeled.jsonl\n", "")
    return run_args(ctx), [f"{ctx.config}", "missing required key 'data.unlabeled'"]


@case("config-no-labelled-set")
def _(ctx):
    edit(ctx.config, "  train: train.jsonl\n", "")
    return run_args(ctx), ["data.train", "teachers.zero_shot: true"]


@case("config-not-a-mapping")
def _(ctx):
    ctx.config.write_text("- model: x\n- data: y\n")
    return run_args(ctx), [f"{ctx.config}", "expected a mapping"]


@case("config-empty")
def _(ctx):
    ctx.config.write_text("# nothing yet\n")
    return run_args(ctx), [f"{ctx.config}", "empty"]


@case("config-missing-file")
def _(ctx):
    return ["run", ctx.project / "nope.yaml", "-o", ctx.run], [f"{ctx.project / 'nope.yaml'}", "not found"]


@case("override-unknown-key")
def _(ctx):
    return run_args(ctx, "--teachers.stps", "5"), ["--teachers.stps", "did you mean --teachers.steps"]


@case("device-cuda-without-cuda")
def _(ctx):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    edit(ctx.config, "device: cpu", "device: cuda")
    return run_args(ctx), ["runtime.device", "CUDA is not available"]


# --------------------------------------------------------------------------------------------------
# patterns and verbalizers


@case("patterns-unknown-top-key")
def _(ctx):
    path = ctx.file("patterns.yaml")
    edit(path, "patterns:\n", "version: 2\npatterns:\n")
    return run_args(ctx), [f"{path}:1:", "unknown key 'version'"]


@case("patterns-unknown-entry-key")
def _(ctx):
    path = ctx.file("patterns.yaml")
    edit(path, "    shorten: [text]\n", "    shorten: [text]\n    templates: x\n")
    return run_args(ctx), [f"{path}:{line_number(path, 'templates:')}:", "unknown key 'patterns[0].templates'", "did you mean 'template'"]


file_edit_case("patterns-missing-template", "patterns.yaml", "    template: \"Just {mask}! {text}\"\n", "    name: just\n", "missing required key 'patterns[1].template'")


@case("patterns-yaml-does-not-parse")
def _(ctx):
    path = ctx.file("patterns.yaml")
    edit(path, "  - id: just\n", "  - id: just\n   bad indent: [\n")
    return run_args(ctx), [f"{path}:", "not valid YAML"]


file_edit_case("patterns-duplicate-id", "patterns.yaml", "id: just", "id: it-was", "pattern 'it-was'", "duplicate pattern id")
file_edit_case("pattern-no-mask", "patterns.yaml", "Just {mask}! {text}", "Just good! {text}", "pattern 'just'", "no {mask}")
file_edit_case("pattern-two-masks", "patterns.yaml", "Just {mask}! {text}", "Just {mask}! {text} {mask}", "pattern 'just'", "2 {mask}")
file_edit_case("pattern-unknown-placeholder", "patterns.yaml", "Just {mask}! {text}", "Just {mask}! {txt}", "pattern 'just'", "'{txt}'", "data.fields")
file_edit_case("pattern-bad-brace", "patterns.yaml", "Just {mask}! {text}", "Just {mask}! {text", "pattern 'just'", "literal braces")
file_edit_case("pattern-shorten-unknown-field", "patterns.yaml", "shorten: [text]", "shorten: [title]", "pattern 'it-was'", "'title'")


@case("patterns-select-unknown-id")
def _(ctx):
    edit(ctx.config, "  file: patterns.yaml\n", "  file: patterns.yaml\n  ids: [it-wass]\n")
    return run_args(ctx), [f"{ctx.file('patterns.yaml')}", "no pattern with id 'it-wass'", "did you mean 'it-was'"]


@case("verbalizers-unknown-top-key")
def _(ctx):
    path = ctx.file("verbalizers.yaml")
    edit(path, "labels:", "default: bad-good\nlabels:")
    return run_args(ctx), [f"{path}:1:", "unknown key 'default'"]


@case("verbalizers-unknown-entry-key")
def _(ctx):
    path = ctx.file("verbalizers.yaml")
    edit(path, "    words:", "    word: x\n    words:")
    return run_args(ctx), [f"{path}:{line_number(path, 'word: x')}:", "unknown key 'verbalizers[0].word'", "did you mean 'words'"]


@case("verbalizers-duplicate-id")
def _(ctx):
    path = ctx.file("verbalizers.yaml")
    path.write_text(path.read_text() + "  - id: bad-good\n    words: {negative: [terrible], positive: [great]}\n")
    return run_args(ctx), [f"{path}", "verbalizer 'bad-good'", "duplicate verbalizer id"]


file_edit_case("verbalizer-label-without-words", "verbalizers.yaml", "{negative: [bad], positive: [good]}", "{positive: [good]}", "verbalizer 'bad-good'", "no words for label 'negative'")
file_edit_case("verbalizer-words-for-unknown-label", "verbalizers.yaml", "{negative: [bad], positive: [good]}", "{negative: [bad], positive: [good], neutral: [fine]}", "verbalizer 'bad-good'", "'neutral'")
file_edit_case("verbalizer-empty-word-list", "verbalizers.yaml", "negative: [bad]", "negative: []", "verbalizer 'bad-good'", "label 'negative'", "empty word list")
file_edit_case("verbalizer-empty-word", "verbalizers.yaml", "negative: [bad]", "negative: [bad, '  ']", "verbalizer 'bad-good'", "label 'negative'", "empty word")


@case("verbalizer-word-is-yaml-boolean")
def _(ctx):
    path = ctx.file("verbalizers.yaml")
    edit(path, "{negative: [bad], positive: [good]}", "{negative: [no], positive: [yes]}")
    return run_args(ctx), [f"{path}:", "verbalizers[0].words.negative", "quote the word"]


file_edit_case("verbalizer-word-is-unknown-token", "verbalizers.yaml", "positive: [good]", "positive: [zzzq]", "verbalizer 'bad-good'", "pattern 'it-was'", "'zzzq'", "unknown token")
file_edit_case("verbalizer-word-is-two-tokens", "verbalizers.yaml", "positive: [good]", "positive: [goods]", "verbalizer 'bad-good'", "'goods'", "2 tokens", "single token")


@case("verbalizer-label-missing-from-data")
def _(ctx):
    path = ctx.file("verbalizers.yaml")
    edit(path, "labels: [negative, positive]", "labels: [negative, neutral, positive]")
    edit(path, "{negative: [bad], positive: [good]}", "{negative: [bad], neutral: [fine], positive: [good]}")
    return run_args(ctx), [f"{path}", "label 'neutral'", "no example", "train.jsonl"]


file_edit_case("verbalizers-one-label", "verbalizers.yaml", "labels: [negative, positive]", "labels: [positive]", "'labels'", "at least 2")


# --------------------------------------------------------------------------------------------------
# data files


@case("data-train-missing")
def _(ctx):
    ctx.file("train.jsonl").unlink()
    return run_args(ctx), [f"{ctx.file('train.jsonl')}", "not found", "data.train"]


@case("data-unlabeled-empty")
def _(ctx):
    ctx.file("unlabeled.jsonl").write_text("")
    return run_args(ctx), [f"{ctx.file('unlabeled.jsonl')}", "no rows", "data.unlabeled"]


@case("data-train-zero-rows")
def _(ctx):
    ctx.file("train.jsonl").write_text("")
    return run_args(ctx), [f"{ctx.file('train.jsonl')}", "no rows", "teachers.zero_shot: true"]


@case("data-train-csv-header-only")
def _(ctx):
    (ctx.project / "train.csv").write_text("id,text,label\n")
    edit(ctx.config, "train: train.jsonl", "train: train.csv")
    return run_args(ctx), [f"{ctx.file('train.csv')}", "no rows", "teachers.zero_shot: true"]


@case("data-not-utf8")
def _(ctx):
    path = ctx.file("train.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = '{"id": "x", "text": "caf\u00e9 cr\u00e8me", "label": "positive"}\n'.encode("latin-1")
    path.write_bytes(b"".join(lines))
    return run_args(ctx), [f"{path}:3:", "not valid UTF-8", "UTF-8"]


@case("data-malformed-jsonl")
def _(ctx):
    path = ctx.file("unlabeled.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = '{"id": "u-3", "text": "a great movie"\n'
    path.write_text("".join(lines))
    return run_args(ctx), [f"{path}:4:", "malformed JSON"]


@case("data-jsonl-line-not-object")
def _(ctx):
    path = ctx.file("test.jsonl")
    path.write_text(path.read_text() + '["a great movie", "positive"]\n')
    return run_args(ctx), [f"{path}:13:", "must be an object"]


@case("data-unsupported-extension")
def _(ctx):
    shutil.copy(ctx.file("unlabeled.jsonl"), ctx.file("unlabeled.txt"))
    edit(ctx.config, "unlabeled: unlabeled.jsonl", "unlabeled: unlabeled.txt")
    return run_args(ctx), [f"{ctx.file('unlabeled.txt')}", "unsupported extension", ".jsonl"]


@case("data-path-is-folder")
def _(ctx):
    (ctx.project / "texts.jsonl").mkdir()
    edit(ctx.config, "unlabeled: unlabeled.jsonl", "unlabeled: texts.jsonl")
    return run_args(ctx), [f"{ctx.project / 'texts.jsonl'}", "folder"]


@case("data-missing-text-column")
def _(ctx):
    edit(ctx.config, "data:\n", "data:\n  fields: {text: sentence}\n")
    return run_args(ctx), [f"{ctx.file('train.jsonl')}", "no column 'sentence'", "columns: id, text, label"]


@case("data-missing-label-column")
def _(ctx):
    write_jsonl(ctx.file("train.jsonl"), sentiment_rows("train", 8, labelled=False))
    return run_args(ctx), [f"{ctx.file('train.jsonl')}", "no column 'label'"]


@case("data-text-is-null")
def _(ctx):
    rows = sentiment_rows("u", 24, labelled=False)
    rows[5]["text"] = None
    write_jsonl(ctx.file("unlabeled.jsonl"), rows)
    return run_args(ctx), [f"{ctx.file('unlabeled.jsonl')}", "example 'u-5'", "column 'text' is missing"]


@case("data-unknown-label")
def _(ctx):
    rows = sentiment_rows("train", 8)
    rows[2]["label"] = "neutral"
    write_jsonl(ctx.file("train.jsonl"), rows)
    return run_args(ctx), [f"{ctx.file('train.jsonl')}", "example 'train-2'", "'neutral'", "labels: negative, positive"]


@case("data-duplicate-ids")
def _(ctx):
    rows = sentiment_rows("u", 24, labelled=False)
    rows[7]["id"] = "u-1"
    write_jsonl(ctx.file("unlabeled.jsonl"), rows)
    return run_args(ctx), [f"{ctx.file('unlabeled.jsonl')}", "duplicate id 'u-1'"]


@case("data-example-cannot-fit")
def _(ctx):
    edit(ctx.file("patterns.yaml"), "shorten: [text]", "shorten: []")
    rows = sentiment_rows("train", 8)
    rows[3]["text"] = " ".join(["a great movie"] * 40)
    write_jsonl(ctx.file("train.jsonl"), rows)
    return run_args(ctx), [f"{ctx.file('train.jsonl')}", "pattern 'it-was'", "example 'train-3'", "max_length", "shorten"]


# --------------------------------------------------------------------------------------------------
# models and tokenizers


def tiny_gpt2(folder: Path, tokenizer_from: Path | None = None) -> Path:
    """A tiny causal LM; with its own word-level tokenizer (no mask token) or a copy of another's."""
    import tokenizers
    from tokenizers import models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    GPT2LMHeadModel(GPT2Config(vocab_size=200, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    if tokenizer_from is not None:
        for item in tokenizer_from.iterdir():
            if item.name not in ("config.json", "model.safetensors", "generation_config.json"):
                shutil.copy(item, folder / item.name)
        return folder
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "the", "a", "good", "bad", "it", "was", ".", "!", "just"])}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(folder)
    return folder


@case("model-path-missing")
def _(ctx):
    edit(ctx.config, f"model: {ctx.model}", f"model: {ctx.root / 'no-such-model'}")
    return run_args(ctx), [f"{ctx.root / 'no-such-model'}", "not found"]


@case("model-folder-without-config")
def _(ctx):
    folder = ctx.root / "tokenizer-only"
    shutil.copytree(ctx.model, folder)
    (folder / "config.json").unlink()
    edit(ctx.config, f"model: {ctx.model}", f"model: {folder}")
    return run_args(ctx), [f"{folder}", "config"]


@case("model-is-not-a-masked-lm")
def _(ctx):
    folder = tiny_gpt2(ctx.root / "gpt2", tokenizer_from=ctx.model)
    edit(ctx.config, f"model: {ctx.model}", f"model: {folder}")
    return run_args(ctx), [f"{folder}", "not a masked language model", "gpt2"]


@case("tokenizer-without-mask-token")
def _(ctx):
    folder = tiny_gpt2(ctx.root / "gpt2")
    edit(ctx.config, f"model: {ctx.model}", f"model: {folder}")
    return run_args(ctx), [f"{folder}", "no mask token", "masked language model"]


@case("nan-loss-teacher")
def _(ctx):
    return run_args(ctx, "--teachers.learning_rate", "1e12", "--teachers.steps", "20"), [
        "teacher it-was--bad-good--s1", "loss became", "at step", "lower the learning rate"]


# --------------------------------------------------------------------------------------------------
# artifacts of earlier stages


@case("output-holds-teachers-label")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["label", run / "teachers", "-o", run / "teachers"], [f"{run / 'teachers'}", "already holds teachers artifacts", "another output folder"]


@case("output-holds-labels-train")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["train-teachers", ctx.config, "-o", run / "labels"], [f"{run / 'labels'}", "already holds labels artifacts", "another output folder"]


@case("output-holds-student-distill")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["distill", run / "labels", "-o", run / "teachers"], [f"{run / 'teachers'}", "already holds teachers artifacts"]


@case("output-holds-soft-labels-without-manifest")
def _(ctx):
    run = ctx.copy_finished_run()
    (run / "labels" / "manifest.json").unlink()
    return ["train-teachers", ctx.config, "-o", run / "labels"], [f"{run / 'labels'}", "already holds labels artifacts"]


@case("output-holds-unfinished-teachers")
def _(ctx):
    run = ctx.copy_finished_run()
    (run / "teachers" / "manifest.json").unlink()  # as a killed stage A leaves it
    return ["distill", run / "labels", "-o", run / "teachers"], [f"{run / 'teachers'}", "already holds teachers artifacts"]


@case("output-is-a-file")
def _(ctx):
    ctx.run.write_text("not a folder\n")
    return ["train-teachers", ctx.config, "-o", ctx.run], [f"{ctx.run}", "is a file"]


@case("teacher-folder-missing")
def _(ctx):
    run = ctx.copy_finished_run()
    missing = ctx.teacher_dirs()[-1]
    shutil.rmtree(missing)
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{missing}", f"teacher '{missing.name}'", "rerun pet train-teachers"]


@case("teacher-weights-corrupted")
def _(ctx):
    run = ctx.copy_finished_run()
    broken = ctx.teacher_dirs()[-1]
    (broken / "model.safetensors").write_bytes(b"\x00\x01garbage" * 100)
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{broken}", f"teacher '{broken.name}'", "rerun pet train-teachers"]


@case("teacher-weights-truncated")
def _(ctx):
    run = ctx.copy_finished_run()
    broken = ctx.teacher_dirs()[-1]
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{broken}", f"teacher '{broken.name}'", "rerun pet train-teachers"]


@case("teacher-record-corrupted")
def _(ctx):
    run = ctx.copy_finished_run()
    broken = ctx.teacher_dirs()[0]
    (broken / "teacher.json").write_text('{"name": "tru')
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{broken / 'teacher.json'}", "corrupted", "rerun"]


@case("teachers-manifest-missing")
def _(ctx):
    run = ctx.copy_finished_run()
    (run / "teachers" / "manifest.json").unlink()
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{run / 'teachers'}", "did not finish", "rerun"]


@case("teachers-manifest-corrupted")
def _(ctx):
    run = ctx.copy_finished_run()
    (run / "teachers" / "manifest.json").write_text("{\"stage\": ")
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{run / 'teachers' / 'manifest.json'}", "corrupted"]


def set_manifest(path: Path, **values) -> None:
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data))


@case("teachers-manifest-schema-version")
def _(ctx):
    run = ctx.copy_finished_run()
    set_manifest(run / "teachers" / "manifest.json", schema_version=99)
    return ["label", run / "teachers", "-o", run / "labels2"], [f"{run / 'teachers' / 'manifest.json'}", "schema version 99", "rerun"]


@case("labels-manifest-schema-version")
def _(ctx):
    run = ctx.copy_finished_run()
    set_manifest(run / "labels" / "manifest.json", schema_version=0)
    return ["distill", run / "labels", "-o", run / "student2"], [f"{run / 'labels' / 'manifest.json'}", "schema version 0"]


@case("student-manifest-schema-version")
def _(ctx):
    run = ctx.copy_finished_run()
    set_manifest(run / "student" / "manifest.json", schema_version=2)
    return ["evaluate", run / "student", "--data", ctx.file("test.jsonl")], [f"{run / 'student' / 'manifest.json'}", "schema version 2"]


@case("label-wrong-input-stage")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["label", run / "labels", "-o", run / "labels2"], [f"{run / 'labels'}", "labels stage, not of the teachers stage"]


@case("labels-soft-labels-missing")
def _(ctx):
    run = ctx.copy_finished_run()
    (run / "labels" / "soft_labels.parquet").unlink()
    return ["distill", run / "labels", "-o", run / "student2"], [f"{run / 'labels' / 'soft_labels.parquet'}", "rerun pet label"]


@case("labels-soft-labels-corrupted")
def _(ctx):
    run = ctx.copy_finished_run()
    (run / "labels" / "soft_labels.parquet").write_bytes(b"PAR1 broken")
    return ["distill", run / "labels", "-o", run / "student2"], [f"{run / 'labels' / 'soft_labels.parquet'}", "corrupted"]


@case("input-changed-since-teachers")
def _(ctx):
    invoke_ok(["train-teachers", ctx.config, "-o", ctx.run / "teachers"])
    rows = sentiment_rows("u", 24, labelled=False)
    rows[0]["text"] = "a different text"
    write_jsonl(ctx.file("unlabeled.jsonl"), rows)
    return ["label", ctx.run / "teachers", "-o", ctx.run / "labels"], [f"{ctx.file('unlabeled.jsonl')}", "hash mismatch", "rerun"]


@case("input-changed-rerun-teachers")
def _(ctx):
    invoke_ok(["train-teachers", ctx.config, "-o", ctx.run / "teachers"])
    rows = sentiment_rows("train", 8)
    rows[0]["text"] = "a different text"
    write_jsonl(ctx.file("train.jsonl"), rows)
    return ["train-teachers", ctx.config, "-o", ctx.run / "teachers"], [f"{ctx.run / 'teachers'}", "different config or data", "another output folder"]


@case("student-model-with-other-labels")
def _(ctx):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    run = ctx.copy_finished_run()
    folder = ctx.root / "topic-classifier"
    config = BertConfig.from_pretrained(ctx.model)
    config.update({"num_labels": 2, "id2label": {0: "sports", 1: "world"}, "label2id": {"sports": 0, "world": 1}})
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(ctx.model).save_pretrained(folder)
    return ["distill", run / "labels", "-o", run / "student2", "--distillation.model", folder], [
        f"{folder}", "sports, world", "negative, positive", "distillation.model"]


@case("evaluate-data-with-unknown-label")
def _(ctx):
    run = ctx.copy_finished_run()
    rows = sentiment_rows("e", 6)
    rows[4]["label"] = "neutral"
    data = write_jsonl(ctx.root / "eval.jsonl", rows)
    return ["evaluate", run / "student", "--data", data], [f"{data}", "example 'e-4'", "'neutral'"]


@case("evaluate-labels-folder")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["evaluate", run / "labels", "--data", ctx.file("test.jsonl")], [f"{run / 'labels'}", "evaluate a student or a teachers folder"]


@case("predict-into-run-folder-file")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["predict", run / "student", "--data", ctx.file("missing.jsonl"), "-o", ctx.root / "out.jsonl"], [
        f"{ctx.file('missing.jsonl')}", "not found"]


@case("nan-loss-student")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["distill", run / "labels", "-o", run / "student2", "--distillation.learning_rate", "1e12", "--distillation.steps", "20"], [
        "student", "loss became", "at step", "lower the learning rate"]


@case("stage-override-not-allowed")
def _(ctx):
    run = ctx.copy_finished_run()
    return ["label", run / "teachers", "-o", run / "labels2", "--teachers.steps", "5"], ["--teachers.steps", "cannot be changed at this stage"]


def invoke_ok(args: list) -> None:
    result = invoke(args)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------------------------
# the tests


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert) -> Path:
    """One finished run (teachers, labels, student) of the standard project, shared read-only."""
    root = tmp_path_factory.mktemp("finished")
    config = write_project(root / "project", tiny_bert)
    # Two teachers: one pattern x one verbalizer x two seeds.
    edit(config, "seeds: [1]", "seeds: [1, 2]")
    edit(config, "  file: patterns.yaml\n", "  file: patterns.yaml\n  ids: [it-was]\n")
    invoke_ok(["run", config, "-o", root / "run"])
    return root / "run"


def test_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, tiny_bert, finished_run):
    ctx = Ctx(tmp_path, tiny_bert, finished_run)
    args, expected = CASES[name](ctx)
    before = snapshot(tmp_path)
    result = invoke(args)
    assert result.exit_code == 1, f"exit code {result.exit_code}:\n{result.output}"
    line = error_line(result)
    assert "Traceback" not in result.output
    for text in expected:
        assert str(text) in line, f"{text!r} not in:\n{line}"
    assert snapshot(tmp_path) == before, "the failed command changed files"


def test_error_names_config_line_for_unparseable_yaml(tmp_path, tiny_bert):
    ctx = Ctx(tmp_path, tiny_bert)
    edit(ctx.config, "  steps: 3\n", "  steps: [3\n")
    result = invoke(run_args(ctx))
    assert re.search(rf"{re.escape(str(ctx.config))}:\d+: not valid YAML", error_line(result))


def test_verbose_shows_traceback(tmp_path, tiny_bert):
    ctx = Ctx(tmp_path, tiny_bert)
    edit(ctx.file("patterns.yaml"), "Just {mask}! {text}", "Just {mask}! {txt}")
    result = invoke(run_args(ctx), verbose=True)
    assert result.exit_code == 1
    assert "PetError" in repr(result.exception) or "Traceback" in result.output
    assert "'{txt}'" in str(result.exception)
    assert not ctx.run.exists()


def test_long_texts_are_shortened_not_fatal(tmp_path, tiny_bert):
    """Texts far longer than the model's 128 positions, and max_length settings above it, still run."""
    ctx = Ctx(tmp_path, tiny_bert)
    long_text = " ".join(["a great movie with excellent acting and a wonderful story"] * 40)
    for name, labelled in (("train.jsonl", True), ("unlabeled.jsonl", False), ("test.jsonl", True)):
        rows = sentiment_rows(name.split(".")[0], 8, labelled=labelled)
        rows[1]["text"] = long_text
        rows[2]["text"] = long_text.replace("great", "terrible")
        write_jsonl(ctx.file(name), rows)
    for section in ("teachers", "labelling", "distillation"):
        edit(ctx.config, f"{section}:\n", f"{section}:\n  max_length: 512\n")
        edit(ctx.config, "  max_length: 64\n", "")
    result = invoke(run_args(ctx))
    assert result.exit_code == 0, result.output
    assert (ctx.run / "student" / "manifest.json").exists()
    predictions = ctx.root / "pred.jsonl"
    invoke_ok(["predict", ctx.run / "student", "--data", ctx.file("test.jsonl"), "-o", predictions])
    assert len(predictions.read_text().splitlines()) == 8
