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

spec/parts/readaccess.md is the normative description; keep the two in step.
"""

from __future__ import annotations

import datetime
import inspect
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, Union

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from yarl import URL

from node.replaycache import ReplayCache, ReplayRefused
from protocol.errors import KeyFormatError, ProtocolError, UsageError
from protocol.note import REQUEST_KEY_TYPE, decode_vkey, encode_vkey, key_id_for

# --- The policy, in one place (spec/parts/readaccess.md repeats these numbers) ---

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


# --- Errors ---


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


# --- Request verifier keys ("name+hhhhhhhh+base64(0xff "ncii-node/request-key" || pk)") ---


def _check_key_name(name: str) -> None:
    # Stricter than signed-note (ASCII only): the whole vkey travels as the `keyid`
    # Structured Field String, which admits only printable ASCII.
    if not name:
        raise KeyFormatError("request key name is empty")
    if not (name.isascii() and name.isprintable()) or "+" in name or " " in name:
        raise KeyFormatError(
            f"request key name {name!r} must be printable ASCII without spaces or '+'"
        )


def request_vkey(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """The verifier key string of a request key: what `ncii-node key --request` prints
    and what a publishing node registers. Its type (0xff followed by
    "ncii-node/request-key", protocol.note.REQUEST_KEY_TYPE) makes it impossible to
    take for a log's verifier key, and the reverse."""
    _check_key_name(name)
    return encode_vkey(name, REQUEST_KEY_TYPE, _raw_public(public_key))


def parse_request_vkey(vkey: str) -> Ed25519PublicKey:
    """The public key of a request verifier key string; raises KeyFormatError (saying
    what kind of key was given instead, e.g. a log's verifier key)."""
    if not isinstance(vkey, str):
        raise KeyFormatError("request key must be a string")
    name, public_key = decode_vkey(vkey, REQUEST_KEY_TYPE)
    _check_key_name(name)
    return Ed25519PublicKey.from_public_bytes(public_key)


def request_key_id(vkey: str) -> bytes:
    """The 4-byte key ID of a request vkey (already parsed)."""
    name, public_key = decode_vkey(vkey, REQUEST_KEY_TYPE)
    return key_id_for(name, REQUEST_KEY_TYPE, public_key)


class RequestKey:
    """A node's request key as its data directory holds it (a named Ed25519 seed in a
    private-key file): `.name`, `.seed`, `verifier_key()` (the request vkey) and
    `signer()` (a RequestSigner)."""

    def __init__(self, name: str, seed: bytes):
        self.name = name
        self.seed = seed

    def verifier_key(self) -> str:
        return request_vkey(self.name, Ed25519PrivateKey.from_private_bytes(self.seed).public_key())

    def signer(self) -> RequestSigner:
        return RequestSigner.from_seed(self.name, self.seed)

    def __repr__(self) -> str:  # never the seed
        return f"RequestKey({self.verifier_key()!r})"


def _raw_public(public_key: Ed25519PublicKey | bytes) -> bytes:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes_raw()
    if isinstance(public_key, (bytes, bytearray)) and len(public_key) == 32:
        return bytes(public_key)
    raise UsageError("public key must be an Ed25519PublicKey or 32 raw bytes")


# --- Signing (reader side) ---


class _OutgoingRequest:
    """The minimal message view http_message_signatures reads: method, URL, headers."""

    def __init__(self, method: str, url: str, headers: dict[str, str]):
        self.method = method
        self.url = url
        self.headers = headers


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, private_key: Ed25519PrivateKey):
        self._private_key = private_key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self._private_key

    def resolve_public_key(self, key_id: str) -> None:
        return None


def _utc(t: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc)


