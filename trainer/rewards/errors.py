"""Errors of the reward library."""

from __future__ import annotations


class RewardModelError(ValueError):
    """A ``reward_model`` that cannot be scored; ``field`` is the dotted path of the culprit.

    The message says what to change, e.g. ``format_ratio must be a number in [0, 1], got 1.5``
    with ``field == "reward_model.format_ratio"``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class IoUScheduleError(ValueError):
    """An IoU threshold schedule that is not one of the accepted forms."""
