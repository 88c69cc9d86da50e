"""Several processes, one run: the process group that `torchrun` or `accelerate launch` sets up.

Both launchers export RANK, WORLD_SIZE and LOCAL_RANK; pet joins the group they describe (gloo on
the CPU, NCCL on CUDA) and splits work by whole units, so that every rank computes exactly what a
single process would have computed for its share: stage A trains whole teachers, stage B scores
whole chunks of the data (the batches inside a chunk are the same as in a one-process run, hence
bit-identical scores), stage C trains one student with DistributedDataParallel. Only rank 0 writes
a stage's manifest; the others wait for it at a barrier. Without those variables everything here is
a no-op and pet runs as one process.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch

T = TypeVar("T")
# A barrier waits while other ranks train whole teachers: hours on a slow device, not the default minutes.
BARRIER_TIMEOUT = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every world-th item, starting at its rank."""
        return list(items[self.rank :: self.world])

    def owner(self, index: int) -> int:
        return index % self.world

    def owns_chunk(self, index: int) -> bool:
        return self.owner(index) == self.rank

    def share(self, total: int, size: int) -> int:
        """How many of ``total`` rows fall in this rank's chunks of ``size`` rows."""
        return sum(min(size, total - start) for index, start in enumerate(range(0, total, size)) if self.owns_chunk(index))

    @property
    def suffix(self) -> str:
        """A file-name part that keeps ranks' partial results apart (none for one process)."""
        return "" if self.world == 1 else f".rank{self.rank}-of-{self.world}"

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def current_ranks() -> Ranks:
    """The launcher's ranks, joining its process group on first use; one rank without a launcher."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ranks.local_rank)
        torch.distributed.init_process_group(backend, timeout=BARRIER_TIMEOUT)
    return ranks


def rank_device(requested: str, ranks: Ranks) -> str:
    """``auto`` / ``cuda`` means this rank's own GPU when several processes share a machine."""
    if ranks.world > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank}"
    return requested


def gather_chunks(parts: Sequence[torch.Tensor], total: int, size: int) -> torch.Tensor:
    """Rows scored chunk by chunk on ``len(parts)`` ranks (chunk i on rank i % world) back in file order."""
    world = len(parts)
    out, offsets = [], [0] * world
    for index, start in enumerate(range(0, total, size)):
        rank, rows = index % world, min(size, total - start)
        out.append(parts[rank][offsets[rank] : offsets[rank] + rows])
        offsets[rank] += rows
    return torch.cat(out) if out else parts[0][:0]
