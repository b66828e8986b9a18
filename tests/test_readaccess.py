"""Read access over real HTTP: a real aiohttp server on 127.0.0.1 with the read-access
middleware, real aiohttp clients, real Ed25519 RFC 9421 signatures."""

from __future__ import annotations

import time

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from yarl import URL

from node import readaccess
from node.readaccess import (
    MAX_CLOCK_SKEW,
    READER_KEY,
    SIGNATURE_LIFETIME,
    ReaderRegistry,
    ReplayCache,
    RequestSigner,
    parse_request_vkey,
    read_access_middleware,
    request_vkey,
)
from node.replaycache import ReplayRefused
from protocol.errors import KeyFormatError, UsageError


def own_address(request: web.Request) -> set[str]:
    """The test servers' names: the address they listen on (like `serve` derives)."""
    host, port = request.transport.get_extra_info("sockname")[:2]
    return {f"{host}:{port}"}


def make_signer(name: str = "platform.example/request", seed: bytes | None = None) -> RequestSigner:
    seed = seed if seed is not None else Ed25519PrivateKey.generate().private_bytes_raw()
    return RequestSigner.from_seed(name, seed)


async def tile(request: web.Request) -> web.Response:
    return web.Response(text=f"tile for {request[READER_KEY]}")


async def public(request: web.Request) -> web.Response:
    return web.Response(text="public")


@pytest.fixture
def reader() -> RequestSigner:
    return make_signer()


@pytest.fixture
def registry(reader) -> ReaderRegistry:
    return ReaderRegistry([reader.keyid])


@pytest.fixture
async def server(aiohttp_server, registry):
    app = web.Application(
        middlewares=[read_access_middleware(lambda request: registry, ("/tile/",), authorities=own_address,
                                            replay_cache=ReplayCache())]
    )
    app.router.add_get("/checkpoint", public)
    app.router.add_get("/node.json", public)
    app.router.add_get("/tile/{rest:.+}", tile)
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def get(session, url, headers=None):
    async with session.get(url, headers=headers or {}, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


async def test_signed_by_registered_reader_is_served(server, session, reader):
    url = server.make_url("/tile/0/x001/067")
    status, body, _ = await get(session, url, reader.sign_headers("GET", url))
    assert status == 200
    assert body == f"tile for {reader.keyid}"


async def test_a_verbatim_client_signs_the_url_as_it_sends_it(server, session, reader):
    """A client that sends its query verbatim (`%2F` kept, as requests or urllib do)
    signs that spelling; signing the normalised spelling of the same URL is refused,
    since the node checks the path and query exactly as received."""
    raw = str(server.make_url("/tile/0/000")) + "?x=%2F&y=a%7Eb"
    verbatim = URL(raw, encoded=True)
    assert (await get(session, verbatim, reader.sign_headers("GET", verbatim)))[0] == 200
    assert (await get(session, verbatim, reader.sign_headers("GET", raw)))[0] == 401


async def test_client_middleware_signs_every_request(server, reader):
    origin = server.make_url("/")
    async with aiohttp.ClientSession(middlewares=(reader.client_middleware(origin),)) as s:
        for path in ("/tile/0/000", "/tile/entries/000.p/3", "/tile/1/000"):
            status, _, _ = await get(s, server.make_url(path))
            assert status == 200, path


async def test_client_middleware_does_not_sign_for_other_origins(server, reader):
    async with aiohttp.ClientSession(middlewares=(reader.client_middleware("https://elsewhere.example"),)) as s:
        status, _, _ = await get(s, server.make_url("/tile/0/000"))
    assert status == 401


async def test_unsigned_is_401_with_challenge(server, session):
    status, body, headers = await get(session, server.make_url("/tile/0/000"))
    assert status == 401
    assert "registered readers" in body
    assert headers["WWW-Authenticate"].startswith("Signature")
    assert '"@authority"' in headers["Accept-Signature"]


async def test_an_unknown_key_and_a_bad_signature_get_the_same_answer(server, session, reader):
    # A stranger must not learn from the answer whether a key is a registered reader.
    url = server.make_url("/tile/0/000")
    stranger = make_signer("stranger.example/request")
    unknown = await get(session, url, stranger.sign_headers("GET", url))
    forged = reader.sign_headers("GET", url)
    i = forged["Signature"].index(":") + 5
    forged["Signature"] = forged["Signature"][:i] + ("A" if forged["Signature"][i] != "A" else "B") + \
        forged["Signature"][i + 1:]
    registered = await get(session, url, forged)
    assert unknown[0] == registered[0] == 401
    assert unknown[1] == registered[1] and "not a registered reader" in unknown[1]


async def test_tampered_path_is_401(server, session, reader):
    signed_for = server.make_url("/tile/0/000")
    status, body, _ = await get(session, server.make_url("/tile/0/001"), reader.sign_headers("GET", signed_for))
    assert status == 401
    assert "does not verify" in body
    # the reason says what to look at, not just that it failed
    assert "path" in body and "proxy" in body


async def test_signature_for_another_host_is_401(server, session, reader):
    # @authority binds a signature to one node: a request signed for another
    # helpline cannot be replayed here, sent as it was signed (its Host) or not.
    other = f"http://helpline.example:{server.port}/tile/0/000"
    status, _, _ = await get(session, server.make_url("/tile/0/000"), reader.sign_headers("GET", other))
    assert status == 401
    headers = {**reader.sign_headers("GET", other), "Host": f"helpline.example:{server.port}"}
    status, body, _ = await get(session, server.make_url("/tile/0/000"), headers)
    assert status == 401
    assert f"sent to 'helpline.example:{server.port}', which is not one of this node's names" in body


async def test_tampered_signature_bytes_is_401(server, session, reader):
    url = server.make_url("/tile/0/000")
    headers = reader.sign_headers("GET", url)
    value = headers["Signature"]
    # Flip one base64 character inside the byte sequence  ncii=:....:
    i = value.index(":") + 5
    headers["Signature"] = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1:]
    status, _, _ = await get(session, url, headers)
    assert status == 401


