"""The errors photofeh raises for a user's mistakes, one hierarchy for the command line and the Python API.

Every class also derives from the built-in exception older code caught (``ValueError`` or ``KeyError``), so
``except KeyError`` around ``model.predict(...)`` still works. The message is the one the command line prints
after ``photofeh COMMAND: error:`` (``str(exc)``, without the quotes ``KeyError`` adds):

>>> from photofeh.errors import MissingColumnsError
>>> exc = MissingColumnsError("catalogue: preset 'gaia_dr3' needs column(s) ['parallax'], not found")
>>> isinstance(exc, KeyError), isinstance(exc, ValueError), str(exc)
(True, True, "catalogue: preset 'gaia_dr3' needs column(s) ['parallax'], not found")
"""

from __future__ import annotations

__all__ = ["PhotofehError", "InputError", "MissingColumnsError", "UnknownPresetError"]

# Also in the hierarchy, where they are raised: photofeh.io.readers.CatalogReadError (an InputError: a file
# that cannot be read) and photofeh.model.artifact.ModelFormatError (a PhotofehError and a ValueError: a model
# folder that cannot be used).


class PhotofehError(Exception):
    """A mistake in what photofeh was given (arguments, files, columns, values): the message says what and
    where; the command line prints it on one line, without a traceback."""

    def __str__(self) -> str:  # KeyError's str() quotes its message: the API's text is the CLI's
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InputError(PhotofehError, ValueError):
    """A table or file that cannot be used as given: a missing column, a value of the wrong kind or unit.
    Running the same command again gives the same error; the input must change."""


class MissingColumnsError(InputError, KeyError):
    """A table lacks columns that a preset or a model needs; the message names the table and the columns."""


class UnknownPresetError(PhotofehError, KeyError):
    """A preset name that is not one of :data:`photofeh.io.presets.PRESETS`."""
