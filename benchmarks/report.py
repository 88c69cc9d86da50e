"""Tables and the plot of the few-shot benchmark, built from its JSON lines alone.

``report(out)`` reads ``out/fewshot.jsonl`` and writes ``out/table.md`` (mean ± sample std over the
few-shot seeds), ``out/fewshot.png`` (accuracy against the number of labels, one panel per task),
and refreshes the block between the result markers of BENCHMARKS.md when that file has them.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
TASK_ORDER = ["sst2", "agnews", "rte", "subj", "r8"]
CLASSES = {"sst2": 2, "agnews": 4, "rte": 2, "subj": 2, "r8": 8, "newsgroups": 6}
# (key, label in the table/plot); the per-seed value of a key is computed by `per_seed`
ROWS = [
    ("zero_shot_mean", "1. zero-shot, mean over patterns x verbalizers (no labels: same in every column)"),
    ("zero_shot_best", "1. zero-shot, best pattern x verbalizer (chosen on test: an upper bound)"),
    ("supervised", "2. supervised fine-tuning on the n examples"),
    ("supervised_st", "2b. peer: supervised fine-tuning, started from all-MiniLM-L6-v2"),
    ("setfit", "2c. peer: SetFit 1.2 on all-MiniLM-L6-v2 (default recipe)"),
    ("pet_teacher", "3. PET teachers, mean of single teachers"),
    ("pet_ensemble", "4. PET ensemble (wmean), no distillation"),
    ("pet_student", "5. PET student (distilled)"),
    ("pet_student_st", "5b. PET student distilled into all-MiniLM-L6-v2 (same soft labels)"),
    ("pet_student_gold", "5c. PET student with gold labels in its loss (distillation.gold_weight 1; same soft labels)"),
    ("pet_student_self_train", "5d. PET student after one self-training round (threshold 0.9; same soft labels)"),
    ("pet_student_lr_search", "5e. PET student, learning rate searched on the labelled set (distillation.learning_rate: search; same soft labels)"),
    ("pet_student_balanced", "5f. PET student, batches balanced over the predicted classes (distillation.class_weights: balanced; same soft labels)"),
    ("pet_student_none", "5g. PET student, no class weights (distillation.class_weights: none; same soft labels)"),
    ("ipet_ensemble", "iPET final-generation ensemble"),
    ("ipet_student", "6. iPET student (distilled)"),
    ("full_supervised", "7. supervised on the full train set (ceiling; one run, same in every column)"),
]


PEERS = ("setfit", "supervised", "supervised_st")  # issue 10: PET must beat the best of these
STUDENTS = (("pet_student", "PET student"), ("ipet_student", "iPET student"))  # measured against PEERS
OPTIONAL = {"supervised_st", "setfit", "pet_student_st", "pet_student_gold", "pet_student_self_train", "pet_student_lr_search",
            "pet_student_balanced", "pet_student_none", "ipet_ensemble"}  # rows left out when never run


def ordered_tasks(rows: list[dict[str, Any]]) -> list[str]:
    """The tasks in the rows, TASK_ORDER's first and any other (a skewed copy, a user's own) after them as first seen."""
    seen = list(dict.fromkeys(r["task"] for r in rows))
    return [t for t in TASK_ORDER if t in seen] + [t for t in seen if t not in TASK_ORDER]


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]], metric: str = "accuracy") -> dict[tuple[str, str, int | None], list[float]]:
    """{(task, key, n): [value per few-shot seed]}; n is None for the methods that use no few-shot file."""
    # last line wins if a run was repeated
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        ident = (row["task"], row["method"], row["n"], row["seed"], row.get("teacher"), row.get("pattern"), row.get("verbalizer"))
        latest[ident] = row
    groups: dict[tuple, list[float]] = defaultdict(list)
    teachers: dict[tuple, list[float]] = defaultdict(list)
    zero: dict[str, list[float]] = defaultdict(list)
    for row in latest.values():
        value = row.get(metric)
        if value is None:
            continue
        method = row["method"]
        if method == "zero_shot":
            zero[row["task"]].append(value)
        elif method == "pet_teacher":
            teachers[(row["task"], row["n"], row["seed"])].append(value)
        elif method == "full_supervised":
            groups[(row["task"], method, None)].append(value)
        else:
            groups[(row["task"], method, row["n"])].append(value)
    for (task, n, seed), values in teachers.items():
        groups[(task, "pet_teacher", n)].append(statistics.fmean(values))
    for task, values in zero.items():
        groups[(task, "zero_shot_mean", None)] = [statistics.fmean(values)]
        groups[(task, "zero_shot_best", None)] = [max(values)]
    return groups


def planned_seeds(rows: list[dict[str, Any]], plan: dict[str, Any] | None = None) -> int:
    """How many few-shot seeds a cell should have: the run's plan (plan.json) when known, else the
    most that any few-shot cell in the file has."""
    seen = max((len(v) for (task, key, n), v in aggregate(rows).items() if n is not None), default=0)
    return max(seen, len((plan or {}).get("seeds", [])))


def coverage(values: list[float], planned: int) -> str:
    """A mark on a cell that has fewer seeds than the others, so a partial mean is never read as a full one."""
    return f" [{len(values)} of {planned} seeds]" if len(values) < planned else ""


def tables(rows: list[dict[str, Any]], plan: dict[str, Any] | None = None) -> str:
    acc, f1 = aggregate(rows, "accuracy"), aggregate(rows, "macro_f1")
    tasks = ordered_tasks(rows)
    ns = sorted({r["n"] for r in rows if r["n"] is not None})
    planned = planned_seeds(rows, plan)
    out = []
    for task in tasks:  # a skewed copy (skewed.py's subj15) has its source task's classes
        out.append(f"**{task}** (test: {next(r['test_examples'] for r in rows if r['task'] == task and r.get('test_examples'))} "
                   f"examples, {CLASSES.get(task, CLASSES.get(task.rstrip('0123456789'), '?'))} classes). Accuracy % (macro-F1 %), mean ± std over few-shot seeds\n")
        out.append("| method | " + " | ".join(f"n = {n}" for n in ns) + " |")
        out.append("| --- | " + " | ".join("---" for _ in ns) + " |")
        for key, name in ROWS:
            cells = []
            for n in ns:
                lookup = None if key in ("zero_shot_mean", "zero_shot_best", "full_supervised") else n
                values = acc.get((task, key, lookup))
                if not values:
                    cells.append("–")
                    continue
                m, s = mean_std(values)
                fm, _ = mean_std(f1[(task, key, lookup)]) if f1.get((task, key, lookup)) else (float("nan"), 0)
                spread = f" ± {100 * s:.1f}" if len(values) > 1 else ""
                partial = coverage(values, planned) if lookup is not None else ""
                cells.append(f"{100 * m:.1f}{spread} ({100 * fm:.1f}){partial}")
            if any(c != "–" for c in cells) or key not in OPTIONAL:  # a dash: not run (yet)
                out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.extend(peer_rows(by_seed(rows), task, ns, planned))
        out.append("")
    return "\n".join(out)


def by_seed(rows: list[dict[str, Any]]) -> dict[tuple, dict[int, float]]:
    """{(task, method, n): {seed: accuracy}} for the one-line-per-seed methods (last line wins)."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in rows:
        if row.get("seed") is not None and row.get("accuracy") is not None:
            out[(row["task"], row["method"], row["n"])][row["seed"]] = row["accuracy"]
    return out