async def test_replay_of_same_headers_is_401(server, session, reader):
    url = server.make_url("/tile/0/000")
    headers = reader.sign_headers("GET", url)
    assert (await get(session, url, headers))[0] == 200
    status, body, _ = await get(session, url, headers)
    assert status == 401
    assert "already used" in body


async def test_stale_created_ten_minutes_ago_is_401(server, session, reader):
    url = server.make_url("/tile/0/000")
    status, body, _ = await get(session, url, reader.sign_headers("GET", url, now=time.time() - 600))
    assert status == 401
    assert "ago" in body


async def test_created_in_the_future_is_401(server, session, reader):
    url = server.make_url("/tile/0/000")
    status, body, _ = await get(session, url, reader.sign_headers("GET", url, now=time.time() + 600))
    assert status == 401
    assert "future" in body


async def test_small_clock_skew_is_accepted_and_no_more(server, session, reader):
    url = server.make_url("/tile/0/000")
    # created up to MAX_CLOCK_SKEW ahead; expires up to MAX_CLOCK_SKEW behind
    oldest = -(SIGNATURE_LIFETIME + MAX_CLOCK_SKEW)
    for offset in (oldest + 2, MAX_CLOCK_SKEW - 2):
        status, _, _ = await get(session, url, reader.sign_headers("GET", url, now=time.time() + offset))
        assert status == 200, offset
    for offset in (oldest - 2, MAX_CLOCK_SKEW + 2):
        status, body, _ = await get(session, url, reader.sign_headers("GET", url, now=time.time() + offset))
        assert status == 401 and ("expired" in body or "future" in body), offset


