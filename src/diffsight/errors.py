"""Errors that diffsight raises for bad input.

Every error says what was wrong and what to do about it. They subclass ``ValueError`` (or ``KeyError`` for
unknown names) so that callers who only know the standard library still catch them.
"""

from __future__ import annotations

__all__ = ["DiffsightError", "ShapeError", "ScheduleError", "UnknownNameError"]


class DiffsightError(ValueError):
    """Base class of every error diffsight raises for input it cannot accept."""


class ShapeError(DiffsightError):
    """A tensor has a shape, dtype or device that does not fit the call."""


class ScheduleError(DiffsightError):
    """A sigma array or schedule parameter is invalid (not descending, negative, not finite, ...)."""


class UnknownNameError(DiffsightError, KeyError):
    """A name (sampler, schedule, prediction type, ...) is not one of the known ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists the valid choices."""
    choices = ", ".join(sorted(known))
    return UnknownNameError(f"unknown {kind} {name!r}; choose one of: {choices}")
