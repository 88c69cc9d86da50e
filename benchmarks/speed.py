#!/usr/bin/env python
"""Speed benchmark: wall time, throughput, peak memory and MFU of PET's three stages, one command.

    python benchmarks/speed.py --workload a                  # roberta-large shape, the paper's workload (GPU)
    python benchmarks/speed.py --workload b                  # minilm-l6-mlm, one cell of fewshot.py's full profile (GPU)
    python benchmarks/speed.py --workload c --budget small   # the same on the CPU, cut down

Each stage is one call of pet's public API (pet.train_teachers, pet.label, pet.distill), timed by
the wall clock around the call: that includes what the call does besides computing (loading the
base model or each teacher from disk, scoring the labelled set before and after training, saving
every checkpoint, the soft labels and the manifests), not building the benchmark's data or model.
One JSON line per measurement goes to stdout (the device's peak matmul rate, then one line per
stage), and a table replaces this workload's block in BENCHMARKS.md (--benchmarks-md).

Workloads:
  a  RobertaForMaskedLM with roberta-large's shape (24 layers, hidden 1024, 16 heads, intermediate
     4096) and random weights, with minilm-l6-mlm's WordPiece tokenizer (the only offline one here;
     vocab_size = len(tokenizer)); agnews texts repeated to 40,000; 3 patterns x 1 verbalizer x 3
     seeds = 9 teachers x 250 steps of 4 labelled + 12 auxiliary-MLM rows (mlm_weight 1e-4), each
     teacher labelling the 40,000 texts; a 5,000-step student with batch 4 (the PET paper's setup)
  b  minilm-l6-mlm, benchmarks/fewshot.py's full profile for one cell (agnews, n = 32, seed 1):
     6 patterns x 2 verbalizers = 12 teachers x 250 steps, the 5,600 unlabeled texts, 1,000 student
     steps of batch 16
  c  workload b on the CPU
--budget small / tiny cut every count (teachers, steps, texts) so that a CPU run takes minutes /
seconds; --steps, --texts, --student-steps, --patterns, --verbalizers and --seeds set one count.

Model FLOPs (Kaplan et al. 2020 / Chinchilla-style accounting of matmuls only; embeddings, layer
norms, softmax and biases left out; padding never counted, so MFU is useful work):
  encoder forward of one sequence of L real tokens:
      2 * layers * (4 h^2 + 2 h i) * L        (Q, K, V, O and the two MLP matrices)
    + 4 * layers * h * L^2                    (QK^T and attention x V; bidirectional, all L keys)
  MLM head, at each position where pet applies it: 2 * (h^2 + h * V)   (dense transform + decoder)
    pet's scorer projects to the vocabulary only at mask positions (one per labelled / scored row)
    and at the auxiliary loss' targets (15% of the eligible tokens of each MLM row, in expectation)
  classifier head of the student: 2 * (h^2 + h * classes) per sequence
  training = 3 x forward (the backward pass costs twice the forward), inference = 1 x forward.
Stage A also counts the two inference passes over the labelled set (accuracy before and after
training). Token counts come from encoding the same data with the same tokenizer and patterns;
stage A's and C's are expectations over their uniform batch sampling (exact for whole epochs).
MFU = model FLOPs / wall time / the peak matmul rate this script measures on the same device with
a large square GEMM: bf16 on CUDA (the stages run under bf16 autocast), fp32 on the CPU (the stages
run in fp32 there; bf16 matmuls are far slower than fp32 on most CPUs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/fewshot.py
import fewshot  # noqa: E402  (also sets the offline environment and puts this checkout's pet on the path)

REPO = fewshot.REPO
TASK = "agnews"
TRAIN_FILE = "fewshot/n32-s1.jsonl"  # the cell of workload b; a and c use the same labelled set
MINILM = "models/minilm-l6-mlm"  # under --shared: workload b's and c's model, workload a's tokenizer

# roberta-large's shape (Liu et al. 2019); the vocabulary comes from the tokenizer
ROBERTA_LARGE = {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096}


def workloads(shared: Path = REPO.parent / "shared") -> dict[str, dict[str, Any]]:
    """Every count and hyperparameter of each workload, at full size."""
    full = fewshot.FULL
    minilm = {
        "model": str(shared / MINILM), "patterns": None, "verbalizers": None,  # None: every one in the task's files
        "seeds": list(full["teachers"]["seeds"]),
        "teachers": {**full["teachers"], "unlabeled_ratio": 3},
        "texts": None,  # None: the whole unlabeled.jsonl (5,600 agnews texts)
        "labelling": dict(full["labelling"]),
        "distillation": dict(full["distillation"]),
        "max_length": fewshot.TASKS[TASK]["max_length"], "eval_batch_size": full["eval_batch_size"],
    }
    paper = {
        **minilm, "model": None,  # None: build the random roberta-large-shaped model
        "patterns": ["colon", "dash", "parens-after"], "verbalizers": ["paper"], "seeds": [1, 2, 3],
        "teachers": {"steps": 250, "batch_size": 4, "learning_rate": 1e-5, "weight_decay": 0.01,
                     "mlm_weight": 1e-4, "unlabeled_ratio": 3},
        "texts": 40_000,
        # inference batch size does not change the results; 256 keeps a large model's GEMMs wide
        "labelling": {"ensemble": "wmean", "temperature": 2.0, "batch_size": 256},
        "distillation": {"steps": 5000, "batch_size": 4, "learning_rate": 1e-5, "weight_decay": 0.01},
        "eval_batch_size": 256,
    }
    return {"a": {**paper, "device": "auto"}, "b": {**minilm, "device": "auto"}, "c": {**minilm, "device": "cpu"}}


# caps applied to the full counts; "full" keeps them
BUDGETS: dict[str, dict[str, int]] = {
    "full": {},
    "small": {"patterns": 2, "verbalizers": 1, "seeds": 1, "steps": 50, "texts": 2000, "student_steps": 200},
    "tiny": {"patterns": 1, "verbalizers": 1, "seeds": 1, "steps": 2, "texts": 16, "student_steps": 2},
}
COUNTS = ("patterns", "verbalizers", "seeds", "steps", "texts", "student_steps")


# ---------------------------------------------------------------------------------------------
# Model FLOPs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, config) -> "Shape":
        """From a transformers config (BERT/RoBERTa names, DistilBERT's as a fallback)."""
        get = lambda *names: next(int(getattr(config, n)) for n in names if getattr(config, n, None) is not None)  # noqa: E731
        return cls(get("num_hidden_layers", "n_layers"), get("hidden_size", "dim"),
                   get("intermediate_size", "hidden_dim"), get("vocab_size"))

    @property
    def layer_params(self) -> int:
        return 4 * self.hidden ** 2 + 2 * self.hidden * self.intermediate

    def encoder(self, lengths):
        """Forward FLOPs of the encoder on sequences of ``lengths`` real tokens (scalar or numpy array)."""
        return 2.0 * self.layers * self.layer_params * lengths + 4.0 * self.layers * self.hidden * lengths ** 2

    @property
    def mlm_head(self) -> float:
        return 2.0 * (self.hidden ** 2 + self.hidden * self.vocab)

    def classifier_head(self, classes: int) -> float:
        return 2.0 * (self.hidden ** 2 + self.hidden * classes)


TRAIN_FACTOR = 3  # forward + backward (twice the forward)


@dataclass(frozen=True)
class Lengths:
    """Token counts of a set of rows, each with a weight (how often it occurs in the data)."""

    lengths: Any  # numpy float64 [R]
    eligible: Any  # numpy float64 [R]: tokens the auxiliary MLM loss may target
    weights: Any  # numpy float64 [R]

    @classmethod
    def of(cls, sequences: list[list[int]], weights: list[int], excluded: set[int]) -> "Lengths":
        import numpy as np

        lengths = np.array([len(s) for s in sequences], dtype=np.float64)
        eligible = np.array([sum(1 for t in s if t not in excluded) for s in sequences], dtype=np.float64)
        return cls(lengths, eligible, np.array(weights, dtype=np.float64))

    @property
    def rows(self) -> float:
        return float(self.weights.sum())

    def total(self, values) -> float:
        return float((self.weights * values).sum())

    def mean(self, values) -> float:
        return self.total(values) / self.rows


# ---------------------------------------------------------------------------------------------
# Device: peak matmul rate, peak memory, description
# ---------------------------------------------------------------------------------------------
def peak_matmul(device, size: int, reps: int) -> dict[str, Any]:
    """The best rate of a size^3 GEMM on ``device``: bf16 on CUDA, fp32 on the CPU."""
    import torch

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.mm(a, b, out=out)  # warm cuBLAS and the clocks before each timed group
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                torch.mm(a, b, out=out)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000 / 10)
        else:
            started = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - started)
    return {"peak_flops_per_s": 2.0 * size ** 3 / best, "dtype": str(dtype).replace("torch.", ""), "size": size,
            "reps": reps, "seconds_per_gemm": best}