async def test_public_paths_need_no_signature(server, session):
    for path in ("/checkpoint", "/node.json"):
        status, body, _ = await get(session, server.make_url(path))
        assert (status, body) == (200, "public"), path


async def test_removed_reader_is_refused_on_next_request(server, session, reader, registry):
    url = server.make_url("/tile/0/000")
    assert (await get(session, url, reader.sign_headers("GET", url)))[0] == 200
    registry.remove(reader.keyid)
    assert (await get(session, url, reader.sign_headers("GET", url)))[0] == 401


def library_signed_headers(seed_key: Ed25519PrivateKey, keyid: str, url: str, **overrides) -> dict[str, str]:
    """Headers signed directly with http_message_signatures, to build requests that
    our RequestSigner would never produce."""
    import datetime

    class Message:
        method = "GET"

    message = Message()
    message.url = url
    message.headers = {}
    now = datetime.datetime.now(datetime.timezone.utc)
    options = dict(
        key_id=keyid,
        created=now,
        expires=now + datetime.timedelta(seconds=10),
        nonce="n" * 20,
        tag=readaccess.SIGNATURE_TAG,
        covered_component_ids=readaccess.COVERED_COMPONENTS,
    )
    options.update(overrides)
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: seed_key}),
    ).sign(message, **options)
    return message.headers


@pytest.mark.parametrize(
    "overrides, expected_text",
    [
        ({"nonce": None}, "nonce"),
        ({"nonce": "short"}, "nonce"),
        ({"expires": None}, "expires"),
        ({"tag": None}, "tag"),
        ({"tag": "something-else"}, "tag"),
        ({"covered_component_ids": ("@method", "@authority", "@path")}, "@query"),
        ({"covered_component_ids": ("@method", "@target-uri")}, "@authority"),
    ],
)
async def test_incomplete_signatures_are_401(server, session, overrides, expected_text):
    key = Ed25519PrivateKey.generate()
    keyid = request_vkey("partial.example", key.public_key())
    url = str(server.make_url("/tile/0/000"))
    # Parameter and coverage checks run before the key lookup, so this key (not
    # registered on the server) still gets the reason.
    headers = library_signed_headers(key, keyid, url, **overrides)
    status, body, _ = await get(session, url, headers)
    assert status == 401, body
    assert expected_text in body


async def test_lookup_may_be_a_plain_dict_of_public_keys(aiohttp_server, session, reader):
    lookup = {reader.keyid: parse_request_vkey(reader.keyid)}
    app = web.Application(middlewares=[read_access_middleware(lookup, authorities=own_address)])
    app.router.add_get("/tile/{rest:.+}", tile)
    server = await aiohttp_server(app, host="127.0.0.1")
    url = server.make_url("/tile/0/000")
    assert (await get(session, url, reader.sign_headers("GET", url)))[0] == 200


async def test_async_lookup_factory(aiohttp_server, session, reader):
    async def factory(request):
        return ReaderRegistry([reader.keyid])

    app = web.Application(middlewares=[read_access_middleware(factory, authorities=own_address)])
    app.router.add_get("/tile/{rest:.+}", tile)
    server = await aiohttp_server(app, host="127.0.0.1")
    url = server.make_url("/tile/0/000")
    assert (await get(session, url, reader.sign_headers("GET", url)))[0] == 200
    assert (await get(session, url))[0] == 401


# --- Pieces without HTTP ---


def test_request_vkey_round_trip_and_errors():
    key = Ed25519PrivateKey.generate()
    vkey = request_vkey("helpline.example", key.public_key())
    name, key_id, blob = vkey.split("+", 2)
    assert name == "helpline.example" and len(key_id) == 8
    assert parse_request_vkey(vkey).public_bytes_raw() == key.public_key().public_bytes_raw()
    bad_id = f"{name}+{'0' * 8 if key_id != '0' * 8 else '1' * 8}+{blob}"
    for bad in (bad_id, "no-plus", f"{name}+{key_id}+!!!", f"{name}+{key_id}+{blob[:-4]}", f"+{key_id}+{blob}"):
        with pytest.raises(KeyFormatError):
            parse_request_vkey(bad)


