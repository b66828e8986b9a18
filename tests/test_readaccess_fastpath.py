"""The strict fast path (node/readaccess/fastpath.py) gives the verdict the library
gives, on every input: a differential test over valid requests and many mutated ones.

Each request is checked twice, each time against a fresh replay cache with the same
history: once by `verify_request` as the node runs it (fast path first), once with the
fast path switched off (http_message_signatures only). The verdicts (the reader's
keyid, or the refusal's class, status and message) must be identical; and the fast
path must have been the one that decided the valid requests and the in-form mutants,
or the test would prove nothing."""

from __future__ import annotations

import base64
import random
import re
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multidict import CIMultiDict
from yarl import URL

from node.readaccess import ReaderRegistry, ReplayCache, RequestSigner, fastpath, server

NOW = 1_767_225_600
HOST = "127.0.0.1:8080"
NAMES = {"127.0.0.1:8080", "helpline.example", "localhost:8080"}
TILE = "/tile/0/x001/067.p/5"

reader = RequestSigner.from_seed("platform.example/request", bytes(range(32)))
other = RequestSigner.from_seed("other.example/request", bytes(range(1, 33)))
stranger = RequestSigner.from_seed("stranger.example/request", bytes(range(2, 34)))
registry = ReaderRegistry([reader.keyid, other.keyid])
_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def signed(path: str = TILE, host: str = HOST, *, signer: RequestSigner = reader, now: int = NOW,
           nonce: str = "bm9uY2UtZXhhbXBsZS0wMDAx", method: str = "GET") -> dict:
    return signer.sign_headers(method, URL(f"http://{host}{path}", encoded=True), now=now, nonce=nonce)


def hand_signed(params: str, path: str = TILE, host: str = HOST, method: str = "GET") -> dict:
    """A signature whose `@signature-params` line is `params`, signed by `reader`:
    valid for any spelling the library serialises back to `params`."""
    target, _, query = path.partition("?")
    base = (f'"@method": {method}\n"@authority": {host}\n"@path": {target}\n"@query": ?{query}\n'
            f'"@signature-params": {params}')
    signature = base64.b64encode(_KEY.sign(base.encode())).decode()
    return {"Signature-Input": f"ncii={params}", "Signature": f"ncii=:{signature}:"}


def request(headers, path: str = TILE, host: str = HOST, method: str = "GET"):
    fields = CIMultiDict([("Host", host)] if host is not None else [])
    for name, value in (headers.items() if isinstance(headers, dict) else headers):
        fields.add(name, value)
    return make_mocked_request(method, path, headers=fields)


def verdict(req, cache: ReplayCache, now: float):
    try:
        return ("ok", server.verify_request(req, registry, now, authorities=NAMES, replay_cache=cache))
    except server.ReadAccessError as error:
        return (type(error).__name__, error.status, error.message)


class Both:
    """Runs every request through both paths, each with its own replay cache."""

    def __init__(self, not_before: float = 0.0):
        self.fast_cache, self.library_cache = ReplayCache(), ReplayCache()
        self.fast_cache.not_before = self.library_cache.not_before = not_before
        self.fast_taken = 0

    def check(self, req, now: float = NOW + 1):
        taken = fastpath.match(req) is not None
        self.fast_taken += taken
        fast = verdict(req, self.fast_cache, now)
        with mock.patch.object(fastpath, "match", lambda _request: None):
            library = verdict(req, self.library_cache, now)
        assert fast == library, (req.raw_headers, req.host, req.raw_path)
        return fast, taken


def test_valid_requests_take_the_fast_path_and_pass():
    both = Both()
    for i, (path, host) in enumerate([(TILE, HOST), ("/tile/entries/001.p/3", "helpline.example"),
                                      ("/push/checkpoint?wait=30", "localhost:8080"), ("/status", HOST),
                                      ("/tile/0/000?", HOST), ("/tile/%7E0", HOST)]):
        for signer in (reader, other):
            outcome, taken = both.check(request(signed(path, host, signer=signer, nonce=f"nonce-{i:012d}-abc"),
                                                path, host))
            assert outcome == ("ok", signer.keyid) and taken
    assert both.fast_taken == 12


def _replace(headers: dict, field: str, old: str, new: str) -> dict:
    changed = dict(headers)
    assert old in changed[field], (old, changed[field])
    changed[field] = changed[field].replace(old, new, 1)
    return changed


