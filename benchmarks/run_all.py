"""Run every benchmark script (bench_*.py) and render BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True, cwd=HERE)
    subprocess.run([sys.executable, str(HERE / "render.py")], check=True, cwd=HERE)
