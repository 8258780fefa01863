"""The package's version, in a module of its own: every stage records it in what it writes, and importing it
from here (not from the package root, which re-exports the model API) keeps the import graph acyclic."""

__version__ = "0.1.0"
