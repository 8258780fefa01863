"""Resource limits (issue 28, item 9): a full disk, a file-size limit (``ulimit -f``) or an address-space limit
(``ulimit -v``) end a command with one line naming the limit and exit 1, nothing half-written under a final
name, and a prediction run resumable once the limit is raised (docs/reliability.md). The limits are set in the
child process only (``preexec_fn``)."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from photofeh.cli.common import MIN_ADDRESS_SPACE, resource_failure

CLI = [sys.executable, "-c", "import sys; from photofeh.cli import run; sys.argv[0] = 'photofeh'; run()"]


def _limited(which: int, size: int):
    """A preexec_fn setting the soft limit ``which`` to ``size`` bytes in the child."""
    def apply() -> None:
        resource.setrlimit(which, (size, resource.getrlimit(which)[1]))
    return apply


def _cli(*args: str, limit=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, preexec_fn=limit, env=env, timeout=300)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".partial-" in p.name or p.name.endswith(".lock"))


def _one_line_error(proc: subprocess.CompletedProcess, command: str, says: str) -> None:
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert last.startswith(f"photofeh {command}: error: ") and says in last, proc.stderr


@pytest.fixture(scope="module")
def stars(spec_catalog: pd.DataFrame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("limits") / "stars.parquet"
    spec_catalog.iloc[:2000].reset_index(drop=True).to_parquet(path)
    return path


def test_limits_a_file_size_limit_is_one_line_and_the_prediction_run_resumes(quick_model, stars, spec_catalog,
                                                                            tmp_path, capsys):
    """`ulimit -f`: Python ignores SIGXFSZ, so a write past the limit fails with EFBIG. predict said
    '[Errno 27] File too large' without the limit; train (safetensors' error) ended in a traceback. The limited
    runs are child processes; the unlimited reference and the resume run in this process (two interpreters
    fewer)."""
    from photofeh.cli import main

    out = tmp_path / "pred.parquet"
    args = ["predict", str(quick_model), str(stars), "--out", str(out), "--chunk-rows", "400", "--quiet"]
    assert main([*args[:4], str(tmp_path / "plain"), *args[5:]]) == 0
    capsys.readouterr()
    parts = sorted((tmp_path / "plain").glob("part-*.parquet"))
    assert len(parts) == 5
    # each chunk's part fits, the single file assembled from the five does not: the run fails at its end
    limit = int(1.5 * max(p.stat().st_size for p in parts))
    failed = _cli(*args, limit=_limited(resource.RLIMIT_FSIZE, limit))
    _one_line_error(failed, "predict", "file-size limit (ulimit -f: ")
    assert "rerun the same command to resume" in failed.stderr
    assert not out.exists() and _leftovers(tmp_path) == []
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chunks_resumed"] == 5 and summary["stars"] == 2000
    expected = pq.read_table(tmp_path / "plain").to_pandas().sort_values("source_id", ignore_index=True)
    got = pq.read_table(out).to_pandas().sort_values("source_id", ignore_index=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected)

    table = tmp_path / "spec.parquet"
    spec_catalog.iloc[:1000].to_parquet(table)
    run = tmp_path / "run"
    train = _cli("train", str(table), "--out", str(run), "--epochs", "1", "--baseline-rounds", "0", "--quiet",
                 limit=_limited(resource.RLIMIT_FSIZE, 16 * 1024))  # the weights file is larger
    _one_line_error(train, "train", "file-size limit (ulimit -f: 16.0 KiB")
    assert not run.exists() and _leftovers(tmp_path) == [] and not list(tmp_path.glob(".run*"))


def test_limits_an_address_space_limit_is_one_line_or_enough(quick_model, stars, tmp_path):
    """`ulimit -v`: below the floor a command is refused before it starts; at 2 GiB predict runs to its end
    (each thread's malloc arena reserved 64 MiB: the libraries aborted with exit 134 or hung there)."""
    small = _cli("predict", str(quick_model), str(stars), "--out", str(tmp_path / "small"), "--quiet",
                 limit=_limited(resource.RLIMIT_AS, MIN_ADDRESS_SPACE - 2**27))
    _one_line_error(small, "predict", "address-space limit (ulimit -v) is 1.4 GiB")
    assert not (tmp_path / "small").exists()
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env.update(OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")  # the thread count it was measured with
    enough = _cli("predict", str(quick_model), str(stars), "--out", str(tmp_path / "pred"), "--quiet",
                  "--workers", "2", "--chunk-rows", "500", limit=_limited(resource.RLIMIT_AS, 2 * 2**30), env=env)
    assert enough.returncode == 0, enough.stderr
    assert json.loads(enough.stdout)["stars"] == 2000 and (tmp_path / "pred" / "_complete.json").is_file()


@pytest.mark.parametrize("exc, says", [
    (OSError(errno.EFBIG, "File too large"), "file-size limit"),
    (OSError("[Errno 27] Error writing bytes to file. Detail: [errno 27] File too large"), "file-size limit"),
    (RuntimeError("Error while serializing: I/O error: File too large (os error 27)"), "file-size limit"),
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk is full"),
    (MemoryError(), "out of memory"),
    (RuntimeError("can't start new thread"), "out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), "out of memory"),
    (ImportError("libtorch_cpu.so: failed to map segment from shared object"), "out of memory"),
    (ValueError("stars.parquet: cannot read as parquet: MemoryError: "), "out of memory"),
])
def test_limits_every_resource_failure_is_named(exc, says):
    assert says in resource_failure(exc)


def test_limits_other_failures_are_not_resource_failures():
    wrapped = ValueError("cannot read x.parquet")
    wrapped.__context__ = MemoryError()  # raised while handling one: it is
    assert "out of memory" in resource_failure(wrapped)
    for exc in (OSError(errno.ENOENT, "No such file"), ValueError("bad column"), RuntimeError("shape mismatch"),
                KeyError("sdss_g")):
        assert resource_failure(exc) is None
