"""The read-access policy in one place (spec/parts/readaccess.md repeats these numbers),
and the refusals: what a signed read request must carry, and why one is refused.

Each ReadAccessError carries the HTTP `status` the node answers (401, or 503 while
the replay cache is full) and a message for the reader.
"""

from __future__ import annotations

from protocol.errors import ProtocolError

#: Components every read request signature must cover, in this order when we sign.
COVERED_COMPONENTS = ("@method", "@authority", "@path", "@query")
#: Application tag that marks a signature as an ncii-node read request (RFC 9421 §2.3).
SIGNATURE_TAG = "ncii-node-read"
#: Signature label we write; on verification the tag, not the label, selects.
SIGNATURE_LABEL = "ncii"
ALGORITHM = "ed25519"
#: The only grace the node gives a reader's clock, in seconds: `created` may be this far
#: in the future, and a signature is still accepted this long after its `expires`.
MAX_CLOCK_SKEW = 10
#: Lifetime we give our own signatures (`expires - created`), and the longest we accept.
SIGNATURE_LIFETIME = 10
MAX_SIGNATURE_LIFETIME = 30
#: Nonce length bounds (characters): long enough to be unguessable, short enough that
#: the replay cache stays small.
MIN_NONCE_LENGTH = 16
MAX_NONCE_LENGTH = 64

_REQUIRED_PARAMETERS = ("created", "expires", "keyid", "nonce", "alg", "tag")



class ReadAccessError(ProtocolError):
    """A read request that the node refuses; `status` is the HTTP status to answer."""

    status = 401

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MissingSignature(ReadAccessError):
    """No Signature / Signature-Input headers (or none with our tag)."""


class InvalidRequestSignature(ReadAccessError):
    """Malformed signature headers, missing parameters, or a signature that does not verify."""


class StaleSignature(ReadAccessError):
    """`created` too far in the past or the future, or `expires` passed."""


class ReplayedSignature(ReadAccessError):
    """A nonce this node already accepted from the same reader."""


class WrongAuthority(ReadAccessError):
    """A request sent to a host name that is not one of this node's: a signature made
    for another node (and proxied here) must never read this one."""


class ReplayCacheFull(ReadAccessError):
    """Too many live nonces to remember one more; the reader should retry shortly."""

    status = 503
