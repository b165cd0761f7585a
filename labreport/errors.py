"""Errors a user can fix (bad input, missing data, a busy build/): a message, no traceback.

Anything else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``exit_status`` is what the CLI exits with."""

    exit_status = 2


def user_error(exc: BaseException) -> UserError | None:
    """``exc`` as a UserError if it is one of the known user-facing errors, else None."""
    if isinstance(exc, UserError):
        return exc
    name = type(exc).__name__
    if name == "DataError":  # datasets.DataError: data missing or corrupt everywhere we looked
        err = UserError(str(exc))
        return err
    if name == "BuildLocked":  # store.BuildLocked: another run holds build/.lock
        err = UserError(str(exc))
        err.exit_status = 3
        return err
    if name == "TemplateError" or name == "RenderError":  # render: user-modified template is broken
        err = UserError(str(exc))
        err.exit_status = 2
        return err
    return None
