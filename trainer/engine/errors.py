"""Why a run refuses to start or stops: one :class:`Problem` per thing to fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# A run with thousands of bad rows lists this many problems and counts the rest.
MAX_LISTED_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data or the setup: ``where`` (source, split, row) and what to fix."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class PreflightError(ValueError):
    """The run cannot start; ``problems`` lists every reason found, nothing was trained."""

    def __init__(self, problems: Sequence[Problem], what: str = "data check failed") -> None:
        self.problems = list(problems)
        shown = [f"  {p}" for p in self.problems[:MAX_LISTED_PROBLEMS]]
        if len(self.problems) > MAX_LISTED_PROBLEMS:
            shown.append(f"  ... and {len(self.problems) - MAX_LISTED_PROBLEMS} more")
        super().__init__(f"{what}:\n" + "\n".join(shown))


class TrainingStopped(RuntimeError):
    """The run stopped on purpose before its last step (too many non-finite losses in a row).

    ``checkpoint`` is the checkpoint saved just before stopping, when there is one.
    """

    def __init__(self, message: str, *, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class EngineFailure(RuntimeError):
    """The distributed engine failed mid-run (a worker died or stopped answering); the message says how.

    The run stops; checkpoints already written are intact, and ``--resume`` continues from the last.
    """
