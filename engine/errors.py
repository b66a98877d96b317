"""The errors a user can cause, kept apart from bugs.

A `TickwiseError` is a user mistake or bad input: the command line prints its
message as one line on stderr and exits non-zero. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class TickwiseError(Exception):
    """A user-facing error whose message says what is wrong, where, and how to fix it."""


class DataError(TickwiseError):
    """Market data that breaks its contract: the message names the file, the row and the fault."""
