"""``python -m photofeh.cli``: the ``photofeh`` executable where its script is not installed."""

from photofeh.cli import run

if __name__ == "__main__":  # pragma: no cover
    run()
