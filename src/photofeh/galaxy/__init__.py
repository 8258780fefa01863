"""From stellar parameters to the Galaxy: distances, maps and metallicity distributions."""
