"""Safe loading: no code runs from user files, weights are safetensors, artifacts stay in the output folder,
and manifests pin their inputs and library versions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO, write_project
from typer.testing import CliRunner

from pet.cli import app

SOURCES = sorted((REPO / "pet").rglob("*.py"))

# Pattern -> why it is banned from the package source.
BANNED = {
    r"\byaml\.(load|load_all|unsafe_load|full_load)\s*\(": "YAML must be read with yaml.safe_load",
    r"\byaml\.(Unsafe|Full|Base)?Loader\b|\bLoader\s*=\s*(?!(yaml\.)?SafeLoader\b)": "YAML loaders other than SafeLoader construct Python objects",
    r"\bpickle\b|\bdill\b|\bcloudpickle\b|\bjoblib\b": "pickle can run code on load",
    r"(?<![\w.])eval\s*\(": "no eval of any text",
    r"(?<![\w.])exec\s*\(": "no exec of any text",
    r"\b__import__\s*\(|\bimportlib\.import_module\s*\(": "no imports chosen by user text",
    r"trust_remote_code\s*=\s*True": "trust_remote_code only when runtime.trust_remote_code is true",
    r"\bsubprocess\b|\bos\.system\s*\(": "no shell commands",
    r"\buse_safetensors\s*=\s*False": "weights only as safetensors",
}


def code_lines(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.split("#", 1)[0]
        if stripped.strip():
            yield number, stripped


@pytest.mark.parametrize("pattern", sorted(BANNED))
def test_source_has_no_unsafe_calls(pattern):
    hits = [f"{path.name}:{number}: {line.strip()}" for path in SOURCES for number, line in code_lines(path)
            if re.search(pattern, line)]
    assert not hits, f"{BANNED[pattern]}:\n" + "\n".join(hits)


def test_torch_load_only_with_weights_only():
    hits = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\s*\(", text):
            call = text[match.start(): text.find(")", match.start()) + 1]
            if "weights_only=True" not in call:
                hits.append(f"{path.name}: {call}")
    assert not hits, hits


def test_yaml_is_read_with_safe_load_only():
    uses = [f"{p.name}:{n}" for p in SOURCES for n, line in code_lines(p) if re.search(r"\byaml\.\w*load\w*\s*\(", line)]
    assert uses, "expected yaml.safe_load somewhere"
    assert all(re.search(r"\byaml\.safe_load\s*\(", line) for p in SOURCES for _, line in code_lines(p)
               if re.search(r"\byaml\.\w*load\w*\s*\(", line))


def test_python_tags_in_yaml_are_refused(tmp_path, tiny_bert):
    """A YAML tag that would construct a Python object is a parse error, and nothing runs."""
    config = write_project(tmp_path / "project", tiny_bert)
    marker = tmp_path / "pwned"
    config.write_text(config.read_text() + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "not valid YAML" in result.stderr
    assert not marker.exists() and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# a finished run


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bert):
    """A run made with the working directory set to an empty folder, and snapshots around it."""
    import os

    root = tmp_path_factory.mktemp("safety")
    config = write_project(root / "project", tiny_bert)
    cwd = root / "cwd"
    cwd.mkdir()
    project_before = sorted(p.name for p in (root / "project").iterdir())
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["run", str(config), "-o", str(root / "project" / "run")])
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    return root, config, project_before


def test_artifacts_only_inside_the_output_folder(finished):
    root, _, project_before = finished
    assert sorted(p.name for p in (root / "project").iterdir()) == sorted(project_before + ["run"])
    assert not any((root / "cwd").iterdir()), "files written to the working directory"
    assert sorted(p.name for p in root.iterdir()) == ["cwd", "project"]


def test_weights_only_as_safetensors(finished):
    root, _, _ = finished
    run = root / "project" / "run"
    files = [p for p in run.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")]
    model_dirs = [p.parent for p in run.rglob("config.json")]
    assert model_dirs and all((d / "model.safetensors").exists() for d in model_dirs)


def test_manifests_record_inputs_and_versions(finished):
    from pet.io.artifacts import sha256_file

    root, config, _ = finished
    run = root / "project" / "run"
    for stage in ("teachers", "labels", "student"):
        manifest = json.loads((run / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["schema_version"] >= 1
        assert {"pet", "torch", "transformers", "datasets"} <= set(manifest["versions"])
        names = {Path(p).name for p in manifest["inputs"]}
        assert {"train.jsonl", "unlabeled.jsonl", "test.jsonl", "patterns.yaml", "verbalizers.yaml"} <= names
        for path, digest in manifest["inputs"].items():
            assert sha256_file(Path(path)) == digest


def edited_run(finished, tmp_path, **versions) -> Path:
    import shutil

    root, _, _ = finished
    teachers = tmp_path / "teachers"
    shutil.copytree(root / "project" / "run" / "teachers", teachers)
    manifest = json.loads((teachers / "manifest.json").read_text())
    manifest["versions"].update(versions)
    (teachers / "manifest.json").write_text(json.dumps(manifest))
    return teachers


def shifted(version: str, part: int) -> str:
    """``version`` with its major (part 0) or minor (part 1) number changed."""
    numbers = version.split("+")[0].split(".")
    numbers[part] = str(int(numbers[part]) + 1 if int(numbers[part]) == 0 else int(numbers[part]) - 1)
    return ".".join(numbers)


def test_minor_library_difference_is_a_warning(finished, tmp_path):
    import transformers

    old = shifted(transformers.__version__, 1)
    teachers = edited_run(finished, tmp_path, transformers=old)
    result = CliRunner().invoke(app, ["label", str(teachers), "-o", str(tmp_path / "labels")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("transformers" in line and old in line for line in warnings), result.stderr
    assert (tmp_path / "labels" / "manifest.json").exists()


def test_major_library_difference_is_an_error(finished, tmp_path):
    import torch

    old = shifted(torch.__version__, 0)
    teachers = edited_run(finished, tmp_path, torch=old)
    result = CliRunner().invoke(app, ["label", str(teachers), "-o", str(tmp_path / "labels")])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "torch" in line and old in line and str(teachers / "manifest.json") in line
    assert not (tmp_path / "labels").exists()


def test_trust_remote_code_is_off_unless_asked(tmp_path, tiny_bert, monkeypatch):
    """Every transformers load passes trust_remote_code=False by default, and True only when configured."""
    import transformers

    seen: list[tuple[str, object]] = []
    for name in ("AutoConfig", "AutoTokenizer", "AutoModelForMaskedLM", "AutoModelForSequenceClassification"):
        cls = getattr(transformers, name)
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs.get("trust_remote_code", False)))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    config = write_project(tmp_path / "project", tiny_bert)
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert {name for name, _ in seen} >= {"AutoTokenizer", "AutoModelForMaskedLM", "AutoModelForSequenceClassification"}
    assert all(flag is False for _, flag in seen), seen
    seen.clear()
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(tmp_path / "trusted"),
                                      "--runtime.trust_remote_code", "true"])
    assert result.exit_code == 0, result.output
    assert seen and all(flag is True for _, flag in seen), seen