class PeakMemory:
    """Peak memory of one stage: CUDA's allocator peak, or the process' peak RSS on the CPU.

    On Linux, writing 5 to /proc/self/clear_refs resets the RSS high-water mark (VmHWM), so each
    stage gets its own peak; elsewhere ru_maxrss is the peak of the whole process so far.
    """

    def __init__(self, device):
        self.device = device
        self.resettable = False

    def reset(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False

    def read(self) -> tuple[float, str]:
        import torch

        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20, "torch.cuda.max_memory_allocated"
        if self.resettable:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "peak RSS of the stage (VmHWM, reset before it)"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process so far (ru_maxrss)"


def hardware(device) -> str:
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB), CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return f"CPU {model}, {os.cpu_count()} cores, {plural(torch.get_num_threads(), 'torch thread')}"


def versions() -> dict[str, str]:
    import torch
    import transformers

    import pet

    try:  # read-only: which commit of pet ran
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "pet": f"{pet.__version__} ({commit})"}


# ---------------------------------------------------------------------------------------------
# Inputs: the workload after the budget, its data and its model
# ---------------------------------------------------------------------------------------------
def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The workload's settings, cut down by the budget's caps, then with the counts the command line sets."""
    spec = workloads(Path(args.shared))[args.workload]
    texts = spec["texts"] or sum(1 for _ in open(args.unlabeled, encoding="utf-8"))
    full = {"patterns": [p.id for p in fewshot_patterns()] if spec["patterns"] is None else spec["patterns"],
            "verbalizers": [v.id for v in fewshot_verbalizers()] if spec["verbalizers"] is None else spec["verbalizers"],
            "seeds": spec["seeds"], "steps": spec["teachers"]["steps"], "texts": texts,
            "student_steps": spec["distillation"]["steps"]}
    counts = {}
    for key, value in full.items():
        cap = BUDGETS[args.budget].get(key)
        given = getattr(args, key)
        if isinstance(value, list):  # the first k patterns / verbalizers / seeds
            counts[key] = value[: given or cap or len(value)]
        else:
            counts[key] = given or min(value, cap or value)
    out = {**spec, **{k: counts[k] for k in ("patterns", "verbalizers", "seeds", "texts")}}
    out["teachers"] = {**spec["teachers"], "steps": counts["steps"]}
    out["distillation"] = {**spec["distillation"], "steps": counts["student_steps"]}
    out["model"] = args.model or spec["model"]
    out["device"] = args.device or spec["device"]
    return out


def fewshot_patterns(ids: list[str] | None = None):
    import pet

    return pet.load_patterns(REPO / "patterns" / f"{fewshot.TASKS[TASK]['files']}.yaml", ids)


def fewshot_verbalizers(ids: list[str] | None = None):
    import pet

    return pet.load_verbalizers(REPO / "verbalizers" / f"{fewshot.TASKS[TASK]['files']}.yaml", ids)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def unlabeled_file(source: Path, count: int, folder: Path) -> Path:
    """The first ``count`` texts of ``source``, cycling through it again (new ids) when it has fewer."""
    rows = read_jsonl(source)
    out = []
    for i in range(count):
        row = dict(rows[i % len(rows)])
        if i >= len(rows):
            row["id"] = f"{row['id']}-r{i // len(rows)}"
        out.append(row)
    path = folder / f"unlabeled-{count}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    return path


def build_random_mlm(folder: Path, tokenizer_source: Path, shape: dict[str, int] | None = None) -> Path:
    """A RobertaForMaskedLM of ``shape`` (default roberta-large's) with random weights and the tokenizer
    of ``tokenizer_source``, saved to ``folder``; vocabulary and special ids follow the tokenizer."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    if (folder / "config.json").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    limit = min(int(tokenizer.model_max_length), 512)
    # RoBERTa counts positions from pad_token_id + 1, so it needs pad + 1 + max_length of them
    config = RobertaConfig(**(shape or ROBERTA_LARGE), vocab_size=len(tokenizer), type_vocab_size=1,
                           max_position_embeddings=limit + tokenizer.pad_token_id + 1, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    tmp = folder.with_name(folder.name + ".tmp")
    RobertaForMaskedLM(config).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# Counting tokens and FLOPs from the artifacts and the data
# ---------------------------------------------------------------------------------------------
class Counter:
    """Token lengths of the benchmark's data under each pattern, encoded as pet encodes it."""

    def __init__(self, model: str, train: Path, unlabeled: Path):
        from transformers import AutoConfig

        from pet.core.modeling import load_tokenizer

        self.tokenizer = load_tokenizer(model)
        self.shape = Shape.of(AutoConfig.from_pretrained(model))
        self.train = read_jsonl(train)
        texts = [row["text"] for row in read_jsonl(unlabeled)]
        unique: dict[str, int] = {}
        for text in texts:  # workload a repeats the texts: encode each distinct one once
            unique[text] = unique.get(text, 0) + 1
        self.texts, self.counts = list(unique), list(unique.values())
        special = {int(i) for i in self.tokenizer.all_special_ids if i is not None}
        self.excluded = special | {int(self.tokenizer.mask_token_id)}
        self.cache: dict[tuple, Lengths] = {}

    def pattern(self, pattern, max_length: int, num_masks: int, labelled: bool) -> Lengths:
        from pet.core.encoding import PatternEncoder
        from pet.io.data import Examples

        key = (pattern.id, max_length, num_masks, labelled)
        if key not in self.cache:
            texts = [row["text"] for row in self.train] if labelled else self.texts
            weights = [1] * len(texts) if labelled else self.counts
            examples = Examples([f"row-{i}" for i in range(len(texts))], {"text": texts})
            sequences = PatternEncoder(pattern, self.tokenizer, max_length, num_masks).encode(examples)
            self.cache[key] = Lengths.of(sequences, weights, self.excluded)
        return self.cache[key]

    def plain(self, max_length: int) -> Lengths:
        """The student's view: the texts alone, tokenized as pet's student tokenizes them."""
        from pet.core.classifier import tokenize_pairs

        return Lengths.of(tokenize_pairs(self.tokenizer, self.texts, None, max_length), self.counts, self.excluded)


def num_masks(teachers, entry: dict[str, Any]) -> int:
    record = json.loads((Path(teachers.path) / entry["path"] / "teacher.json").read_text(encoding="utf-8"))
    return int(record.get("num_masks", 1))


def teachers_work(counter: Counter, teachers, settings: dict[str, Any]) -> dict[str, float]:
    """Stage A's optimiser steps, training tokens, rows and model FLOPs, read from the teachers' records."""
    shape, head = counter.shape, counter.shape.mlm_head
    patterns = {p.id: p for p in teachers.patterns}
    out = {"steps": 0.0, "tokens": 0.0, "sequences": 0.0, "flops": 0.0, "inside_s": 0.0, "per_teacher_s": []}
    for entry in teachers.entries:
        masks = num_masks(teachers, entry)
        labelled = counter.pattern(patterns[entry["pattern"]], settings["max_length"], masks, True)
        unlabeled = counter.pattern(patterns[entry["pattern"]], settings["max_length"], masks, False)
        steps = entry["metrics"]["steps"]
        rows = min(settings["batch_size"], labelled.rows)  # pet's sampler never draws more than the set holds
        extra = min(settings["unlabeled_ratio"] * rows, unlabeled.rows) if settings["mlm_weight"] > 0 else 0
        tokens = rows * labelled.mean(labelled.lengths) + extra * unlabeled.mean(unlabeled.lengths)
        forward = rows * (labelled.mean(shape.encoder(labelled.lengths)) + masks * head)
        forward += extra * (unlabeled.mean(shape.encoder(unlabeled.lengths))
                            + settings.get("mlm_probability", 0.15) * unlabeled.mean(unlabeled.eligible) * head)
        scoring = 2 * (labelled.total(shape.encoder(labelled.lengths)) + labelled.rows * masks * head)
        out["steps"] += steps
        out["tokens"] += steps * tokens
        out["sequences"] += steps * (rows + extra)
        out["flops"] += TRAIN_FACTOR * steps * forward + scoring
        out["inside_s"] += entry["metrics"].get("seconds", 0.0)
        out["per_teacher_s"].append(entry["metrics"].get("seconds"))
    return out


def labelling_work(counter: Counter, teachers, max_length: int) -> dict[str, float]:
    """Stage B: every teacher scores every unlabeled text once (encoder, then the head at the mask)."""
    shape = counter.shape
    patterns = {p.id: p for p in teachers.patterns}
    out = {"tokens": 0.0, "sequences": 0.0, "flops": 0.0}
    for entry in teachers.entries:
        masks = num_masks(teachers, entry)
        lengths = counter.pattern(patterns[entry["pattern"]], max_length, masks, False)
        out["tokens"] += lengths.total(lengths.lengths)
        out["sequences"] += lengths.rows
        out["flops"] += lengths.total(shape.encoder(lengths.lengths)) + lengths.rows * masks * shape.mlm_head
    return out


def student_work(counter: Counter, student, settings: dict[str, Any], classes: int) -> dict[str, float]:
    """Stage C: ``steps`` batches of the plain texts through the classifier, forward and backward."""
    lengths = counter.plain(settings["max_length"])
    steps = student.manifest["metrics"]["steps"]
    rows = min(settings["batch_size"], lengths.rows)
    shape = counter.shape
    forward = rows * (lengths.mean(shape.encoder(lengths.lengths)) + shape.classifier_head(classes))
    return {"steps": steps, "tokens": steps * rows * lengths.mean(lengths.lengths), "sequences": steps * rows,
            "flops": TRAIN_FACTOR * steps * forward, "inside_s": student.manifest["metrics"].get("seconds", 0.0)}


# ---------------------------------------------------------------------------------------------
# Running the stages
# ---------------------------------------------------------------------------------------------
def timed(memory: PeakMemory, call) -> tuple[Any, dict[str, float], tuple[float, str]]:
    """(result, {wall, cpu} seconds, peak memory) of one API call. CPU seconds (user + system of this
    process) next to the wall clock show how much of a shared machine the stage actually got."""
    import torch

    memory.reset()
    started, cpu = time.perf_counter(), os.times()
    result = call()
    if memory.device.type == "cuda":
        torch.cuda.synchronize(memory.device)  # the call has already saved its outputs; this costs nothing
    used = os.times()
    clocks = {"wall": time.perf_counter() - started, "cpu": used.user + used.system - cpu.user - cpu.system}
    return result, clocks, memory.read()


def stage_row(stage: str, work: dict[str, float], clocks: dict[str, float], memory: tuple[float, str]) -> dict[str, Any]:
    """One stage's measurement; its MFU is filled in once the peak rate is known (see measure)."""
    steps, wall = work.get("steps"), clocks["wall"]
    return {
        "kind": "stage", "stage": stage, "wall_s": round(wall, 3), "cpu_s": round(clocks["cpu"], 2),
        "optimizer_steps": None if steps is None else int(steps),
        "steps_per_s": None if steps is None else round(steps / wall, 4),
        "tokens": int(work["tokens"]), "tokens_per_s": round(work["tokens"] / wall, 1),
        "sequences": int(work["sequences"]), "sequences_per_s": round(work["sequences"] / wall, 2),
        "model_flops": work["flops"], "model_flops_per_s": work["flops"] / wall, "mfu": None,
        # the teachers' and the student's own timers (load, score, train; not saving)
        "inside_s": None if "inside_s" not in work else round(work["inside_s"], 2),
        "peak_memory_mib": round(memory[0], 1), "memory": memory[1],
        **({"per_teacher_s": work["per_teacher_s"]} if "per_teacher_s" in work else {}),
    }


def run_stages(spec: dict[str, Any], model: str, train: Path, unlabeled: Path, run: Path, device) -> list[dict[str, Any]]:
    import pet

    runtime = {"device": spec["device"], "precision": spec["precision"], "eval_batch_size": spec["eval_batch_size"]}
    teachers_settings = {**spec["teachers"], "seeds": spec["seeds"], "max_length": spec["max_length"]}
    counter = Counter(model, train, unlabeled)  # before the clocks: tokenizing is the benchmark's, not pet's
    memory = PeakMemory(device)
    teachers, clocks, mem = timed(memory, lambda: pet.train_teachers(
        model, output=run / "teachers", train=train, unlabeled=unlabeled,
        patterns=fewshot_patterns(spec["patterns"]), verbalizers=fewshot_verbalizers(spec["verbalizers"]),
        teachers=teachers_settings, runtime=runtime, ipet={"generations": 0}))  # the paper's workload: plain PET
    rows = [stage_row("A teachers", teachers_work(counter, teachers, teachers_settings), clocks, mem)]
    fewshot.log(f"stage A: {len(teachers)} teachers in {clocks['wall']:.1f}s")
    labelling = {**spec["labelling"], "max_length": spec["max_length"]}
    soft, clocks, mem = timed(memory, lambda: pet.label(teachers, labelling=labelling, runtime=runtime))
    rows.append(stage_row("B labelling", labelling_work(counter, teachers, spec["max_length"]), clocks, mem))
    fewshot.log(f"stage B: {len(soft)} texts x {len(teachers)} teachers in {clocks['wall']:.1f}s")
    distillation = {**spec["distillation"], "max_length": spec["max_length"]}
    student, clocks, mem = timed(memory, lambda: pet.distill(soft, distillation=distillation, runtime=runtime))
    rows.append(stage_row("C student", student_work(counter, student, distillation, len(teachers.labels)), clocks, mem))
    fewshot.log(f"stage C: {distillation['steps']} steps in {clocks['wall']:.1f}s")
    return rows


def warm_up(model: str, device) -> None:
    """Import the stages and touch the model files before the clocks start, as a second run would find them."""
    import pet.stages.distillation.stage  # noqa: F401
    import pet.stages.labelling.stage  # noqa: F401
    import pet.stages.teachers.stage  # noqa: F401
    from pet.core.modeling import load_masked_lm

    load_masked_lm(model, device)  # discarded: only the file cache and the device's libraries stay warm


# ---------------------------------------------------------------------------------------------
# Reporting: JSON lines and the BENCHMARKS.md block
# ---------------------------------------------------------------------------------------------
def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def describe(spec: dict[str, Any], model_note: str) -> str:
    t, d = spec["teachers"], spec["distillation"]
    count = len(spec["patterns"]) * len(spec["verbalizers"]) * len(spec["seeds"])
    mlm = f" + {t['unlabeled_ratio'] * t['batch_size']} auxiliary-MLM rows (mlm_weight {t['mlm_weight']})" if t["mlm_weight"] > 0 else ""
    return (f"{model_note}; {plural(count, 'teacher')} ({plural(len(spec['patterns']), 'pattern')} x "
            f"{plural(len(spec['verbalizers']), 'verbalizer')} x {plural(len(spec['seeds']), 'seed')}) x "
            f"{t['steps']} steps of {t['batch_size']} labelled rows{mlm}; {spec['texts']:,} {TASK} texts labelled by "
            f"each teacher (batch {spec['labelling']['batch_size']}); student {d['steps']} steps of batch "
            f"{d['batch_size']}; max length {spec['max_length']}")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| stage | wall s | process CPU s | optimiser steps/s | tokens/s | sequences/s | model TFLOP | model TFLOP/s "
             "| MFU | peak memory MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['stage']} | {fmt(r['wall_s'])} | {fmt(r['cpu_s'])} | {fmt(r['steps_per_s'], 2)} | {fmt(r['tokens_per_s'], 0)} | "
                     f"{fmt(r['sequences_per_s'], 1)} | {fmt(r['model_flops'] / 1e12, 3)} | "
                     f"{fmt(r['model_flops_per_s'] / 1e12, 3)} | {100 * r['mfu']:.1f}% | {fmt(r['peak_memory_mib'], 0)} |")
    wall = sum(r["wall_s"] for r in rows)
    flops = sum(r["model_flops"] for r in rows)
    mfu = sum(r["mfu"] * r["wall_s"] for r in rows) / wall
    cpu = sum(r["cpu_s"] for r in rows)
    lines.append(f"| **total** | **{fmt(wall)}** | {fmt(cpu)} | | | | {fmt(flops / 1e12, 3)} | {fmt(flops / wall / 1e12, 3)} | {100 * mfu:.1f}% | |")
    return lines


def block(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    peak = meta["peak"]
    inside = {r["stage"]: f"{r['inside_s']:.1f} s" for r in rows if r.get("inside_s") is not None}
    per_teacher = rows[0].get("per_teacher_s") or []
    if per_teacher and "A teachers" in inside:
        inside["A teachers"] += " (" + ", ".join(f"{x:.1f}" for x in per_teacher if x is not None) + " per teacher)"
    lines = [
        f"**Workload ({meta['workload']}), budget `{meta['budget']}`**: {meta['description']}.",
        "",
        f"Measured {meta['date']} on {meta['hardware']}; device `{meta['device']}`, precision `{meta['precision']}`; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f"; niceness {meta['niceness']}; load average {meta['load_before']} before the run, {meta['load_after']} after "
        "(process CPU s below: user + system seconds this process got during the stage).",
        f"MFU's peak: {peak['peak_flops_per_s'] / 1e12:.3f} TFLOP/s, the best {peak['dtype']} GEMM of {peak['size']}^3 "
        f"on the same device in this run ({peak['reps']} before the stages: "
        f"{peak['before_after'][0] / 1e12:.3f}, {peak['reps']} after: {peak['before_after'][1] / 1e12:.3f} TFLOP/s). "
        f"Memory: {rows[0]['memory']}.",
        "",
        "```bash", meta["command"], "```", "",
        *table(rows), "",
        "Wall = the API call: loading models from disk, training or scoring, saving every checkpoint and manifest. "
        + "Inside the stages' own clocks: " + ", ".join(f"{k} {v}" for k, v in inside.items())
        + " (each teacher's and the student's own timer: from loading the model to the end of training, without saving)."
        + f" Writing the data (and for workload a building the random model) took {meta['setup_s']:.1f} s before the clocks.",
    ]
    return "\n".join(lines)


def write_block(path: Path, workload: str, text: str) -> None:
    """Replace this workload's marked block of ``path`` (or append one), re-reading the file first:
    others edit the rest of it, which stays byte for byte as it is."""
    begin, end = f"<!-- speed:{workload}:begin -->", f"<!-- speed:{workload}:end -->"
    content = path.read_text(encoding="utf-8") if path.exists() else ""  # e.g. a fresh file on a GPU machine
    new_block = f"{begin}\n{text}\n{end}"
    if begin in content and end in content.split(begin, 1)[1]:
        before, rest = content.split(begin, 1)
        content = before + new_block + rest.split(end, 1)[1]
    else:
        content = content.rstrip("\n") + "\n\n" + new_block + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(workloads()), default="c")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full", help="caps on every count (full: none)")
    for count in COUNTS:
        parser.add_argument(f"--{count.replace('_', '-')}", type=int, help=f"set {count} (overrides the budget; patterns, verbalizers, seeds: the first N)")
    parser.add_argument("--device", help="auto, cpu, cuda (default: the workload's: c is cpu, a and b auto)")
    parser.add_argument("--precision", default="auto", help="runtime.precision (auto: bf16 autocast on CUDA, fp32 on CPU)")
    parser.add_argument("--model", help="any local masked LM instead of the workload's (a: the random roberta-large)")
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="folder holding data/ and models/")
    parser.add_argument("--train", help=f"labelled JSONL (text, label); default SHARED/data/{TASK}/{TRAIN_FILE}")
    parser.add_argument("--unlabeled", help=f"unlabeled JSONL (text), cycled to --texts; default SHARED/data/{TASK}/unlabeled.jsonl")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--peak-size", type=int, help="GEMM size for the peak rate (default 8192 on CUDA, 2048 on CPU)")
    parser.add_argument("--peak-reps", type=int, default=5)
    parser.add_argument("--work", help="folder for the model, data and run (default: a temp folder, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    parser.add_argument("--benchmarks-md", default=str(REPO / "BENCHMARKS.md"), help="file whose speed block to replace")
    parser.add_argument("--no-md", action="store_true", help="print the JSON lines only")
    args = parser.parse_args(argv)
    data = Path(args.shared) / "data" / TASK
    args.train = args.train or str(data / TRAIN_FILE)
    args.unlabeled = args.unlabeled or str(data / "unlabeled.jsonl")
    return args


def prepare(args: argparse.Namespace, spec: dict[str, Any], work: Path) -> tuple[str, Path, str]:
    """(model folder, unlabeled file, a note on the model) in ``work``: built before any clock starts."""
    (work / "data").mkdir(parents=True, exist_ok=True)
    unlabeled = unlabeled_file(Path(args.unlabeled), spec["texts"], work / "data")
    if spec["model"] is not None:
        return spec["model"], unlabeled, f"`{Path(spec['model']).name}`"
    fewshot.log("building the random roberta-large-shaped RobertaForMaskedLM ...")
    model = build_random_mlm(work / "roberta-large-random", Path(args.shared) / MINILM)
    note = ("RobertaForMaskedLM of roberta-large's shape (24 layers, hidden 1024, 16 heads, intermediate 4096), "
            "random weights, minilm-l6-mlm's WordPiece tokenizer")
    return str(model), unlabeled, note


def measure(args: argparse.Namespace, spec: dict[str, Any], device, work: Path) -> dict[str, Any]:
    """Prepare the inputs, measure the peak rate, run the three stages; the run folder goes unless --keep."""
    run = work / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    started = time.perf_counter()
    model, unlabeled, note = prepare(args, spec, work)
    setup = time.perf_counter() - started
    size = args.peak_size or (8192 if device.type == "cuda" else 2048)
    try:
        before = peak_matmul(device, size, args.peak_reps)
        warm_up(model, device)
        rows = run_stages(spec, model, Path(args.train), unlabeled, run, device)
        after = peak_matmul(device, size, args.peak_reps)
    finally:
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    # measured before and after the stages, keeping the higher: on a shared machine the rate
    # drifts, and the higher figure can only lower the MFU
    peak = {**max(before, after, key=lambda p: p["peak_flops_per_s"]),
            "before_after": [before["peak_flops_per_s"], after["peak_flops_per_s"]]}
    for row in rows:
        row["mfu"] = row["model_flops_per_s"] / peak["peak_flops_per_s"]
    return {"rows": rows, "peak": peak, "setup_s": setup, "note": note}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from pet.core.modeling import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = {**resolve(args), "precision": args.precision}
    device = pick_device(spec["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as benchmarks/fewshot.py: fp32 matmuls outside autocast
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="pet-speed-"))
    try:
        result = measure(args, spec, device, work)
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows, peak = result["rows"], result["peak"]
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(json.dumps({"kind": "peak", "workload": args.workload, "device": str(device), **peak}), flush=True)
    for row in rows:
        print(json.dumps({"workload": args.workload, "budget": args.budget, "device": str(device), **row}), flush=True)
    if not args.no_md:
        meta = {"workload": args.workload, "budget": args.budget, "device": str(device), "hardware": hardware(device),
                "precision": args.precision, "versions": versions(), "peak": peak, "setup_s": result["setup_s"],
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "niceness": os.nice(0),
                "load_before": load_before, "load_after": load_after, "description": describe(spec, result["note"]),
                "command": " ".join(["python", "benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])])}
        write_block(Path(args.benchmarks_md), args.workload, block(meta, rows))
        fewshot.log(f"wrote the workload-{args.workload} block of {args.benchmarks_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
