"""Peak memory and throughput of stage B (`pet label`) on a large generated unlabeled file.

Stage B must stream: its memory may grow with the number of texts only by a few numbers per text
(the teachers' [N, C] logits and an 8-byte id hash), never by the texts or their token ids. This
script checks that on the tiny test model:

1. builds the tiny BERT of tests/conftest.py and a sentiment project around it;
2. for each size N, writes an unlabeled JSONL file of N short lines and trains teachers (stage A,
   few steps, auxiliary MLM loss off, so stage A stays cheap);
3. runs stage B in a fresh child process, which reports its peak RSS (getrusage's ru_maxrss), its
   RSS after importing the libraries stage B uses, and the time taken;
4. for comparison, runs a child that does what streaming avoids: reads every text into memory and
   encodes it with the pattern at once.

Usage (2 CPU cores, a few minutes):
    python benchmarks/label_memory.py --sizes 20000,100000,300000 --work /tmp/label-memory

It prints one line per run and a JSON summary; docs/reliability.md quotes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PET_NO_PROGRESS": "1",
                   "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)

ADJECTIVES = ["great", "good", "excellent", "wonderful", "awesome", "fine", "terrible", "bad", "awful", "boring", "poor", "dull"]
NOUNS = ["movie", "film", "book", "food", "hotel", "story", "plot", "acting", "service", "room", "place", "music", "ending"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_unlabeled(path: Path, count: int) -> None:
    """``count`` short review-like lines with unique ids."""
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            a, n, b = ADJECTIVES[i % 12], NOUNS[(i // 12) % 13], ADJECTIVES[(i // 156) % 12]
            handle.write(json.dumps({"id": f"u-{i}", "text": f"the {n} was {a} and the {NOUNS[i % 13]} {b}"}) + "\n")


THREADS = {"value": "1"}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = THREADS["value"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], env=child_env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_libraries() -> None:
    """The libraries stage B uses (about 420 MiB of RSS together), so that the baseline includes them."""
    import datasets  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import safetensors.torch  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import pet.stages.labelling.stage  # noqa: F401
    import pet.stages.teachers.task  # noqa: F401
    import pet.stages.teachers.stage  # noqa: F401


def child_label(teachers: str, output: str) -> None:
    """Stage B in this process; prints peak RSS before and after, and the time taken."""
    import_libraries()
    from pet.stages.labelling.stage import label

    baseline = current_rss_mb()
    started = time.perf_counter()
    manifest = label(Path(teachers), Path(output))
    seconds = time.perf_counter() - started
    print(json.dumps({"mode": "stream", "examples": manifest["statistics"]["examples"], "seconds": seconds,
                      "baseline_mb": baseline, "peak_mb": peak_rss_mb()}))


def child_naive(teachers: str) -> None:
    """What streaming avoids: every text and its token ids in memory at once (no scoring)."""
    import_libraries()

    from pet.io.artifacts import read_manifest
    from pet.io.config import config_from_json
    from pet.core.encoding import PatternEncoder
    from pet.core.modeling import load_tokenizer
    from pet.io.patterns import pattern_from_json
    from pet.io.data import open_table

    manifest = read_manifest(Path(teachers), "teachers")
    config = config_from_json(manifest["config"])
    tokenizer = load_tokenizer(config.model)
    baseline = current_rss_mb()
    started = time.perf_counter()
    examples = open_table(config, config.data.unlabeled, "unlabeled", None, labelled=False).read_all()
    encoded = PatternEncoder(pattern_from_json(manifest["patterns"][0]), tokenizer, config.labelling.max_length).encode(examples)
    print(json.dumps({"mode": "all-in-memory", "examples": len(encoded), "seconds": time.perf_counter() - started,
                      "baseline_mb": baseline, "peak_mb": peak_rss_mb()}))


def prepare(work: Path, size: int) -> Path:
    """A project with ``size`` unlabeled lines and its trained teachers; returns the teachers folder."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_bert, write_project

    model = work / "tiny-bert"
    if not (model / "config.json").exists():
        build_bert(model)
    project = work / f"project-{size}"
    if project.exists():
        shutil.rmtree(project)
    config = write_project(project, model, extra="")
    text = config.read_text().replace("teachers:\n", "teachers:\n  mlm_weight: 0\n")
    text = text.replace("labelling:\n  batch_size: 8", "labelling:\n  batch_size: 64")
    config.write_text(text)
    write_unlabeled(project / "unlabeled.jsonl", size)
    from typer.testing import CliRunner

    from pet.cli import app

    teachers = project / "run" / "teachers"
    result = CliRunner().invoke(app, ["train-teachers", str(config), "-o", str(teachers), "--patterns.ids", "[it-was]"])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return teachers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000,300000", help="comma-separated numbers of unlabeled lines")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pet-label-memory"), help="scratch folder (recreated)")
    parser.add_argument("--no-naive", action="store_true", help="skip the all-in-memory comparison")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS of the measured processes (1: stable on a busy machine)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (child_label if args.child[0] == "label" else child_naive)(*args.child[1:])
        return
    THREADS["value"] = args.threads
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    # The datasets Arrow cache goes to the scratch folder too, not to ~/.cache.
    os.environ["HF_DATASETS_CACHE"] = str(args.work / "datasets-cache")
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        teachers = prepare(args.work, size)
        file_mb = (teachers.parent.parent / "unlabeled.jsonl").stat().st_size / 2**20
        stream = run_child("--child", "label", str(teachers), str(teachers.parent / "labels"))
        stream.update(file_mb=file_mb, growth_mb=stream["peak_mb"] - stream["baseline_mb"],
                      texts_per_second=stream["examples"] / stream["seconds"])
        results.append(stream)
        print(f"stream   N={size:>7}  file {file_mb:6.1f} MiB  peak RSS {stream['peak_mb']:7.1f} MiB "
              f"({stream['baseline_mb']:.1f} after imports)  "
              f"{stream['seconds']:6.1f} s  {stream['texts_per_second']:8.0f} texts/s", flush=True)
        if not args.no_naive:
            naive = run_child("--child", "naive", str(teachers))
            naive.update(file_mb=file_mb, growth_mb=naive["peak_mb"] - naive["baseline_mb"])
            results.append(naive)
            print(f"in-mem   N={size:>7}  read + encode every text at once, no scoring: peak RSS "
                  f"{naive['peak_mb']:7.1f} MiB ({naive['baseline_mb']:.1f} after loading the tokenizer)", flush=True)
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
