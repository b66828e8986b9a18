"""The one error of node/hashing: a file that could not be fingerprinted.

Its message says why, in words a person can act on, and never contains the file's
name or path (the caller adds the name only when the person asked for names)."""

from __future__ import annotations

from protocol.errors import ProtocolError


class HashingError(ProtocolError):
    """An unreadable, damaged, truncated, unsupported or oversized file."""


def open_error(exc: OSError) -> HashingError:
    """Why a file could not be opened or read, without its name (OSError's own
    message repeats the path)."""
    if isinstance(exc, FileNotFoundError):
        return HashingError("no such file")
    if isinstance(exc, PermissionError):
        return HashingError("the file cannot be read: permission denied")
    if isinstance(exc, IsADirectoryError):
        return HashingError("this is a directory, not a file")
    return HashingError(f"the file cannot be read ({exc.strerror or type(exc).__name__})")