class RequestSigner:
    """Signs outgoing read requests with a node's request key.

    `RequestSigner(private_key_or_seed, keyid)` where `keyid` is this key's request
    verifier key string (see `request_vkey`); `RequestSigner.from_seed(name, seed)`
    derives it. `sign_headers(method, url)` returns the two headers to add."""

    def __init__(self, private_key: Ed25519PrivateKey | bytes, keyid: str):
        if isinstance(private_key, (bytes, bytearray)):
            if len(private_key) != 32:
                raise UsageError("an Ed25519 seed is 32 bytes")
            private_key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
        if not isinstance(private_key, Ed25519PrivateKey):
            raise UsageError("private key must be an Ed25519PrivateKey or a 32-byte seed")
        # A keyid naming some other key would only produce refusals later; catch it now.
        if parse_request_vkey(keyid).public_bytes_raw() != private_key.public_key().public_bytes_raw():
            raise UsageError("keyid is the verifier key of a different key")
        self.keyid = keyid
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(private_key)
        )

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> RequestSigner:
        key = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(key, request_vkey(name, key.public_key()))

    def sign_headers(
        self,
        method: str,
        url: str | URL,
        headers: Mapping[str, str] | None = None,
        *,
        now: float | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The `Signature-Input` and `Signature` headers for one request.

        `url` must be the absolute URL the request goes to (its host and port become
        "@authority"). The node checks the path and query exactly as received, so the
        URL signed must be spelled as the client sends it: a string is normalised as
        aiohttp (yarl) sends it; a client that sends its URLs verbatim (urllib, or
        requests with `%2F` in a query) passes `URL(url, encoded=True)`. `headers` is
        accepted for symmetry with other signers; no other header is covered.
        `now`/`nonce` exist for tests."""
        created = int(time.time() if now is None else now)
        target = url if isinstance(url, URL) else URL(str(url))  # yarl encodes anything unencoded
        message = _OutgoingRequest(method.upper(), str(target), {})
        try:
            self._signer.sign(
                message,
                key_id=self.keyid,
                created=_utc(created),
                expires=_utc(created + SIGNATURE_LIFETIME),
                nonce=nonce if nonce is not None else secrets.token_urlsafe(24),
                label=SIGNATURE_LABEL,
                tag=SIGNATURE_TAG,
                covered_component_ids=COVERED_COMPONENTS,
            )
        except HTTPMessageSignaturesException as e:
            raise UsageError(f"cannot sign request to {url}: {e}") from e
        return dict(message.headers)

    def client_middleware(self, origin: str | URL | None = None):
        """An aiohttp client middleware (aiohttp >= 3.12) that signs every request, or
        only those to `origin` (scheme://host[:port]) so our identity is not sent to
        other hosts: `ClientSession(middlewares=(signer.client_middleware(origin),))`."""
        wanted = None if origin is None else URL(str(origin)).origin()

        async def sign_request(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
            if wanted is None or request.url.origin() == wanted:
                request.headers.update(self.sign_headers(request.method, request.url))
            return await handler(request)

        return sign_request


def load_request_signer(path: str | os.PathLike) -> RequestSigner:
    """The RequestSigner of a request key file (a node's DIR/keys/request.key, or any
    file in that format). Raises UsageError saying which file and what is wrong."""
    from protocol.note import Signer

    try:
        key = Signer.from_key_file(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the request key {path}: {exc.strerror or exc}") from None
    except ProtocolError as exc:
        raise UsageError(f"{path} is not a request key file: {exc}") from None
    return RequestSigner.from_seed(key.name, key.seed)


# --- Reader registry (publishing side) ---


class ReaderLookup(Protocol):
    def get(self, keyid: str, /) -> Any: ...


Lookup = Union[ReaderLookup, Mapping[str, Any]]


class ReaderRegistry:
    """keyid (request verifier key string) → Ed25519 public key, built from the
    registered readers' vkeys. Any object with `.get(keyid)` works in its place."""

    def __init__(self, vkeys: Iterable[str] = ()):
        self._keys: dict[str, Ed25519PublicKey] = {}
        for vkey in vkeys:
            self.add(vkey)

    def add(self, vkey: str) -> None:
        self._keys[vkey] = parse_request_vkey(vkey)

    def remove(self, vkey: str) -> None:
        self._keys.pop(vkey, None)

    def get(self, keyid: str) -> Ed25519PublicKey | None:
        return self._keys.get(keyid)

    def __contains__(self, keyid: str) -> bool:
        return keyid in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def _public_key_from_lookup(lookup: Lookup, keyid: str) -> Ed25519PublicKey | None:
    found = lookup.get(keyid)
    if found is None or isinstance(found, Ed25519PublicKey):
        return found
    if isinstance(found, (bytes, bytearray)) and len(found) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(found))
    if isinstance(found, str):  # a store that keeps the vkey string itself
        return parse_request_vkey(found)
    raise UsageError(f"reader lookup returned {type(found).__name__}, not an Ed25519 public key")


# --- Verification (publishing side) ---


class _IncomingRequest:
    """The server's view of a request for http_message_signatures: method, the URL as
    this server received it (Host header + raw path and query), and raw header lines."""

    def __init__(self, request: web.BaseRequest):
        self.method = request.method
        # request.host is the Host header (falling back to the socket address);
        # raw_path is path + query exactly as received, still percent-encoded.
        self.url = f"{request.scheme}://{request.host}{request.raw_path}"
        self.headers = _RawHeaders(request.raw_headers)


class _RawHeaders:
    def __init__(self, raw: Iterable[tuple[bytes, bytes]]):
        self._lines = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]

    def items(self):
        return list(self._lines)

    def __iter__(self):
        return iter(dict.fromkeys(n for n, _ in self._lines))

    def __contains__(self, name: str) -> bool:
        return any(n.lower() == name.lower() for n, _ in self._lines)


