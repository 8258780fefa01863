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
    (r"R0 = 8\.122\s+kpc|z_sun = 20\.8 pc", "astropy's Galactocentric defaults"),
    (r"R0 = 8\.0 kpc", "Juric et al. 2008's frame, which the mock's truth uses"),
    (r"-0\.017 mas", "Gaia EDR3 parallax zero point, Lindegren et al. 2021"),
    (r"0\.3 mag in the median\s+\(tested\)|within the 0\.3 mag tested",
     "the tolerance of tests/test_distances_maps.py"),
    (r"adds 0\.1 mag of intrinsic scatter", "the intrinsic scatter map adopts for the Ivezic 2008 relation"),
    (r"1\.2533 sigma", "sqrt(pi/2): the standard error of a median"),
    (r"mu = -0\.78 \+ 0\.35|the halo \(-1\.46\)", "Ivezic et al. 2008's disk and halo laws"),
    (r"nside 16, 13\.4 deg\^2", "HEALPix: the area of an nside-16 pixel"),
    (r"0\.01 dex bins", "the map's histogram bin width (a setting)"),
    (r"default 0\.6 dex|earlier default of\s+0\.3 dex|0\.6 dex follows the truth",
     "map's --max-feh-err, now and before"),
    (r"85% target", "the giant-completeness target of the design brief (Thomas et al. 2019)"),
    (r"1\.4826 MAD", "the normal-consistent MAD factor"),
    (r"68\.3, 95\.4, 99\.7%", "the Gaussian 1, 2, 3 sigma coverages"),
    (r"(?m)^\| -?\d\.\d \| \d+ \|", "the mock clusters' [Fe/H] and ages (bench_clusters' configuration)"),
    (r"11 Gyr \(-1\.0\)|11 Gyr \(-0\.6\)|clusters? -[0-2]\.\d(?:(?:,| and)\s+-[0-2]\.\d)*",
     "the same clusters, named by their configured [Fe/H]"),
    (r"0\.10 dex in every bin|0\.10-dex target|0\.10 dex target|within 0\.10 dex", "issue 11's bias targets"),
    (r"-2\.19|-4\.\.\+0\.30", "the PARSEC grid's metallicity edge and the continued grid's range"),
    (r"true median below -1\.2", "the definition of a halo-dominated cell (bench_map_accuracy)"),
    (r"from -0\.75 to \+0\.25", "bin edges of bench_prior's table"),
    (r"smoothed by 0\.05 dex|the 0\.05-99\.95% range|a 0\.25-dex bin",
     "settings of the prior division, the training domain and bench_prior's bins"),
    (r"for 68%|for 98%", "the share of stars a percentile range covers (16-84%, 1-99%)"),
    (r"fewer than 1% of clean test stars", "a bound tests/test_populations.py asserts"),
    (r"puts 30% of the stars", "the fixed green2020 split's test share (a setting)"),
    (r"1\.06-1\.12 \(median 1\.11\)|= 1\.11 x it",
     "the green2020 preset's reddening scale, derived once by scripts/green2020_reddening_scale.py"),
    (r"coefficients \(0\.748, 0\.453, 0\.306, 0\.194,\s+0\.138", "Zhang & Yuan 2023's extinction coefficients"),
    (r"-0\.029 mas", "Gaia DR2 parallax zero point, Lindegren et al. 2018"),
    (r"/ 2\.751|their 0\.86 recalibration", "SFD98's and Schlafly & Finkbeiner 2011's coefficients"),
    (r"99\.0 = no detection", "MegaPipe's sentinel"),
    (r"Sirius \(V = -1\.46\)|-10 to 2; -1\.5 to 9\.5", "the validation layer's physical ranges"),
    (r"map grids of 0\.01 and 0\.001 kpc", "the reliability tests' cases"),
    (r"50, 90 and 99% of the labelled", "the report's contour levels"),
    (r"20% headroom|every 0\.0005 mag|0\.75 mag allowance",
     "settings of the mock's sampler, Gaia error table and binary allowance"),
    (r"103,212 stars/s of 2026-11-25", "issue 14's baseline for simulate"),
    (r"0\.07 stellar systems per pc\^3|estimated 10% of brown-dwarf", "RECONS (Henry et al. 2018)"),
    (r"Tonry et al\.\s+2012 to ~0\.03 mag", "the check of scripts/derive_ps1_offsets.py against Tonry et al. 2012"),
    (r"0\.15–0\.25 dex quoted", "issue 13's range for real SEGUE stars"),
    (r"issue 13 measured 0\.04–0\.17 mag,\s+typically 0\.10|Issue 13's target of 0\.03 mag|quotes about 0\.20",
     "issue 13's measurements and target, quoted"),
    (r"(?m)^\| (SEGUE DR17|mock before issue 13) \(issue 13\) .*$", "issue 13's percentiles, quoted"),
    (r"nodes at -2\.5, -3, -3\.5 and -4|only 0\.43 s|12\.5-Gyr models",
     "the grid's continuation: its nodes, 1/ln 10, the clusters' model age"),
    (r"than about -2\.4|gives -1\.65 for a -2\.0 star|slope of 1\.5|puts 3\.4% of\s+halo stars",
     "the known globular clusters' metallicity floor, the sources doc, Chiti et al. 2021, the halo law's own tail"),
    (r"G = 20\.5", "where the mock's Gaia BP/RP stop (a setting)"),
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
