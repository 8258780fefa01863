"""The Ivezic et al. 2008 / Bond et al. 2010 photometric metallicity baseline."""

from __future__ import annotations

import numpy as np
import pytest

from photofeh.model.baselines import IVEZIC_BOND2010, fit_ivezic, ivezic_feh, ivezic_valid


def test_published_polynomial_values():
    """Hand evaluation of Bond et al. 2010 eq. A1 at (u-g, g-r) = (1.0, 0.3):
    -13.13 + 14.09 + 8.412 - 1.653 - 5.90 - 5.2812 + 2.742 - 1.8549 + 0 + 1.5714 = -1.0037."""
    assert ivezic_feh(1.0, 0.3) == pytest.approx(-1.0037, abs=1e-3)
    # a solar-type colour (u-g ~ 1.3, g-r ~ 0.45) reads near-solar, a blue turn-off star metal-poor
    assert ivezic_feh(1.30, 0.45) > -0.6
    assert ivezic_feh(0.85, 0.25) < -1.5


def test_validity_region():
    assert ivezic_valid(1.0, 0.3) and ivezic_valid(1.2, 0.5)
    assert not ivezic_valid(1.0, 0.7)  # too red
    assert not ivezic_valid(1.6, 0.3)  # below the stellar locus band
    assert not ivezic_valid(0.5, 0.3)  # above it


def test_refit_recovers_coefficients():
    rng = np.random.default_rng(1)
    ug = rng.uniform(0.7, 1.6, 20_000)
    gr = 0.5 * ug - 0.2 + rng.uniform(0, 0.25, 20_000)
    feh = ivezic_feh(ug, gr) + rng.normal(0, 0.01, ug.size)
    coef = fit_ivezic(ug, gr, feh)
    ok = ivezic_valid(ug, gr)
    assert np.allclose(ivezic_feh(ug[ok], gr[ok], coef), ivezic_feh(ug[ok], gr[ok], IVEZIC_BOND2010), atol=0.01)
