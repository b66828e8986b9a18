"""The real `threatexchange` CLI against a hostile or unreliable log, through
node.interop.pytx: a fork (a history rewritten under the same key) and a bad tile make
`threatexchange fetch` fail with the reason and leave the stored state byte for byte as
it was (a fork also leaves a checkable evidence file); a fetch interrupted by Ctrl-C or
killed outright leaves the state as it was, and the next fetch resumes from it.

The log is tests/follow_support.py's StaticLog, served on 127.0.0.1 by this test's
event loop while the CLI runs as a subprocess."""

from __future__ import annotations

import asyncio
import pickle
import signal

import pytest
from aiohttp import web

pytest.importorskip("threatexchange", reason="the test extra installs threatexchange (python-threatexchange)")

from follow_support import LogServer, StaticLog, pdq_entry, withdrawal_entry  # noqa: E402
from node.witness.evidence import verify_evidence  # noqa: E402
from protocol.note import Signer  # noqa: E402
from protocol.tiles import TileId, bundles_for_size  # noqa: E402
from test_pytx_cli import TX, threatexchange_command  # noqa: E402

ORIGIN = "hostile.pytx.example/log"

pytestmark = pytest.mark.timeout(240)


async def run(tx: TX, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*threatexchange_command(), *args, cwd=tx.home, env=tx.env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 150)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def setup(tmp_path):
    log = StaticLog(ORIGIN)
    log.append(*[pdq_entry(i) for i in range(1, 301)])
    server = await LogServer(log).start()
    tx = TX(tmp_path / "home")
    key = tmp_path / "request.key"
    key.write_bytes(Signer.generate("platform.pytx.example/log").to_key_file())
    assert (await run(tx, "config", "extensions", "add", "node.interop.pytx"))[0] == 0
    code, out, err = await run(tx, "config", "collab", "edit", "ncii_node", "hostile", "--create", "--url",
                               server.url, "--vkey", log.vkey, "--request-key-file", str(key), "--timeout", "5")
    assert code == 0, err
    code, out, err = await run(tx, "fetch")
    assert code == 0, err
    yield log, server, tx
    await server.stop()


def stored(tx: TX):
    return pickle.loads(tx.state_file("hostile").read_bytes())


async def fetched(tx: TX, size: int, absent: str, present: str, records: int) -> None:
    """A fetch that succeeds: the stored state is the log's at `size`, without the
    withdrawn entry `absent`, with `present`, `records` active records in all."""
    code, _, err = await run(tx, "fetch")
    assert code == 0, err
    state = stored(tx)
    assert state.checkpoint.size == size
    assert (ORIGIN, absent) not in state.updates and (ORIGIN, present) in state.updates
    assert len(state.updates) == records


async def test_a_fork_fails_the_fetch_keeps_the_state_and_leaves_evidence(setup):
    log, server, tx = setup
    before = tx.state_file("hostile").read_bytes()
    assert stored(tx).checkpoint.size == 300
    # Same key, another history: the first 300 entries differ, and the tree grew.
    rewritten = StaticLog(ORIGIN, signer=log.signer)
    rewritten.append(*[pdq_entry(i) for i in range(1001, 1401)])
    server.log = rewritten
    code, out, err = await run(tx, "fetch")
    assert code == 3 and "FORK" in err and "failed to fetch" in err, err
    assert "does not extend the verified checkpoint of size 300" in err
    assert tx.state_file("hostile").read_bytes() == before
    (evidence,) = (tx.state_dir / "ncii_node" / "evidence").glob("*.json")
    proven = verify_evidence(evidence.read_bytes())
    assert proven.origin == ORIGIN
    # Every later fetch finds the fork again; nothing of the other history is ever stored.
    code, _, err = await run(tx, "fetch")
    assert code == 3 and "FORK" in err
    assert tx.state_file("hostile").read_bytes() == before


async def test_a_bad_tile_fails_the_fetch_and_the_next_good_one_applies(setup):
    log, server, tx = setup
    before = tx.state_file("hostile").read_bytes()
    log.append(*[pdq_entry(i) for i in range(301, 401)], withdrawal_entry(5))
    tile = TileId(0, 1, 401 - 256).path()
    good = log.files[tile]
    server.overrides[tile] = good[:40] + bytes([good[40] ^ 1]) + good[41:]
    code, out, err = await run(tx, "fetch")
    assert code == 3 and "tiles do not match the signed checkpoint" in err, err
    assert tx.state_file("hostile").read_bytes() == before
    # A bundle whose entries do not hash to the tile's leaves: refused too.
    del server.overrides[tile]
    bundle = bundles_for_size(401)[-1].path()
    server.overrides[bundle] = log.files[bundle][:-1] + bytes([log.files[bundle][-1] ^ 1])
    code, out, err = await run(tx, "fetch")
    assert code == 3 and "does not hash to its leaf hash" in err, err
    assert tx.state_file("hostile").read_bytes() == before
    # The log serves the truth again: everything applies, the withdrawal included.
    del server.overrides[bundle]
    await fetched(tx, 401, absent="5", present="399", records=399)


async def test_an_interrupted_fetch_keeps_the_state_and_the_next_one_resumes(setup):
    log, server, tx = setup
    before = tx.state_file("hostile").read_bytes()
    log.append(*[pdq_entry(i) for i in range(301, 3001)], withdrawal_entry(0, 2999))
    slow_paths = {b.path() for b in bundles_for_size(log.publish())[1:]}
    served_slowly: list[str] = []

    async def slowly(request: web.Request) -> web.StreamResponse:
        path = request.path.lstrip("/")
        served_slowly.append(path)
        await asyncio.sleep(3)  # long enough that no fetch ends before it is interrupted
        return web.Response(body=log.files[path])

    for interruption in (signal.SIGINT, signal.SIGKILL):
        for path in slow_paths:
            server.overrides[path] = slowly
        served_slowly.clear()
        # Ctrl-C must reach it even when this test runs as a background job (whose
        # children inherit an ignored SIGINT).
        proc = await asyncio.create_subprocess_exec(*threatexchange_command(), "fetch", cwd=tx.home, env=tx.env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        for _ in range(300):  # until the fetch is well into the new entries
            if len(served_slowly) >= 3:
                break
            await asyncio.sleep(0.05)
        assert served_slowly, "the fetch never reached the new entries"
        proc.send_signal(interruption)
        await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == (130 if interruption == signal.SIGINT else -signal.SIGKILL)
        assert tx.state_file("hostile").read_bytes() == before, interruption
    server.overrides.clear()
    await fetched(tx, 3001, absent="0", present="2998", records=2998)
