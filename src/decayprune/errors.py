"""User-facing errors shared by the library and the command line.

Every error a user can fix by changing their input derives from :class:`UserError`; the
command line prints its message (no traceback) and exits with code 2.

Example:
    >>> err = ConfigError(["train.lr: got -1; must be greater than 0"], source="run.yaml")
    >>> str(err)
    'invalid configuration in run.yaml: train.lr: got -1; must be greater than 0'
    >>> isinstance(err, UserError)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "DataError",
    "ExportError",
    "RunFolderError",
    "ScheduleError",
    "TrainingDivergedError",
    "UserError",
    "WeightsError",
]


class UserError(ValueError):
    """Bad input that the user can fix: a config, a file, an option value."""


class ConfigError(UserError):
    """A configuration could not be read or is invalid.

    Attributes:
        problems: One line per problem, each ``<dotted.key>: got <value>; <what is allowed>``.
        source: The file (and ``+ overrides``) the config came from, if any.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"invalid configuration{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"invalid configuration{where} ({len(self.problems)} problems):\n{lines}"
        super().__init__(text)


class RunFolderError(UserError):
    """A run folder cannot be used as asked (it holds another run, nothing to resume, a file in the way)."""


class WeightsError(UserError):
    """A weights file is missing, unreadable or does not fit the model it is loaded into."""


class DataError(UserError):
    """A dataset file is missing, truncated or not in the expected format."""


class ScheduleError(UserError):
    """A pruning schedule that cannot prune in the run it is given (the message shows the arithmetic)."""


class ExportError(UserError):
    """A model could not be exported in the requested format."""


class TrainingDivergedError(UserError):
    """The training loss became NaN or infinite; the run stopped and kept its last good checkpoint.

    Attributes:
        epoch: 0-based epoch in which the loss diverged.
        step: Optimizer steps done when it was noticed.
    """

    def __init__(self, message: str, *, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
