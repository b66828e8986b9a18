"""Why the node refuses a request: one error class per kind of refusal.

Domain code (cases, matching, feedback, appending) raises these and never names an
HTTP status: the web layer turns each class into its answer through one table
(node/web/errors.py), and the command line prints the message. The message is written
for the person or program that sent the request (what was wrong, what to do next);
`details` are extra fields of the answer, beside "error" (e.g. the `line` of a bad
append); `wait`, when given, is how many seconds to wait before trying again (the
answer's Retry-After).

    BadRequest        the request is malformed, or names something impossible
    WrongCredentials  a secret the person holds (case number and PIN) does not match
    NotFound          it names something this node does not have
    TooLarge          more than the node takes in one request
    UnsupportedMedia  a kind of content the node never accepts (images on a helpline)
    Unprocessable     well-formed, but cannot be acted on (a file that cannot be fingerprinted)
    ProofOfWorkRequired  above the usual rate, a proof of work must come with it (the
                      answer carries the challenge: node/cases/pow.py)
    TooManyRequests   a limit was reached
    Unavailable       the node cannot do it right now (log not writable, index being built)
    Failed            the node could not do it, and trying again may work (our side)
"""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """Base class: a request the node does not carry out, and why."""

    def __init__(self, message: str, *, wait: int | None = None, **details: Any):
        super().__init__(message)
        self.wait = wait
        self.details = details

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(Refused):
    pass


class WrongCredentials(Refused):
    pass


class NotFound(Refused):
    pass


class TooLarge(Refused):
    pass


class UnsupportedMedia(Refused):
    pass


class Unprocessable(Refused):
    pass


class ProofOfWorkRequired(Refused):
    pass


class TooManyRequests(Refused):
    pass


class Unavailable(Refused):
    pass


class Failed(Refused):
    pass


def error_line(exc: BaseException) -> str:
    """'Type: first line of the message' (at most 200 characters), for one log line: a
    database driver's messages run over several lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
