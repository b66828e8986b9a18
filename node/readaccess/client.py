"""The reader's side: signing read requests with a node's request key.

    key = RequestKey(name, seed)              a request key as DIR/keys/request.key holds it
    signer = key.signer()                     or RequestSigner.from_seed(name, seed),
                                              or load_request_signer(path)
    headers = signer.sign_headers("GET", url) Signature-Input and Signature (RFC 9421)
    aiohttp.ClientSession(middlewares=(signer.client_middleware(origin),))

Every signature covers COVERED_COMPONENTS, carries our tag, a fresh nonce and a
SIGNATURE_LIFETIME (node/readaccess/policy.py).
"""

from __future__ import annotations

import datetime
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from yarl import URL

from node.readaccess.keys import parse_request_vkey, request_vkey
from node.readaccess.policy import COVERED_COMPONENTS, SIGNATURE_LABEL, SIGNATURE_LIFETIME, SIGNATURE_TAG
from protocol.errors import ProtocolError, UsageError
from protocol.note import Signer


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
    try:
        key = Signer.from_key_file(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the request key {path}: {exc.strerror or exc}") from None
    except ProtocolError as exc:
        raise UsageError(f"{path} is not a request key file: {exc}") from None
    return RequestSigner.from_seed(key.name, key.seed)
