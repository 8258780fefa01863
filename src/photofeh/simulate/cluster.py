"""Mock star clusters (simple stellar populations) with known truth, in their Galactic field.

A cluster is one age and one [Fe/H] at one distance: members differ only in
initial mass, binarity and position, so a method that recovers [Fe/H] from
photometry should give every member the same answer. The members go through
exactly the observation model of the field survey (``survey.py``): PARSEC
isochrones, unresolved binaries with the field's fractions, the same dust
law, footprints, photometric noise, Gaia parallaxes and SEGUE/SSPP-like
spectra. Around them, field stars of the normal mock Galaxy fill the same
cone and magnitude window at their true density, so contamination is as
realistic as the Galaxy model.

Members. Initial masses follow the Kroupa 2001 IMF (MNRAS 322, 231) between
the lowest mass that can reach the magnitude window at the cluster's distance
and the highest still alive; stars are drawn until ``n_members`` fall inside
the window (and inside the field). Positions follow a Plummer 1911 profile
(MNRAS 71, 460), projected surface density Sigma(R) ~ (1 + R^2/a^2)^-2, whose
projected half-mass radius is ``a`` (``radius_arcmin``), truncated at the
field radius. All members share the cluster's distance: the depth of a
cluster (a few pc) is ignored. They also share one true E(B-V): the map value
at the centre times the dust fraction in front of the cluster, with one draw
of the map's 10% error for the whole cluster (a cluster sits behind a single
dust column; differential reddening is ignored).

Field. ``MockSurvey.block`` draws positions from a ``GalaxyModel``; here a
:class:`ConeGalaxy` with the same interface proposes positions inside the
cone only, so every other step of the field model is the survey's own code.
Its proposals follow an envelope of rho d^2 V(d) over the cone and are thinned
by the exact density at each position (rejection sampling), so the field
follows the Juric et al. 2008 densities direction by direction. The number of
proposals is Poisson with mean ``FIELD_DENSITY_KPC3`` times the envelope's
integral; thinning a Poisson process keeps it Poisson, so the number of field
stars is a Poisson draw around the model's expected count. The absolute
scale, which the mock survey never needed, comes from the local density of
stellar systems (``LOCAL_SYSTEM_DENSITY_PC3``). Cost: one survey block (65,536
proposals, ~1 s) per ~25,000 field stars, plus ~4 s to load the isochrone
grid; fields needing more than ``MAX_FIELD_PROPOSALS`` are refused (~8,000
stars per deg^2 at (l, b) = (60, 60) with 14 < r < 22.5: a 10 arcmin field
holds ~700 and takes one block).

``pop`` is ``"cluster"`` for members; the output adds a bool ``cluster_member``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from photofeh.bands import BANDS, SIMULATED_BANDS, extinction_coefficient
from photofeh.schema import MOCK_COLUMNS, Column
from photofeh.simulate import galaxy as gal
from photofeh.simulate import observe as obs
from photofeh.simulate.isochrones import PHASES
from photofeh.simulate.spectro import segue_target_probability, sspp_labels
from photofeh.simulate.survey import (
    BINARY_FRACTION,
    BINARY_Q_RANGE,
    BLOCK_PROPOSALS,
    GIANT_LOGG,
    MockSurvey,
    MockSurveyConfig,
    _cast,
)

__all__ = ["ClusterConfig", "ClusterFieldSurvey", "ConeGalaxy", "CLUSTER_COLUMNS", "FIELD_DENSITY_KPC3",
           "simulate_cluster_field", "write_cluster_catalog", "stars_per_proposal"]

# Absolute scale of the Galaxy model. galaxy.density() is relative to the thin disk at the Sun; the mock
# survey never needed more, as it writes a chosen number of stars. The RECONS census counted 317 stellar and
# brown-dwarf systems within 10 pc in April 2018 (Henry et al. 2018, AJ 155, 265; recons.org census page),
# 0.076 systems per pc^3; brown dwarfs are about one object in ten there (RECONS, 2015 census: 366 stars,
# 37 brown dwarfs), so systems with a stellar (or white-dwarf) primary number ~0.07 pc^-3. A mock "star" is
# such a system (primary from the IMF, dead ones counted as the census counts white dwarfs). At the Sun the
# model's thin + thick + halo densities are 1 + 0.12 + 0.0051 (Juric et al. 2008, table 10), hence the thin
# disk normalisation below. Check (tests/test_cluster.py): the mock then holds ~7,100 stars per deg^2 with
# r < 22 in its SDSS footprint, where Juric et al. 2008 counted 48 million stars with r < 22 over 6,500 deg^2
# (~7,400 per deg^2).
LOCAL_SYSTEM_DENSITY_PC3 = 0.07
FIELD_DENSITY_KPC3 = LOCAL_SYSTEM_DENSITY_PC3 * 1e9 / (1.0 + gal.THICK["f"] + gal.HALO["f"])

# Default sky position (l, b) = (60, 60) deg: high latitude, inside the default SDSS (b > 30, dec > -5),
# CFIS (b > 25, dec > 30: dec there is +36.7) and PS1 footprints (observe.DEFAULT_FOOTPRINTS).
DEFAULT_LB = (60.0, 60.0)
# Galactic globular clusters have half-light radii of a few pc (Harris 1996, AJ 112, 1487, 2010 edition):
# 2 arcmin is 5 pc at 8.5 kpc. A Plummer profile's projected half-mass radius is its radius a (mass follows light).
DEFAULT_RADIUS_ARCMIN = 2.0
DEFAULT_FIELD_RADIUS_ARCMIN = 10.0
MAX_FIELD_RADIUS_ARCMIN = 120.0  # the cone sampler's envelope assumes a small cone; cost grows with its area
# Field proposals allowed (~76 survey blocks, ~1.5 min, up to ~2 million field stars in memory); toward the
# inner Galaxy even a small cone can hold more (the model's halo is steep there, and it has no bulge).
MAX_FIELD_PROPOSALS = 5_000_000

CLUSTER_SOURCE_ID_BASE = 1 << 62  # members' ids; field stars keep the survey's block * 2^20 + proposal index
MEMBER_BATCH = 8192  # members are drawn in fixed batches so that a seed gives one catalogue
MAX_MEMBER_DRAWS = 10_000_000
_STREAM = 0xC1057E  # random streams SeedSequence([seed, _STREAM, j]): distinct from the survey's [seed, block]

CLUSTER_COLUMNS: tuple[Column, ...] = (
    *MOCK_COLUMNS,
    Column("cluster_member", "bool", "", "star belongs to the mock cluster (pop 'cluster'); else a field star"),
)


@dataclass
class ClusterConfig:
    """Everything that defines a mock cluster and its field; written into the file metadata.

    ``select_band``, ``mag_range``, ``footprints``, ``disk_feh_law``, ``halo_feh_law``, ``colours``,
    ``binaries`` and ``isochrones`` mean what they mean in :class:`MockSurveyConfig` and apply to members
    and field alike. ``binary_fraction`` overrides, for members only, the field's mass-dependent fractions
    (None keeps them). ``ebv``: SFD-scale E(B-V) to infinity over the whole field (None: the mock's dust
    map at the cluster).
    """

    feh: float
    age_gyr: float
    distance_kpc: float
    n_members: int
    l_deg: float = DEFAULT_LB[0]
    b_deg: float = DEFAULT_LB[1]
    radius_arcmin: float = DEFAULT_RADIUS_ARCMIN
    feh_spread: float = 0.0
    binaries: bool = True
    binary_fraction: float | None = None
    select_band: str = "sdss_r"
    mag_range: tuple[float, float] = (14.0, 22.5)
    ebv: float | None = None
    footprints: dict[str, str] = field(default_factory=lambda: {
        k: v.to_text() for k, v in obs.DEFAULT_FOOTPRINTS.items()})
    disk_feh_law: str = "calibrated"
    halo_feh_law: str = "an2015"
    colours: str = "loci"
    isochrones: str | None = None
    seed: int = 42

    def validate(self, grid=None) -> None:
        """Raise ``ValueError`` naming the first bad field; with an isochrone grid, also check that
        [Fe/H] and age lie inside it."""
        for name in ("feh", "age_gyr", "distance_kpc", "l_deg", "b_deg", "radius_arcmin", "feh_spread"):
            _check_real(name, getattr(self, name))
        if not isinstance(self.n_members, (int, np.integer)) or isinstance(self.n_members, bool) \
                or not 1 <= self.n_members <= 1_000_000:
            raise ValueError(f"n_members must be an integer from 1 to 1,000,000, got {self.n_members!r}")
        if not 0.0 < self.age_gyr <= 20.0:
            raise ValueError(f"age_gyr must be in (0, 20], got {self.age_gyr}")
        if not 0.0 < self.distance_kpc <= 300.0:
            raise ValueError(f"distance_kpc must be in (0, 300], got {self.distance_kpc}")
        if not 0.0 <= self.l_deg < 360.0 or not -90.0 <= self.b_deg <= 90.0:
            raise ValueError(f"(l_deg, b_deg) must be in [0, 360) x [-90, 90], got ({self.l_deg}, {self.b_deg})")
        if not 0.0 < self.radius_arcmin <= 600.0:
            raise ValueError(f"radius_arcmin (Plummer radius) must be in (0, 600], got {self.radius_arcmin}")
        if not 0.0 <= self.feh_spread <= 1.0:
            raise ValueError(f"feh_spread must be in [0, 1] dex, got {self.feh_spread}")
        if not isinstance(self.binaries, (bool, np.bool_)):
            raise ValueError(f"binaries must be True or False, got {self.binaries!r}")
        if self.binary_fraction is not None:
            _check_real("binary_fraction", self.binary_fraction)
            if not 0.0 <= self.binary_fraction <= 1.0:
                raise ValueError(f"binary_fraction must be in [0, 1] or None, got {self.binary_fraction}")
        if self.ebv is not None:
            _check_real("ebv", self.ebv)
            if not 0.0 <= self.ebv <= obs.DustModel.max_ebv:
                raise ValueError(f"ebv must be in [0, {obs.DustModel.max_ebv}] or None, got {self.ebv}")
        if self.select_band not in SIMULATED_BANDS:
            raise ValueError(f"select_band must be a simulated band ({', '.join(SIMULATED_BANDS)}), "
                             f"got {self.select_band!r}")
        try:
            field_config(self).validate()  # seed, magnitude range, footprints, disk law: the survey's checks
        except KeyError as exc:
            raise ValueError(str(exc).strip("'\"")) from None
        if grid is not None:
            lo, hi = grid.mh_range
            if not lo <= self.feh <= hi:
                raise ValueError(f"feh must lie inside the isochrone grid's [M/H] range [{lo:.2f}, {hi:.2f}], "
                                 f"got {self.feh}")
            a_lo, a_hi = 10 ** (grid.logage[[0, -1]] - 9.0)
            if not a_lo <= self.age_gyr <= a_hi:
                raise ValueError(f"age_gyr must lie inside the isochrone grid's age range [{a_lo:.3g}, "
                                 f"{a_hi:.3g}] Gyr, got {self.age_gyr}")


def _check_real(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def field_config(cluster: ClusterConfig) -> MockSurveyConfig:
    """The survey configuration of the field around ``cluster`` (``n_stars`` is unused: the field's size
    follows from its density)."""
    return MockSurveyConfig(
        n_stars=1, seed=cluster.seed, select_band=cluster.select_band, mag_range=tuple(cluster.mag_range),
        min_abs_b=0.0, footprints=dict(cluster.footprints), disk_feh_law=cluster.disk_feh_law,
        halo_feh_law=cluster.halo_feh_law, colours=cluster.colours, binaries=cluster.binaries, spec_only=False,
        isochrones=cluster.isochrones)


# ------------------------------------------------------------------ sky geometry
def offset_positions(l0: float, b0: float, rho_deg: np.ndarray, theta: np.ndarray):
    """(l, b) at angular distance ``rho_deg`` and position angle ``theta`` (rad) from (l0, b0):
    great-circle destination, exact at any separation and near the poles."""
    b0r, rho = np.radians(b0), np.radians(rho_deg)
    sinb = np.sin(b0r) * np.cos(rho) + np.cos(b0r) * np.sin(rho) * np.cos(theta)
    b = np.arcsin(np.clip(sinb, -1.0, 1.0))
    dl = np.arctan2(np.sin(theta) * np.sin(rho) * np.cos(b0r), np.cos(rho) - np.sin(b0r) * sinb)
    return (l0 + np.degrees(dl)) % 360.0, np.degrees(b)


def cone_directions(rng: np.random.Generator, n: int, l0: float, b0: float, radius_deg: float):
    """Directions uniform on the sphere inside the cone (cos of the separation uniform)."""
    cos_rho = rng.uniform(np.cos(np.radians(radius_deg)), 1.0, n)
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    return offset_positions(l0, b0, np.degrees(np.arccos(cos_rho)), theta)


def plummer_radii(rng: np.random.Generator, n: int, a: float, r_max: float) -> np.ndarray:
    """Projected radii from a Plummer (1911) profile of radius ``a`` truncated at ``r_max``.

    The projected mass inside R is R^2 / (R^2 + a^2), so R = a sqrt(u / (1 - u)) for u uniform below
    its value at ``r_max``.
    """
    u = rng.uniform(0.0, r_max**2 / (r_max**2 + a**2), n)
    return a * np.sqrt(u / (1.0 - u))


# ------------------------------------------------------------------ field in a cone
class ConeGalaxy:
    """Proposals (population, l, b, d) inside one cone, for :meth:`MockSurvey.block`.

    Same interface as :class:`GalaxyModel` (``sample``, ``visibility_at``). The proposal density is, per
    population, an envelope q(ln d) of rho d^3 V(d) (per unit ln d and solid angle) over the cone: an upper
    bound of rho over the cone (:meth:`_max_density`), the larger of both ends of each ln d interval, times
    ``HEADROOM``; directions are uniform in the cone. ``sample`` marks a proposal ``in_region`` with
    probability rho(x) d^3 V(d) / q, so that after the survey's own visibility thinning the accepted stars
    follow rho d^2 x (visible IMF share) exactly. ``max_ratio`` records the largest ratio met: above 1 would
    mean the envelope was too low somewhere (never seen; kept for the tests).
    """

    HEADROOM = 1.1

    def __init__(self, l_deg: float, b_deg: float, radius_deg: float, visibility,
                 d_min_kpc: float = 0.01, d_max_kpc: float = gal.HALO_RMAX_KPC + gal.FRAME["R0_kpc"],
                 n_d: int = 400):
        self.l0, self.b0, self.radius_deg = float(l_deg), float(b_deg), float(radius_deg)
        self.n_d = n_d
        self.log_d = np.linspace(np.log(d_min_kpc), np.log(d_max_kpc), n_d)
        d = np.exp(self.log_d)
        self.vis = visibility(d)  # (pop, n_d), as GalaxyModel.vis
        integrand = self._max_density(d) * d**3 * self.vis
        self.q = self.HEADROOM * np.maximum(integrand[:, 1:], integrand[:, :-1])  # (pop, interval)
        mass = self.q * np.diff(self.log_d)
        self.solid_angle = 2.0 * np.pi * (1.0 - np.cos(np.radians(self.radius_deg)))
        self.proposal_mass = float(self.solid_angle * mass.sum())  # relative density x kpc^3
        self._choice_cdf = np.cumsum(mass.ravel()) / mass.sum()
        self.max_ratio = 0.0

    def _max_density(self, d: np.ndarray) -> np.ndarray:
        """An upper bound of each population's density over the cone at each distance.

        Densities fall with R and |Z| (and with r, built from both, for the halo), so they are bounded by
        their value at the smallest R and the smallest |Z| met in the cone. |Z| = |d sin b + Z_sun| has a
        kink in the plane, so its minimum comes exactly from the cone's latitude range; R is smooth (but at
        the Galactic centre itself) and its minimum is taken over 169 directions spread over the cone.
        """
        rho, theta = [np.zeros(1)], [np.zeros(1)]
        for ring in range(1, 7):
            rho.append(np.full(8 * ring, ring / 6 * self.radius_deg))
            theta.append(np.linspace(0.0, 2.0 * np.pi, 8 * ring, endpoint=False))
        l, b = offset_positions(self.l0, self.b0, np.concatenate(rho), np.concatenate(theta))
        R_min = gal.galactocentric(l[:, None], b[:, None], d[None, :])[0].min(axis=0)
        b_lo, b_hi = np.radians(max(self.b0 - self.radius_deg, -90.0)), np.radians(min(self.b0 + self.radius_deg, 90.0))
        z_lo, z_hi = d * np.sin(b_lo) + gal.FRAME["Zsun_kpc"], d * np.sin(b_hi) + gal.FRAME["Zsun_kpc"]
        absz_min = np.where(z_lo * z_hi <= 0.0, 0.0, np.minimum(np.abs(z_lo), np.abs(z_hi)))
        return np.stack([gal.density(pop, R_min, absz_min) for pop in gal.POPULATIONS])

    def sample(self, rng: np.random.Generator, n: int):
        """Draw ``n`` proposals; returns pop index, l, b (deg), d (kpc), and the density-thinning mask."""
        n_int = self.log_d.size - 1
        pick = np.minimum(np.searchsorted(self._choice_cdf, rng.random(n), side="right"), self._choice_cdf.size - 1)
        pop, k = np.divmod(pick, n_int)
        step = self.log_d[1] - self.log_d[0]
        d = np.exp(self.log_d[k] + rng.random(n) * step)
        l, b = cone_directions(rng, n, self.l0, self.b0, self.radius_deg)
        R, Z, _ = gal.galactocentric(l, b, d)
        rho = np.zeros(n)
        for p, name in enumerate(gal.POPULATIONS):
            sel = pop == p
            rho[sel] = gal.density(name, R[sel], Z[sel])
        ratio = rho * d**3 * self.visibility_at(pop, d) / self.q[pop, k]
        if n:
            self.max_ratio = max(self.max_ratio, float(ratio.max()))
        return pop, l, b, d, rng.random(n) < ratio

    visibility_at = gal.GalaxyModel.visibility_at  # uses only log_d and vis, which this class shares


def stars_per_proposal(galaxy: gal.GalaxyModel) -> float:
    """True number of stars each proposal of a full-sky :class:`GalaxyModel` stands for, at
    ``FIELD_DENSITY_KPC3``: multiply a mock survey's star counts per proposal by it to get real counts."""
    cell_solid_angle = 4.0 * np.pi / (galaxy.n_l * galaxy.n_sinb)  # equal-area cells
    return FIELD_DENSITY_KPC3 * cell_solid_angle * float(galaxy.column.sum())


