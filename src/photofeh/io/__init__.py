"""Catalogue input and output: readers of every format, archive presets, validation, cross-match,
training sets, atomic writers and locks."""