def best_peer(seeds: dict, task: str, n: int, student_key: str = "pet_student") -> tuple[str, float, list[int]] | None:
    """The peer with the highest mean accuracy in this cell, on the seeds the PET student (or
    ``student_key``'s) also has (paired: the same labelled files), or on all of its seeds when it has none."""
    student = seeds.get((task, student_key, n), {})
    means = {}
    for key in PEERS:
        values = seeds.get((task, key, n), {})
        shared = sorted(set(values) & set(student)) if student else sorted(values)
        if shared:
            means[key] = (statistics.fmean(values[s] for s in shared), shared)
    if not means:
        return None
    key, (mean, shared) = max(means.items(), key=lambda item: item[1][0])
    return key, mean, shared


def peer_rows(seeds: dict, task: str, ns: list[int], planned: int) -> list[str]:
    """Issue 10's question per n: which peer is best, and by how much the PET student beats it,
    both on the same few-shot seeds; a cell where a peer is missing says so."""
    peers, margins = [], []
    for n in ns:
        best = best_peer(seeds, task, n)
        if best is None:
            peers.append("–")
            margins.append("–")
            continue
        key, mean, shared = best
        missing = [k for k in PEERS if not seeds.get((task, k, n))]
        notes = ([f"{', '.join(missing)} not run"] if missing else []) + (
            [f"on seeds {', '.join(map(str, shared))}: {len(shared)} of {planned}"] if len(shared) < planned else [])
        peers.append(f"{key} {100 * mean:.1f}" + (f" [{'; '.join(notes)}]" if notes else ""))
        student = seeds.get((task, "pet_student", n), {})
        if not student:
            margins.append("–")
            continue
        gain = statistics.fmean(student[s] for s in shared) - mean
        margins.append(f"{100 * gain:+.1f}" + (f" [{len(shared)} of {planned} seeds]" if len(shared) < planned else ""))
    if all(p == "–" for p in peers):
        return []
    rows = ["| best peer (of setfit, supervised, supervised_st; mean accuracy on PET's seeds) | " + " | ".join(peers) + " |",
            "| **PET margin**: PET student − best peer, same seeds (points) | " + " | ".join(margins) + " |"]
    # each on the student's own seeds; the balanced student too, because class_weights: auto (the
    # default) trains it wherever the pool is skewed, so on such a task it is the default's margin
    for key, label in (("pet_student_balanced", "**5f margin**: balanced PET student"), ("ipet_student", "**iPET margin**: iPET student")):
        margins = peer_margins(seeds, key)
        if any((task, n) in margins for n in ns):
            cells = [f"{100 * margins[(task, n)]:+.1f}" if (task, n) in margins else "–" for n in ns]
            rows.append(f"| {label} − best peer, same seeds (points) | " + " | ".join(cells) + " |")
    # A margin of means can hide draws that a peer won (a peer with a wide spread over the few-shot
    # draws, like SetFit on newsgroups): a user runs one draw, so each seed is shown against its own best.
    for key, name in STUDENTS:
        draws = [seed_by_seed(seeds, task, n, key) for n in ns]
        if any(len(d) > 1 for d in draws):
            rows.append(f"| {name} − the best peer of each seed (points; seeds where it is ahead or level) | "
                        + " | ".join(describe_draws(d) for d in draws) + " |")
    return rows


