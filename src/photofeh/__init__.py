"""photofeh: stellar parameters from multi-band photometry, for galactic archaeology."""

__version__ = "0.1.0"