@dataclass(frozen=True)
class _UniformDust(obs.DustModel):
    """The survey's dust layer with one map value of E(B-V) to infinity everywhere (a user's choice)."""

    ebv: float = 0.0

    def map_ebv(self, l_deg, b_deg, patch_factor):
        return np.full(np.shape(l_deg), self.ebv, dtype=float)


class ClusterFieldSurvey(MockSurvey):
    """The mock survey restricted to the cone around one cluster; also draws the cluster's members.

    Holds the isochrone grid (~4 s to build): reuse it for clusters that share ``field_config``, sky
    position, ``ebv`` and field radius (any feh, age, distance, size or membership).
    """

    def __init__(self, cluster: ClusterConfig, field_radius_arcmin: float = DEFAULT_FIELD_RADIUS_ARCMIN):
        cluster.validate()
        _check_real("field_radius_arcmin", field_radius_arcmin)
        if not 0.0 < field_radius_arcmin <= MAX_FIELD_RADIUS_ARCMIN:
            raise ValueError(f"field_radius_arcmin must be in (0, {MAX_FIELD_RADIUS_ARCMIN:g}], "
                             f"got {field_radius_arcmin}")
        super().__init__(field_config(cluster))
        self.cone = (cluster.l_deg, cluster.b_deg, float(field_radius_arcmin))
        self.ebv = cluster.ebv
        if cluster.ebv is not None:
            self.dust = _UniformDust(ebv=float(cluster.ebv))
        self.galaxy = ConeGalaxy(cluster.l_deg, cluster.b_deg, field_radius_arcmin / 60.0,
                                 visibility=self._visibility_envelope)
        n_prop = self.expected_field_proposals()
        if n_prop > MAX_FIELD_PROPOSALS:
            raise ValueError(f"the field within {field_radius_arcmin:g} arcmin of (l, b) = ({cluster.l_deg:g}, "
                             f"{cluster.b_deg:g}) would take ~{n_prop:.2g} proposals (~{n_prop / 6e4:.0f} s; at "
                             f"most {MAX_FIELD_PROPOSALS:.0e}): choose a smaller field radius or another direction")

    def check_fits(self, cluster: ClusterConfig) -> None:
        """Refuse a cluster this survey was not built for."""
        if self.config != field_config(cluster) or self.cone[:2] != (cluster.l_deg, cluster.b_deg) \
                or self.ebv != cluster.ebv:
            raise ValueError("this ClusterFieldSurvey was built for another seed, sky position, E(B-V) or "
                             "selection: build one for this cluster")

    # ------------------------------------------------------------ field
    def expected_field_proposals(self) -> float:
        """Mean number of proposals of the field's Poisson process (each kept with its acceptance)."""
        return FIELD_DENSITY_KPC3 * self.galaxy.proposal_mass

    def field(self) -> dict[str, np.ndarray]:
        """Field stars in the cone and magnitude window: the survey's blocks over a Poisson number of
        proposals (block k covers proposals k * BLOCK_PROPOSALS onward)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, _STREAM, 2]))
        n_prop = int(rng.poisson(self.expected_field_proposals()))
        parts = []
        for k in range(-(-n_prop // BLOCK_PROPOSALS)):
            blk = self.block(k)
            idx = blk["source_id"] - np.int64(k) * (1 << 20)
            keep = idx < n_prop - k * BLOCK_PROPOSALS
            parts.append({c: v[keep] for c, v in blk.items()})
        if not parts:
            return _empty(MOCK_COLUMNS)
        return {c.name: np.concatenate([p[c.name] for p in parts]) for c in MOCK_COLUMNS}

    # ------------------------------------------------------------ members
    def members(self, cluster: ClusterConfig) -> dict[str, np.ndarray]:
        """``cluster.n_members`` members inside the magnitude window and the field radius."""
        self.check_fits(cluster)
        cluster.validate(self.grid)
        rng = np.random.default_rng(np.random.SeedSequence([cluster.seed, _STREAM, 1]))
        ebv_map, ebv_true = self._cluster_reddening(rng, cluster)
        self._check_visible(cluster, ebv_true)
        drawn = self._draw_members(rng, cluster, ebv_true)
        return self._observe_members(rng, cluster, drawn, ebv_map, ebv_true)

    def _cluster_reddening(self, rng, cluster: ClusterConfig) -> tuple[float, float]:
        """Map E(B-V) at the centre and the true E(B-V) of every member (one draw of the map error)."""
        l0, b0 = np.array([cluster.l_deg]), np.array([cluster.b_deg])
        ebv_map = self.dust.map_ebv(l0, b0, self.cal.dust_patch[obs.sky_patch(l0, b0)])
        ebv_true = self.dust.star_ebv(rng, ebv_map, b0, np.array([cluster.distance_kpc]))
        return float(ebv_map[0]), float(ebv_true[0])

    def _selection_mags(self, where1, where2, is_bin, dm: float, ebv: float) -> np.ndarray:
        """Extinguished, noiseless magnitude in the selection band (what the window applies to)."""
        sel = self.select_band
        names = [sel] + (["gaia_bp", "gaia_rp"] if sel.startswith("gaia") else [])
        mabs = self._system_mags(where1, is_bin, self.grid.take(where2, np.flatnonzero(is_bin)), names)
        bp_rp0 = mabs["gaia_bp"] - mabs["gaia_rp"] if "gaia_bp" in mabs else None
        return mabs[sel] + dm + extinction_coefficient(sel, bp_rp0) * ebv

    def _check_visible(self, cluster: ClusterConfig, ebv: float) -> None:
        """Refuse, with the magnitudes the cluster spans, a cluster none of whose stars reaches the window."""
        grid = self.grid
        logage = np.log10(cluster.age_gyr * 1e9)
        corners = grid.corners(np.array([cluster.feh]), np.array([logage]))
        last = int(grid.last_valid(corners[0])[0])
        eeps = np.arange(max(last, 1) + 1)  # every EEP of the blended isochrone, the last as k = last-1, frac 1
        idx = [np.full(eeps.size, i[0]) for i in corners[0]]
        w = [np.full(eeps.size, x[0]) for x in corners[1]]
        k = np.minimum(eeps, eeps[-1] - 1)
        where = (idx, w, k, (eeps - k).astype(float), np.ones(eeps.size, bool))
        dm = 5.0 * np.log10(100.0 * cluster.distance_kpc)
        mags = self._selection_mags(where, where, np.zeros(eeps.size, bool), dm, ebv)
        lo, hi = self.mag_range
        bright, faint = float(np.nanmin(mags)), float(np.nanmax(mags))
        if not (bright - 2.5 * np.log10(2.0) < hi and faint >= lo):  # an equal-mass binary is 0.75 mag brighter
            raise ValueError(f"no star of this cluster ([Fe/H] = {cluster.feh}, {cluster.age_gyr} Gyr, "
                             f"{cluster.distance_kpc} kpc, E(B-V) = {ebv:.3f}) falls in the window "
                             f"{lo} <= {self.select_band} < {hi}: its stars span {self.select_band} = "
                             f"{bright:.1f} to {faint:.1f}")

    def _draw_members(self, rng, cluster: ClusterConfig, ebv: float) -> dict[str, np.ndarray]:
        """Draw stars in fixed batches until ``n_members`` fall in the window; keep the first ones."""
        kept: list[dict[str, np.ndarray]] = []
        n_kept = n_drawn = 0
        while n_kept < cluster.n_members:
            if n_drawn >= MAX_MEMBER_DRAWS:
                raise ValueError(f"only {n_kept} of {cluster.n_members} members fell in the window "
                                 f"{self.mag_range[0]} <= {self.select_band} < {self.mag_range[1]} after "
                                 f"{n_drawn:,d} draws: move the cluster or widen mag_range")
            batch = self._member_batch(rng, cluster, ebv, MEMBER_BATCH)
            kept.append(batch)
            n_kept += batch["m1"].size
            n_drawn += MEMBER_BATCH
        return {k: np.concatenate([b[k] for b in kept])[:cluster.n_members] for k in kept[0]}

    def _member_batch(self, rng, cluster: ClusterConfig, ebv: float, n: int) -> dict[str, np.ndarray]:
        """One batch: [Fe/H], IMF masses over the visible range, binaries as in the field, Plummer radii;
        returns the stars inside the selection window."""
        grid = self.grid
        feh = cluster.feh + cluster.feh_spread * rng.standard_normal(n)
        feh_grid = np.clip(feh, *grid.mh_range)
        logage = np.full(n, np.log10(cluster.age_gyr * 1e9))
        corners = grid.corners(feh_grid, logage)
        m_lo, m_hi, _ = self._visible_mass_range(corners, np.full(n, cluster.distance_kpc))
        m1 = gal.sample_kroupa_mass(rng, n, m_lo, np.maximum(m_hi, m_lo))
        if cluster.binary_fraction is None:
            f_bin = np.where(m1 < BINARY_FRACTION["boundary_msun"], BINARY_FRACTION["low_mass"],
                             BINARY_FRACTION["solar"])
        else:
            f_bin = np.full(n, cluster.binary_fraction)
        is_bin = (rng.random(n) < f_bin) & bool(cluster.binaries)
        q = rng.uniform(*BINARY_Q_RANGE, n)
        radius = plummer_radii(rng, n, cluster.radius_arcmin, self.cone[2]) / 60.0
        theta = rng.uniform(0.0, 2.0 * np.pi, n)
        w1 = grid.locate(feh_grid, logage, m1, corners)
        w2 = grid.locate(feh_grid, logage, q * m1, corners)
        is_bin = is_bin & w2[4]
        m_sel = self._selection_mags(w1, w2, is_bin, 5.0 * np.log10(100.0 * cluster.distance_kpc), ebv)
        keep = w1[4] & (m_sel >= self.mag_range[0]) & (m_sel < self.mag_range[1])
        out = {"feh": feh, "m1": m1, "q": q, "is_bin": is_bin, "radius_deg": radius, "theta": theta}
        return {k: v[keep] for k, v in out.items()}

    def _observe_members(self, rng, cluster: ClusterConfig, s: dict[str, np.ndarray], ebv_map: float,
                         ebv_true: float) -> dict[str, np.ndarray]:
        """Photometry, parallaxes, spectra and truth columns of the members, as ``MockSurvey.block``
        makes them for field stars."""
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        grid, n = self.grid, s["m1"].size
        feh, is_bin, q = s["feh"], s["is_bin"], s["q"]
        l, b = offset_positions(cluster.l_deg, cluster.b_deg, s["radius_deg"], s["theta"])
        d = np.full(n, float(cluster.distance_kpc))
        R, Z, phi = gal.galactocentric(l, b, d)
        feh_grid = np.clip(feh, *grid.mh_range)
        logage = np.full(n, np.log10(cluster.age_gyr * 1e9))
        corners = grid.corners(feh_grid, logage)
        w1 = grid.locate(feh_grid, logage, s["m1"], corners)
        w2 = grid.locate(feh_grid, logage, q * s["m1"], corners)
        mabs = self._system_mags(w1, is_bin, grid.take(w2, np.flatnonzero(is_bin)), list(SIMULATED_BANDS))
        bp_rp0 = mabs["gaia_bp"] - mabs["gaia_rp"]
        dm = 5.0 * np.log10(100.0 * d)
        ebv_star = np.full(n, ebv_true)
        patch = obs.sky_patch(l, b)
        icrs = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
        cols: dict[str, np.ndarray] = {
            "source_id": CLUSTER_SOURCE_ID_BASE + np.arange(n, dtype=np.int64),
            "ra": icrs.ra.deg, "dec": icrs.dec.deg, "l": l, "b": b, "ebv": np.full(n, ebv_map),
        }
        for name, bd in SIMULATED_BANDS.items():
            app = obs.reddened(name, mabs[name], dm, ebv_star, bp_rp0)
            inside = self.footprints[bd.survey].contains(b, cols["dec"])
            cols[name], cols[bd.err] = obs.observe_band(rng, bd, app, patch, self.cal, inside)
        cols["parallax"], cols["parallax_error"] = obs.gaia_parallax(rng, d, cols["gaia_g"])

        teff = 10.0 ** grid.evaluate("logte", w1)
        logg = grid.evaluate("logg", w1)
        dered = {f: cols[f"sdss_{f}"] - BANDS[f"sdss_{f}"].r_ebv * ebv_map for f in "ugri"}
        p_target = segue_target_probability(dered["u"], dered["g"], dered["r"], dered["i"])
        targeted = rng.random(n) < p_target
        labels, sspp_ok = sspp_labels(rng, feh, logg, teff, cols["sdss_g"])
        cols["in_spec"] = targeted & sspp_ok
        cols["spec_target_probability"] = p_target
        for key, val in labels.items():
            cols[key] = np.where(cols["in_spec"], val, np.nan)

        lo, hi = grid.model_mh_range
        cols.update({
            "feh_true": feh,
            "feh_beyond_grid": (feh < lo) | (feh > hi),
            "logg_true": logg,
            "teff_true": teff,
            "is_giant_true": logg < GIANT_LOGG,
            "phase": np.asarray(PHASES, dtype=object)[grid.phase(w1)],
            "mass_true": grid.evaluate("mass", w1),
            "age_gyr_true": np.full(n, float(cluster.age_gyr)),
            "pop": np.full(n, "cluster", dtype=object),
            "is_binary_true": is_bin,
            "mass_ratio_true": np.where(is_bin, q, np.nan),
            "dist_kpc_true": d,
            "ebv_true": ebv_star,
            **{f"mabs_{name}_true": mabs[name] for name in SIMULATED_BANDS},
            "R_kpc_true": R, "Z_kpc_true": Z, "phi_deg_true": phi,
        })
        return {c.name: _cast(cols[c.name], c.dtype) for c in MOCK_COLUMNS}

    def cluster_metadata(self, cluster: ClusterConfig, n_field: int) -> dict[str, str]:
        """Key/value metadata of a cluster catalogue (like :meth:`MockSurvey.metadata`)."""
        meta = self.metadata()
        meta.update({
            "photofeh_kind": "mock cluster and field",
            "config": json.dumps(asdict(cluster)),
            "field_config": json.dumps(asdict(self.config)),
            "field_radius_arcmin": str(self.cone[2]),
            "n_members": str(cluster.n_members),
            "n_field": str(n_field),
            "field_density_kpc3": json.dumps({"thin_disk_at_sun": FIELD_DENSITY_KPC3,
                                              "source": "RECONS 10 pc census (Henry et al. 2018), ~0.07 "
                                                        "stellar systems per pc^3 at the Sun"}),
        })
        return meta


def _empty(columns) -> dict[str, np.ndarray]:
    return {c.name: _cast(np.zeros(0, dtype=object if c.dtype == "string" else c.dtype), c.dtype)
            for c in columns}


# ------------------------------------------------------------------ entry points
def simulate_cluster_field(cluster: ClusterConfig, field_radius_arcmin: float = DEFAULT_FIELD_RADIUS_ARCMIN,
                           survey: ClusterFieldSurvey | None = None) -> dict[str, np.ndarray]:
    """Members of ``cluster`` and the field stars of the same cone and window (columns of
    :data:`CLUSTER_COLUMNS`, members first). The same config gives the same table."""
    if survey is None:
        survey = ClusterFieldSurvey(cluster, field_radius_arcmin)
    elif survey.cone[2] != field_radius_arcmin:
        raise ValueError(f"the survey was built for a field radius of {survey.cone[2]} arcmin, "
                         f"not {field_radius_arcmin}")
    members = survey.members(cluster)
    field_stars = survey.field()
    cols = {c.name: np.concatenate([members[c.name], field_stars[c.name]]) for c in MOCK_COLUMNS}
    cols["cluster_member"] = np.arange(cols["source_id"].size) < cluster.n_members
    return cols


def write_cluster_catalog(config: ClusterConfig, out_path: str | os.PathLike,
                          field_radius_arcmin: float = DEFAULT_FIELD_RADIUS_ARCMIN, fmt: str | None = None,
                          survey: ClusterFieldSurvey | None = None) -> Path:
    """Write members plus field to ``out_path`` (Parquet, or FITS by extension or ``fmt``), atomically and
    under the output's lock, with the cluster config in the file metadata. Returns the path."""
    from photofeh.io.catalog import CatalogWriter, check_writable, format_for
    from photofeh.io.locking import output_lock

    out = Path(out_path)
    fmt = format_for(out, fmt)
    check_writable(out)
    survey = survey or ClusterFieldSurvey(config, field_radius_arcmin)
    cols = simulate_cluster_field(config, field_radius_arcmin, survey)
    n = cols["source_id"].size
    meta = survey.cluster_metadata(config, n - config.n_members)
    with output_lock(out, "photofeh simulate --cluster"), \
            CatalogWriter(out, CLUSTER_COLUMNS, n_rows=n, fmt=fmt, metadata=meta) as writer:
        writer.write(cols)
    return out