def _mutants():
    """(name, headers or header lines, path, host, now) of requests that must be refused
    or accepted alike; the valid one is signed(), at NOW + 1 on HOST."""
    good = signed()
    si = good["Signature-Input"]
    params = si.removeprefix("ncii=")
    keyid = reader.keyid
    yield "valid", good, TILE, HOST, NOW + 1
    # Reordered, duplicated and extra parameters: another signature base.
    yield "params reordered", _replace(good, "Signature-Input", f';keyid="{keyid}";alg="ed25519"',
                                       f';alg="ed25519";keyid="{keyid}"'), TILE, HOST, NOW + 1
    reordered = params.replace(f';keyid="{keyid}";alg="ed25519"', f';alg="ed25519";keyid="{keyid}"')
    yield "params reordered, signed so", hand_signed(reordered), TILE, HOST, NOW + 1
    yield "created twice", _replace(good, "Signature-Input", ";created=", f";created={NOW};created="), TILE, HOST, NOW
    yield "created twice, signed so", hand_signed(params.replace(";created=", f";created={NOW - 5};created=")), \
        TILE, HOST, NOW + 1
    yield "extra parameter", _replace(good, "Signature-Input", ';tag=', ';foo="bar";tag='), TILE, HOST, NOW + 1
    yield "extra parameter signed", hand_signed(params + ';foo="bar"'), TILE, HOST, NOW + 1
    yield "missing nonce", hand_signed(re.sub(r';nonce="[^"]*"', "", params)), TILE, HOST, NOW + 1
    yield "missing tag", hand_signed(params.replace(';tag="ncii-node-read"', "")), TILE, HOST, NOW + 1
    # Whitespace.
    for label, old, new in [("space after ;", ";created", "; created"), ("space in list", '" "@path"', '"  "@path"'),
                            ("space after (", '("@method"', '( "@method"'), ("space before =", "created=", "created =")]:
        yield label, _replace(good, "Signature-Input", old, new), TILE, HOST, NOW + 1
    yield "space after ; signed", {"Signature-Input": "ncii=" + params.replace(";created", "; created"),
                                   "Signature": good["Signature"]}, TILE, HOST, NOW + 1
    yield "space around signature", {"Signature-Input": si, "Signature": " " + good["Signature"] + " "}, \
        TILE, HOST, NOW + 1
    # Case.
    yield "label upper case", {"Signature-Input": si.replace("ncii=", "NCII="),
                               "Signature": good["Signature"].replace("ncii=", "NCII=")}, TILE, HOST, NOW + 1
    yield "parameter name upper case", _replace(good, "Signature-Input", ";created=", ";Created="), TILE, HOST, NOW + 1
    yield "alg upper case", _replace(good, "Signature-Input", '"ed25519"', '"ED25519"'), TILE, HOST, NOW + 1
    yield "component upper case", _replace(good, "Signature-Input", '"@path"', '"@PATH"'), TILE, HOST, NOW + 1
    yield "tag upper case", _replace(good, "Signature-Input", '"ncii-node-read"', '"NCII-node-read"'), TILE, HOST, NOW + 1
    yield "field names in lower case", [("signature-input", si), ("signature", good["Signature"])], TILE, HOST, NOW + 1
    yield "host upper case", signed(host="HELPLINE.example"), TILE, "HELPLINE.example", NOW + 1
    yield "path case differs", good, TILE.upper(), HOST, NOW + 1
    # Components.
    yield "extra component", _replace(good, "Signature-Input", '"@query")', '"@query" "@target-uri")'), \
        TILE, HOST, NOW + 1
    yield "extra component signed", hand_signed(params.replace('"@query")', '"@query" "@scheme")')), TILE, HOST, NOW + 1
    yield "component missing", hand_signed(params.replace(' "@query"', "")), TILE, HOST, NOW + 1
    yield "components reordered", hand_signed(params.replace('"@method" "@authority"', '"@authority" "@method"')), \
        TILE, HOST, NOW + 1
    yield "component twice", hand_signed(params.replace('"@query")', '"@query" "@path")')), TILE, HOST, NOW + 1
    # Algorithm, key, times, nonce.
    yield "alg rsa", _replace(good, "Signature-Input", '"ed25519"', '"rsa-pss-sha512"'), TILE, HOST, NOW + 1
    yield "alg as token", _replace(good, "Signature-Input", 'alg="ed25519"', "alg=ed25519"), TILE, HOST, NOW + 1
    yield "keyid of another reader", _replace(good, "Signature-Input", keyid, other.keyid), TILE, HOST, NOW + 1
    yield "keyid unknown", _replace(good, "Signature-Input", keyid, stranger.keyid), TILE, HOST, NOW + 1
    yield "stranger's own signature", signed(signer=stranger), TILE, HOST, NOW + 1
    yield "keyid with an escape", _replace(good, "Signature-Input", keyid, keyid[:5] + '\\"' + keyid[5:]), \
        TILE, HOST, NOW + 1
    yield "keyid not a vkey", hand_signed(params.replace(keyid, "nobody")), TILE, HOST, NOW + 1
    yield "keyid empty", hand_signed(params.replace(keyid, "")), TILE, HOST, NOW + 1
    for label, now in [("created 11 s ahead", NOW - 11), ("created 10 s ahead", NOW - 10), ("expired", NOW + 21),
                       ("just not expired", NOW + 20), ("far future", NOW - 10**9)]:
        yield label, good, TILE, HOST, now
    yield "created leading zero", _replace(good, "Signature-Input", f"created={NOW}", f"created=0{NOW}"), \
        TILE, HOST, NOW + 1
    yield "created leading zero signed", {"Signature-Input": si.replace(f"created={NOW}", f"created=0{NOW}"),
                                          "Signature": good["Signature"]}, TILE, HOST, NOW + 1
    yield "created negative", hand_signed(params.replace(f"created={NOW}", "created=-5")), TILE, HOST, NOW + 1
    yield "created decimal", hand_signed(params.replace(f"created={NOW}", f"created={NOW}.0")), TILE, HOST, NOW + 1
    yield "created as string", hand_signed(params.replace(f"created={NOW}", f'created="{NOW}"')), TILE, HOST, NOW + 1
    yield "created 16 digits", hand_signed(params.replace(f"created={NOW}", "created=1" + "0" * 15)), \
        TILE, HOST, NOW + 1
    yield "expires = created", hand_signed(params.replace(f"expires={NOW + 10}", f"expires={NOW}")), TILE, HOST, NOW
    yield "expires 31 s", hand_signed(params.replace(f"expires={NOW + 10}", f"expires={NOW + 31}")), TILE, HOST, NOW
    yield "expires 30 s", hand_signed(params.replace(f"expires={NOW + 10}", f"expires={NOW + 30}")), TILE, HOST, NOW
    yield "expires changed", _replace(good, "Signature-Input", f"expires={NOW + 10}", f"expires={NOW + 11}"), \
        TILE, HOST, NOW + 1
    for n in (15, 16, 64, 65):
        yield f"nonce of {n}", hand_signed(re.sub(r'nonce="[^"]*"', f'nonce="{"n" * n}"', params)), TILE, HOST, NOW
    yield "nonce with escape", hand_signed(re.sub(r'nonce="[^"]*"', 'nonce="abcdefgh\\\\ijklmnopq"', params)), \
        TILE, HOST, NOW
    yield "nonce changed", _replace(good, "Signature-Input", "bm9uY2", "bm9uY3"), TILE, HOST, NOW + 1
    # The signature field.
    signature = good["Signature"]
    b64 = signature[len("ncii=:"):-1]
    yield "signature flipped", {**good, "Signature": "ncii=:" + ("B" if b64[0] != "B" else "C") + b64[1:] + ":"}, \
        TILE, HOST, NOW + 1
    yield "signature unpadded", {**good, "Signature": "ncii=:" + b64.rstrip("=") + ":"}, TILE, HOST, NOW + 1
    yield "signature short", {**good, "Signature": "ncii=:" + b64[4:] + ":"}, TILE, HOST, NOW + 1
    yield "signature as string", {**good, "Signature": f'ncii="{b64}"'}, TILE, HOST, NOW + 1
    yield "signature other label", {**good, "Signature": signature.replace("ncii=", "other=")}, TILE, HOST, NOW + 1
    yield "two signatures in one field", {**good, "Signature-Input": si + ", " + si.replace("ncii=", "again="),
                                          "Signature": signature + ", " + signature.replace("ncii=", "again=")}, \
        TILE, HOST, NOW + 1
    yield "two Signature-Input lines", [("Signature-Input", si), ("Signature-Input", si.replace("ncii=", "b=")),
                                        ("Signature", signature)], TILE, HOST, NOW + 1
    yield "two Signature lines", [("Signature-Input", si), ("Signature", signature),
                                  ("Signature", signature.replace("ncii=", "b="))], TILE, HOST, NOW + 1
    yield "Signature-Input only", {"Signature-Input": si}, TILE, HOST, NOW + 1
    yield "Signature only", {"Signature": signature}, TILE, HOST, NOW + 1
    yield "no signature", {}, TILE, HOST, NOW + 1
    yield "not ASCII", {**good, "Signature-Input": si.replace("ncii-node-read", "ncii-nöde-read")}, TILE, HOST, NOW + 1
    # Authority, path and query: where the request went is not where it was signed for.
    yield "other name of this node", good, TILE, "helpline.example", NOW + 1
    yield "a name not this node's", signed(host="other.example"), TILE, "other.example", NOW + 1
    yield "port 80 spelled", signed(host="helpline.example"), TILE, "helpline.example:80", NOW + 1
    yield "port 80 signed", signed(host="helpline.example:80"), TILE, "helpline.example:80", NOW + 1
    yield "no Host", good, TILE, None, NOW + 1
    yield "path changed", good, TILE.replace("067", "068"), HOST, NOW + 1
    yield "query added", good, TILE + "?x=1", HOST, NOW + 1
    yield "empty query", good, TILE + "?", HOST, NOW + 1
    yield "query signed", signed(TILE + "?a=b&c"), TILE + "?a=b&c", HOST, NOW + 1
    yield "percent escape case", signed("/tile/%7e0"), "/tile/%7E0", HOST, NOW + 1
    yield "path with @ signed", signed("/tile/a@b:c"), "/tile/a@b:c", HOST, NOW + 1
    yield "double slash", signed("//tile/0/000"), "//tile/0/000", HOST, NOW + 1
    yield "HEAD signed as GET", good, TILE, HOST, NOW + 1, "HEAD"
    yield "HEAD signed", signed(method="HEAD"), TILE, HOST, NOW + 1, "HEAD"


