"""The helpline case API on a real node (127.0.0.1, free ports, SQLite in tmp_path):
create, status, withdraw, refusals, PIN guessing up to the lockout, crash repair, what
the published log holds, and what the logs hold."""

from __future__ import annotations

import hashlib
import io
import logging
import sqlite3
import time

import aiohttp
import pytest

from node.cases.limits import ADDRESS_POLICY, CASE_POLICY
from node.store import cases as case_store
from node.store.cases import CaseRepository
from protocol.entries import Submission, Withdrawal, decode_entry

from publish_support import Clock, make_datadir, read_log, tile_files

YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}


def pdq(i: int, quality: int = 90) -> dict:
    """A PDQ hash like a picture's (about half its bits set; a nearly blank one is refused)."""
    return {"signal": "pdq", "fingerprint": hashlib.sha256(b"picture %d" % i).hexdigest(), "quality": quality}


def helpline_datadir(tmp_path, name="helpline", database=None):
    # PINs hashed with scrypt n=2**10: production is 2**15; the test only needs the same code path
    return make_datadir(tmp_path, name=name, settings={"cases": {"pin_scrypt_n": 2**10}}, database=database)


@pytest.fixture(params=["sqlite", "postgresql"])
def helpline_database(request):
    """None (SQLite), then a PostgreSQL database: a fixture of its own, set up before
    start_node, so the node stops before its database is dropped (a node whose database
    vanished under it may never finish stopping: seen in a full run under load)."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


@pytest.fixture
async def node(tmp_path, helpline_database, start_node):
    """A helpline on SQLite, then on PostgreSQL."""
    running = await start_node(helpline_datadir(tmp_path, database=helpline_database))
    return running


async def post(session, url, body=None, **kwargs):
    async with session.post(url, json=body, **kwargs) if body is not None else session.post(url, **kwargs) as r:
        try:
            data = await r.json(content_type=None)
        except ValueError:
            data = None
        return r.status, data, r.headers


async def open_case(session, node, fingerprints, lang="en"):
    status, data, headers = await post(session, node.public_url + "/v1/cases",
                                       {"eligibility": YES, "fingerprints": fingerprints, "lang": lang})
    assert status == 201, data
    assert headers["Cache-Control"] == "no-store"
    return data


def vkey_of(node):
    return node.datadir.load_log_signer().verifier_key()


# ---------------------------------------------------------------- the cycle

async def test_create_status_withdraw(node, session):
    fps = [pdq(1), pdq(2, quality=30), {"signal": "md5", "fingerprint": "ab" * 16}, pdq(1)]
    case = await open_case(session, node, fps)
    assert case["fingerprints"] == 3 and case["low_quality"] == 1
    assert len(case["case_number"]) == 19 and len(case["pin"]) == 8
    indices = [p["index"] for p in case["published"]]

    view = await read_log(session, node.public_url, vkey_of(node), origin=node.datadir.config.node.origin)
    submitted = [decode_entry(view.entries[i]) for i in indices]
    assert [s.fingerprint.hex() for s in submitted] == [pdq(1)["fingerprint"], pdq(2)["fingerprint"], "ab" * 16]
    assert all(p["checkpoint_size"] <= view.checkpoint.size for p in case["published"])
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert all(p["day"] == today for p in case["published"])  # when each was published

    codes = {"case_number": case["case_number"].lower().replace("-", " "), "pin": case["pin"]}
    status, answer, _ = await post(session, node.public_url + "/v1/cases/status", codes)
    assert status == 200, answer
    assert answer["state"] == "active" and answer["fingerprints"] == 3 and answer["low_quality"] == 1
    assert answer["published"] == case["published"]
    assert answer["withdrawn_at"] is None and answer["feedback"] == []

    status, answer, _ = await post(session, node.public_url + "/v1/cases/withdraw", codes)
    assert status == 200, answer
    assert answer["state"] == "withdrawn"
    when = answer["withdrawn_at"]
    assert when["published"] is True and when["day"] == when["requested"] and len(when["entries"]) == 1

    view = await read_log(session, node.public_url, vkey_of(node), origin=node.datadir.config.node.origin)
    withdrawal = decode_entry(view.entries[when["entries"][0]])
    assert withdrawal == Withdrawal(tuple(sorted(indices)), "withdrawn-by-person")
    assert when["checkpoint_size"] > when["entries"][0]

    # Idempotent: asking again appends nothing.
    status, again, _ = await post(session, node.public_url + "/v1/cases/withdraw", codes)
    assert status == 200 and again["withdrawn_at"] == when
    status, answer, _ = await post(session, node.public_url + "/v1/cases/status", codes)
    assert answer["state"] == "withdrawn" and answer["withdrawn_at"] == when
    after = await read_log(session, node.public_url, vkey_of(node), origin=node.datadir.config.node.origin)
    assert after.checkpoint.size == view.checkpoint.size


async def test_many_fingerprints_withdrawn_in_chunks(tmp_path, session, start_node):
    datadir = helpline_datadir(tmp_path)
    config = datadir.config
    config.cases.max_fingerprints = config.cases.max_photos = 1000
    datadir.save_config(config)
    node = await start_node(datadir)
    try:
        case = await open_case(session, node, [pdq(i) for i in range(1, 1101)][:1000])
        codes = {"case_number": case["case_number"], "pin": case["pin"]}
        status, answer, _ = await post(session, node.public_url + "/v1/cases/withdraw", codes)
        assert status == 200
        assert len(answer["withdrawn_at"]["entries"]) == 1  # 1000 targets fit one entry (1,024 at most)
        view = await read_log(session, node.public_url, vkey_of(node), origin=config.node.origin)
        (withdrawal,) = [decode_entry(e) for e in view.entries if isinstance(decode_entry(e), Withdrawal)]
        assert len(withdrawal.targets) == 1000
    finally:
        await node.stop()


# ---------------------------------------------------------------- refusals

async def test_not_eligible_creates_nothing(node, session):
    for lang in ("fr", "en"):
        status, data, _ = await post(session, node.public_url + "/v1/cases",
                                     {"eligibility": {**YES, "adult": False}, "fingerprints": [pdq(5)], "lang": lang})
        assert status == 422
        assert data["eligible"] is False and data["not_met"] == ["adult"]
        assert data["help"][0]["url"] == "https://takeitdown.ncmec.org/"
    # Not eligible: even malformed fingerprints are not looked at, nothing is stored.
    status, data, _ = await post(session, node.public_url + "/v1/cases",
                                 {"eligibility": {**YES, "intimate": False}, "fingerprints": "junk"})
    assert status == 422 and data["not_met"] == ["intimate"]
    assert node.node.sequencer.published.size == 0
    assert node.node.db.cases.counts() == {s: 0 for s in case_store.STATES}


@pytest.mark.parametrize("content_type", ["image/jpeg", "video/mp4", "multipart/form-data; boundary=x",
                                          "IMAGE/PNG", "Multipart/mixed; boundary=y"])
@pytest.mark.parametrize("path", ["/v1/cases", "/v1/cases/status", "/v1/cases/withdraw", "/anything/else"])
async def test_images_and_videos_are_refused_everywhere(node, session, content_type, path):
    status, data, _ = await post(session, node.public_url + path, data=b"\xff\xd8\xff\xe0" + b"\0" * 100,
                                 headers={"Content-Type": content_type})
    assert status == 415
    assert "never accepts images or videos" in data["error"]


async def test_bad_requests(node, session):
    url = node.public_url
    status, data, _ = await post(session, url + "/v1/cases", data=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON" in data["error"]
    status, data, _ = await post(session, url + "/v1/cases/status", data=b"[" * 4000,
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON" in data["error"]
    status, data, _ = await post(session, url + "/v1/cases", data=b"x=1", headers={"Content-Type": "text/plain"})
    assert status == 415 and "JSON" in data["error"]
    status, data, _ = await post(session, url + "/v1/cases", {"eligibility": YES, "fingerprints": [pdq(1)], "name": "A"})
    assert status == 400 and "unknown fields" in data["error"]
    status, data, _ = await post(session, url + "/v1/cases",
                                 {"eligibility": YES, "fingerprints": [{**pdq(1), "path": "/home/a/me.jpg"}]})
    assert status == 400 and "file name" in data["error"]
    status, data, _ = await post(session, url + "/v1/cases", {"eligibility": YES, "fingerprints": [pdq(1)] * 101})
    assert status == 400 and "at most 70" in data["error"]
    big = b'{"eligibility": {}, "fingerprints": ["' + b"0" * (4 * 1024 * 1024) + b'"]}'
    status, data, _ = await post(session, url + "/v1/cases", data=big, headers={"Content-Type": "application/json"})
    assert status == 413
    status, data, _ = await post(session, url + "/v1/cases/status",
                                 {"case_number": "0000-0000-0000-0000", "pin": "12345678", "x": "y" * 5000})
    assert status == 413
    status, data, _ = await post(session, url + "/v1/cases/status", {"case_number": "ABCD-EFGH-JKMN-PQRS", "pin": "1"})
    assert status == 400
    async with session.get(url + "/v1/cases/status") as r:
        assert r.status == 405
    assert node.node.sequencer.published.size == 0


async def test_degenerate_fingerprints_are_refused(node, session):
    """The hash of a blank picture or of an empty file can only cause false matches: 400,
    each named, nothing stored or published."""
    url = node.public_url + "/v1/cases"
    black = {"pdq": "00" * 32, "quality": 0, "timestamp": 0.0}
    fps = [pdq(1), {"signal": "pdq", "fingerprint": "0" * 64, "quality": 0},
           {"signal": "md5", "fingerprint": "d41d8cd98f00b204e9800998ecf8427e"},
           {"signal": "vpdq", "fingerprint": [black, {**black, "timestamp": 1.0}]},
           {"signal": "pdq", "fingerprint": "f" * 64, "quality": 100}]
    status, data, headers = await post(session, url, {"eligibility": YES, "fingerprints": fps, "lang": "fr"})
    assert status == 400, data
    assert data["degenerate"] == [2, 3, 4, 5]
    assert "can only cause false matches" in data["error"] and "Remove them and send the others" in data["error"]
    assert "Fingerprint 3: this is the md5 of an empty file" in data["error"]
    assert headers["Cache-Control"] == "no-store"
    assert node.node.sequencer.published.size == 0
    assert node.node.db.cases.counts() == {s: 0 for s in case_store.STATES}
    # The others alone are accepted.
    case = await open_case(session, node, [fps[0]])
    assert case["fingerprints"] == 1


async def test_a_typo_in_the_case_number_costs_no_attempt(node, session):
    case = await open_case(session, node, [pdq(3)])
    number = case["case_number"]
    typo = number[:-1] + ("0" if number[-1] != "0" else "1")
    for _ in range(30):
        status, data, _ = await post(session, node.public_url + "/v1/cases/status", {"case_number": typo, "pin": case["pin"]})
        assert status == 400 and "typing mistake" in data["error"]
    status, _, _ = await post(session, node.public_url + "/v1/cases/status", {"case_number": number, "pin": case["pin"]})
    assert status == 200


# ---------------------------------------------------------------- PIN guessing

async def test_pin_guessing_reaches_the_case_lockout(node, session):
    service = node.node.cases
    clock = service.clock = Clock(1_800_000_000.0)
    case = await open_case(session, node, [pdq(7)])
    url = node.public_url + "/v1/cases/status"
    right = {"case_number": case["case_number"], "pin": case["pin"]}
    wrong = {**right, "pin": "%08d" % ((int(case["pin"]) + 1) % 10**8)}

    answers = []
    for attempt in range(1, 40):
        status, data, headers = await post(session, url, wrong)
        answers.append(status)
        if status == 429:
            assert data["retry_after"] >= 1 and headers["Retry-After"] == str(data["retry_after"])
            if data["locked"]:
                break
            # A delay is running: nothing is checked, even the right PIN.
            status, data2, _ = await post(session, url, right)
            assert status == 429 and not data2["locked"]
            clock.now += data["retry_after"]
        else:
            assert status == 401 and "wrong case number or PIN" in data["error"]
            clock.now += data.get("retry_after", 0)
    assert data["locked"] is True
    assert "locked" in data["error"] and f"{int(CASE_POLICY.lock_duration // 3600)} hour" in data["error"]
    assert answers.count(401) == CASE_POLICY.lock_after - 1  # the 10th wrong PIN answers 429 locked

    # Locked: even the right PIN is refused, and the person is told for how long (once
    # the short wait of their address is over, they hear about the case's lockout).
    clock.now += 600
    status, data, _ = await post(session, url, right)
    assert status == 429 and data["locked"] is True
    assert CASE_POLICY.lock_duration - 601 < data["retry_after"] <= CASE_POLICY.lock_duration
    row = node.node.db.execute("SELECT failed_pins FROM cases").fetchone()
    assert row[0] == CASE_POLICY.lock_after
    # The withdrawal is refused too while locked.
    status, _, _ = await post(session, node.public_url + "/v1/cases/withdraw", right)
    assert status == 429

    # Once the lock is over the right PIN works again; the case keeps counting the wrong
    # ones (towards its guard: tests/test_abuse_pins.py), not the right one.
    clock.now += CASE_POLICY.lock_duration + 1
    status, data, _ = await post(session, url, right)
    assert status == 200 and data["state"] == "active"
    assert node.node.db.execute("SELECT failed_pins FROM cases").fetchone()[0] == CASE_POLICY.lock_after


async def test_guessing_case_numbers_locks_the_address(node, session):
    from node.cases.numbers import new_case_number

    service = node.node.cases
    clock = service.clock = Clock(1_800_000_000.0)
    case = await open_case(session, node, [pdq(8)])
    url = node.public_url + "/v1/cases/status"
    failures = 0
    while True:
        status, data, _ = await post(session, url, {"case_number": new_case_number(), "pin": "12345678"})
        if status == 401:
            failures += 1
            clock.now += data.get("retry_after", 0)
            continue
        assert status == 429
        if data["locked"]:
            break
        clock.now += data["retry_after"]
    assert failures == ADDRESS_POLICY.lock_after - 1
    assert "your connection" in data["error"]
    # The lockout is per address: the case's own right codes are refused from here ...
    status, data, _ = await post(session, url, {"case_number": case["case_number"], "pin": case["pin"]})
    assert status == 429 and data["locked"]
    # ... but work from another address.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.9", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        status, data, _ = await post(other, url, {"case_number": case["case_number"], "pin": case["pin"]})
    assert status == 200
    clock.now += ADDRESS_POLICY.lock_duration + 1
    status, _, _ = await post(session, url, {"case_number": case["case_number"], "pin": case["pin"]})
    assert status == 200


async def test_parallel_guesses_are_counted_one_by_one(node, session):
    import asyncio

    service = node.node.cases
    service.clock = Clock(1_800_000_000.0)
    case = await open_case(session, node, [pdq(9)])
    url = node.public_url + "/v1/cases/status"
    guesses = [{"case_number": case["case_number"], "pin": "%08d" % i} for i in range(40) if "%08d" % i != case["pin"]]
    results = await asyncio.gather(*(post(session, url, g) for g in guesses))
    checked = [s for s, _, _ in results if s == 401]
    # Only the attempts the policy lets through at one instant were checked at all.
    assert len(checked) <= min(CASE_POLICY.free, ADDRESS_POLICY.free)
    assert all(s in (401, 429) for s, _, _ in results)


async def wrong_pin_answers(node, number: str, pin: str, local_address: str) -> list:
    """Every answer a patient guesser gets from a fresh address, trying a wrong PIN,
    retrying at once whenever told to wait, then waiting as told; until the case is
    locked, then once during the lock and once after it."""
    clock = node.node.cases.clock
    url = node.public_url + "/v1/cases/status"
    connector = aiohttp.TCPConnector(local_addr=(local_address, 0))
    answers = []
    async with aiohttp.ClientSession(connector=connector) as s:
        async def attempt():
            status, data, headers = await post(s, url, {"case_number": number, "pin": pin})
            answers.append((status, data, headers.get("Retry-After")))
            return data

        for _ in range(40):
            data = await attempt()
            if "retry_after" in data:
                await attempt()  # at once: refused without a check
                clock.now += data["retry_after"]
            if data.get("locked"):
                break
        clock.now += 600
        await attempt()  # during the lock
        clock.now += CASE_POLICY.lock_duration
        await attempt()  # after it: one more wrong PIN locks again
    return answers


async def test_an_unknown_case_number_is_answered_like_a_known_one(node, session):
    """The failed-PIN counters tell nothing about whether a case number exists: the
    same status codes, waits, wording and lockout for a real case (wrong PIN) and an
    unknown number, each tried from a fresh address."""
    from node.cases.numbers import new_case_number

    node.node.cases.clock = Clock(1_800_000_000.0)
    case = await open_case(session, node, [pdq(41)])
    wrong = "%08d" % ((int(case["pin"]) + 1) % 10**8)
    start = node.node.cases.clock.now
    known = await wrong_pin_answers(node, case["case_number"], wrong, "127.0.0.21")
    node.node.cases.clock.now = start
    unknown = await wrong_pin_answers(node, new_case_number(), wrong, "127.0.0.22")
    assert [a[0] for a in known][:5] == [401, 401, 401, 429, 401]  # the case's own counter spoke
    assert any(a[1].get("locked") for a in known) and "for this case" in known[-1][1]["error"]
    assert unknown == known


async def test_unknown_and_known_case_numbers_take_as_long(node, session):
    """Timing medians over 30 wrong-PIN attempts each (printed; not asserted tightly:
    the machine is shared). Each attempt starts after every wait has run out."""
    import statistics

    from node.cases.numbers import new_case_number

    clock = node.node.cases.clock = Clock(1_800_000_000.0)
    case = await open_case(session, node, [pdq(42)])
    wrong = "%08d" % ((int(case["pin"]) + 1) % 10**8)
    unknown_number = new_case_number()
    url = node.public_url + "/v1/cases/status"
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(3):  # warm up both paths
        for number in (case["case_number"], unknown_number):
            await post(session, url, {"case_number": number, "pin": wrong})
            clock.now += 2 * CASE_POLICY.lock_duration
    for i in range(60):
        which = ("known", "unknown")[i % 2]
        number = case["case_number"] if which == "known" else unknown_number
        clock.now += 2 * CASE_POLICY.lock_duration  # every wait is over: each attempt is checked
        started = time.perf_counter()
        status, _, _ = await post(session, url, {"case_number": number, "pin": wrong})
        times[which].append(time.perf_counter() - started)
        assert status in (401, 429)
    known, unknown = statistics.median(times["known"]), statistics.median(times["unknown"])
    print(f"\nwrong PIN, median of 30: known case {known * 1000:.2f} ms, unknown number {unknown * 1000:.2f} ms")


async def guess_from(session, url, forwarded_for=None) -> tuple[int, dict]:
    """A wrong guess at a number that names no case (a fresh one each time: only the
    address counter speaks)."""
    from node.cases.numbers import new_case_number

    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    status, data, _ = await post(session, url, {"case_number": new_case_number(), "pin": "12345678"}, headers=headers)
    return status, data


async def test_behind_a_trusted_proxy_each_person_has_a_counter(tmp_path, caplog, start_node):
    datadir = helpline_datadir(tmp_path)
    config = datadir.config
    config.http.trusted_proxies = ["127.0.0.40/30", "::1"]  # 127.0.0.40 .. 127.0.0.43
    datadir.save_config(config)
    node = await start_node(datadir)
    try:
        node.node.cases.clock = Clock(1_800_000_000.0)
        url = node.public_url + "/v1/cases/status"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.41", 0))) as proxy:
            # Person A, behind two proxies (127.0.0.42 passed the request to 127.0.0.41);
            # the left-most entry is whatever A's browser sent, and is not believed.
            for i in range(ADDRESS_POLICY.free):
                status, data = await guess_from(proxy, url, f"203.0.113.{i}, 198.51.100.1, 127.0.0.42")
                assert status == 401
            assert data["retry_after"] == 1  # A's address counter is now running
            status, data = await guess_from(proxy, url, "203.0.113.99, 198.51.100.1, 127.0.0.42")
            assert status == 429 and "please wait" in data["error"] and not data["locked"]
            status, data = await guess_from(proxy, url, "198.51.100.1")  # one proxy fewer: the same person
            assert status == 429
            # Person B through the same proxy has a counter of its own.
            for _ in range(ADDRESS_POLICY.free - 1):
                status, data = await guess_from(proxy, url, "198.51.100.2, 127.0.0.42")
                assert status == 401 and "retry_after" not in data
            status, _ = await guess_from(proxy, url, "[2001:db8::7]:4711")  # so has an IPv6 client
            assert status == 401
        # A peer that is not a trusted proxy: its header is ignored (all its requests count as one).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.50", 0))) as other:
            for i in range(ADDRESS_POLICY.free):
                status, _ = await guess_from(other, url, f"198.51.100.{10 + i}")
                assert status == 401
            status, _ = await guess_from(other, url, "198.51.100.99")
            assert status == 429
        assert not [r for r in caplog.records if "trusted_proxies" in r.getMessage()]  # a proxy is configured
    finally:
        await node.stop()


async def test_without_trusted_proxies_the_header_is_ignored_and_one_warning_said(node, caplog):
    node.node.cases.clock = Clock(1_800_000_000.0)
    url = node.public_url + "/v1/cases/status"
    caplog.set_level(logging.WARNING)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.41", 0))) as proxy:
        for i in range(ADDRESS_POLICY.free):
            status, _ = await guess_from(proxy, url, f"198.51.100.{i}")
            assert status == 401
        status, data = await guess_from(proxy, url, "198.51.100.200")  # someone else: same counter
        assert status == 429
    warnings = [r.getMessage() for r in caplog.records if "trusted_proxies" in r.getMessage()]
    assert len(warnings) == 1 and "cannot tell people apart" in warnings[0]
    assert "198.51.100" not in warnings[0] and "127.0.0.41" not in warnings[0]


# ---------------------------------------------------------------- crash repair

async def test_interrupted_creation_is_abandoned_and_its_entries_withdrawn(node, session, monkeypatch):
    def crash(*args, **kwargs):
        raise sqlite3.OperationalError("simulated crash after the entries were published")

    monkeypatch.setattr(CaseRepository, "publish_case", crash)
    status, _, _ = await post(session, node.public_url + "/v1/cases", {"eligibility": YES, "fingerprints": [pdq(11), pdq(12)]})
    assert status == 500
    monkeypatch.undo()
    assert node.node.db.cases.cases_in_state("pending") == [1]
    published = node.node.sequencer.published.size
    assert published == 2

    # A pending case whose entries never reached the log (a crash before the append).
    service = node.node.cases
    node.node.db.cases.insert_pending_case(b"L" * 32, b"s" * 16, b"h" * 32, "scrypt:n=1024,r=8,p=1", 1,
                                           [(b"\x01" * 32, "pdq", False)])
    await service.repair()
    assert node.node.db.cases.cases_in_state("abandoned") == [1, 2]
    view = await read_log(session, node.public_url, vkey_of(node), origin=node.datadir.config.node.origin)
    assert decode_entry(view.entries[2]) == Withdrawal((0, 1), "error")
    assert view.checkpoint.size == 3
    await service.repair()  # nothing more to do
    assert node.node.sequencer.published.size == 3


async def test_withdrawal_finished_after_restart(tmp_path, session, start_node):
    datadir = helpline_datadir(tmp_path)
    node = await start_node(datadir)
    case = await open_case(session, node, [pdq(21), pdq(22)])
    # The request was recorded, then the node stopped before appending anything.
    node.node.db.cases.mark_withdrawn(1, 20000)
    await node.stop()
    node = await start_node(datadir)
    try:
        view = await read_log(session, node.public_url, vkey_of(node), origin=datadir.config.node.origin)
        assert decode_entry(view.entries[-1]) == Withdrawal((0, 1), "withdrawn-by-person")
        status, answer, _ = await post(session, node.public_url + "/v1/cases/status",
                                       {"case_number": case["case_number"], "pin": case["pin"]})
        assert answer["state"] == "withdrawn" and answer["withdrawn_at"]["published"]
    finally:
        await node.stop()


# ---------------------------------------------------------------- privacy

async def test_the_published_log_holds_only_the_fingerprints(node, session, request):
    fps = [pdq(0x5151), {"signal": "md5", "fingerprint": "5e" * 16},
           {"signal": "vpdq", "fingerprint": [{"pdq": "7a" * 32, "quality": 80, "timestamp": 0.0}]}]
    case = await open_case(session, node, fps, lang="fr")
    codes = {"case_number": case["case_number"], "pin": case["pin"]}
    await post(session, node.public_url + "/v1/cases/status", codes)
    await post(session, node.public_url + "/v1/cases/withdraw", codes)

    db = node.node.db
    row = db.execute("SELECT lookup, pin_salt, pin_hash, pin_params FROM cases").fetchone()
    number = case["case_number"]
    secrets_given = [number, number.replace("-", ""), number.lower(), case["pin"], "in_image", "has_image",
                     "intimate", "eligibility", "lang"]
    binary_secrets = [row[0], row[1], row[2], row[3].encode(), node.node.cases._key,
                      int(case["pin"]).to_bytes(4, "big"), int(case["pin"]).to_bytes(4, "little")]

    view = await read_log(session, node.public_url, vkey_of(node), origin=node.datadir.config.node.origin)
    served = [view.note] + list(view.tiles.values())
    from protocol.tiles import bundles_for_size

    for bundle in bundles_for_size(view.checkpoint.size):
        async with session.get(f"{node.public_url}/{bundle.path()}") as r:
            served.append(await r.read())
    on_disk = list(tile_files(node.datadir).values())
    for blob in served + on_disk:
        for text in secrets_given:
            assert text.encode() not in blob
            assert text.encode("utf-16-le") not in blob
        for secret in binary_secrets:
            assert secret not in blob

    # Every entry is one of the submitted fingerprints or the withdrawal of them.
    submitted = {bytes.fromhex(pdq(0x5151)["fingerprint"]), bytes.fromhex("5e" * 16)}
    kinds = []
    for entry in map(decode_entry, view.entries):
        kinds.append(type(entry).__name__)
        if isinstance(entry, Submission):
            assert entry.signal == "vpdq" or entry.fingerprint in submitted
            assert entry.labels in (("image",), ("video",))
        else:
            assert isinstance(entry, Withdrawal) and entry.targets == (0, 1, 2)
    assert kinds == ["Submission"] * 3 + ["Withdrawal"]

    # The database holds neither the case number nor the PIN (PostgreSQL: in none of the
    # cluster's files, its write-ahead log included).
    if node.datadir.uses_postgres:
        files = [p for p in request.getfixturevalue("pg_cluster").data.rglob("*") if p.is_file()]
    else:
        files = list(node.datadir.db_path.parent.glob(node.datadir.db_path.name + "*"))
    db_bytes = b"".join(p.read_bytes() for p in files)
    for text in (number, number.replace("-", ""), case["pin"]):
        assert text.encode() not in db_bytes


async def test_logs_hold_no_case_number_pin_address_or_user_agent(tmp_path, start_node):
    """Every log record of the node, at DEBUG, during a full flow."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    marker_ua = "PrivacyProbe/9.9 (ua-marker-4471)"
    try:
        node = await start_node(helpline_datadir(tmp_path))
        try:
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.77", 0))
            headers = {"User-Agent": marker_ua, "X-Forwarded-For": "203.0.113.99", "Referer": "http://ref-marker.example/"}
            async with aiohttp.ClientSession(connector=connector, headers=headers) as s:
                case = await open_case(s, node, [pdq(31), pdq(32)])
                number, pin = case["case_number"], case["pin"]
                codes = {"case_number": number, "pin": pin}
                await post(s, node.public_url + "/v1/cases/status", codes)
                await post(s, node.public_url + "/v1/cases/status", {**codes, "pin": "00000000"})
                await post(s, node.public_url + "/v1/cases/status", {**codes, "case_number": "0000-0000-0000-0000"})
                await post(s, node.public_url + "/v1/cases", {"eligibility": {**YES, "adult": False}, "fingerprints": []})
                await post(s, node.public_url + "/v1/cases", data=b"\xff\xd8", headers={"Content-Type": "image/jpeg"})
                # Someone puts the codes in URLs anyway: they must not reach the logs either.
                async with s.get(node.public_url + f"/v1/cases/status?case_number={number}&pin={pin}") as r:
                    assert r.status == 405
                async with s.get(node.public_url + f"/cases/{number}/{pin}") as r:
                    assert r.status == 404
                async with s.get(node.public_url + f"/tile/{number}") as r:
                    assert r.status == 404
                await post(s, node.public_url + "/v1/cases/withdraw", codes)
                await post(s, node.public_url + "/v1/cases/withdraw", codes)
        finally:
            await node.stop()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = buffer.getvalue()
    assert '"POST /v1/cases/status" 200' in text  # the access log did run
    for secret in (number, number.replace("-", ""), pin, "127.0.0.77", marker_ua, "ua-marker", "203.0.113.99",
                   "ref-marker"):
        assert secret not in text, secret


async def test_random_bodies_never_cause_a_server_error(node, session):
    """Any JSON value in any field: a 4xx with a message, never a 500, nothing published."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                               | st.text(max_size=20), lambda inner: st.lists(inner, max_size=4)
                               | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
    fields = st.sampled_from(["eligibility", "fingerprints", "lang", "case_number", "pin", "signal"])
    bodies = json_values | st.dictionaries(fields, json_values, max_size=4) \
        | st.fixed_dictionaries({"eligibility": st.just(YES), "fingerprints": st.lists(
            st.dictionaries(st.sampled_from(["signal", "fingerprint", "quality", "low_quality"]), json_values),
            min_size=1, max_size=3)})
    seen = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/v1/cases", "/v1/cases/status", "/v1/cases/withdraw"]), body=bodies)
    def probe(path, body):
        seen.append((path, body))

    probe()
    for path, body in seen:
        status, data, _ = await post(session, node.public_url + path,
                                     data=__import__("json").dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        assert 400 <= status < 500 and isinstance(data, dict), (path, body, status, data)
        assert data.get("error") or data.get("eligible") is False
    assert node.node.sequencer.published.size == 0
