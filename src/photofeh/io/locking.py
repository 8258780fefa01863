"""One writer per output: an exclusive lock beside every output, and the clean-up of dead writers' leftovers.

``with output_lock(path, "photofeh predict"):`` takes an ``flock`` on the
hidden file ``.<name>.lock`` beside ``path``. The kernel releases it when
its process ends, however it ends (``kill -9`` included), so a lock is never
stale; a second writer is refused at once with a message naming the first
(process id, host, command, start time). While the lock is held, hidden
temporary files that a killed writer left (``.<name>.partial-<pid>``, the
only names outputs are written under before they are complete) belong to
no live process and are removed. On network file systems ``flock`` is
emulated with POSIX byte-range locks (Linux NFS since 2.6.12), which also
exclude writers on other hosts.

A SIGKILL cannot be handled, so a small process forked when the lock is
taken (:func:`_start_janitor`) waits for its parent: if the parent ends
without releasing the lock, it removes the lock file and the parent's
hidden temporary names beside the output. A killed command thus leaves
nothing, unless the janitor is killed with it (a whole process group or
control group killed at once); then the next writer removes the leftovers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputLocked", "output_lock", "remove_partials", "lock_path"]


class OutputLocked(RuntimeError):
    """Another process is writing this output."""


# A lock whose recorded owner is dead on this host is held only by the owner's janitor removing its leftovers (or
# by the kernel, a moment before it releases a killed process's files): wait this long for it instead of refusing.
# Without the wait, a run started right after `kill -9` of the previous one was refused on a loaded machine (CI,
# 2026-12-07: tests/test_predict_catalog.py's kill-and-rerun test).
DEAD_OWNER_WAIT_S = 10.0


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def remove_partials(path: Path, inside: bool = False) -> list[Path]:
    """Remove the temporary files of dead writers of ``path`` (call with the lock held).

    ``.<name>.partial-*`` beside ``path``; with ``inside``, also every ``.*.partial-*`` in the folder ``path``.
    """
    found = list(path.parent.glob(f".{path.name}.partial-*"))
    if inside and path.is_dir():
        found += list(path.glob(".*.partial-*"))
    _remove(found)
    return found


def _remove(paths: list[Path]) -> None:
    """Delete files, and folders with what is in them (a link to a folder is unlinked, not followed)."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


JANITOR_NAME = "photofeh-clean"  # the janitor's process name (/proc/PID/comm)


def _janitor(done: int, held: int, lock: Path, output: Path, owner: int) -> None:
    """In the forked janitor: wait until the owner closes ``done``; a byte first means it released the lock
    itself. Otherwise it died holding it: take the lock once the kernel has released it, and while holding it
    remove the owner's hidden temporary names beside ``output`` and the lock file. Never returns."""
    try:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a Ctrl-C or hang-up of the group:
                signal.signal(sig, signal.SIG_IGN)                      # the owner cleans up; we wait for it
        except ValueError:  # forked from a thread Python does not take for the main one
            pass
        try:  # named in ps and top (15 characters at most)
            with open("/proc/self/comm", "w") as comm:
                comm.write(JANITOR_NAME)
        except OSError:
            pass
        mine = os.open(lock, os.O_RDWR)  # our own open file: the inherited one (held) carries the owner's lock
        if os.fstat(mine).st_ino != os.fstat(held).st_ino:
            os._exit(0)  # the owner already released it and another writer made a new one
        first, second = sorted((done, mine))
        os.closerange(0, first)  # nothing of the owner's stays open here (its lock above all)
        os.closerange(first + 1, second)
        os.closerange(second + 1, 1 << 20)
        while True:
            try:
                said = os.read(done, 1)
                break
            except InterruptedError:
                continue
        if said:
            os._exit(0)
        for _ in range(500):  # a dead process's files are released a moment after its pipe reads as closed
            try:
                fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.01)
        else:
            os._exit(0)  # another writer holds it now, and will remove the leftovers itself
        if os.fstat(mine).st_nlink and os.stat(lock).st_ino == os.fstat(mine).st_ino:  # still the owner's file
            _remove(list(output.parent.glob(f".{output.name}.partial-{owner}*")))
            os.unlink(lock)  # holding it: a writer that opened the old file retries (output_lock)
    except BaseException:
        pass
    os._exit(0)


def _start_janitor(lock: Path, held: int, output: Path) -> tuple[int, int] | None:
    """Fork the process that cleans up after this one if it is killed (see the module's doc): returns its pid
    and the pipe end that tells it this process released the lock itself; None where ``os.fork`` is missing
    or fails (then a killed run's leftovers wait for the next writer)."""
    if not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    owner = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:
        _janitor(read_end, held, lock, output, owner)
    os.close(read_end)
    return pid, write_end


def _stop_janitor(janitor: tuple[int, int] | None) -> None:
    """Tell the janitor the lock was released, and reap it (it exits at once)."""
    if janitor is None:
        return
    pid, write_end = janitor
    try:
        os.write(write_end, b"x")
    except OSError:
        pass
    os.close(write_end)
    for _ in range(200):  # at most ~1 s; an unreaped janitor is harmless
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # reaped by someone else
            return
        time.sleep(0.005)


def _owner_line(command: str) -> str:
    """What a writer records in its lock file (read back by :func:`_holder` and :func:`_owner_is_dead`)."""
    return f"pid {os.getpid()} on {socket.gethostname()}, {command}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"


def _owner_is_dead(holder: str) -> bool:
    """Whether the lock file's text (:func:`_owner_line`) names a process of this host that no longer exists."""
    words = holder.split()
    if len(words) < 4 or words[0] != "pid" or words[2] != "on" or words[3].rstrip(",") != socket.gethostname():
        return False
    try:
        os.kill(int(words[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not a number, or alive but another user's
        return False
    return False


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not yet written its name"


@contextmanager
def output_lock(path: str | os.PathLike, command: str, inside: bool = False) -> Iterator[list[Path]]:
    """Hold the exclusive lock of output ``path`` for the block; yield the leftovers removed.

    The lock is that of the real path (symlinks resolved): two runs given different links to one output
    exclude each other. Raises :class:`OutputLocked` at once if another process holds it, and ``OSError`` if
    the folder of ``path`` does not exist or is not writable.
    """
    given = Path(path)
    # the real path: a symlink to the output (or to a folder above it) takes the same lock as the output itself
    path = Path(os.path.realpath(given))
    lock = lock_path(path)
    deadline = time.monotonic() + DEAD_OWNER_WAIT_S
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if _owner_is_dead(holder) and time.monotonic() < deadline:
                time.sleep(0.01)  # its janitor is cleaning up: the lock is free in a moment
                continue
            real = f" (the real path of {given})" if path != given.absolute() else ""
            raise OutputLocked(f"{path}{real} is being written by another process ({holder}); wait for it to "
                               "finish or choose another output") from None
        try:  # the previous holder may have removed the file between our open and our lock: take the new one
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    janitor = None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _owner_line(command).encode())
        removed = remove_partials(path, inside)
        janitor = _start_janitor(lock, fd, path)
        yield removed
    finally:
        try:
            os.unlink(lock)  # while still holding it: a waiter then retries on a fresh file (see above)
        except OSError:
            pass
        os.close(fd)
        _stop_janitor(janitor)