@pytest.mark.parametrize("case", list(_mutants()), ids=lambda case: case[0])
def test_every_mutant_gets_the_library_verdict(case):
    name, headers, path, host, now, *method = case
    both = Both()
    both.check(request(headers, path, host, *method), now)


def test_replay_and_restart_alike():
    both = Both()
    good = request(signed())
    assert both.check(good)[0][0] == "ok"
    again = both.check(request(signed()))
    assert again[1] and again[0][0] == "ReplayedSignature"
    # The same nonce from another reader is not a replay.
    assert both.check(request(signed(signer=other)))[0][0] == "ok"
    restarted = Both(not_before=NOW + 5)
    outcome, taken = restarted.check(request(signed()))
    assert taken and outcome[0] == "StaleSignature"
    assert restarted.check(request(signed(now=NOW + 5, nonce="x" * 20)), NOW + 6)[0][0] == "ok"


def test_in_form_mutants_are_decided_by_the_fast_path():
    """The mutants that stay in our one form (so a regression there would show)."""
    both = Both()
    taken = {name for name, headers, path, host, now, *method in _mutants()
             if both.check(request(headers, path, host, *method), now)[1]}
    assert {"valid", "keyid of another reader", "keyid unknown", "stranger's own signature", "created 11 s ahead",
            "expired", "expires changed", "nonce of 15", "nonce of 65", "nonce changed", "signature flipped",
            "other name of this node", "path changed", "query added", "keyid empty", "keyid not a vkey",
            "expires 31 s", "expires = created", "HEAD signed as GET"} <= taken
    assert not taken & {"params reordered, signed so", "space after ;", "label upper case", "extra component signed",
                        "alg rsa", "created leading zero", "signature unpadded", "two Signature-Input lines",
                        "port 80 spelled", "path with @ signed", "host upper case", "not ASCII"}


def test_random_mutations_of_the_fields_agree():
    """Random one-character edits of a valid request's fields (and of its Host and
    path): mostly refusals, some in form; the verdicts must agree every time."""
    rng = random.Random(22)
    alphabet = 'abcnAZ019 ;=:"()@\\,+/-.*?%'
    both = Both()
    for i in range(600):
        nonce = f"random-nonce-{i:08d}"
        headers = signed(nonce=nonce)
        path, host = TILE, HOST
        target = rng.choice(["Signature-Input", "Signature", "Signature-Input", "host", "path"])
        def edit(text: str) -> str:
            at = rng.randrange(len(text) + 1)
            op = rng.choice("ird")
            ch = rng.choice(alphabet)
            if op == "i":
                return text[:at] + ch + text[at:]
            if op == "r" and at < len(text):
                return text[:at] + ch + text[at + 1:]
            return text[:at] + text[at + 1:]
        if target == "host":
            host = edit(host) or HOST
        elif target == "path":
            path = "/" + edit(path)[1:]
            if " " in path or "#" in path:
                continue
        else:
            headers[target] = edit(headers[target])
        both.check(request(headers, path, host), NOW + 1)
    assert both.fast_taken > 50
