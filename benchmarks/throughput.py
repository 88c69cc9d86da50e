#!/usr/bin/env python
"""Teacher-training throughput: how many worker processes should share one device?

Before spending GPU time on the few-shot grid (benchmarks/fewshot.py --jobs J), measure how many
teacher steps per second the device delivers with 1, 2, 4, ... processes training at once:

    python benchmarks/throughput.py --procs 1 2 4 8 --steps 100 --shared SHARED

Each process trains one PET teacher exactly as the full profile does (sst2, n = 32, the profile's
batch size, learning rate and auxiliary MLM weight) through pet.stages.teachers.teacher.train_teacher. The
processes load their model first, then start together at a barrier, so the clock covers training
(plus the labelled-set scoring and checkpoint writing every teacher does) and not Python imports.
One JSON line per process count goes to stdout; a summary line per count goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/fewshot.py
import fewshot  # noqa: E402  (also puts this checkout's pet on the path when none is installed)


def job_args(args: argparse.Namespace, work: Path) -> argparse.Namespace:
    shared = Path(args.shared)
    return argparse.Namespace(data=str(shared / "data"), model=str(shared / "models" / "minilm-l6-mlm"),
                              out=str(work), work=str(work), device=args.device, profile="full",
                              resume_runs=False, keep_runs=False)


def worker(args: argparse.Namespace, work: Path, index: int, barrier, results) -> None:
    import torch

    from pet.core.modeling import load_masked_lm
    from pet.stages.teachers.task import prepare_task
    from pet.stages.teachers.context import TeacherJob
    from pet.stages.teachers.teacher import train_teacher

    torch.set_num_threads(args.threads)
    profile = fewshot.PROFILES["full"]
    job = fewshot.Job(job_args(args, work), profile, args.task)
    config = job.run_config(job.fewshot(args.n, 1), job.unlabeled())
    task = prepare_task(config)
    specs = task.specs()
    spec = specs[index % len(specs)]  # different teachers, as in a real run
    load_masked_lm(config.model, job.device)  # warm the file cache and CUDA context before the clock starts
    if job.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(job.device)
    barrier.wait()
    started = time.perf_counter()
    ctx = task.context(job.device, "throughput")
    train_teacher(TeacherJob(spec, spec.name, ctx.labelled, args.steps), ctx, work / f"teacher-{index}")
    finished = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(job.device) / 2**20 if job.device.type == "cuda" else None
    results.put({"started": started, "finished": finished, "peak_mib": peak, "device": fewshot.device_name(job.device)})


def measure(args: argparse.Namespace, procs: int) -> dict:
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(procs), context.Queue()
    with tempfile.TemporaryDirectory(prefix="pet-throughput-") as tmp:
        workers = [context.Process(target=worker, args=(args, Path(tmp), i, barrier, results)) for i in range(procs)]
        for process in workers:
            process.start()
        rows = [results.get(timeout=args.timeout) for _ in range(procs)]
        for process in workers:
            process.join()
        if any(process.exitcode != 0 for process in workers):
            raise SystemExit(f"a worker failed with {procs} processes; see the traceback above")
    # perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes of one machine
    wall = max(r["finished"] for r in rows) - min(r["started"] for r in rows)
    peaks = [r["peak_mib"] for r in rows if r["peak_mib"] is not None]
    return {
        "procs": procs, "threads_per_proc": args.threads, "steps_per_teacher": args.steps,
        "wall_s": round(wall, 3), "steps_per_s": round(procs * args.steps / wall, 3),
        "peak_gpu_mib_per_proc": round(max(peaks)) if peaks else None,
        "device": rows[0]["device"], "task": args.task, "n": args.n,
        "mlm_weight": fewshot.PROFILES["full"]["teachers"]["mlm_weight"],
        "batch_size": fewshot.PROFILES["full"]["teachers"]["batch_size"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2, 4, 8], help="process counts to try")
    parser.add_argument("--steps", type=int, default=100, help="training steps per teacher")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--task", default="sst2", choices=sorted(fewshot.TASKS))
    parser.add_argument("--n", type=int, default=32, help="few-shot file n<N>-s1.jsonl")
    parser.add_argument("--shared", default=str(fewshot.REPO.parent / "shared"), help="folder holding data/ and models/")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for one process count")
    args = parser.parse_args(argv)
    for procs in args.procs:
        row = measure(args, procs)
        print(json.dumps(row), flush=True)
        fewshot.log(f"{procs} procs: {row['steps_per_s']:.1f} teacher steps/s in total "
                    f"({row['wall_s']:.1f}s for {procs} x {args.steps} steps on {row['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
