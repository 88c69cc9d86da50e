from conftest import write_project
from typer.testing import CliRunner

from pet.cli import app


def test_pipeline_runs_on_tiny_bert(project):
    run = project.parent / "run"
    result = CliRunner().invoke(app, ["run", str(project), "-o", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "student" / "manifest.json").exists()


def test_pipeline_runs_on_tiny_roberta(tmp_path, tiny_roberta):
    config = write_project(tmp_path, tiny_roberta)
    result = CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
