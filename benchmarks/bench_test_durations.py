"""The test suite's time: runs `make test`'s selection (pytest -m "not slow") with --durations=20, writes
benchmarks/results/test_durations.json, rewrites the table rows of README.md's block between
``<!-- test durations -->`` and ``<!-- /test durations -->`` (one row of render markers per slow test), and
renders the numbers (BENCHMARKS.md and README.md's markers, as benchmarks/render.py does). Nothing in the
block is typed by hand.

Usage: .venv/bin/python benchmarks/bench_test_durations.py [--allow-failures] [--slow-too] [extra pytest
arguments] (about as long as `make test`). A run in which a test fails writes nothing, unless --allow-failures
(for a tree where work in progress elsewhere fails a test): then the failures are counted in the result file.
--slow-too then runs the tests marked slow alone (pytest -m slow), which `make test-all` (CI) adds: the two
walls together bound CI's test time from above (the shared fixtures are built twice).
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time

import docnumbers
import render
from _common import ROOT, write_result

N_SLOWEST = 20
SELECTION = "not slow"  # what `make test` runs (Makefile); `make test-all` adds the tests marked slow
WORKERS = 2  # the Makefile's TEST_WORKERS: pytest-xdist processes
BLOCK = re.compile(r"(<!-- test durations -->\n)(.*?)(<!-- /test durations -->)", re.S)
# pytest's --durations lines: "12.34s call     tests/test_x.py::test_y[a-b]"
DURATION = re.compile(r"^(?P<seconds>\d+\.\d+)s (?P<phase>setup|call|teardown)\s+(?P<test>\S.*)$")
SUMMARY = re.compile(r"(?P<count>\d+) (?P<what>passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def run_suite(extra: list[str], allow_failures: bool = False, selection: str = SELECTION) -> tuple[str, float, float]:
    """pytest's output, the wall seconds and the CPU seconds (user + system) of the run's process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", selection,
                           "-n", str(WORKERS), f"--durations={N_SLOWEST}", *extra],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 and not (allow_failures and proc.returncode == 1):
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-2000:])
        raise SystemExit(f"pytest exited {proc.returncode}: nothing written")
    return proc.stdout, wall, cpu


def parse(output: str) -> tuple[list[dict], dict[str, int]]:
    """The slowest tests (in pytest's order, slowest first) and the closing line's counts."""
    slowest = []
    for line in output.splitlines():
        m = DURATION.match(line.strip())
        if m:
            slowest.append({"test": m["test"].strip(), "phase": m["phase"], "seconds": float(m["seconds"])})
    closing = [line for line in output.splitlines() if " in " in line and SUMMARY.search(line)]
    counts = {m["what"]: int(m["count"]) for m in SUMMARY.finditer(closing[-1])} if closing else {}
    return slowest[:N_SLOWEST], counts


def block_rows(n: int, slow: bool = False) -> str:
    """The block's text: its sentence and one table row per slow test, every value a render marker."""
    r = "test_durations"
    ci = (f" The tests marked slow, which CI's `make test-all` adds, took "
          f"<!-- r {r}::slow tests::wall seconds {{.0f}} -->?<!-- /r --> s more "
          f"(<!-- r {r}::slow tests::tests passed {{,}} -->?<!-- /r --> tests run alone, "
          f"<!-- r {r}::slow tests::cpu seconds {{.0f}} -->?<!-- /r --> s of CPU): CI's tests take at most "
          f"<!-- r {r}::slow tests::make test-all wall seconds at most {{.0f}} -->?<!-- /r --> s." if slow else "")
    rows = [f"`make test` (pytest -m \"{SELECTION}\" -n {WORKERS}: {WORKERS} pytest-xdist processes, each test on one "
            f"thread) on <!-- r {r}::machine::cores -->?<!-- /r --> cores: "
            f"<!-- r {r}::suite::tests passed {{,}} -->?<!-- /r --> tests passed in "
            f"<!-- r {r}::suite::wall seconds {{.0f}} -->?<!-- /r --> s "
            f"(<!-- r {r}::suite::cpu seconds {{.0f}} -->?<!-- /r --> s of CPU), measured "
            f"<!-- r {r}::machine::date -->?<!-- /r --> by `benchmarks/bench_test_durations.py`; this machine's "
            "speed drifts several-fold from minute to minute. Its slowest tests (pytest `--durations`; a "
            "setup is the first build of a shared fixture):" + ci,
            "", "| # | test | phase | seconds |", "|---|---|---|---|"]
    for k in range(1, n + 1):
        rows.append(f"| {k} | <!-- r {r}::slowest::{k}::test -->?<!-- /r --> | <!-- r {r}::slowest::{k}::phase -->"
                    f"?<!-- /r --> | <!-- r {r}::slowest::{k}::seconds {{.1f}} -->?<!-- /r --> |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> None:
    allow_failures, slow_too = "--allow-failures" in argv, "--slow-too" in argv
    extra = [a for a in argv if a not in ("--allow-failures", "--slow-too")]
    output, wall, cpu = run_suite(extra, allow_failures)
    slowest, counts = parse(output)
    if not slowest or "passed" not in counts:
        raise SystemExit("no durations or no closing line in pytest's output:\n" + output[-3000:])
    figures = {"suite": {"selection": f"pytest -m \"{SELECTION}\" -n {WORKERS} (make test)",
                         "tests passed": counts.get("passed", 0), "failed": counts.get("failed", 0),
                         "skipped": counts.get("skipped", 0),
                         "deselected": counts.get("deselected", 0), "wall seconds": round(wall, 1),
                         "cpu seconds": round(cpu, 1)},
               "slowest": {str(k): row for k, row in enumerate(slowest, 1)}}
    if slow_too:
        slow_output, slow_wall, slow_cpu = run_suite(extra, allow_failures, selection="slow")
        slow_counts = parse(slow_output)[1]
        figures["slow tests"] = {"selection": f"pytest -m slow -n {WORKERS} (what make test-all adds)",
                                 "tests passed": slow_counts.get("passed", 0),
                                 "failed": slow_counts.get("failed", 0), "wall seconds": round(slow_wall, 1),
                                 "cpu seconds": round(slow_cpu, 1),
                                 "make test-all wall seconds at most": round(wall + slow_wall, 1)}
    write_result("test_durations", "The test suite: the slowest tests of make test", figures,
                 notes="Wall and CPU seconds of one run; the machine is shared and its speed drifts several-fold, "
                       "so compare CPU seconds or runs made back to back.")
    readme = ROOT / "README.md"
    text = readme.read_text()
    if not BLOCK.search(text):
        raise SystemExit("README.md has no <!-- test durations --> ... <!-- /test durations --> block")
    readme.write_text(BLOCK.sub(lambda m: m[1] + block_rows(len(slowest), slow_too) + m[3], text, count=1))
    # what benchmarks/render.py does, for this result: BENCHMARKS.md, then the README's markers
    (ROOT / "BENCHMARKS.md").write_text(render.render())
    failed = [p for p in docnumbers.render_docs([readme]) if p.error]
    for p in failed:
        print(p)
    print(f"wrote README.md's test durations and BENCHMARKS.md; {len(failed)} README markers failed")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
