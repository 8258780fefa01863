"""Worker processes of simulate and predict: how many cores there are, and workers that end with their parent."""

from __future__ import annotations

import os

__all__ = ["available_cores", "die_with_parent", "become_worker", "WorkerDied", "wait_for"]


class WorkerDied(RuntimeError):
    """A worker process ended without answering (killed by the system, e.g. out of memory)."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a SLURM allocation), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this worker when its parent dies, however it dies (SIGKILL included):
    Linux prctl(PR_SET_PDEATHSIG). Elsewhere a watchdog thread checks the parent every second."""
    import ctypes
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def become_worker(parent: int) -> None:
    """Set up a pool worker: it ends with ``parent`` (:func:`die_with_parent`), leaves Ctrl-C to the parent,
    which stops the pool, and dies quietly on the SIGTERM with which a pool is terminated."""
    import signal

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wait_for(future, poll_s: float = 0.5):
    """``future.result()``, waiting in short slices: a signal delivered to another thread of this process
    (SIGTERM lands on any thread) is then handled within ``poll_s``, where one long wait would never wake."""
    while True:
        try:
            return future.result(timeout=poll_s)
        except TimeoutError:
            continue
