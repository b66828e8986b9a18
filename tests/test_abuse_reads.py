"""Issue 12, point 1: a signed read is bound to the one node it was made for, stays
refused after a restart, holds `expires` with only the documented skew, and tells a
stranger nothing about who is a registered reader. Real `ncii-node serve` processes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from node.cli import main as cli_main
from node.readaccess import MAX_CLOCK_SKEW, RequestSigner
from node.replaycache import JOURNAL_MAGIC
from node.web.app import REPLAY_JOURNAL
from publish_support import append, make_datadir, pdq_line
from serve_support import NodeProcess, free_port

pytestmark = pytest.mark.timeout(120)


def register(datadir, reader_key) -> None:
    assert cli_main(["readers", "add", "--dir", str(datadir.root), reader_key.verifier_key()]) == 0


async def get(session, url: str, headers: dict, host: str | None = None) -> tuple[int, bytes]:
    if host is not None:
        headers = {**headers, "Host": host}
    async with session.get(url, headers=headers, allow_redirects=False) as r:
        return r.status, await r.read()


@pytest.fixture
async def nodes(tmp_path):
    """Two helplines A and B that both let platform P read; each has one entry."""
    a = make_datadir(tmp_path, public_read=False, name="a", origin="a.example/log", interval=0.05)
    b = make_datadir(tmp_path, public_read=False, name="b", origin="b.example/log", interval=0.05)
    platform = make_datadir(tmp_path, public_read=False, name="p", origin="p.example/log")
    key = platform.load_request_signer()
    for d in (a, b):
        register(d, key)
    procs = [NodeProcess(a, port=free_port()), NodeProcess(b, port=free_port())]
    try:
        async with aiohttp.ClientSession() as session:
            for proc, i in zip(procs, (1, 2)):
                await proc.start()
                status, _ = await append(session, proc.admin_url, proc.datadir.admin_token(), [pdq_line(i)])
                assert status == 200
            yield procs[0], procs[1], key.signer(), session
    finally:
        for proc in procs:
            proc.stop()


async def test_a_read_signed_for_one_node_is_refused_by_another(nodes):
    a, b, platform, session = nodes
    tile = "/tile/entries/000.p/1"
    # P reads B: B's operator sees P's signed request for B's tile ...
    for_b = platform.sign_headers("GET", b.public_url + tile)
    assert (await get(session, b.public_url + tile, for_b))[0] == 200
    # ... and forwards it to A, which also lets P read. Sent as signed (Host = B):
    b_host = b.public_url.split("//", 1)[1]
    status, body = await get(session, a.public_url + tile, platform.sign_headers("GET", b.public_url + tile),
                             host=b_host)
    assert status == 401, body
    assert b"not one of this node's names" in body
    # ... or with A's Host header: the signature covers B's authority and fails.
    status, _ = await get(session, a.public_url + tile, platform.sign_headers("GET", b.public_url + tile))
    assert status == 401
    # P's own reads of A still work.
    assert (await get(session, a.public_url + tile, platform.sign_headers("GET", a.public_url + tile)))[0] == 200


async def test_a_used_signature_stays_refused_after_a_clean_stop_and_after_sigkill(nodes):
    a, _, platform, session = nodes
    url = a.public_url + "/tile/entries/000.p/1"
    for restart in ("stop", "kill"):
        used = platform.sign_headers("GET", url)
        assert (await get(session, url, used))[0] == 200
        a.stop() if restart == "stop" else a.kill()
        await a.start()  # same port: the signature's "@authority" is still this node's
        status, body = await get(session, url, used)
        assert status == 401 and b"already used" in body, restart
        # A fresh signature works at once: the journal (same boot) kept every nonce.
        assert (await get(session, url, platform.sign_headers("GET", url)))[0] == 200, restart


async def test_after_a_reboot_signatures_made_before_the_start_are_refused(nodes):
    a, _, platform, session = nodes
    url = a.public_url + "/tile/entries/000.p/1"
    used = platform.sign_headers("GET", url)
    assert (await get(session, url, used))[0] == 200
    a.kill()
    journal = a.datadir.root / REPLAY_JOURNAL
    data = journal.read_bytes()
    assert data.startswith(JOURNAL_MAGIC)
    at = len(JOURNAL_MAGIC)  # as if the machine had rebooted: another boot ID in the header
    journal.write_bytes(data[:at] + b"00000000-0000-0000-0000-000000000000" + data[at + 36:])
    await a.start()
    status, body = await get(session, url, used)
    assert status == 401 and b"restarted" in body
    status, body = await get(session, url, platform.sign_headers("GET", url))  # made now: refused for a while
    assert status == 401 and b"restarted" in body
    # Created MAX_CLOCK_SKEW after the start (a reader whose clock runs that far ahead,
    # or anyone that long after): accepted. (`created` is whole seconds: a second later.)
    await asyncio.sleep(1.1)
    ahead = platform.sign_headers("GET", url, now=time.time() + MAX_CLOCK_SKEW)
    assert (await get(session, url, ahead))[0] == 200


async def test_expires_holds_and_strangers_learn_nothing(nodes):
    a, _, platform, session = nodes
    url = a.public_url + "/tile/entries/000.p/1"
    late = platform.sign_headers("GET", url, now=time.time() - 10 - MAX_CLOCK_SKEW - 2)  # expired 2 s past the skew
    status, body = await get(session, url, late)
    assert status == 401 and b"expired" in body
    stranger = RequestSigner.from_seed("stranger.example/log", bytes(32))
    unknown = await get(session, url, stranger.sign_headers("GET", url))
    forged = platform.sign_headers("GET", url)
    value = forged["Signature"]
    forged["Signature"] = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    registered = await get(session, url, forged)
    assert unknown == registered and unknown[0] == 401