def test_a_request_key_and_a_log_key_of_one_seed_and_name_cannot_be_confused():
    from protocol import note

    seed = bytes(range(32))
    log_vkey = note.Signer("reader.example", seed).verifier_key()
    ours = RequestSigner.from_seed("reader.example", seed).keyid
    assert ours != log_vkey and ours.split("+")[1] != log_vkey.split("+")[1]  # other key ID too
    assert ours.split("+", 2)[2].startswith("/25jaWktbm9kZS9yZXF1ZXN0LWtleQ")  # 0xff "ncii-node/request-key"
    with pytest.raises(KeyFormatError, match="given is a read-request key .*, not a log verifier key"):
        note.Verifier.from_vkey(ours)
    with pytest.raises(KeyFormatError, match="given is a log verifier key .*, not a read-request key"):
        parse_request_vkey(log_vkey)


def test_signer_refuses_a_keyid_for_another_key():
    other = make_signer()
    with pytest.raises(UsageError):
        RequestSigner(Ed25519PrivateKey.generate(), other.keyid)


def test_replay_cache_forgets_expired_nonces_and_is_bounded():
    cache = ReplayCache(max_entries=3, max_per_reader=3)
    cache.check_and_add("k", "a", forget_at=100, now=0)
    with pytest.raises(ReplayRefused, match="already used"):
        cache.check_and_add("k", "a", forget_at=100, now=50)
    cache.check_and_add("other-reader", "a", forget_at=100, now=50)  # nonces are per reader
    cache.check_and_add("k", "b", forget_at=200, now=50)
    with pytest.raises(ReplayRefused, match="in flight") as refused:
        cache.check_and_add("k", "c", forget_at=200, now=60)
    assert refused.value.full
    cache.check_and_add("k", "c", forget_at=300, now=150)  # "a" nonces expired, room again
    assert len(cache) == 2
    cache.check_and_add("k", "a", forget_at=400, now=150)  # and "a" may be used afresh


def test_one_reader_fills_only_its_own_share_of_the_replay_cache():
    cache = ReplayCache(max_entries=10)  # half of it at most for any one reader
    for i in range(5):
        cache.check_and_add("greedy", f"n{i}", forget_at=100, now=0)
    with pytest.raises(ReplayRefused, match="this reader"):
        cache.check_and_add("greedy", "n5", forget_at=100, now=0)
    for i in range(5):  # the others still get in
        cache.check_and_add(f"reader-{i}", "n", forget_at=100, now=0)
    cache.check_and_add("greedy", "n5", forget_at=300, now=150)  # its share frees as nonces expire
    assert len(cache) == 1


async def test_replay_cache_full_is_503(aiohttp_server, session, reader):
    app = web.Application(
        middlewares=[read_access_middleware(ReaderRegistry([reader.keyid]), authorities=own_address,
                                            replay_cache=ReplayCache(max_entries=1))]
    )
    app.router.add_get("/tile/{rest:.+}", tile)
    server = await aiohttp_server(app, host="127.0.0.1")
    url = server.make_url("/tile/0/000")
    assert (await get(session, url, reader.sign_headers("GET", url)))[0] == 200
    status, _, headers = await get(session, url, reader.sign_headers("GET", url))
    assert status == 503 and headers["Retry-After"]


