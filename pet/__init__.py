"""pet: Pattern-Exploiting Training for few-shot text classification.

The public API (docs/python-api.md)::

    pet.Pattern, pet.Verbalizer                  patterns and verbalizers as objects
    pet.train_teachers(...) -> pet.Teachers      stage A
    pet.label(teachers) -> pet.SoftLabels        stage B
    pet.distill(soft_labels) -> pet.Student      stage C
    pet.run(config, output) -> pet.Run           all three, from a run config
    pet.load_config(path) -> pet.RunConfig       a YAML run config, validated
    pet.report(run_folder) -> Path               RUN/report/index.html with figures (`pet report`)
    pet.check(config) -> pet.CheckReport         lint patterns, verbalizers and data (`pet check`)
    pet.search_words(config) -> pet.WordSearch   label words proposed by the model (`pet search-words`)
    pet.pattern_perplexity(config)               label-free pattern ranking (list of pet.PatternPerplexity)
    pet.adapt(config, output) -> Path            task-adaptive MLM pretraining on the unlabeled text (`pet adapt`)

Names are imported on first use, so ``import pet`` (and ``pet --help``) stays fast: torch and
transformers load only when a stage runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "train_teachers": "pet.api", "label": "pet.api", "distill": "pet.api", "run": "pet.api",
    "Teachers": "pet.results", "SoftLabels": "pet.results", "Student": "pet.results", "Run": "pet.results",
    "Prediction": "pet.results",
    "Pattern": "pet.io.patterns", "Verbalizer": "pet.io.patterns", "MultiLabelVerbalizer": "pet.io.patterns",
    "load_patterns": "pet.io.patterns", "load_verbalizers": "pet.io.patterns",
    "RunConfig": "pet.io.config", "load_config": "pet.io.config", "TeachersConfig": "pet.io.config",
    "IpetConfig": "pet.io.config", "LabellingConfig": "pet.io.config", "DistillationConfig": "pet.io.config",
    "RuntimeConfig": "pet.io.config", "DataConfig": "pet.io.config", "TaskConfig": "pet.io.config",
    "PetError": "pet.errors",
    "report": "pet.report",
    "check": "pet.tools.check", "CheckReport": "pet.tools.report",
    "search_words": "pet.tools.words", "WordSearch": "pet.tools.words",
    "pattern_perplexity": "pet.tools.perplexity", "PatternPerplexity": "pet.tools.perplexity",
    "adapt": "pet.tools.adapt", "AdaptSettings": "pet.tools.adapt",
}
__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from pet.api import distill, label, run, train_teachers
    from pet.errors import PetError
    from pet.io.config import (DataConfig, DistillationConfig, IpetConfig, LabellingConfig, RunConfig, RuntimeConfig,
                               TaskConfig, TeachersConfig, load_config)
    from pet.io.patterns import MultiLabelVerbalizer, Pattern, Verbalizer, load_patterns, load_verbalizers
    from pet.report import report
    from pet.results import Prediction, Run, SoftLabels, Student, Teachers
    from pet.tools.adapt import AdaptSettings, adapt
    from pet.tools.check import check
    from pet.tools.perplexity import PatternPerplexity, pattern_perplexity
    from pet.tools.report import CheckReport
    from pet.tools.words import WordSearch, search_words


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pet' has no attribute {name!r}")
    # Plain imports (no importlib): none of these modules imports torch or transformers at load time.
    from pet import api, errors, results
    from pet.io import config, patterns

    modules = {"pet.api": api, "pet.errors": errors, "pet.results": results, "pet.io.config": config,
               "pet.io.patterns": patterns}
    if module.startswith("pet.tools."):  # these import torch, so only when one of their names is asked for
        from pet.tools import adapt, check, perplexity, report, words

        modules.update({"pet.tools.check": check, "pet.tools.report": report, "pet.tools.words": words,
                        "pet.tools.perplexity": perplexity, "pet.tools.adapt": adapt})
    value = getattr(modules[module], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


# `pet.report` is both a subpackage (pet/report/) and the function pet.report(run_folder). The import
# system points the package attribute at the subpackage when the subpackage first loads, and a lazy
# __getattr__ is never consulted once the attribute exists; so load the subpackage now (it is light:
# no torch, no matplotlib) and bind the name to the function, which later imports leave alone.
from pet.report import report  # noqa: E402