def seed_by_seed(seeds: dict, task: str, n: int, student_key: str = "pet_student") -> dict[int, float]:
    """{seed: the student's accuracy minus the best accuracy any peer reached on that seed's labelled
    file}, for the seeds where the student and at least one peer ran."""
    student = seeds.get((task, student_key, n), {})
    out = {}
    for seed in sorted(student):
        peers = [seeds[(task, key, n)][seed] for key in PEERS if seed in seeds.get((task, key, n), {})]
        if peers:
            out[seed] = student[seed] - max(peers)
    return out


def draws_behind(margins: dict[int, float]) -> int:
    """How many of ``seed_by_seed``'s draws a peer won (a level draw is not behind)."""
    return sum(1 for m in margins.values() if m < 0)


def describe_draws(margins: dict[int, float]) -> str:
    """'+3.3 / -1.0 / -1.0 (1 of 3)': the per-seed margins in seed order, and on how many it is ahead or level."""
    if not margins:
        return "–"
    ahead = len(margins) - draws_behind(margins)
    return " / ".join(f"{100 * m:+.1f}" for m in margins.values()) + f" ({ahead} of {len(margins)})"


def peer_margins(seeds: dict, student_key: str) -> dict[tuple[str, int], float]:
    """{(task, n): the student's mean accuracy minus the best peer's, on the seeds both have}, where both exist."""
    out = {}
    for task, method, n in sorted({k for k in seeds if k[1] == student_key}):
        best = best_peer(seeds, task, n, student_key)
        if best is not None:
            _, mean, shared = best
            out[(task, n)] = statistics.fmean(seeds[(task, student_key, n)][s] for s in shared) - mean
    return out


