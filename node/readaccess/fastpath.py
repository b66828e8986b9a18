"""A strict fast path for the one signature form our readers send (issue 22).

Checking a signed read through http_message_signatures costs about 0.3 ms, most of it
parsing and re-serialising Structured Fields twice per request; at 1,000 followers
that was most of a core. Every ncii-node reader (node/readaccess/client.py) sends the
same form, byte for byte:

    Signature-Input: ncii=("@method" "@authority" "@path" "@query");created=<int>;
        keyid="<vkey>";alg="ed25519";expires=<int>;nonce="<nonce>";tag="ncii-node-read"
    Signature: ncii=:<88 characters of base64: 64 bytes>:

`match(request)` recognises exactly that form (one line of each field, no optional
whitespace, integers without leading zeros, strings without escapes, and a Host and
request target spelled with a few plain characters) and returns what the signature
base needs; anything else returns None and goes through the library, as before. For
a request in this form the Structured Field parse + serialise round trip is the
identity, so the signature base built here is the one the library builds, and
`verify_request` gives the same verdict (status and message) on both paths:
tests/test_readaccess_fastpath.py checks that over valid and mutated requests.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from aiohttp import web

from node.readaccess.policy import COVERED_COMPONENTS, SIGNATURE_LABEL, SIGNATURE_TAG

#: A Structured Field String with nothing to unescape: printable ASCII but `"` and `\`.
_PLAIN_STRING = r'[\x20\x21\x23-\x5b\x5d-\x7e]*'
#: A Structured Field Integer as the library writes it back: no sign, no leading zero.
_INTEGER = r"(?:0|[1-9][0-9]{0,14})"

_COMPONENTS = "(" + " ".join(f'"{c}"' for c in COVERED_COMPONENTS) + ")"
_SIGNATURE_INPUT = re.compile(
    re.escape(f"{SIGNATURE_LABEL}=")
    + "(" + re.escape(_COMPONENTS)
    + f";created=({_INTEGER});keyid=\"({_PLAIN_STRING})\";alg=\"ed25519\";expires=({_INTEGER})"
    + f";nonce=\"({_PLAIN_STRING})\";tag=\"{re.escape(SIGNATURE_TAG)}\")"
)
_SIGNATURE = re.compile(re.escape(f"{SIGNATURE_LABEL}=") + r":([A-Za-z0-9+/]{86}==):")
#: A Host whose "@authority" is itself: lower-case name or IPv4 address, a port
#: without leading zero. Port 80 is left to the library (it drops it for http).
_HOST = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}(?::[1-9][0-9]{0,4})?")
#: A request target in unreserved characters and percent escapes, with an optional
#: query of the same plus `=` and `&`.
_TARGET = re.compile(r"(/(?:[A-Za-z0-9._~/-]|%[0-9A-Fa-f]{2})*)(?:\?((?:[A-Za-z0-9._~=&-]|%[0-9A-Fa-f]{2})*))?")
_METHOD = re.compile(r"[A-Z]{1,16}")


@dataclass(frozen=True)
class Matched:
    """A request in our one signature form: its parameters and its signature base."""

    created: int
    expires: int
    keyid: str
    nonce: str
    signature: bytes
    base: bytes

    @property
    def params(self) -> dict:
        return {"created": self.created, "keyid": self.keyid, "alg": "ed25519", "expires": self.expires,
                "nonce": self.nonce, "tag": SIGNATURE_TAG}


def _only_line(request: web.BaseRequest, name: str) -> str | None:
    """The value of the one line of field `name`, or None if there is no line or more
    than one (aiohttp's multidict keeps every line, in C)."""
    values = request.headers.getall(name, ())
    return values[0] if len(values) == 1 else None


def match(request: web.BaseRequest) -> Matched | None:
    """The request's signature in our one form, or None (the library then decides)."""
    signature_input = _only_line(request, "Signature-Input")
    signature = _only_line(request, "Signature")
    if signature_input is None or signature is None:
        return None
    # The patterns admit ASCII only, so a field aiohttp decoded otherwise never matches.
    fields = _SIGNATURE_INPUT.fullmatch(signature_input)
    signed = _SIGNATURE.fullmatch(signature)
    host = request.host
    target = _TARGET.fullmatch(request.raw_path)
    method = request.method
    if (fields is None or signed is None or target is None or not _HOST.fullmatch(host)
            or host.endswith(":80") or not _METHOD.fullmatch(method)):
        return None
    signature_params, created, keyid, expires, nonce = fields.groups()
    path, query = target.groups()
    base = (f'"@method": {method}\n"@authority": {host}\n"@path": {path}\n"@query": ?{query or ""}\n'
            f'"@signature-params": {signature_params}')
    return Matched(int(created), int(expires), keyid, nonce, base64.b64decode(signed.group(1)), base.encode("ascii"))
