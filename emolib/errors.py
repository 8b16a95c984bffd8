"""The one exception type meant for users: it names the file and the problem."""
from __future__ import annotations

from os import PathLike

__all__ = ["EmolibError"]


class EmolibError(Exception):
    """A user-facing error: bad input, missing data, missing system library.

    The CLI prints it on one line and exits 1; library callers can catch it to skip one item
    of a batch and carry on.
    """

    def __init__(self, message: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