def paired_means(seeds: dict, first: str, second: str, n: int) -> tuple[float, float, str] | None:
    """The two methods' accuracies averaged over sst2 and agnews, each task on the seeds both methods
    have (the same labelled files), and those seeds; None unless both tasks share a seed. A mean of
    one method's first seed against the other's three would mix the seeds' spread into the gap."""
    firsts, seconds, used = [], [], []
    for task in ("sst2", "agnews"):
        a, b = seeds.get((task, first, n), {}), seeds.get((task, second, n), {})
        shared = sorted(set(a) & set(b))
        if not shared:
            return None
        firsts.append(statistics.fmean(a[s] for s in shared))
        seconds.append(statistics.fmean(b[s] for s in shared))
        used.append(f"{task} {', '.join(map(str, shared))}")
    return statistics.fmean(firsts), statistics.fmean(seconds), "; ".join(used)


def issue10_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 10's peer targets, for the PET and the iPET student: at least the best peer in every
    measured task x n, and +10 points over it (stretch +15) on the mean of sst2 and agnews at n = 32."""
    seeds = by_seed(rows)
    lines = []
    for key, name in STUDENTS:
        margins = peer_margins(seeds, key)
        if not margins:
            continue
        order = sorted(margins, key=lambda cell: (TASK_ORDER.index(cell[0]) if cell[0] in TASK_ORDER else len(TASK_ORDER), cell[1]))
        below = [f"{task} n = {n} {100 * margins[(task, n)]:+.1f}" for task, n in order if margins[(task, n)] < 0]
        cells = len(margins)
        lines.append(f"| {name} ≥ best peer in every measured task x n (issue 10) | {cells - len(below)} of {cells} cells"
                     + (f"; below: {', '.join(below)}" if below else "") + f" | {'no' if below else 'yes'} |")
        draws = {cell: seed_by_seed(seeds, *cell, key) for cell in order}
        behind = {cell: draws_behind(d) for cell, d in draws.items()}
        total = sum(len(d) for d in draws.values())
        lost = [f"{task} n = {n} ({behind[(task, n)]} of {len(draws[(task, n)])})" for task, n in order if behind[(task, n)]]
        lines.append(f"| {name} ≥ the best peer of the same seed, on every draw (issue 10, seed by seed) | "
                     f"{total - sum(behind.values())} of {total} draws" + (f"; behind: {', '.join(lost)}" if lost else "")
                     + f" | {'no' if lost else 'yes'} |")
        at32 = [margins.get((task, 32)) for task in ("sst2", "agnews")]
        if None in at32:
            lines.append(f"| {name} − best peer at n = 32: ≥ +10 points (stretch +15; issue 10) | results missing for sst2 or agnews | pending |")
        else:
            gain = 100 * statistics.fmean(at32)
            verdict = "yes (stretch too)" if gain >= 15 else "yes" if gain >= 10 else "no"
            lines.append(f"| {name} − best peer at n = 32: ≥ +10 points (stretch +15; issue 10) | {gain:+.1f} points "
                         f"(sst2 {100 * at32[0]:+.1f}, agnews {100 * at32[1]:+.1f}) | {verdict} |")
    acc = aggregate(rows, "accuracy")
    if all(acc.get((task, "full_supervised", None)) and acc.get((task, "ipet_student", 32)) for task in ("sst2", "agnews")):
        ratios = [statistics.fmean(acc[(task, "ipet_student", 32)]) / acc[(task, "full_supervised", None)][0] for task in ("sst2", "agnews")]
        ratio = 100 * statistics.fmean(ratios)
        lines.append(f"| iPET student at n = 32 / full-data ceiling: ≥ 95% (issue 10) | {ratio:.1f}% (sst2 {100 * ratios[0]:.1f}%, "
                     f"agnews {100 * ratios[1]:.1f}%) | {'yes' if ratio >= 95 else 'no'} |")
    return lines


def provenance(rows: list[dict[str, Any]]) -> str:
    """Where and when the lines were measured, read from the lines themselves."""
    profiles = sorted({str(r.get("profile")) for r in rows if r.get("profile")})
    devices = sorted({str(r.get("device")) for r in rows if r.get("device")})
    days = sorted({str(r["time"])[:10] for r in rows if r.get("time")})
    when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}" if days else "unknown"
    return (f"Measured: profile {', '.join(profiles) or 'unknown'}; device {'; '.join(devices) or 'unknown'}; "
            f"date {when} (UTC); {len(rows)} result lines.\n")


def wall_times(rows: list[dict[str, Any]]) -> str:
    """Median wall time per job kind, so the cost of each method is read from the same run."""
    seconds: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("wall_s") is not None and row["method"] not in ("pet_teacher", "zero_shot"):
            seconds[row["method"]].append(float(row["wall_s"]))
    if not seconds:
        return ""
    parts = [f"{method} {statistics.median(v):.0f} s ({len(v)})" for method, v in sorted(seconds.items())]
    return ("Wall time per line, median over lines (count); PET's ensemble/student include the teachers: "
            + ", ".join(parts) + ".\n")


def targets(rows: list[dict[str, Any]], plan: dict[str, Any] | None = None) -> str:
    acc = aggregate(rows, "accuracy")
    planned = planned_seeds(rows, plan)
    lines = ["| target (means over sst2 and agnews unless it says every cell) | measured | met? |", "| --- | --- | --- |"]

    def avg(key: str, n: int | None) -> float | None:
        values = [statistics.fmean(acc[(t, key, n)]) for t in ("sst2", "agnews") if acc.get((t, key, n))]
        return statistics.fmean(values) if len(values) == 2 else None

    def settled(verdict: str, *cells: tuple[str, int]) -> str:
        """A verdict drawn from a cell with missing seeds is provisional, and says which cell."""
        short = [f"{task} {key} n = {n}: {len(acc[(task, key, n)])} of {planned} seeds"
                 for task in ("sst2", "agnews") for key, n in cells if len(acc[(task, key, n)]) < planned]
        return f"provisional {verdict} ({'; '.join(short)})" if short else verdict

    student, sup, full = avg("pet_student", 32), avg("supervised", 32), avg("full_supervised", None)
    if student is not None and sup is not None:
        gain = 100 * (student - sup)
        verdict = settled("yes (stretch too)" if gain >= 15 else "yes" if gain >= 10 else "no",
                          ("pet_student", 32), ("supervised", 32))
        lines.append(f"| PET student − supervised at n = 32: ≥ +10 points (stretch +15) | {gain:+.1f} points "
                     f"({100 * student:.1f} vs {100 * sup:.1f}) | {verdict} |")
    else:
        lines.append("| PET student − supervised at n = 32: ≥ +10 points (stretch +15) | results missing for sst2 or agnews | pending |")
    if student is not None and full is not None:
        ratios = [statistics.fmean(acc[(t, "pet_student", 32)]) / acc[(t, "full_supervised", None)][0] for t in ("sst2", "agnews")]
        ratio = 100 * statistics.fmean(ratios)
        verdict = settled("yes (stretch too)" if ratio >= 95 else "yes" if ratio >= 90 else "no", ("pet_student", 32))
        lines.append(f"| PET student at n = 32 / full-data ceiling: ≥ 90% (stretch and issue 10: 95%) | {ratio:.1f}% "
                     f"(sst2 {100 * ratios[0]:.1f}%, agnews {100 * ratios[1]:.1f}%) | {verdict} |")
    else:
        lines.append("| PET student at n = 32 / full-data ceiling: ≥ 90% (stretch and issue 10: 95%) | results missing for sst2 or agnews | pending |")
    paired = paired_means(by_seed(rows), "ipet_student", "pet_student", 10)
    if paired is not None:
        ipet, pet, shared = paired
        lines.append(f"| iPET student > PET student at n = 10 (same seeds) | {100 * ipet:.1f} vs {100 * pet:.1f} "
                     f"({100 * (ipet - pet):+.1f} points; seeds {shared}) | "
                     f"{settled('yes' if ipet > pet else 'no', ('ipet_student', 10), ('pet_student', 10))} |")
    else:
        lines.append("| iPET student > PET student at n = 10 | results missing for sst2 or agnews | pending |")
    return "\n".join(lines + issue10_targets(rows))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = aggregate(rows, "accuracy")
    tasks = ordered_tasks(rows)
    ns = sorted({r["n"] for r in rows if r["n"] is not None})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.4), squeeze=False)
    styles = {
        "supervised": ("supervised (n labels)", "tab:gray", "s"),
        "pet_teacher": ("PET teachers (mean)", "tab:cyan", "v"),
        "pet_ensemble": ("PET ensemble", "tab:blue", "^"),
        "pet_student": ("PET student", "tab:red", "o"),
        "pet_student_st": ("PET student into all-MiniLM-L6-v2", "tab:pink", "P"),
        "pet_student_balanced": ("PET student, class_weights: balanced", "tab:brown", "o"),
        "setfit": ("SetFit (all-MiniLM-L6-v2)", "tab:orange", "X"),
        "supervised_st": ("supervised, all-MiniLM-L6-v2", "tab:olive", "s"),
        "ipet_student": ("iPET student", "tab:purple", "D"),
    }
    for ax, task in zip(axes[0], tasks):
        for key, (name, color, marker) in styles.items():
            points = [(n, *mean_std(acc[(task, key, n)])) for n in ns if acc.get((task, key, n))]
            if points:
                xs, ms, ss = zip(*points)
                ax.errorbar(xs, [100 * m for m in ms], yerr=[100 * s for s in ss], label=name, color=color,
                            marker=marker, capsize=3, linewidth=1.6)
        for key, name, style, color in (("full_supervised", "full train set (ceiling)", "--", "black"),
                                        ("zero_shot_best", "zero-shot, best pattern (oracle)", "-.", "tab:green"),
                                        ("zero_shot_mean", "zero-shot, mean of patterns", ":", "tab:green")):
            if acc.get((task, key, None)):
                ax.axhline(100 * acc[(task, key, None)][0], linestyle=style, color=color, label=name, linewidth=1.2)
        ax.axhline(100 / CLASSES.get(task, 2), color="lightgray", linewidth=1, label="chance")
        ax.set_xscale("log")
        ax.set_xlim(min(ns) * 0.8, max(ns) * 1.25)
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.minorticks_off()
        ax.set_title(task)
        ax.set_xlabel("labelled examples (n)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    handles, labels, seen = [], [], set()
    for ax in axes[0]:  # a method may be missing from some panels
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in seen:
                seen.add(name)
                handles.append(handle)
                labels.append(name)
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle("PET vs supervised fine-tuning and SetFit, minilm-l6-mlm backbone (mean ± std over few-shot seeds; "
                 "a missing point was not run, see BENCHMARKS.md)", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 0.96))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def markers(out: Path) -> tuple[str | None, str | None]:
    """BENCHMARKS.md's block for a results folder: the grid's own, or ``results:<name>`` for a profile
    folder under it (e.g. benchmarks/results/cpu); none for any other folder."""
    home = (REPO / "benchmarks" / "results").resolve()
    where = out.resolve()
    if where == home:
        return START, END
    if where.parent == home:
        return f"<!-- results:{where.name}:start -->", f"<!-- results:{where.name}:end -->"
    return None, None


def report(out: Path, benchmarks_md: Path | None = REPO / "BENCHMARKS.md") -> str:
    # rows scored on a sample of the test set (--set test_limit N) check the script; they are not figures
    rows = [row for row in read(out / "fewshot.jsonl") if row.get("test_limit") is None]
    if not rows:
        return ""
    plan = json.loads((out / "plan.json").read_text(encoding="utf-8")) if (out / "plan.json").exists() else None
    text = provenance(rows) + "\n" + tables(rows, plan) + "\n" + targets(rows, plan) + "\n" + "\n" + wall_times(rows)
    (out / "table.md").write_text(text, encoding="utf-8")
    try:
        plot(rows, out / "fewshot.png")
    except ImportError:
        pass
    if benchmarks_md is not None and benchmarks_md.exists():
        doc = benchmarks_md.read_text(encoding="utf-8")
        start, end = markers(out)
        if start and start in doc and end in doc:
            head, rest = doc.split(start, 1)
            _, tail = rest.split(end, 1)
            benchmarks_md.write_text(f"{head}{start}\n{text}{end}{tail}", encoding="utf-8")
    return text
