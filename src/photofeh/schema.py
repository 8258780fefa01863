"""The one column schema of photofeh catalogues, fixed by the mock survey.

Every reader maps survey archive columns onto these names, and every later
stage (features, training, prediction, distances, maps) uses them.
``docs/schema.md`` is generated from this table (``python -m photofeh.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass

from photofeh.bands import AB_MINUS_VEGA, BANDS, SIMULATED_BANDS

__all__ = ["Column", "MOCK_COLUMNS", "schema_markdown", "bands_markdown"]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    unit: str
    description: str


def _photometry() -> list[Column]:
    cols = []
    for b in SIMULATED_BANDS.values():
        cols.append(Column(b.name, "float32", "mag",
                           f"observed {b.survey.upper()} {b.filt} ({b.system}), extinguished and noisy; "
                           "NaN outside the footprint, fainter than the 5-sigma depth or saturated"))
        cols.append(Column(b.err, "float32", "mag", f"1-sigma error of {b.name}"))
    return cols


MOCK_COLUMNS: tuple[Column, ...] = (
    Column("source_id", "int64", "", "unique identifier (block * 2^20 + proposal index)"),
    Column("ra", "float64", "deg", "right ascension (ICRS)"),
    Column("dec", "float64", "deg", "declination (ICRS)"),
    Column("l", "float64", "deg", "Galactic longitude"),
    Column("b", "float64", "deg", "Galactic latitude"),
    Column("ebv", "float32", "mag", "SFD-scale E(B-V) to infinity, as a dust map would give it "
           "(use this to deredden)"),
    *_photometry(),
    Column("parallax", "float64", "mas", "Gaia parallax (EDR3 zero point -0.017 mas included); NaN without G"),
    Column("parallax_error", "float32", "mas", "Gaia parallax error"),
    Column("in_spec", "bool", "", "star has SEGUE/SSPP-like spectroscopic labels"),
    Column("spec_target_probability", "float32", "", "probability that the SEGUE-like targeting chose the star "
           "(photofeh.simulate.spectro; in_spec also needs SSPP-like labels): train's selection_column"),
    Column("feh_spec", "float32", "dex", "spectroscopic [Fe/H] (noisy); NaN if not in_spec"),
    Column("feh_spec_err", "float32", "dex", "error of feh_spec"),
    Column("logg_spec", "float32", "dex", "spectroscopic log g (cgs, noisy)"),
    Column("logg_spec_err", "float32", "dex", "error of logg_spec"),
    Column("teff_spec", "float32", "K", "spectroscopic Teff (noisy)"),
    Column("teff_spec_err", "float32", "K", "error of teff_spec"),
    Column("feh_true", "float32", "dex", "true [Fe/H]"),
    Column("feh_beyond_grid", "bool", "",
           "true [Fe/H] outside the stellar models' own grid: colours continued below it, clipped above"),
    Column("logg_true", "float32", "dex", "true log g of the primary"),
    Column("teff_true", "float32", "K", "true Teff of the primary"),
    Column("is_giant_true", "bool", "", "logg_true < 3.5"),
    Column("phase", "string", "", "evolutionary phase of the primary: main sequence, subgiant, red giant, "
           "horizontal branch, AGB"),
    Column("mass_true", "float32", "solMass", "current mass of the primary"),
    Column("age_gyr_true", "float32", "Gyr", "age"),
    Column("pop", "string", "", "population: thin, thick, halo (cluster for the members of simulate --cluster)"),
    Column("is_binary_true", "bool", "", "unresolved binary: photometry is the sum of both stars"),
    Column("mass_ratio_true", "float32", "", "secondary/primary initial mass (NaN if single)"),
    Column("dist_kpc_true", "float32", "kpc", "true heliocentric distance"),
    Column("ebv_true", "float32", "mag", "E(B-V) actually applied to the star (SFD scale)"),
    *(Column(f"mabs_{b}_true", "float32", "mag", f"absolute magnitude of the system in {b}")
      for b in SIMULATED_BANDS),
    Column("R_kpc_true", "float32", "kpc", "Galactocentric cylindrical radius (Juric 2008 frame)"),
    Column("Z_kpc_true", "float32", "kpc", "height above the Galactic midplane (Juric 2008 frame)"),
    Column("phi_deg_true", "float32", "deg", "Galactocentric azimuth from the Sun-centre line"),
)


def schema_markdown() -> str:
    """The schema as a Markdown table, for ``docs/schema.md``."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.description} |" for c in MOCK_COLUMNS]
    return "\n".join(lines) + "\n"


def bands_markdown() -> str:
    """Every band the package knows, with its magnitude system and where that comes from (for
    ``docs/schema.md``): the schema keeps each survey's own system."""
    lines = ["## Bands and their magnitude systems", "",
             "Every `{survey}_{band}` column holds magnitudes in that survey's own system, as its catalogues give "
             "them (`photofeh.bands.MAGNITUDE_SYSTEMS`); models learn colours in those systems. A table in the "
             "other system says so in its mapping file (`[systems]`, docs/catalogues.md): it is converted by the "
             "offset m_AB - m_Vega below where one is published, and refused otherwise.", "",
             "| band | survey | system | m_AB - m_Vega | source of the system |", "|---|---|---|---|---|"]
    for b in BANDS.values():
        offset = f"{AB_MINUS_VEGA[b.name]:+.4g}" if b.name in AB_MINUS_VEGA else "-"
        lines.append(f"| `{b.name}` | {b.survey} | {b.system} | {offset} | {b.system_ref} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(schema_markdown(), end="")
    print()
    print(bands_markdown(), end="")
