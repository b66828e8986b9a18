"""Issue 12, point 5: whoever knows a case number cannot keep its owner out, and PIN
guessing is no faster than before. A real helpline node on real sockets (RunningNode:
the test moves the case service's clock through the waits), attackers on networks of
their own (127.0.N.x: one /24 each), the owner on another; and the numbers of
spec/parts/cases.md §8 from scripts/sim_pin_guessing.py, which runs the same counters."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import pytest

from node.cases.eligibility import QUESTIONS

from node.cases.limits import CASE_GUARD, CASE_POLICY, GUARD_TRIES
from node.cases.numbers import new_case_number
from node.web.app import RunningNode
from node.web.case_routes import CASES
from publish_support import Clock, helpline_datadir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

ELIGIBLE = dict.fromkeys(QUESTIONS, True)  # every eligibility question answered yes


@pytest.fixture
async def node(tmp_path):
    running = await RunningNode(helpline_datadir(tmp_path)).start("127.0.0.1", 0)
    running.app[CASES].clock = Clock(1_800_000_000.0)
    yield running
    await running.stop()


async def post(node, source: str, path: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as session:
        async with session.post(node.public_url + path, json=body) as r:
            return r.status, await r.json()


async def guess_until_refused(node, source: str, number: str, pin: str, max_guesses: int = 100) -> tuple[int, dict]:
    """Wrong PINs from one address as fast as the waits allow (the clock moves through
    each), until a lockout or guard refuses. Returns (wrong PINs checked, the refusal)."""
    clock, checked = node.app[CASES].clock, 0
    for _ in range(max_guesses):
        status, data = await post(node, source, "/v1/cases/status", {"case_number": number, "pin": pin})
        if status == 401:
            checked += 1
            clock.now += data.get("retry_after", 0)
        elif data.get("locked"):
            return checked, data
        else:
            clock.now += data["retry_after"]
    raise AssertionError("never refused")


async def test_an_attacker_elsewhere_cannot_keep_the_owner_out(node):
    status, case = await post(node, "127.0.50.2", "/v1/cases", {"eligibility": ELIGIBLE, "lang": "en",
                                                                "fingerprints": [{"signal": "md5", "fingerprint": "ab" * 16}]})
    assert status == 201
    right = {"case_number": case["case_number"], "pin": case["pin"]}
    wrong = "%08d" % ((int(case["pin"]) + 1) % 10**8)

    # One attacker network: ten wrong PINs lock the case -- for that network only.
    checked, refusal = await guess_until_refused(node, "127.0.1.2", case["case_number"], wrong)
    assert refusal["locked"] and "for this case" in refusal["error"] and not refusal.get("guarded")
    assert (await post(node, "127.0.1.3", "/v1/cases/status", right))[0] == 429  # its whole /24
    assert (await post(node, "127.0.50.2", "/v1/cases/status", right))[0] == 200  # the owner: at once

    # More networks: 24 wrong PINs in all guard the case for a day. Then every network
    # may try it GUARD_TRIES times in 30 days (the attackers' too), no more; the owner's
    # network, which has not, opens it.
    await guess_until_refused(node, "127.0.2.2", case["case_number"], wrong)
    checked, refusal = await guess_until_refused(node, "127.0.3.2", case["case_number"], wrong)
    assert refusal["guarded"] and "from another connection" in refusal["error"]
    assert CASE_GUARD.lock_duration - 60 < refusal["retry_after"] <= CASE_GUARD.lock_duration
    assert node.context.db.execute("SELECT failed_pins FROM cases").fetchone()[0] == CASE_GUARD.lock_after
    def counted() -> int:
        return node.context.db.execute("SELECT failed_pins FROM cases").fetchone()[0]

    for attacker in ("127.0.1.2", "127.0.2.9", "127.0.3.2"):
        before = counted()
        while True:  # wrong PINs, waiting out each of this network's own lockouts, until one is not checked
            was = counted()
            status, data = await post(node, attacker, "/v1/cases/status", {**right, "pin": wrong})
            if data.get("guarded") and counted() == was:
                break
            node.app[CASES].clock.now += 1 if data.get("guarded") else data.get("retry_after", 0)
        assert counted() - before == GUARD_TRIES, attacker
    status, data = await post(node, "127.0.50.2", "/v1/cases/status", right)
    assert status == 200 and data["state"] == "active"
    status, data = await post(node, "127.0.50.2", "/v1/cases/withdraw", right)
    assert status == 200 and data["state"] == "withdrawn"

    # A fresh attacker network gets GUARD_TRIES wrong PINs while the case is guarded
    # (answered as wrong: the owner learns of a typo), then none.
    answers = []
    for _ in range(GUARD_TRIES + 1):
        status, data = await post(node, "127.0.4.2", "/v1/cases/status", {**right, "pin": wrong})
        answers.append((status, data.get("guarded", False)))
        node.app[CASES].clock.now += data.get("retry_after", 0) if status == 401 else 0
    assert answers == [(401, False)] * GUARD_TRIES + [(429, True)]


async def test_a_guarded_unknown_number_is_answered_like_a_guarded_case(node):
    """The guard must not tell whether a case number exists: the same answers for a
    real case (wrong PINs) and an unknown number, on the same clock, network by network."""
    status, case = await post(node, "127.0.50.2", "/v1/cases", {"eligibility": ELIGIBLE, "lang": "en",
                                                                "fingerprints": [{"signal": "md5", "fingerprint": "cd" * 16}]})
    wrong = "%08d" % ((int(case["pin"]) + 1) % 10**8)
    clock = node.app[CASES].clock
    start = clock.now
    runs = []
    for number, base in ((case["case_number"], 10), (new_case_number(), 20)):
        clock.now = start
        answers = []
        for net in range(base, base + 4):
            _, refusal = await guess_until_refused(node, f"127.0.{net}.2", number, wrong)
            answers.append((refusal.get("guarded", False), refusal["error"], refusal["retry_after"]))
        runs.append(answers)
    assert runs[0] == runs[1]
    assert runs[0][-1][0] is True


def test_the_numbers_of_the_spec():
    from sim_pin_guessing import simulate

    one = simulate(1, days=10)
    assert one["first_day"] <= 24 + 10 and one["per_day_after"] <= 1.5  # before: 24 a day
    assert one["owner_refused"] == 0
    many = simulate(100, days=10)
    assert many["owner_refused"] == 0  # an attacker with 100 networks never keeps the owner out
    assert many["year"] < 24 * 365  # and guesses less in a year than one network did before
    assert CASE_POLICY.lock_after == 10 and CASE_GUARD.lock_after == 24
