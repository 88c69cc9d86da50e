"""One writer per output folder (pet/io/lock.py): a second process stops with a one-line error."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import held_by_another_process

from pet.errors import PetError
from pet.io.lock import LOCK, writing

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="folders are locked with fcntl.flock")


def test_a_second_writer_stops_with_the_holder_named(tmp_path):
    folder = tmp_path / "labels"
    with held_by_another_process(folder) as holder:
        record = json.loads((folder / LOCK).read_text())
        assert (record["pid"], record["command"]) == (holder.pid, "pet label")
        with pytest.raises(PetError) as err, writing(folder, "pet label"):
            pytest.fail("entered a folder another process holds")
        message = str(err.value)
        assert "\n" not in message
        assert f"pet label (pid {holder.pid} on " in message and "is writing this folder" in message
    # the holder died without cleaning up: its lock went with it
    with writing(folder, "pet distill"):
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK).exists()


def test_the_lock_is_reentrant_in_one_process_and_removed_at_the_end(tmp_path):
    folder = tmp_path / "out"
    with writing(folder, "pet.label"):
        with writing(folder, "pet label"):  # the api locks the folder, then its stage does again
            (folder / "data.txt").write_text("x")
        assert (folder / LOCK).exists()  # the outer block still holds it
    assert sorted(p.name for p in folder.iterdir()) == ["data.txt"]


def test_a_folder_the_lock_created_is_removed_when_left_empty(tmp_path):
    with pytest.raises(ValueError), writing(tmp_path / "new", "pet label"):
        raise ValueError("bad input, found after the lock was taken")
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError), writing(tmp_path / "run" / "teachers", "pet train-teachers"):
        raise ValueError("bad input")
    assert not (tmp_path / "run").exists()  # the parent the lock made for it goes too
    (tmp_path / "kept").mkdir()
    with writing(tmp_path / "kept", "pet label"):
        pass
    assert (tmp_path / "kept").is_dir()  # it existed before: not the lock's to remove


def test_ranks_other_than_0_do_not_lock(tmp_path):
    folder = tmp_path / "out"
    with held_by_another_process(folder):  # rank 0, holding the folder for the whole run
        with writing(folder, "pet label", enabled=False):
            (folder / "rank1.part").write_text("x")
    assert (folder / "rank1.part").exists()


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(PetError, match="output path is a file"):
        with writing(tmp_path / "out", "pet label"):
            pass


def test_a_folder_replaced_whole_is_locked_beside_it(tmp_path):
    from pet.io.artifacts import atomic_dir

    final = tmp_path / "report"
    with writing(final, "pet report", beside=True), atomic_dir(final) as folder:
        (folder / "index.html").write_text("x")
        assert (tmp_path / ".report.pet-lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # the lock file went with the block
    with held_by_another_process(final, "pet report", beside=True), pytest.raises(PetError, match="pet report"):
        with writing(final, "pet report", beside=True):
            pass


def test_a_file_system_without_flock_writes_unlocked_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno

    from pet.io import lock

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="pet"), writing(tmp_path / "out", "pet label"):
        (tmp_path / "out" / "data.txt").write_text("x")
    assert "cannot lock" in caplog.text and "No locks available" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.txt"]
