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
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputLocked", "output_lock", "remove_partials", "lock_path"]


class OutputLocked(RuntimeError):
    """Another process is writing this output."""


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def remove_partials(path: Path, inside: bool = False) -> list[Path]:
    """Remove the temporary files of dead writers of ``path`` (call with the lock held).

    ``.<name>.partial-*`` beside ``path``; with ``inside``, also every ``.*.partial-*`` in the folder ``path``.
    """
    found = list(path.parent.glob(f".{path.name}.partial-*"))
    if inside and path.is_dir():
        found += list(path.glob(".*.partial-*"))
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return found


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
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
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
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, {command}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield remove_partials(path, inside)
    finally:
        try:
            os.unlink(lock)  # while still holding it: a waiter then retries on a fresh file (see above)
        except OSError:
            pass
        os.close(fd)
