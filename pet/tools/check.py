"""`pet check CONFIG`: a linter for patterns, verbalizers and data, before any training.

In the spirit of spaCy's ``debug data``: sections of ✔ / ⚠ / ✘ lines and a summary; the check has
passed when nothing is ✘. A config that cannot be loaded at all (a YAML error, an unknown key, a
missing file) is not a report but the usual one-line PetError, as for every other command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.errors import PetError
from pet.io.config import RunConfig
from pet.tools import check_data, check_patterns
from pet.tools.perplexity import MAX_EXAMPLES, perplexities, rank_patterns
from pet.tools.report import CheckReport, Section, plural
from pet.tools.session import ConfigLike, Session, as_config, open_session

# What benchmarks/patterns.py measured (BENCHMARKS.md, "Choosing patterns without labels").
RANKING_NOTE = ("measured on sst2/agnews/rte with MiniLM it did not predict zero-shot accuracy "
                "consistently (BENCHMARKS.md), so use it as a hint, not to pick patterns")


def check(config: ConfigLike, data: str | Path | None = None, *, overrides: dict[str, Any] | None = None,
          ranking_examples: int = MAX_EXAMPLES) -> CheckReport:
    """Lint a run config (a path or a RunConfig); ``data`` is checked as the labelled set instead of data.train;
    ``ranking_examples`` unlabeled texts for the pattern ranking (0 skips it: on long texts it is most of the time)."""
    if ranking_examples < 0:
        raise PetError(f"--ranking-examples must be 0 (no ranking) or more, not {ranking_examples}")
    resolved = as_config(config, data, overrides)
    session = open_session(resolved)
    report = CheckReport("run config" if isinstance(config, RunConfig) else str(config))
    config_section(report.section("Config"), session)
    check_data.label_counts(report.section("Labelled set"), session)
    check_data.leakage(report.section("Leakage"), session)
    patterns_section(report.section("Patterns, as the model sees them"), session)
    verbalizers_section(report.section("Label words in context"), session)
    check_patterns.zero_shot_lines(report.section("Zero-shot accuracy on the labelled set (no training)"), session)
    ranking_section(report.section("Pattern ranking by pseudo-perplexity (label-free)"), session, ranking_examples)
    domain_section(report.section("Unlabeled text against the model's own (masked-LM loss)"), session)
    return report


def config_section(section: Section, session: Session) -> None:
    config, task = session.config, session.task
    patterns = ", ".join(p.id for p in task.patterns)
    verbalizers = ", ".join(v.id for v in task.verbalizers)
    section.add("ok", f"model {config.model}", model=config.model)
    section.add("ok", f"{counted(len(task.patterns), 'pattern')} ({patterns}) from {config.patterns.file}")
    section.add("ok", f"{counted(len(task.verbalizers), 'verbalizer')} ({verbalizers}) from {config.verbalizers.file}; "
                      f"labels {', '.join(task.labels)}")


def counted(count: int, noun: str) -> str:
    return f"{count} {plural(count, noun)}"


def num_masks(session: Session, pattern) -> int:
    """The mask slots the pattern gets: the most any of the config's verbalizers needs with it."""
    max_length = session.config.teachers.max_length
    return max(session.task.verbalizer_tokens(pattern, v, max_length).num_masks for v in session.task.verbalizers)


def patterns_section(section: Section, session: Session) -> None:
    for pattern in session.task.patterns:
        check_patterns.pattern_lines(section, session, pattern, num_masks(session, pattern))


def verbalizers_section(section: Section, session: Session) -> None:
    for verbalizer in session.task.verbalizers:
        for pattern in session.task.patterns:
            check_patterns.verbalizer_lines(section, session, verbalizer, pattern)


def ranking_section(section: Section, session: Session, max_examples: int) -> None:
    if max_examples == 0:
        section.add("info", "skipped (--ranking-examples 0)")
        return
    try:
        results = perplexities(session, max_examples)
    except PetError as err:
        section.add("warn", f"not ranked: {err}")
        return
    examples = results[0].examples
    for place, (pattern, pppl) in enumerate(rank_patterns(results), start=1):
        section.add("info", f"{place}. {pattern}: pseudo-perplexity {pppl:.2f}", pattern=pattern, perplexity=pppl, rank=place)
    section.add("detail", f"(the pattern's own words and the best label word, each masked alone, on {examples} unlabeled texts; "
                          f"lower = more natural; {RANKING_NOTE})",
                results=[r.to_json() for r in results])


def domain_section(section: Section, session: Session) -> None:
    """What ``adapt.enabled: auto`` would measure and decide (pet/tools/domain.py)."""
    from pet.tools.domain import AdaptDecision, unlabeled_mlm_loss

    config = session.config
    try:
        decision = AdaptDecision(unlabeled_mlm_loss(config, loaded=(session.model, session.new_head)), config.adapt.auto_threshold)
    except PetError as err:
        section.add("warn", f"not measured: {err}")
        return
    if decision.adapt:
        advice = "adapt.enabled: auto adapts the model on it before stage A (or run pet adapt and use the result as model:)"
    else:
        advice = "adapt.enabled: auto trains from the model as it is"
    section.add("info", f"{decision.finding()}: {advice}", **decision.record())
    section.add("detail", f"(adapt.enabled is {str(config.adapt.enabled).lower()} in this config; BENCHMARKS.md, \"Task-adaptive "
                          "pretraining\", has the loss and what adaptation did on five tasks)")
