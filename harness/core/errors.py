"""Errors that the CLI turns into one line and exit code 2 (bad input: nothing is run or written)."""

from __future__ import annotations


class HarnessError(Exception):
    """A user-facing error: the message is one line and already says where the problem is."""


class InputError(HarnessError):
    """Bad suite, override or flag, located at ``where`` (``file:line``) and ``key`` (dotted path)."""

    def __init__(self, where: str, key: str, message: str) -> None:
        self.where, self.key, self.message = where, key, message
        loc = f"{where}: " if where else ""
        k = f"{key}: " if key else ""
        super().__init__(f"{loc}{k}{message}")
