"""The optimisation loop shared by teachers and student: AdamW, linear decay, clipping, NaN guard.

A stage supplies ``step_loss(step)``, which draws its own batch, so the loop knows nothing about
patterns or soft labels. Batches come from a seeded generator rather than the global RNG, which is
what makes a teacher's training independent of what ran before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from pet.errors import PetError
from pet.core.modeling import autocast, autocast_dtype
from pet.core.progress import progress


@dataclass(frozen=True)
class OptimSettings:
    steps: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    max_grad_norm: float


class EpochSampler:
    """Endless batches of indices: a fresh seeded permutation each epoch, no example twice per epoch."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator):
        if size == 0:
            raise ValueError("cannot sample batches from an empty set")
        self.size, self.batch_size, self.generator = size, min(batch_size, size), generator
        self.order: list[int] = []

    def next(self) -> list[int]:
        batch: list[int] = []
        while len(batch) < self.batch_size:
            if not self.order:
                self.order = torch.randperm(self.size, generator=self.generator).tolist()
            batch.append(self.order.pop())
        return batch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights, as in BERT's original recipe."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    model: torch.nn.Module,
    step_loss: Callable[[int], torch.Tensor],
    settings: OptimSettings,
    device: torch.device,
    precision: str,
    label: str,
) -> list[float]:
    """Run ``settings.steps`` optimiser steps; returns the loss of every step."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay), lr=settings.learning_rate,
                                  fused=device.type in FUSED_ADAMW or None)
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device, precision) == torch.float16)
    losses: list[float] = []
    pending: list[torch.Tensor] = []  # losses still on the device, read back every LOSS_CHECK_EVERY steps
    model.train()
    with progress(label, settings.steps) as advance:
        for step in range(settings.steps):
            with autocast(device, precision):
                loss = step_loss(step)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            pending.append(loss.detach().float())
            if len(pending) == LOSS_CHECK_EVERY or step + 1 == settings.steps:
                losses.extend(checked_losses(torch.stack(pending), len(losses), label))
                pending.clear()
            advance(1)
    model.eval()
    return losses


# Devices with a fused AdamW kernel: one pass over all parameters instead of a chain of per-tensor
# ops. On the CPU it is 5x faster for a 22.7M-parameter model (0.04 s against 0.21 s per step, a
# fifth of a student's step at batch 8) and deterministic like the default path (tests/test_determinism.py).
FUSED_ADAMW = ("cuda", "cpu")


# Reading a loss back waits for the accelerator to finish every queued kernel; doing it once per
# step would leave a GPU idle while Python prepares the next batch. A divergence is still caught
# within this many steps, and the run stops before anything is saved.
LOSS_CHECK_EVERY = 25


def checked_losses(values: torch.Tensor, first_step: int, label: str) -> list[float]:
    """The losses of steps ``first_step + 1 ...`` as floats (one device read), or an error at the first non-finite one."""
    losses = values.tolist()
    for offset, value in enumerate(losses):
        if not math.isfinite(value):
            raise PetError(
                f"{label}: the loss became {value} at step {first_step + offset + 1}; lower the "
                f"learning rate, check the data, or use runtime.precision fp32"
            )
    return losses
