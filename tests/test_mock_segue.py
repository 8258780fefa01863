"""The mock's labelled stars against real SEGUE stars (issue 26, item 0).

Median observed u-g at fixed g-r (0.05 mag) and [Fe/H] (0.5 dex), cells with >= 30 stars on both sides: the real
file segue_dr17_colours_feh.csv (SDSS DR17, SSPP [Fe/H], colours not dereddened) against the mock's spectroscopic
sample (observed, reddened colours; u error < 0.05), as benchmarks/bench_mock_segue.py measures it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SEGUE_DR17, catalog_frame, real_sample

from photofeh.simulate import MockSurveyConfig
from photofeh.simulate.realism import compare_ug_cells, mock_observed_colours

TOLERANCE = 0.03
# Cells the mock cannot reach honestly, each with the bound it is held to (mag, |mock - real|) and why
# (docs/mock_calibration.md, section 5):
KNOWN_MISSES = {
    # blue horizontal-branch region: real SEGUE stars here mix BHB stars and blue stragglers (u-g ~0.1 mag bluer);
    # the mock has no blue stragglers
    ((0.10, 0.15), (-2.0, -1.5)): 0.085,
    # and its redder neighbour: 31 mock stars of two populations (turn-off and BHB), whose median jumps between
    # them when a few stars change. The depth per sky patch (simulate.observe.DEPTH_SCATTER_MAG) moved it from
    # -0.002 to +0.053 on seed 5, where every other cell moved by 0.001 (median), and left seed 6's in place
    ((0.15, 0.20), (-1.5, -1.0)): 0.06,
    # hot stars (A / early F, g-r < 0.15): bluer than any locus (the correction fades out)
    ((0.05, 0.10), (-1.0, -0.5)): 0.045, ((0.10, 0.15), (-0.5, 0.0)): 0.07,
    # metal-poor red giants (real: SEGUE's K-giant categories), on the Zhang et al. 2021 giant locus
    ((0.60, 0.65), (-2.5, -2.0)): 0.065,
    # thick-disk/halo stars between the turn-off and the G dwarfs (g-r 0.45-0.55, [Fe/H] -1.5 to -1): the real
    # median steps between the two cells by more than the mock's, and its u-g spreads more here than the real
    # stars' (docs/mock_calibration.md, section 6)
    ((0.45, 0.50), (-1.5, -1.0)): 0.05, ((0.50, 0.55), (-1.5, -1.0)): 0.055,
    # the metal-rich end: inside this bin the mock's labelled stars sit lower than the real ones, as its labelled
    # MDF stops short of the real one (99th percentile +0.10 vs +0.15)
    ((0.50, 0.55), (0.0, 0.5)): 0.05,
    # the red edge of SEGUE's K-dwarf category (g-r < 0.75 dereddened): the real median steps to the next cell by
    # more than the mock's correction, interpolated between 0.05-mag nodes, follows
    ((0.70, 0.75), (-0.5, 0.0)): 0.045,
    # M dwarfs beyond it: 58-73 mock and 31-119 real stars a cell, whose medians carry ~0.01 mag each
    ((1.05, 1.10), (-0.5, 0.0)): 0.04, ((1.15, 1.20), (-0.5, 0.0)): 0.04,
}


@pytest.fixture(scope="module")
def segue_mock() -> pd.DataFrame:
    return catalog_frame(MockSurveyConfig(n_stars=40_000, seed=5, spec_only=True), workers=2)


@pytest.fixture(scope="module")
def segue_cells(segue_mock) -> list[dict]:
    real = pd.read_csv(real_sample(SEGUE_DR17))
    return compare_ug_cells((real["ug"].to_numpy(), real["gr"].to_numpy(), real["feh"].to_numpy()),
                            mock_observed_colours(segue_mock))


def test_labelled_stars_fall_in_the_targeting_categories_as_real_segue_stars_do(segue_mock):
    """A fit, checked on another seed: spectro.SEGUE_CATEGORY_RATES, spectro.SSPP_MIN_SNR and the disk law were
    fitted to the same real file (on a window of seed 11). On this sample every category's share is within 0.01 of
    the file's; the F/turn-off, G and K dwarf, K giant and other categories' median [Fe/H] within 0.06 dex (without
    the S/N floor the F/turn-off stars were 0.26 dex poor); the labelled [Fe/H]'s 1st, 50th and 99th percentiles
    within 0.1 dex (the mock before the fit: -2.84 / -0.73 / -0.03 against -2.51 / -0.59 / +0.15). The
    low-[Fe/H] and BHB/A boxes are not fitted: the mock holds distant halo stars there where the file holds more
    disk stars (docs/mock_calibration.md, section 4); they are held to their measured offsets (0.51 and 0.86 dex
    poor) so that a change shows."""
    from photofeh.simulate.realism import category_table

    real = pd.read_csv(real_sample(SEGUE_DR17))
    table = category_table(real["ug"], real["gr"], real["ri"], real["feh"], segue_mock)
    for name, row in table.items():
        assert abs(row["share mock"] - row["share real"]) <= 0.01, (name, row)
    offset = {name: row["median [Fe/H] mock"] - row["median [Fe/H] real"] for name, row in table.items()}
    for name in ("F/turn-off", "G dwarf", "K dwarf", "K giant", "other"):
        assert abs(offset[name]) <= 0.06, (name, table[name])
    assert -0.65 <= offset["low [Fe/H]"] <= -0.35 and -1.0 <= offset["BHB/A"] <= -0.7, offset
    q = [1, 50, 99]
    np.testing.assert_allclose(np.percentile(segue_mock["feh_spec"].dropna(), q), np.percentile(real["feh"], q),
                               atol=0.1)


def test_median_u_minus_g_of_labelled_stars_matches_segue(segue_cells):
    """Issue 26, item 0: every cell within 0.03 mag, except the known misses, each held to its own bound."""
    assert len(segue_cells) >= 50
    misses = []
    for row in segue_cells:
        key = (row["g-r"], row["[Fe/H]"])
        bound = KNOWN_MISSES.get(key, TOLERANCE)
        if abs(row["mock - real"]) > bound:
            misses.append((key, row["mock - real"], row["n_real"], row["n_mock"]))
    assert not misses, misses
    within = sum(abs(r["mock - real"]) <= TOLERANCE for r in segue_cells)
    assert within >= len(segue_cells) - len(KNOWN_MISSES)


def test_metal_poor_turn_off_is_no_longer_too_red(segue_cells):
    """The issue's cells: the metal-poor turn-off (g-r 0.20-0.30, [Fe/H] -2.5 to -1) was +0.04 to +0.10 mag redder
    than real stars; now within 0.03 mag."""
    cells = [r for r in segue_cells if r["g-r"][0] in (0.2, 0.25) and -2.5 <= r["[Fe/H]"][0] < -1.0]
    assert len(cells) >= 5
    assert all(abs(r["mock - real"]) <= TOLERANCE for r in cells), cells


def test_the_mock_gives_the_real_files_residual_table_back(segue_mock):
    """simulate.loci.SEGUE_UG_RESIDUAL is refined (realism.refine_ug_residual, on seeds 21-24) until the mock's own
    labelled stars give the real file's table: on seed 5, in every refined cell (g-r >= 0.2) measured on both
    sides, real minus mock is within 0.045 mag, with a median of 0.01 or less. The real file's own table, copied
    into the mock unrefined, missed by up to 0.065 mag with a median of 0.016 (the mock sets u-g at the true
    [Fe/H], and its SSPP-like label errors then carry the stars of one [Fe/H] row into the next)."""
    from photofeh.simulate.realism import REFINED_COLUMNS, ug_residual_cells

    real = pd.read_csv(real_sample(SEGUE_DR17))
    diff = (ug_residual_cells(real["ug"], real["gr"], real["feh"])
            - ug_residual_cells(*mock_observed_colours(segue_mock)))
    diff = diff[:, REFINED_COLUMNS]
    diff = diff[np.isfinite(diff)]
    assert diff.size >= 50
    assert np.max(np.abs(diff)) <= 0.045, np.round(diff, 3)
    assert np.median(np.abs(diff)) <= 0.01, np.median(np.abs(diff))


def test_the_residual_table_keeps_the_real_files_values_where_it_is_not_refined():
    """Bluer than g-r = 0.2 (the hot stars, where the mock's correction fades out) the table holds the real
    file's medians (derive_ug_residual, to the 0.001 mag it is typed)."""
    from photofeh.simulate.loci import SEGUE_UG_GR, SEGUE_UG_RESIDUAL
    from photofeh.simulate.realism import REFINED_COLUMNS, RESIDUAL_GR, ug_residual_cells

    real = pd.read_csv(real_sample(SEGUE_DR17))
    assert tuple(RESIDUAL_GR) == tuple(SEGUE_UG_GR)
    cells = ug_residual_cells(real["ug"], real["gr"], real["feh"])
    kept = np.isfinite(cells) & ~REFINED_COLUMNS[None, :]
    assert kept.sum() >= 4
    np.testing.assert_allclose(SEGUE_UG_RESIDUAL[kept], np.round(cells[kept], 3), atol=1e-3)


def test_refining_moves_only_the_cells_measured_on_both_sides_and_restores_the_table():
    """refine_ug_residual's contract, on a small mock (one seed of 8,000 stars): an entry moves only where the
    real file and the mock both measure its cell from g-r = 0.2 on, by real minus mock; every other entry keeps the
    starting table's value; loci.SEGUE_UG_RESIDUAL is the shipped table again afterwards."""
    from photofeh.simulate import MockSurveyConfig, iter_chunks, loci
    from photofeh.simulate.realism import REFINED_COLUMNS, refine_ug_residual, ug_residual_cells

    real = pd.read_csv(real_sample(SEGUE_DR17))
    colours = (real["ug"], real["gr"], real["feh"])
    shipped = loci.SEGUE_UG_RESIDUAL.copy()
    refined = refine_ug_residual(*colours, n_stars=8_000, seeds=(31,), start=shipped)
    np.testing.assert_array_equal(loci.SEGUE_UG_RESIDUAL, shipped)
    (chunk,) = iter_chunks(MockSurveyConfig(n_stars=8_000, seed=31, spec_only=True), chunk_size=10**9, workers=1)
    step = ug_residual_cells(*colours) - ug_residual_cells(*mock_observed_colours(chunk))
    moves = np.isfinite(step) & REFINED_COLUMNS[None, :]
    assert 3 <= moves.sum() < moves.size // 2
    np.testing.assert_allclose(refined[moves], np.round(shipped[moves] + step[moves], 3), atol=1e-9)
    np.testing.assert_array_equal(refined[~moves], np.round(shipped[~moves], 3))
