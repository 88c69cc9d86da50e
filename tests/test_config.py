"""The run config: overrides, unknown keys with suggestions, path resolution and type errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA

from pet.io.config import apply_overrides, load_config, parse_overrides
from pet.errors import PetError

MINIMAL = ("model: some-org/some-model\n"
           "data:\n  train: data/train.jsonl\n  unlabeled: data/unlabeled.jsonl\n"
           "patterns:\n  file: p.yaml\n"
           "verbalizers:\n  file: ../shared-files/v.yaml\n")


@pytest.fixture
def config_path(tmp_path) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- parsing overrides ----------------------------------------------------------------------------

def test_parse_overrides_space_and_equals_forms():
    got = parse_overrides(["--teachers.steps", "50", "--teachers.seeds", "[1,2]", "--model=x",
                           "--labelling.temperature", "1.5", "--runtime.device=cpu", "--labelling.ensemble", "mean"])
    assert got == {"teachers.steps": 50, "teachers.seeds": [1, 2], "model": "x", "labelling.temperature": 1.5,
                   "runtime.device": "cpu", "labelling.ensemble": "mean"}
    assert isinstance(got["teachers.steps"], int)


def test_parse_overrides_values_are_yaml_never_code():
    got = parse_overrides(["--model", "__import__('os').system('x')", "--data.test=null", "--runtime.trust_remote_code", "true"])
    assert got == {"model": "__import__('os').system('x')", "data.test": None, "runtime.trust_remote_code": True}


@pytest.mark.parametrize("args, problem", [
    (["teachers.steps", "5"], "unexpected argument 'teachers.steps'"),
    (["--teachers.steps"], "override --teachers.steps needs a value"),
    (["--teachers.steps", "--model", "x"], "override --teachers.steps needs a value"),
    (["--", "x"], "unexpected argument '--'"),
])
def test_parse_overrides_errors(args, problem):
    with pytest.raises(PetError) as err:
        parse_overrides(args)
    assert problem in one_line(err)


# --- applying overrides ---------------------------------------------------------------------------

def test_overrides_are_applied(config_path):
    config = load_config(config_path, parse_overrides(["--teachers.steps", "50", "--teachers.seeds", "[1,2]",
                                                       "--model=x", "--distillation.gold_weight", "0.5"]))
    assert config.teachers.steps == 50
    assert config.teachers.seeds == [1, 2]
    assert config.model == "x"
    assert config.distillation.gold_weight == 0.5
    # untouched values keep their defaults
    assert config.labelling.temperature == 2.0 and config.labelling.ensemble == "wmean"


def test_apply_overrides_does_not_mutate_and_creates_sections():
    raw = {"model": "m", "teachers": {"steps": 5}}
    out = apply_overrides(raw, {"teachers.steps": 7, "labelling.temperature": 3.0})
    assert raw == {"model": "m", "teachers": {"steps": 5}}
    assert out == {"model": "m", "teachers": {"steps": 7}, "labelling": {"temperature": 3.0}}


@pytest.mark.parametrize("key, message", [
    ("teachers.step", "--teachers.step: unknown setting; did you mean --teachers.steps?"),
    ("teacher.steps", "--teacher.steps: unknown setting; did you mean --teachers?"),
    ("labelling.temprature", "--labelling.temprature: unknown setting; did you mean --labelling.temperature?"),
    ("modle", "--modle: unknown setting; did you mean --model?"),
    ("zzz", "--zzz: unknown setting"),
])
def test_unknown_override_key_with_suggestion(config_path, key, message):
    with pytest.raises(PetError) as err:
        load_config(config_path, {key: 1})
    assert one_line(err) == message


def test_override_into_a_scalar_is_rejected(config_path):
    with pytest.raises(PetError) as err:
        load_config(config_path, {"model.name": "x"})
    assert one_line(err).startswith("--model.name: unknown setting")


# --- the config file ------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_config_folder(config_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_config(config_path)
    folder = config_path.parent.resolve()
    assert config.data.train == folder / "data" / "train.jsonl"
    assert config.data.unlabeled == folder / "data" / "unlabeled.jsonl"
    assert config.data.test is None
    assert config.patterns.file == folder / "p.yaml"
    assert config.verbalizers.file == (folder / ".." / "shared-files" / "v.yaml").resolve()
    assert config.model == "some-org/some-model"  # a Hub id stays as it is


def test_relative_model_folder_becomes_absolute(config_path, tmp_path, monkeypatch):
    (config_path.parent / "models" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = load_config(config_path, {"model": "models/mine", "distillation.model": "models/mine"})
    assert config.model == str(config_path.parent.resolve() / "models" / "mine")
    assert config.distillation.model == config.model


def test_command_line_paths_are_relative_to_the_current_folder(config_path, tmp_path, monkeypatch):
    (tmp_path / "here" / "my-model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here")
    config = load_config(config_path, {"data.train": "mine.jsonl", "patterns.file": "../p2.yaml", "model": "my-model",
                                       "distillation.model": "org/student-id"})
    assert config.data.train == tmp_path / "here" / "mine.jsonl"
    assert config.patterns.file == tmp_path / "p2.yaml"
    assert config.model == str(tmp_path / "here" / "my-model")
    assert config.distillation.model == "org/student-id"  # no such folder here or beside the config: a Hub id
    assert config.data.unlabeled == config_path.parent.resolve() / "data" / "unlabeled.jsonl"  # from the file


def test_absolute_paths_are_kept(config_path, tmp_path):
    absolute = tmp_path / "elsewhere" / "t.jsonl"
    config = load_config(config_path, {"data.test": str(absolute)})
    assert config.data.test == absolute


def test_defaults(config_path):
    config = load_config(config_path)
    assert config.teachers.seeds == [1, 2, 3]
    assert config.labelling.temperature == 2.0
    assert config.distillation.gold_weight == 0.0
    assert config.distillation.model is None
    assert config.data.fields == {"text": "text"}
    assert config.runtime.device == "auto"


def test_unknown_key_in_the_file_with_suggestion(config_path):
    config_path.write_text(MINIMAL + "teachers:\n  stepz: 5\n", encoding="utf-8")
    with pytest.raises(PetError) as err:
        load_config(config_path)
    assert one_line(err) == f"{config_path}:10: unknown key 'teachers.stepz'; did you mean 'steps'?"


def test_unknown_top_level_key_with_suggestion(config_path):
    config_path.write_text(MINIMAL + "labeling:\n  temperature: 2\n", encoding="utf-8")
    with pytest.raises(PetError) as err:
        load_config(config_path)
    assert one_line(err) == f"{config_path}:9: unknown key 'labeling'; did you mean 'labelling'?"


def test_missing_required_key(config_path):
    config_path.write_text(MINIMAL.replace("model: some-org/some-model\n", ""), encoding="utf-8")
    with pytest.raises(PetError) as err:
        load_config(config_path)
    assert one_line(err) == f"{config_path}: missing required key 'model'"


@pytest.mark.parametrize("override, expected", [
    ({"teachers.steps": "many"}, "'teachers.steps': input should be a valid integer"),
    ({"teachers.steps": 0}, "'teachers.steps': input should be greater than 0 (got 0)"),
    ({"teachers.seeds": "one"}, "'teachers.seeds': input should be a valid list"),
    ({"labelling.temperature": -1}, "'labelling.temperature': input should be greater than 0"),
    ({"labelling.ensemble": "median"}, "'labelling.ensemble': input should be 'mean', 'wmean' or 'cv' (got 'median')"),
    ({"runtime.precision": "fp8"}, "'runtime.precision': input should be"),
    ({"teachers": 5}, "'teachers': input should be a valid dictionary"),
])
def test_wrong_types_are_rejected_clearly(config_path, override, expected):
    with pytest.raises(PetError) as err:
        load_config(config_path, override)
    message = one_line(err)
    assert message.startswith(f"{config_path}")
    assert expected in message


def test_wrong_type_in_file_names_the_line(config_path):
    config_path.write_text(MINIMAL + "distillation:\n  batch_size: big\n", encoding="utf-8")
    with pytest.raises(PetError) as err:
        load_config(config_path)
    assert one_line(err) == (f"{config_path}:10: 'distillation.batch_size': input should be a valid integer, "
                             f"unable to parse string as an integer (got 'big')")


@pytest.mark.parametrize("text, problem", [
    ("", "run config file is empty"),
    ("- a\n- b\n", "expected a mapping of keys to values at the top level, got list"),
    ("model: [unclosed\n", "not valid YAML"),
])
def test_malformed_config_file(config_path, text, problem):
    config_path.write_text(text, encoding="utf-8")
    with pytest.raises(PetError) as err:
        load_config(config_path)
    message = one_line(err)
    assert message.startswith(str(config_path)) and problem in message


def test_missing_config_file(tmp_path):
    with pytest.raises(PetError) as err:
        load_config(tmp_path / "nope.yaml")
    assert one_line(err) == f"{tmp_path / 'nope.yaml'}: run config file not found"


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="needs ../shared")
@pytest.mark.parametrize("name", ["sst2-shared.yaml", "rte-shared.yaml", "agnews-adapt-shared.yaml"])
def test_the_shared_examples_load_and_point_at_files_that_exist(name):
    """The examples for checkouts with ../shared beside them: every path they name resolves to a real file."""
    config = load_config(REPO / "examples" / name)
    assert Path(config.model).is_dir()
    for path in (config.data.train, config.data.unlabeled, config.data.test, config.patterns.file, config.verbalizers.file):
        assert path is None or Path(path).is_file(), path
