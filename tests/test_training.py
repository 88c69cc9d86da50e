"""The shared optimisation loop: every step's loss is returned in order, and a divergence names its step."""

from __future__ import annotations

import pytest
import torch

from pet.errors import PetError
from pet.core.training import FUSED_ADAMW, LOSS_CHECK_EVERY, OptimSettings, parameter_groups, train


def quadratic(target: float):
    """A one-parameter model with loss (w - target)^2."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)

    def step_loss(step: int) -> torch.Tensor:
        return ((model.weight - target) ** 2).sum()

    return model, step_loss


def settings(steps: int) -> OptimSettings:
    return OptimSettings(steps=steps, learning_rate=0.1, weight_decay=0.0, warmup_steps=0, max_grad_norm=1.0)


def test_returns_every_loss_in_order_across_check_chunks():
    steps = LOSS_CHECK_EVERY * 2 + 3  # two full chunks and a partial one
    model, step_loss = quadratic(10.0)  # AdamW moves w by <= lr per step: never overshoots 10
    losses = train(model, step_loss, settings(steps), torch.device("cpu"), "fp32", "toy")
    assert len(losses) == steps
    assert losses[0] == pytest.approx(100.0)  # (0 - 10)^2 before the first update
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert not model.training  # left in eval mode


def test_the_loop_uses_fused_adamw_on_the_cpu(monkeypatch):
    made = []
    monkeypatch.setattr(torch.optim, "AdamW", lambda *args, **kwargs: made.append(kwargs) or torch.optim.SGD(*args, lr=0.1))
    model, step_loss = quadratic(1.0)
    train(model, step_loss, settings(2), torch.device("cpu"), "fp32", "toy")
    assert "cpu" in FUSED_ADAMW and made == [{"lr": 0.1, "fused": True}]


def test_fused_adamw_on_the_cpu_takes_the_default_paths_steps():
    """What the switch to the fused kernel may change: float rounding, not the update rule (decoupled
    weight decay, bias correction, the no-decay group). Ten steps of a small MLP, both ways."""
    def trained(fused: bool, steps: int = 10) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
        optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-2, fused=fused or None)
        inputs, targets = torch.randn(32, 8), torch.randint(0, 3, (32,))
        for _ in range(steps):
            torch.nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            optimizer.zero_grad()
        return [p.detach().clone() for p in model.parameters()]

    fused, default, start = trained(True), trained(False), trained(True, steps=0)
    assert all((a - b).abs().max() > 0.01 for a, b in zip(fused, start))  # every tensor moved: the comparison means something
    for a, b in zip(fused, default):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad_step", [1, LOSS_CHECK_EVERY, LOSS_CHECK_EVERY + 7])
def test_divergence_reports_the_first_bad_step(bad_step):
    model, good = quadratic(1.0)

    def step_loss(step: int) -> torch.Tensor:
        loss = good(step)
        return loss * float("nan") if step + 1 >= bad_step else loss

    with pytest.raises(PetError) as raised:
        train(model, step_loss, settings(LOSS_CHECK_EVERY * 3), torch.device("cpu"), "fp32", "teacher t")
    assert str(raised.value) == (
        f"teacher t: the loss became nan at step {bad_step}; lower the learning rate, check the data, "
        f"or use runtime.precision fp32"
    )


def test_auto_learning_rate_follows_the_model_size():
    """auto: 1e-5 (the paper's, RoBERTa-large) from 200M parameters, 2e-5 from 60M, 5e-5 below."""
    import torch

    from pet.core.modeling import auto_learning_rate, resolved_learning_rate

    class Sized(torch.nn.Module):
        def __init__(self, count: int):
            super().__init__()
            self.count = count

        def parameters(self, recurse: bool = True):
            yield _Numel(self.count)  # only the count matters, not real storage

    class _Numel:
        def __init__(self, count: int):
            self.count = count

        def numel(self) -> int:
            return self.count

    assert auto_learning_rate(Sized(355_000_000)) == 1e-5
    assert auto_learning_rate(Sized(200_000_000)) == 1e-5
    assert auto_learning_rate(Sized(110_000_000)) == 2e-5
    assert auto_learning_rate(Sized(22_700_000)) == 5e-5
    assert resolved_learning_rate(3e-4, Sized(22_700_000)) == 3e-4
    assert resolved_learning_rate("auto", Sized(60_000_000)) == 2e-5


def test_the_learning_rate_used_is_recorded(tmp_path, tiny_bert):
    import json

    from conftest import write_project
    from typer.testing import CliRunner

    from pet.cli import app

    config = write_project(tmp_path, tiny_bert)
    assert CliRunner().invoke(app, ["run", str(config), "-o", str(tmp_path / "run")]).exit_code == 0
    teacher = json.loads((tmp_path / "run" / "teachers" / "it-was--bad-good--s1" / "teacher.json").read_text())
    student = json.loads((tmp_path / "run" / "student" / "manifest.json").read_text())
    assert teacher["learning_rate"] == 5e-5 and student["learning_rate"] == 5e-5  # a tiny model: the small-model rate
    assert student["config"]["distillation"]["learning_rate"] == "auto"
