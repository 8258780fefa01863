"""One source of truth for numbers (issue 25): every measured result quoted in README.md, docs/*.md and
BENCHMARKS.md is rendered from benchmarks/results/*.json.

- README.md and docs/*.md quote a result between markers (benchmarks/docnumbers.py describes them:
  ``<!-- r green2020::feh::network sigma -->0.195<!-- /r -->``); each must read what its result gives.
- A decimal number, a percentage or a rate ("283,000 stars/s") quoted outside the markers must be a
  constant or a citation: kept in a region that says why (``<!-- not measured: WHY -->`` ...
  ``<!-- /not measured -->``), or matched by a phrase of ALLOWED below, each with its reason. Code,
  links, versions, dates and numbers beside a comparison (cuts, ranges: "E(B-V) < 0.05") are skipped.
- BENCHMARKS.md is what benchmarks/render.py writes from the result files, to the byte.

Re-render after rerunning a benchmark: ``.venv/bin/python benchmarks/render.py`` (or ``make docs``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import docnumbers  # noqa: E402

RERENDER = "rerun .venv/bin/python benchmarks/render.py (make docs)"

# Documents that hold no measured result at all, with why.
NOT_MEASURED_FILES = {
    "docs/sources_mock_calibration.md": "the sources collected for issue 13: published coefficients and values, and "
                                        "tables derived from them, each labelled with how it was checked",
    "docs/config.md": "generated from photofeh.model.train's settings (make docs): defaults and ranges",
    "docs/schema.md": "generated from photofeh.schema (make docs): the column schema's ranges",
}

# Phrases that quote constants, citations, targets or settings, not results: (regular expression, why).
ALLOWED: list[tuple[str, str]] = [
    (r"gate of 0\.005 dex", "issue 14's accuracy gate for cheaper arithmetic"),
]

NOT_MEASURED = re.compile(r"<!-- not measured: (?P<why>[^>]*?) -->.*?<!-- /not measured -->", re.S)


def _docs() -> list[Path]:
    return docnumbers.doc_paths()


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    return docnumbers.load_results()


def test_every_marker_reads_what_its_result_gives(results):
    problems = docnumbers.render_docs(_docs(), results, write=False)
    assert not problems, f"{len(problems)} markers differ from benchmarks/results ({RERENDER}):\n" + "\n".join(
        map(str, problems))


def test_no_measured_looking_number_outside_the_markers():
    allowed = [re.compile(pattern) for pattern, _ in ALLOWED]
    quoted = []
    for path in _docs():
        if _name(path) in NOT_MEASURED_FILES:
            continue
        text = path.read_text()
        for m in NOT_MEASURED.finditer(text):
            assert m["why"].strip(), f"{_name(path)}: a 'not measured' region must say why"
        text = docnumbers._blank(text, NOT_MEASURED)
        quoted += docnumbers.quoted_numbers(text, path, allowed)
    assert not quoted, (
        f"{len(quoted)} numbers quoted outside markers: render each from its result file "
        "(<!-- r NAME::KEY -->value<!-- /r -->), reword, or, for a constant or citation, say why in a "
        "'not measured' region or in ALLOWED:\n" + "\n".join(map(str, quoted)))


def test_every_allowed_phrase_is_still_used():
    """An allowlist entry nothing matches any more is dead weight: remove it."""
    texts = "\n".join(p.read_text() for p in _docs())
    unused = [pattern for pattern, _ in ALLOWED if not re.search(pattern, texts)]
    assert not unused, f"ALLOWED entries that match nothing: {unused}"


def test_benchmarks_md_is_rendered_from_the_results():
    import render

    assert (ROOT / "BENCHMARKS.md").read_text() == render.render(), f"BENCHMARKS.md is stale: {RERENDER}"


def test_markers_render_formats_expressions_and_short_paths():
    results = {"r": {"figures": {"a": {"rate": 932401.0, "share": 0.061, "label": "x"}, "b": {"rate": 5.0}},
                     "machine": {"date": "2026-12-06"}}}
    text = ("<!-- r r::a::rate {x/1e6:.2f} -->?<!-- /r --> <!-- r r::share {.0%} -->?<!-- /r --> "
            "<!-- r r::a::rate {,.0f} -->?<!-- /r --> <!-- r r::machine::date -->?<!-- /r -->")
    out, problems = docnumbers.render_text(text, results)
    assert out.count("<!-- /r -->") == 4 and len(problems) == 4
    assert [m["text"] for m in docnumbers.MARKER.finditer(out)] == ["0.93", "6%", "932,401", "2026-12-06"]
    assert docnumbers.render_text(out, results)[1] == []
    _, problems = docnumbers.render_text("<!-- r r::rate -->1<!-- /r --> <!-- r r::nope -->2<!-- /r -->", results)
    assert "ambiguous" in problems[0].error and "no key path" in problems[1].error
    two = "<!-- r r::a::rate & r::b::rate {x1/x2:,.0f} -->?<!-- /r --> <!-- r r::a::rate & r::b::rate -->?<!-- /r -->"
    out, problems = docnumbers.render_text(two, results)
    assert docnumbers.MARKER.search(out)["text"] == "186,480" and "need an expression" in problems[1].error
    with pytest.raises(ValueError, match="not allowed"):
        docnumbers.Ref.parse("r::a::rate {__import__('os'):.2f}").render(results)


def test_the_scan_finds_results_and_skips_constants():
    text = ("sigma 0.195 dex, 12% of stars, 283,000 stars/s; 20,000 stars; E(B-V) < 0.05; Python 3.11; "
            "`0.5`; 2026-12-02; <!-- r x::y -->0.7<!-- /r --> [link](a/0.3.md)")
    assert [q.number for q in docnumbers.quoted_numbers(text)] == ["0.195", "12%", "283,000"]
