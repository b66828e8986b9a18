"""Read access: only registered readers may fetch a node's tiles and entry bundles.

Why: anyone holding a victim's image can compute its fingerprint; if logs were open,
finding that fingerprint in a helpline's log would reveal that the person went to a
helpline. So tiles and entry bundles are served only to registered readers, while
`/checkpoint` and `/node.json` stay public for witnesses and monitors.

How: each node has a *request key* (Ed25519, separate from its log key). A reader signs
every request with it using RFC 9421 HTTP Message Signatures (alg "ed25519"); the
publishing node keeps the list of registered readers' request keys and checks:

  1. the request carries a signature with our tag               (else 401)
  2. it was sent to one of this node's own names (the Host, hence
     the signed "@authority", is in `authorities`)              (else 401)
  3. its parameters are complete and its times are fresh          (else 401)
  4. its `keyid` is a registered reader and the Ed25519 signature
     verifies over the covered components -- one answer for both  (else 401)
  5. its nonce was not seen before while it is fresh (node/replaycache.py,
     which also survives a restart)                               (else 401, or 503 when full)

Invariants kept here:
  * A signature binds a request to one node: made for another node (whose operator
    could forward it here), it is refused before any key is looked up.
  * A stranger cannot tell a registered key from an unknown one: both get the same
    401 and the same message, after the same Ed25519 verification (_STAND_IN_KEY).
  * A nonce is recorded only after its signature verified, so nobody without a
    registered key can fill the replay cache; it is remembered until a request
    carrying it could no longer pass the freshness check.

Covered components are "@method", "@authority", "@path" and "@query" — never
"@target-uri" or "@scheme": behind a TLS-terminating reverse proxy the node sees
`http` where the reader used `https`, so a scheme-bearing component would not match.
"@authority" is the Host header as the node receives it; a proxy must pass the
client's Host through unchanged (nginx: `proxy_set_header Host $http_host;`, which
keeps a port; `$host` drops it). deploy/nginx/ncii-node.conf does so.

The `keyid` parameter is the reader's full request verifier key string,
"<name>+<key id hex>+<base64(0xff || "ncii-node/request-key" || public key)>" (C2SP
signed-note form, with signed-note's 0xff type for types it assigns no byte, so that a
request key can never be taken for a log key or the reverse), exactly as printed by `ncii-node key --dir DIR --request` and registered with
`ncii-node readers add`. Using the whole string instead of the 4-byte key ID means two
readers can never collide and the registry is an exact-string lookup.

The package, by side:
    node/readaccess/policy.py   the numbers (covered components, lifetimes, nonce
                                lengths, clock skew) and the refusals
    node/readaccess/keys.py     request verifier keys (protocol/note's grammar)
    node/readaccess/client.py   the reader: RequestKey, RequestSigner, load_request_signer
    node/readaccess/server.py   the node: verify_request, read_access_middleware
    node/readaccess/fastpath.py the node's strict check of our own signature form
                                (same verdicts as the library, 3.5 times faster)
Their public names are importable from `node.readaccess` itself.

spec/parts/readaccess.md is the normative description; keep the two in step.
"""

from node.readaccess.client import RequestKey, RequestSigner, load_request_signer
from node.readaccess.keys import parse_request_vkey, request_key_id, request_vkey
from node.readaccess.policy import (
    ALGORITHM,
    COVERED_COMPONENTS,
    MAX_CLOCK_SKEW,
    MAX_NONCE_LENGTH,
    MAX_SIGNATURE_LIFETIME,
    MIN_NONCE_LENGTH,
    SIGNATURE_LABEL,
    SIGNATURE_LIFETIME,
    SIGNATURE_TAG,
    InvalidRequestSignature,
    MissingSignature,
    ReadAccessError,
    ReplayCacheFull,
    ReplayedSignature,
    StaleSignature,
    WrongAuthority,
)
from node.readaccess.server import (
    READER_KEY,
    Lookup,
    ReaderLookup,
    ReaderRegistry,
    normalize_authority,
    read_access_middleware,
    refusal_response,
    unregistered_response,
    verify_request,
)
from node.replaycache import ReplayCache

__all__ = [
    "ALGORITHM", "COVERED_COMPONENTS", "MAX_CLOCK_SKEW", "MAX_NONCE_LENGTH", "MAX_SIGNATURE_LIFETIME",
    "MIN_NONCE_LENGTH", "READER_KEY", "SIGNATURE_LABEL", "SIGNATURE_LIFETIME", "SIGNATURE_TAG",
    "InvalidRequestSignature", "Lookup", "MissingSignature", "ReadAccessError", "ReaderLookup", "ReaderRegistry",
    "ReplayCache", "ReplayCacheFull", "ReplayedSignature", "RequestKey", "RequestSigner", "StaleSignature",
    "WrongAuthority", "load_request_signer", "normalize_authority", "parse_request_vkey", "read_access_middleware",
    "refusal_response", "request_key_id", "request_vkey", "unregistered_response", "verify_request",
]
