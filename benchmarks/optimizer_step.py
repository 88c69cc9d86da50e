#!/usr/bin/env python
"""Seconds per AdamW step over a whole masked LM: torch's default (foreach) path against the fused kernel.

pet's training loop (pet/core/training.py) runs AdamW fused on the devices in FUSED_ADAMW. This
measures what that buys on one device, with random gradients on every parameter, so only the
optimiser's own work is timed (no forward or backward pass):

    python benchmarks/optimizer_step.py --threads 1 2            # ../shared/models/minilm-l6-mlm on the CPU

One JSON line per (threads, path) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
PATHS = {"default": {}, "fused": {"fused": True}}


def seconds_per_step(parameters: list, options: dict, steps: int) -> float:
    import torch

    optimizer = torch.optim.AdamW(parameters, lr=1e-5, weight_decay=0.01, **options)
    optimizer.step()  # allocates the two moments outside the clock
    synchronize = torch.cuda.synchronize if parameters[0].is_cuda else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    synchronize()  # a GPU's kernels are queued, not done, when step() returns
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO.parent / "shared" / "models" / "minilm-l6-mlm"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import torch

    from pet.core.modeling import load_masked_lm

    device = torch.device(args.device)
    model = load_masked_lm(args.model, device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(device=device).manual_seed(0)
    for parameter in parameters:
        parameter.grad = torch.randn(parameter.shape, generator=generator, device=device, dtype=parameter.dtype)
    count = sum(p.numel() for p in parameters)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, options in PATHS.items():
            seconds = seconds_per_step(parameters, options, args.steps)
            print(json.dumps({"model": args.model, "parameters": count, "device": args.device, "threads": threads,
                              "adamw": name, "seconds_per_step": round(seconds, 4), "steps": args.steps}), flush=True)


if __name__ == "__main__":
    main()
