"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A mistake or a missing piece the user can fix: printed as one line, exit code 2."""

    exit_code = 2


class DeviceError(UserError):
    """The board (real or emulated) did not do what was asked: exit code 3."""

    exit_code = 3
