"""Exceptions meant to be read by people.

Every error the core raises on bad input is a :class:`GplwsError` whose message says
what is wrong, which file it concerns and how to fix it. The CLI prints the message
and exits non-zero; the widgets show it as a notification. A traceback is only shown
when the user asks for one (``gplws --debug``).
"""

from __future__ import annotations


class GplwsError(Exception):
    """Base class for all errors with a message meant for a person."""


class StackError(GplwsError, ValueError):
    """A focus stack (or its metadata) cannot be used as given."""


class FocusPositionError(StackError):
    """Focus positions are missing, of the wrong length, not finite or not monotonic."""


class SynthError(GplwsError, ValueError):
    """Parameters of a synthetic stack that cannot be used as given."""


class Cancelled(GplwsError):
    """The user cancelled a long-running operation; nothing partial was returned."""


class ModelError(GplwsError):
    """A network's weights are missing, incompatible or the device is unavailable."""


def where(source: object | None) -> str:
    """Format a source path for messages: ``" in 'path'"`` or an empty string."""
    return f" in '{source}'" if source else ""
