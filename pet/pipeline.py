"""The pipeline: [adapt -> RUN/adapted ->] stage A -> RUN/teachers -> stage B -> RUN/labels -> stage C -> RUN/student.

With ``adapt.enabled``, the model is first adapted on the unlabeled text (`pet adapt`, pet/tools/adapt.py)
into RUN/adapted, and every stage starts from that model; with ``auto``, only when the model's MLM loss on
that text says it is far from the model's own (pet/tools/domain.py; the measurement and the decision are
written to RUN/adapt-decision.json). Each stage reads only the artifact folder of
the stage before it (its manifest records the config and input hashes), so each can also be run alone
(`pet train-teachers`, `pet label`, `pet distill`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pet.io.config import RunConfig
from pet.stages.distillation.stage import STAGE_KEYS as DISTILL_KEYS
from pet.stages.distillation.stage import distill
from pet.stages.labelling.stage import STAGE_KEYS as LABEL_KEYS
from pet.stages.labelling.stage import label
from pet.stages.teachers.stage import train_teachers


def run(config: RunConfig, output: Path, *, overwrite: bool = False) -> None:
    """Run every stage; a rerun after an interruption skips what already finished. The result is the
    run folder's artifacts: ``pet.Run(output)`` (pet/results.py) reads them and sums them up.

    Stages B and C get this config's own settings for them (and its unlabeled and test files), not
    the ones recorded upstream: a rerun with another ``--distillation.steps`` is compared with the
    student on disk, never answered with it (pet/io/artifacts.py ``reuse_or_refuse``).
    """
    if adapts(config, output):
        config = adapted(config, output / "adapted", overwrite=overwrite)
    train_teachers(config, output / "teachers", overwrite=overwrite)
    label(output / "teachers", output / "labels", downstream(config, LABEL_KEYS), overwrite=overwrite)
    distill(output / "labels", output / "student", downstream(config, DISTILL_KEYS), overwrite=overwrite)


def adapts(config: RunConfig, output: Path) -> bool:
    """Whether this run adapts the model first: ``adapt.enabled`` as set, or measured and decided under ``auto``."""
    from pet.core.distributed import current_ranks
    from pet.io.artifacts import ADAPT_DECISION
    from pet.tools.domain import decide_adaptation

    if config.adapt.enabled != "auto":
        if current_ranks().main:  # a decision an earlier auto run left would describe another run
            (output / ADAPT_DECISION).unlink(missing_ok=True)
        return config.adapt.enabled
    return decide_adaptation(config, output / ADAPT_DECISION).adapt


def adapted(config: RunConfig, folder: Path, *, overwrite: bool = False) -> RunConfig:
    """Adapt ``config.model`` into ``folder`` (kept when adapted there from the same settings and data)
    and return the config whose stages start from it.

    The returned config names the folder as ``model`` and has ``adapt.enabled`` off: the stages record
    the adapted model (with its adaptation's fingerprint, pet/io/artifacts.py ``model_reads``) as the
    model they started from, and stage A, which refuses ``adapt.enabled``, runs.
    """
    from pet.core.distributed import current_ranks
    from pet.tools.adapt import adapt

    ranks = current_ranks()
    if ranks.main:  # one process adapts; under torchrun the others wait for its folder
        adapt(config, folder, overwrite=overwrite)
    ranks.barrier()
    return config.model_copy(update={"model": str(folder.resolve()),
                                     "adapt": config.adapt.model_copy(update={"enabled": False})})


def downstream(config: RunConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """This config's values for the sections and keys a later stage may set, as dotted overrides."""
    data = config.to_json()
    out: dict[str, Any] = {}
    for key in keys:
        section, _, name = key.partition(".")
        if name:
            out[key] = data[section][name]
        else:
            out.update({f"{section}.{k}": v for k, v in data[section].items()})
    return out