#: Verified against when a keyid names no registered reader, so that an unknown key
#: costs the node the same work as a registered one and is refused with the same
#: answer as a bad signature: nobody learns from the node who its readers are.
_STAND_IN_KEY = Ed25519PrivateKey.generate().public_key()

_NOT_VERIFIED = ("the request signature does not verify, or its key is not a registered reader of this log: "
                 "check that the signed method, host, path and query are those of this request (a proxy that "
                 "rewrites the Host header or the path breaks signatures) and that this log's operator "
                 "registered your `ncii-node key --request` output with `ncii-node readers add`")


class _LookupResolver(HTTPSignatureKeyResolver):
    """Resolves a keyid through the reader lookup; an unknown one resolves to a
    stand-in key, so its signature fails exactly like a bad one."""

    def __init__(self, lookup: Lookup):
        self.lookup = lookup

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        key = _public_key_from_lookup(self.lookup, key_id)
        return _STAND_IN_KEY if key is None else key

    def resolve_private_key(self, key_id: str):
        raise UsageError("a verifier never signs")


class _PolicyVerifier(HTTPMessageVerifier):
    """HTTPMessageVerifier with our parameter and clock policy, checked before any key
    lookup. The library calls `validate_created_and_expires` first in `_verify_one`."""

    def __init__(self, resolver: _LookupResolver, now: float, not_before: float = 0.0):
        super().__init__(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
        self._now = now
        self._not_before = not_before

    def validate_created_and_expires(self, sig_input, max_age=None):
        params = sig_input.params
        missing = [p for p in _REQUIRED_PARAMETERS if p not in params]
        if missing:
            raise InvalidRequestSignature(
                f"signature lacks required parameter(s) {', '.join(missing)}"
            )
        created, expires, nonce = params["created"], params["expires"], params["nonce"]
        if type(created) is not int or type(expires) is not int:
            raise InvalidRequestSignature("signature created/expires must be integers")
        if params["alg"] != ALGORITHM:
            raise InvalidRequestSignature(f'signature alg must be "{ALGORITHM}"')
        if not isinstance(nonce, str) or not MIN_NONCE_LENGTH <= len(nonce) <= MAX_NONCE_LENGTH:
            raise InvalidRequestSignature(
                f"signature nonce must be {MIN_NONCE_LENGTH} to {MAX_NONCE_LENGTH} characters"
            )
        if not 0 < expires - created <= MAX_SIGNATURE_LIFETIME:
            raise InvalidRequestSignature(
                f"signature expires must be 1 to {MAX_SIGNATURE_LIFETIME} s after created"
            )
        now = self._now
        if created > now + MAX_CLOCK_SKEW:
            raise StaleSignature(
                f"signature created {created - now:.0f} s in the future (at most {MAX_CLOCK_SKEW} s is "
                "accepted); check the reader's clock"
            )
        if now > expires + MAX_CLOCK_SKEW:
            raise StaleSignature(
                f"signature expired {now - expires:.0f} s ago (at most {MAX_CLOCK_SKEW} s of clock skew is "
                "accepted); sign each request when sending it"
            )
        if created < self._not_before:
            raise StaleSignature(
                "this node restarted after an unclean stop a few seconds ago and refuses signatures made "
                "before it started (one might have been used already); sign the request again"
            )
        # Coverage is checked here too, before the key lookup, so a reader that signs
        # too little learns it from a 401 with the reason.
        covered = [item.value for item in sig_input]
        absent = [c for c in COVERED_COMPONENTS if c not in covered]
        if absent:
            raise InvalidRequestSignature(
                f"signature must cover {', '.join(COVERED_COMPONENTS)}; missing {', '.join(absent)}"
            )


def normalize_authority(text: str) -> str:
    """A host[:port] as "@authority" compares it: lower case, the default ports 80 and
    443 left out (behind a TLS proxy the node cannot tell which scheme was used)."""
    text = text.strip().lower()
    host, sep, port = text.rpartition(":")
    if sep and "]" not in port and port in ("80", "443"):
        return host
    return text


def verify_request(
    request: web.BaseRequest,
    lookup: Lookup,
    now: float | None = None,
    *,
    authorities: Collection[str],
    replay_cache: ReplayCache,
) -> str:
    """Check a read request's signature; return the reader's keyid (its request vkey).

    Raises a ReadAccessError subclass whose `.status` (401 or 503) and message are
    what the node answers. `lookup` maps keyid → public key (`.get`); `authorities`
    are this node's own names (normalized host[:port]): the Host the request was sent
    to, and so the signed "@authority", must be one of them."""
    if now is None:
        now = time.time()
    headers = request.headers
    if "Signature" not in headers and "Signature-Input" not in headers:
        raise MissingSignature(
            "this resource is for registered readers only: sign the request "
            "(RFC 9421, ed25519) with your node's request key"
        )
    host = normalize_authority(request.host or "")
    if host not in authorities:
        raise WrongAuthority(
            f"this request was sent to {host[:100]!r}, which is not one of this node's names "
            f"({', '.join(sorted(authorities)) or 'none configured'}): a signature is valid only at the node "
            "it was made for. Use the node's own URL; its operator lists its names in [http] public_names"
        )
    verifier = _PolicyVerifier(_LookupResolver(lookup), now, replay_cache.not_before)
    try:
        results = verifier.verify(
            _IncomingRequest(request),
            max_age=None,  # our own freshness policy runs in validate_created_and_expires
            expect_tag=SIGNATURE_TAG,
        )
    except ReadAccessError:
        raise
    except (InvalidSignature, HTTPMessageSignaturesException, ProtocolError) as e:
        # The library's own messages (no signature with our tag, malformed fields)
        # never depend on the key; the Ed25519 check failing has no text, and gets one
        # answer for a bad signature and an unknown key alike (see _STAND_IN_KEY).
        if str(e):
            raise InvalidRequestSignature(f"request signature does not verify: {e}") from None
        raise InvalidRequestSignature(_NOT_VERIFIED) from None
    if len(results) != 1:
        raise InvalidRequestSignature(f'send exactly one signature tagged "{SIGNATURE_TAG}"')
    params = results[0].parameters
    # Remember the nonce for as long as a request carrying it could still be fresh.
    forget_at = params["expires"] + MAX_CLOCK_SKEW + 1
    try:
        replay_cache.check_and_add(params["keyid"], params["nonce"], forget_at, now)
    except ReplayRefused as exc:
        raise (ReplayCacheFull if exc.full else ReplayedSignature)(str(exc)) from None
    return params["keyid"]


# --- Server middleware ---

#: Where the middleware leaves the verified reader's keyid for handlers (and logs).
READER_KEY = web.RequestKey("ncii_reader", str)

_ACCEPT_SIGNATURE = (
    f'{SIGNATURE_LABEL}=({" ".join(f"{chr(34)}{c}{chr(34)}" for c in COVERED_COMPONENTS)})'
    f';created;expires;nonce;keyid;alg="{ALGORITHM}";tag="{SIGNATURE_TAG}"'
)


def refusal_response(error: ReadAccessError) -> web.Response:
    """The plain-text answer to a refused read request."""
    headers = {}
    if error.status == 401:
        # RFC 9110 requires a challenge with 401; RFC 9421 §5 Accept-Signature says
        # exactly what signature we want.
        headers["WWW-Authenticate"] = 'Signature realm="ncii-node readers"'
        headers["Accept-Signature"] = _ACCEPT_SIGNATURE
    if error.status == 503:
        headers["Retry-After"] = "5"
    return web.Response(
        status=error.status, text=error.message + "\n", headers=headers,
        content_type="text/plain",
    )


def read_access_middleware(
    lookup_factory: Callable[[web.Request], Lookup | Awaitable[Lookup]] | Lookup,
    protected_prefixes: Iterable[str] = ("/tile/",),
    *,
    authorities: Callable[[web.Request], Collection[str]] | Iterable[str],
    replay_cache: ReplayCache | None = None,
    clock: Callable[[], float] = time.time,
):
    """aiohttp middleware refusing unsigned or unregistered reads of `protected_prefixes`.

    `lookup_factory(request)` returns (or awaits to) the current reader lookup, so
    readers added or removed take effect on the next request; a plain mapping or
    ReaderRegistry may be passed instead. `authorities`: this node's names (host[:port]),
    or a function of the request giving them. Other paths (/checkpoint, /node.json)
    pass through untouched."""
    prefixes = tuple(protected_prefixes)
    cache = replay_cache if replay_cache is not None else ReplayCache()
    if callable(authorities):
        names_of = authorities
    else:
        fixed_names = frozenset(normalize_authority(a) for a in authorities)

        def names_of(_request):
            return fixed_names

    if callable(lookup_factory) and not hasattr(lookup_factory, "get"):
        factory = lookup_factory
    else:
        fixed = lookup_factory

        def factory(_request):
            return fixed

    @web.middleware
    async def read_access(request: web.Request, handler):
        # Collapse leading slashes so "//tile/..." cannot slip past the prefix test.
        path = "/" + request.path.lstrip("/")
        if not path.startswith(prefixes):
            return await handler(request)
        lookup = factory(request)
        if inspect.isawaitable(lookup):
            lookup = await lookup
        try:
            reader = verify_request(request, lookup, clock(), authorities=names_of(request), replay_cache=cache)
        except ReadAccessError as error:
            return refusal_response(error)
        request[READER_KEY] = reader
        return await handler(request)

    return read_access
