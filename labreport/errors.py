"""Errors a user can fix, each carrying the exit status the CLI ends with (no traceback).

One family, as dvc's ``DvcException`` and mkdocs' ``Abort``: ``cli.main`` catches
:class:`UserError`, prints its message and exits with its ``exit_status``. Anything
else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``exit_status`` is what the CLI exits with."""

    exit_status = 2


class ConfigError(UserError):
    """Invalid experiments.toml; ``errors`` holds one formatted line per problem shown."""

    def __init__(self, errors: list[str], total: int | None = None):
        self.errors = errors
        self.total = len(errors) if total is None else total  # errors found; ``errors`` may show fewer
        super().__init__("\n".join(errors))


class DataError(UserError):
    """No source gave a verified copy of a data set; the message lists every attempt."""


class BuildLocked(UserError):
    """Another labreport process holds build/.lock."""

    exit_status = 3


class UnknownExperiment(UserError, ValueError):
    """A name or pattern given on the command line matches no experiment of the config."""


class TemplateError(UserError):
    """A (user-modified) template is broken; the message names the file and the line."""


class RenderError(UserError):
    """The report could not be written (e.g. the templates are missing, WeasyPrint failed)."""
