"""`pet check`'s data sections: the labelled set's label counts, and leakage between the data sets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pet.io.data import Examples, open_table
from pet.stages.teachers.task import plain_pet_note
from pet.tools.report import Section
from pet.tools.session import Session

IMBALANCE_WARNING = 1.5  # largest / smallest label count from which the labelled set is called imbalanced
SHOWN_IDS = 3
# From this many labelled examples down, pet check suggests iPET: at n = 10 it lifted the student by 3.55
# (sst2) and 8.6 points (agnews), three seeds each, in BENCHMARKS.md ("iPET at n = 10")
IPET_ADVICE_MAX = 10


def label_counts(section: Section, session: Session) -> None:
    train, labels = session.task.train, session.task.labels
    where = session.config.data.train
    if len(train) == 0:
        section.add("warn", "no labelled examples (teachers.zero_shot): zero-shot accuracy and truncation of the labelled set are skipped")
        return
    section.add("info", f"{len(train)} labelled examples in {where}", examples=len(train))
    config = session.task.config  # with pet's default iPET decided for these teachers
    note = plain_pet_note(session.config, session.task)
    if note:
        section.add("info", note)
    elif len(train) <= IPET_ADVICE_MAX and not config.effective_ipet.enabled and not config.task.multi_label:
        section.add("info", f"with {len(train)} labelled examples, consider iPET (ipet.generations: auto): at 10 it lifted "
                            "the student by 3.5-8.6 points in BENCHMARKS.md, for about 3x the teachers' time")
    if config.effective_ipet.enabled:
        ipet_plan(section, session)
    if train.label_sets is not None:  # multi-label: how many examples carry each label
        counts = Counter(index for label_set in train.label_sets for index in label_set)
        sizes = Counter(len(label_set) for label_set in train.label_sets)
        section.add("info", "labels per example: " + ", ".join(f"{size}: {n}" for size, n in sorted(sizes.items())),
                    label_set_sizes={str(k): v for k, v in sorted(sizes.items())})
    else:
        counts = Counter(train.labels)
    per_label = {label: counts.get(i, 0) for i, label in enumerate(labels)}
    shown = ", ".join(f"{label} {n}" for label, n in per_label.items())
    missing = [label for label, n in per_label.items() if n == 0]
    if missing:
        section.add("fail", f"label counts: {shown}; label '{missing[0]}' has no example: add some, or remove the label",
                    counts=per_label)
        return
    ratio = max(per_label.values()) / min(per_label.values())
    if ratio >= IMBALANCE_WARNING:
        smallest = min(per_label, key=per_label.get)
        section.add("warn", f"label counts: {shown}; imbalanced {ratio:.1f} : 1 (add examples of '{smallest}', or expect a bias towards the larger labels)",
                    counts=per_label, imbalance=ratio)
    else:
        section.add("ok", f"label counts: {shown} (imbalance {ratio:.1f} : 1)", counts=per_label, imbalance=ratio)


def ipet_plan(section: Section, session: Session) -> None:
    """What iPET will do with this labelled set: its generations, the last one's training sets, and how
    often the unlabeled texts are drawn, so that its cost and a small unlabeled set are seen before training."""
    from pet.stages.teachers.ipet import generation_size

    config, labelled, unlabeled = session.task.config, len(session.task.train), len(session.task.unlabeled())
    ipet = config.effective_ipet
    final = ipet.count(labelled)
    size = generation_size(labelled, final, ipet.growth, ipet.zero_shot_examples)
    origin = " (pet's default)" if config.ipet.generations is None else ""
    message = (f"iPET{origin}: {final} generations after the first; the last trains each teacher on {size} examples "
               f"({labelled} labelled + {size - labelled} labelled by other teachers), and stage A trains {final + 1} times "
               "the teachers of plain PET (ipet.generations: 0)")
    if size - labelled > unlabeled:
        message += f"; the {unlabeled} unlabeled texts are too few to draw them once, so each is drawn about {(size - labelled) / unlabeled:.1f} times"
    section.add("info", message, ipet_generations=final, final_training_examples=size)


def text_key(examples: Examples, row: int) -> tuple[str, ...]:
    """An example's texts compared case- and whitespace-insensitively, field by field."""
    return tuple(" ".join(examples.fields[name][row].lower().split()) for name in sorted(examples.fields))


def keys(examples: Examples) -> dict[tuple[str, ...], str]:
    """Text key -> the first id with that text."""
    out: dict[tuple[str, ...], str] = {}
    for row in range(len(examples)):
        out.setdefault(text_key(examples, row), examples.ids[row])
    return out


def shared_ids(labelled: dict[tuple[str, ...], str], chunks) -> list[str]:
    """Ids of labelled examples whose text also occurs in ``chunks`` (read one chunk at a time)."""
    found: dict[str, None] = {}
    for chunk in chunks:
        for row in range(len(chunk)):
            example_id = labelled.get(text_key(chunk, row))
            if example_id is not None:
                found.setdefault(example_id)
    return list(found)


def leakage(section: Section, session: Session) -> None:
    config, train = session.config, session.task.train
    if len(train) == 0:
        section.add("info", "no labelled examples: nothing can leak")
        return
    labelled = keys(train)
    unlabeled = session.task.unlabeled()
    report_overlap(section, shared_ids(labelled, unlabeled.chunks()), len(train), f"unlabeled set ({len(unlabeled)} texts)",
                   "warn", "harmless for PET's labelling, but the student then trains on these texts twice")
    test = config.data.test
    if test is None:
        section.add("info", "no test set (data.test) to compare with")
    elif Path(test).resolve() == Path(config.data.train).resolve():
        section.add("info", "the labelled set is the test file itself: not compared")
    else:
        table = open_table(config, test, "test", session.task.labels, labelled=True)
        report_overlap(section, shared_ids(labelled, table.chunks()), len(train), f"test set ({len(table)} texts)",
                       "fail", "remove them from one of the files, or the test accuracy is inflated")


def report_overlap(section: Section, ids: list[str], total: int, where: str, status: str, advice: str) -> None:
    if not ids:
        section.add("ok", f"no labelled text is in the {where}", shared=0)
        return
    shown = ", ".join(ids[:SHOWN_IDS]) + (", ..." if len(ids) > SHOWN_IDS else "")
    section.add(status, f"{len(ids)} of {total} labelled texts are also in the {where}, e.g. {shown}: {advice}",
                shared=len(ids), ids=ids)