def test_signature_base_is_plain_rfc9421():
    """Rebuild the RFC 9421 signature base by hand and verify with bare Ed25519, so
    any RFC 9421 implementation can interoperate (this is the example in the spec)."""
    import base64

    signer = RequestSigner.from_seed("platform.example/request", bytes(range(32)))
    headers = signer.sign_headers(
        "GET", "https://helpline.example/tile/0/x001/067", now=1767225600, nonce="bm9uY2UtZXhhbXBsZS0wMDAx"
    )
    label, params = headers["Signature-Input"].split("=", 1)
    assert label == "ncii"
    assert params == (
        '("@method" "@authority" "@path" "@query");created=1767225600;'
        f'keyid="{signer.keyid}";alg="ed25519";expires=1767225610;'
        'nonce="bm9uY2UtZXhhbXBsZS0wMDAx";tag="ncii-node-read"'
    )
    base = (
        '"@method": GET\n'
        '"@authority": helpline.example\n'
        '"@path": /tile/0/x001/067\n'
        '"@query": ?\n'
        f'"@signature-params": {params}'
    ).encode()
    assert headers["Signature"].startswith("ncii=:") and headers["Signature"].endswith(":")
    signature = base64.b64decode(headers["Signature"][len("ncii=:"):-1])
    parse_request_vkey(signer.keyid).verify(signature, base)  # raises if it does not verify
    # the example of spec/parts/readaccess.md, byte for byte
    assert signer.keyid == ("platform.example/request+abe48c4e+"
                            "/25jaWktbm9kZS9yZXF1ZXN0LWtleQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4")
    assert headers["Signature"] == ("ncii=:kmkYlwaDigDmiW/7mANL4azg99f13DKp7D5lNPYcETJ2nLskFqeZIKvrPoGNxjwr4ayic2K3"
                                    "bpBz7B71IxH+Bg==:")


async def test_client_middleware_does_not_sign_a_redirect_to_another_origin(aiohttp_server, reader):
    seen = []

    async def record(request):
        seen.append(request.headers.get("Signature-Input"))
        return web.Response(text="elsewhere")

    other_app = web.Application()
    other_app.router.add_get("/{rest:.*}", record)
    other = await aiohttp_server(other_app, host="127.0.0.1")

    async def redirect(request):
        raise web.HTTPFound(str(other.make_url("/landing")))

    app = web.Application(middlewares=[read_access_middleware(ReaderRegistry([reader.keyid]), authorities=own_address)])
    app.router.add_get("/tile/{rest:.+}", redirect)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession(middlewares=(reader.client_middleware(server.make_url("/")),)) as s:
        async with s.get(server.make_url("/tile/0/000")) as response:
            assert response.status == 200 and await response.text() == "elsewhere"
    assert seen == [None]


def test_the_replay_journal_reloads_live_nonces_and_compacts(tmp_path):
    path = tmp_path / "replay.journal"
    cache = ReplayCache(compact_after=1000)
    assert "no replay journal yet" in cache.open_journal(path, 1000.0, MAX_CLOCK_SKEW)
    for i in range(1001):  # expire at 1050: the journal grows past its compaction bound
        cache.check_and_add("r", f"old-nonce-{i:010d}", forget_at=1050, now=1000)
    cache.check_and_add("r", "live-nonce-000000", forget_at=1200, now=1100)  # the old ones expired: rewrite
    assert path.stat().st_size < 1000
    with open(path, "ab") as f:
        f.write(b"\x00\x01\x02")  # a record cut short by a crash is ignored
    cache.close()
    again = ReplayCache()
    assert "1 signed read(s)" in again.open_journal(path, 1110.0, MAX_CLOCK_SKEW)
    assert again.not_before == 0
    with pytest.raises(ReplayRefused, match="already used"):
        again.check_and_add("r", "live-nonce-000000", forget_at=1200, now=1110)
    again.check_and_add("r", "old-nonce-0000000001", forget_at=1200, now=1110)  # expired ones are forgotten
    again.close()
    path.write_bytes(b"garbage")
    third = ReplayCache()
    assert "unreadable" in third.open_journal(path, 2000.0, MAX_CLOCK_SKEW)
    assert third.not_before == 2000.0 + MAX_CLOCK_SKEW
    third.close()
