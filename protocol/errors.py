"""Error types of the protocol core.

Two families, as in h11: `ProtocolError` means the *data* was bad (a peer, a file, a
person typed it) and carries a message a person can act on; `UsageError` means our own
code called the library wrongly. Nothing in `protocol/` raises anything else on bad
input: callers catch `ProtocolError` and know the input, not the program, was at fault.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Input that does not follow the protocol. `offset` is the byte offset where
    decoding failed, when there is one."""

    def __init__(self, message: str, *, offset: int | None = None):
        self.offset = offset
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)


class NoteError(ProtocolError):
    """A signed note that is malformed or whose signatures do not verify."""


class KeyFormatError(ProtocolError):
    """A verifier or signer key string or key file that cannot be parsed."""


class CheckpointError(ProtocolError):
    """A checkpoint body that does not follow C2SP tlog-checkpoint."""


class ProofError(ProtocolError):
    """An inclusion or consistency proof that is malformed or does not verify."""


class TileError(ProtocolError):
    """A tile, tile path or entry bundle that is malformed or does not match."""


class EntryError(ProtocolError):
    """An entry whose bytes (or JSON view) do not follow the entry grammar."""


class SignalError(ProtocolError):
    """A fingerprint that is not a valid value of its signal type."""


class CosignatureError(ProtocolError):
    """A witness cosignature that is malformed or does not verify."""


class UsageError(Exception):
    """Our own code called the protocol library wrongly (a bug, not bad input)."""
