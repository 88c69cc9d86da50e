#!/usr/bin/env python
"""The signal `adapt.enabled: auto` decides on: each config's untrained model's MLM loss on its unlabeled text.

    python benchmarks/domain_loss.py examples/sst2-shared.yaml examples/agnews-adapt-shared.yaml \\
        examples/rte-shared.yaml benchmarks/unseen/subj-adapt.yaml benchmarks/unseen/r8-adapt.yaml

For every config and sample seed (--seeds, 0 1 2): ``pet.tools.domain.unlabeled_mlm_loss`` (512 texts,
BERT masking, nats per masked token), the decision at the config's adapt.auto_threshold, and the time.
Prints one JSON line each; a table of means at the end. Nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()

    from pet.io.config import load_config
    from pet.tools.domain import AdaptDecision, unlabeled_mlm_loss

    means = []
    for path in args.configs:
        config = load_config(path)
        losses = []
        for seed in args.seeds:
            started = time.monotonic()
            measured = unlabeled_mlm_loss(config, seed=seed)
            decision = AdaptDecision(measured, config.adapt.auto_threshold)
            losses.append(measured.loss)
            print(json.dumps({"config": str(path), "seed": seed, **decision.record(),
                              "seconds": round(time.monotonic() - started, 1)}), flush=True)
        means.append((path, statistics.mean(losses), min(losses), max(losses)))
    print("| config | MLM loss, mean (min-max over sample seeds) |\n| --- | --- |")
    for path, mean, low, high in means:
        print(f"| {path} | {mean:.2f} ({low:.2f}-{high:.2f}) |")


if __name__ == "__main__":
    main()
