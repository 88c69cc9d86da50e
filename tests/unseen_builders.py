"""What the tests of the unseen-task builders (benchmarks/unseen/) share: running a builder as a user
runs it, and the fewshot.py job that reads the built task."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def run_builder(task: str, source: Path, out: Path) -> subprocess.CompletedProcess:
    """python benchmarks/unseen/<task>.py --source SOURCE --out OUT, from the repository root."""
    return subprocess.run([sys.executable, f"benchmarks/unseen/{task}.py", "--source", str(source), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def fewshot_job(tmp_path: Path, task: str):
    """The cpu_unseen profile's fewshot.Job for ``task`` (nothing run)."""
    import fewshot

    args = argparse.Namespace(data=str(tmp_path), out=str(tmp_path), device="cpu", model="unused", work=str(tmp_path))
    return fewshot.Job(args, fewshot.PROFILES["cpu_unseen"], task)
