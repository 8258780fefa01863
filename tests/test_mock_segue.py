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
    ((0.10, 0.15), (-2.0, -1.5)): 0.10, ((0.15, 0.20), (-2.0, -1.5)): 0.05,
    # hot stars (A / early F, g-r < 0.20): bluer than any locus (the correction fades out); the models' u-g is
    # 0.03-0.07 mag bluer than real stars'
    ((0.10, 0.15), (-1.5, -1.0)): 0.07, ((0.15, 0.20), (-1.5, -1.0)): 0.05,
    ((0.05, 0.10), (-1.0, -0.5)): 0.07, ((0.10, 0.15), (-1.0, -0.5)): 0.07,
    ((0.05, 0.10), (-0.5, 0.0)): 0.09, ((0.10, 0.15), (-0.5, 0.0)): 0.08,
    # metal-poor red giants (real: SEGUE's K-giant categories), on the Zhang et al. 2021 giant locus
    ((0.55, 0.60), (-2.5, -2.0)): 0.08,
    # 37 mock stars, half of them binaries
    ((0.40, 0.45), (-1.5, -1.0)): 0.06,
    # the metal-rich end: the mock's labelled stars are more metal-poor inside these bins (median label -0.38 vs
    # -0.33 at g-r 0.50-0.55), as its MDF stops short of the real one (99th percentile -0.03 vs +0.15)
    ((0.50, 0.55), (-0.5, 0.0)): 0.06, ((0.55, 0.60), (-0.5, 0.0)): 0.05, ((0.65, 0.70), (0.0, 0.5)): 0.06,
    # the red edge of SEGUE's K-dwarf category (g-r < 0.75 dereddened): the real stars beyond it are redder
    ((0.75, 0.80), (-0.5, 0.0)): 0.05, ((0.80, 0.85), (-1.0, -0.5)): 0.08, ((0.80, 0.85), (-0.5, 0.0)): 0.16,
}


@pytest.fixture(scope="module")
def segue_cells() -> list[dict]:
    real = pd.read_csv(real_sample(SEGUE_DR17))
    mock = catalog_frame(MockSurveyConfig(n_stars=40_000, seed=5, spec_only=True), workers=2)
    return compare_ug_cells((real["ug"].to_numpy(), real["gr"].to_numpy(), real["feh"].to_numpy()),
                            mock_observed_colours(mock))


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


def test_the_segue_residual_table_is_what_the_real_file_gives():
    """simulate.loci.SEGUE_UG_RESIDUAL is derive_ug_residual of the real file (to the 0.001 mag it is typed)."""
    from photofeh.simulate.loci import SEGUE_UG_GR, SEGUE_UG_RESIDUAL
    from photofeh.simulate.realism import RESIDUAL_GR, derive_ug_residual

    real = pd.read_csv(real_sample(SEGUE_DR17))
    assert tuple(RESIDUAL_GR) == tuple(SEGUE_UG_GR)
    table = derive_ug_residual(real["ug"], real["gr"], real["feh"])
    np.testing.assert_allclose(table, SEGUE_UG_RESIDUAL, atol=1e-3)
