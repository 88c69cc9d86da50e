"""One writer per output folder.

Two pet processes writing the same folder (the same ``pet label -o`` twice, a benchmark restarted
while its old worker still runs) would interleave their files: one would delete the other's
partial results and fail with a traceback, or both would finish and leave a mix. A stage holds an
exclusive lock on ``FOLDER/.pet-lock`` while it writes; a second writer stops at once with a
one-line error naming the process that holds it.

The lock is ``flock`` on an open file, so the kernel releases it when its holder exits in any way
(a crash or ``kill -9`` included): there is no stale lock to clean up by hand. The file is removed
when the holder finishes. On systems without ``fcntl`` (Windows) folders are not locked.

A tool that replaces its output folder whole (``pet adapt``, ``pet report``: pet/io/artifacts.py
``atomic_dir``) cannot keep the lock inside it; it locks ``.NAME.pet-lock`` beside the folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import takewhile
from pathlib import Path

from pet.errors import PetError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".pet-lock"

log = logging.getLogger("pet")

_held: dict[Path, int] = {}  # folder -> nesting depth: the api locks a folder its stage locks again


@contextmanager
def writing(folder: Path, command: str, *, enabled: bool = True, beside: bool = False) -> Iterator[None]:
    """Hold ``folder``'s writer lock for the duration of the block (re-entrant within a process).

    ``enabled=False`` for the ranks of a distributed run other than rank 0: they write into the
    folder rank 0 locked for all of them. A folder the lock itself created is removed again if
    the block leaves it empty (input that failed its checks leaves nothing behind). ``beside``:
    the lock file sits next to the folder, for a folder that is replaced whole.
    """
    key = Path(folder).resolve()
    if not enabled or fcntl is None or key in _held:
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _release_depth(key)
        return
    if key.exists() and not key.is_dir():
        raise PetError(f"{key}: output path is a file, not a folder")
    home = key.parent if beside else key
    created = list(takewhile(lambda missing: not missing.exists(), (home, *home.parents)))  # innermost first
    home.mkdir(parents=True, exist_ok=True)
    path = home / (f".{key.name}{LOCK}" if beside else LOCK)
    fd = _acquire(path, key, command)
    _held[key] = 1
    try:
        yield
    finally:
        _release_depth(key)
        try:
            path.unlink(missing_ok=True)  # while still holding it: a waiting opener re-checks the inode
        finally:
            os.close(fd)
        for made in created:  # the folders the lock made, while the block left them empty
            if not made.is_dir() or any(made.iterdir()):
                break
            made.rmdir()


def _release_depth(key: Path) -> None:
    _held[key] -= 1
    if _held[key] == 0:
        del _held[key]


def _acquire(path: Path, folder: Path, command: str) -> int:
    """An open descriptor of ``path`` holding its exclusive flock, the holder's record written into it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise PetError(f"{folder}: {holder} is writing this folder; wait for it to finish, "
                           f"or write to another folder") from None
        except OSError as err:  # a file system without flock (some network mounts): write unlocked
            log.warning("%s: cannot lock (%s); not guarded against a second writer", folder, err)
            return fd
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file after we opened it: lock the new one
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(record) + "\n").encode())
    return fd


def _describe(fd: int) -> str:
    """'pet label (pid 123 on host, since ...)' from the holder's record, or a generic phrase."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096).decode())
        return f"{record['command']} (pid {record['pid']} on {record['host']}, since {record['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another pet process"
