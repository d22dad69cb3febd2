"""The one error type of the wheel factory: a message a user can act on."""

from __future__ import annotations


class FactoryError(RuntimeError):
    """A build cannot go on; ``str(err)`` says why and what to do about it."""
