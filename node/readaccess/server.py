"""The publishing node's side: checking signed read requests.

    read_access_middleware(lookup_factory, protected_prefixes, authorities=..., replay_cache=...)
                          the aiohttp middleware; a verified reader's keyid is left in
                          request[READER_KEY]
    unregistered_response()  the 401 an unknown key gets, for a reader removed meanwhile
    verify_request(request, lookup, now, authorities=..., replay_cache=...) -> keyid
    ReaderRegistry(vkeys)  keyid -> public key (any `.get(keyid)` works in its place)

The checks, in order, and the invariants they keep are in node/readaccess/__init__.py;
the nonces are remembered by node/replaycache.py.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Protocol, Union

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, InvalidSignature, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from node.readaccess import fastpath
from node.readaccess.keys import parse_request_vkey
from node.readaccess.policy import (
    _REQUIRED_PARAMETERS,
    ALGORITHM,
    COVERED_COMPONENTS,
    MAX_CLOCK_SKEW,
    MAX_NONCE_LENGTH,
    MAX_SIGNATURE_LIFETIME,
    MIN_NONCE_LENGTH,
    SIGNATURE_LABEL,
    SIGNATURE_TAG,
    InvalidRequestSignature,
    MissingSignature,
    ReadAccessError,
    ReplayCacheFull,
    ReplayedSignature,
    StaleSignature,
    WrongAuthority,
)
from node.replaycache import ReplayCache, ReplayRefused
from protocol.errors import ProtocolError, UsageError


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


@functools.lru_cache(maxsize=4096)
def _parsed_vkey(vkey: str) -> Ed25519PublicKey:
    """A registered reader's vkey, parsed once (the key is a function of the string;
    whether it is still registered is asked of the lookup on every request)."""
    return parse_request_vkey(vkey)


def _public_key_from_lookup(lookup: Lookup, keyid: str) -> Ed25519PublicKey | None:
    found = lookup.get(keyid)
    if found is None or isinstance(found, Ed25519PublicKey):
        return found
    if isinstance(found, (bytes, bytearray)) and len(found) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(found))
    if isinstance(found, str):  # a store that keeps the vkey string itself
        return _parsed_vkey(found)
    raise UsageError(f"reader lookup returned {type(found).__name__}, not an Ed25519 public key")


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
        check_parameters(sig_input.params, [item.value for item in sig_input], self._now, self._not_before)


def check_parameters(params: Mapping[str, Any], covered: list, now: float, not_before: float) -> None:
    """Our parameter, clock and coverage policy (both paths run it before any key lookup)."""
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
    if created < not_before:
        raise StaleSignature(
            "this node restarted after an unclean stop a few seconds ago and refuses signatures made "
            "before it started (one might have been used already); sign the request again"
        )
    # Coverage is checked here too, before the key lookup, so a reader that signs
    # too little learns it from a 401 with the reason.
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
    matched = fastpath.match(request)
    if matched is not None:
        params = _verify_matched(matched, lookup, now, replay_cache.not_before)
    else:
        params = _verify_with_library(request, lookup, now, replay_cache.not_before)
    # Remember the nonce for as long as a request carrying it could still be fresh.
    forget_at = params["expires"] + MAX_CLOCK_SKEW + 1
    try:
        replay_cache.check_and_add(params["keyid"], params["nonce"], forget_at, now)
    except ReplayRefused as exc:
        raise (ReplayCacheFull if exc.full else ReplayedSignature)(str(exc)) from None
    return params["keyid"]


def _verify_with_library(request: web.BaseRequest, lookup: Lookup, now: float, not_before: float) -> dict:
    """Any signature form, through http_message_signatures: the verified parameters."""
    verifier = _PolicyVerifier(_LookupResolver(lookup), now, not_before)
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
        _refuse(e)
    if len(results) != 1:
        raise InvalidRequestSignature(f'send exactly one signature tagged "{SIGNATURE_TAG}"')
    return results[0].parameters


def _verify_matched(matched: fastpath.Matched, lookup: Lookup, now: float, not_before: float) -> dict:
    """Our one signature form (node/readaccess/fastpath.py): the same checks in the same
    order as the library path, on the signature base built directly."""
    params = matched.params
    check_parameters(params, COVERED_COMPONENTS, now, not_before)
    try:
        _LookupResolver(lookup).resolve_public_key(matched.keyid).verify(matched.signature, matched.base)
    except Exception as e:  # noqa: BLE001 - as the library wraps whatever the lookup or Ed25519 raise
        _refuse(e)
    return params


def _refuse(error: Exception):
    if str(error):
        raise InvalidRequestSignature(f"request signature does not verify: {error}") from None
    raise InvalidRequestSignature(_NOT_VERIFIED) from None


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


def unregistered_response() -> web.Response:
    """The answer to a reader that is not registered (any more): exactly what a request
    signed by an unknown key gets (check 6), e.g. for a push wait whose reader was
    removed while it waited (node/web/push_routes.py)."""
    return refusal_response(InvalidRequestSignature(_NOT_VERIFIED))


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
