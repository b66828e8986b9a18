"""Acknowledgements end to end, two real nodes in this process: the platform
acknowledges what it applied, the helpline acknowledges what it published, and a
person's case status says, per platform, when the fingerprints and the withdrawal
were applied."""

from __future__ import annotations

import asyncio
import datetime
import html
import time

import pytest

from acks_support import HELPLINE, PLATFORM, entries_of, running_pair
from node.web.ack_routes import ACKNOWLEDGER
from node.web.follow_routes import FOLLOW_SERVICE
from protocol.acknowledgements import publication_of, verify_acknowledgement, verify_publication
from node.cli import main as cli_main
from node.follow.status import format_report, status_report
from protocol.entries import decode_entry, entry_from_json, kind_name
from protocol.errors import ProtocolError
from protocol.note import parse_note
from protocol.policy import parse_policy
from protocol.tlogproof import verify_proofs
from publish_support import wait_for


def _time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


async def test_case_status_shows_when_each_platform_applied(tmp_path):
    async with running_pair(tmp_path) as pair:
        case = await pair.create_case(3)
        first = await pair.status(case)
        assert [p["name"] for p in first["platforms"]] == ["Platform A"]
        answer = await pair.wait_applied(case)
        [platform] = answer["platforms"]
        assert platform["fingerprints"]["applied"] is True and platform["withdrawal"] is None
        # The platform's own log says so, with a valid cosignature about the helpline's tree.
        acks = [e for _, e in entries_of(pair.platform) if e["kind"] == "acknowledgement"]
        assert acks and all(a["origin"] == HELPLINE for a in acks)
        for a in acks:
            verify_acknowledgement(entry_from_json(a), PLATFORM)
        last = max(e["index"] for e in answer["published"])
        assert any(a["size"] > last for a in acks)
        # The helpline's log holds the case's entries and nothing else: no time.
        assert [e["kind"] for _, e in entries_of(pair.helpline)] == ["submission"] * 3
        # It cosigned its checkpoint when it published it; the platform carried that
        # publication time into its acknowledgement, checked with the helpline's key.
        helpline_ack_key = pair.helpline.app[ACKNOWLEDGER].vkey
        carried = [entry_from_json(a) for a in acks if a["publication"]]
        assert carried
        for ack in carried:
            published = verify_publication(ack, helpline_ack_key)
            assert published <= ack.timestamp + 1
        served = parse_note(pair.helpline.context.sequencer.published.note)
        assert publication_of(served) is not None

        # The operator's view: how fast the platform acknowledged, and no false statement.
        stats = status_report(pair.helpline.context.db, own_origin=HELPLINE)["logs"][0]["acknowledgements"]
        assert stats["state"] == "ok" and stats["false_acknowledgements"] == 0
        assert stats["submissions"]["acknowledged"] == 3 and stats["submissions"]["pending"] == 0
        assert 0 <= stats["submissions"]["p50"] < 10
        # The statistics read a summary kept by a trigger; it agrees with the rows.
        from node.store.stats import published_groups

        db = pair.helpline.context.db
        assert published_groups(db, 0, 100) == db.execute(
            "SELECT checkpoint_size, COUNT(*), MAX(idx) FROM case_entries WHERE checkpoint_size IS NOT NULL "
            "GROUP BY checkpoint_size ORDER BY checkpoint_size DESC").fetchall()

        withdrawn = await pair.withdraw(case)
        assert withdrawn["platforms"][0]["withdrawal"]["applied"] in (False, True)
        answer = await pair.wait_applied(case, "withdrawal")
        applied = answer["platforms"][0]
        assert _time(applied["withdrawal"]["at"]) >= _time(applied["fingerprints"]["at"])


async def test_receipts_at_creation_withdrawal_and_later_verify_offline(tmp_path, capsys):
    async with running_pair(tmp_path) as pair:
        case = await pair.create_case(10)
        receipt = case["receipt"]
        assert receipt.startswith("ncii-node/tlog-proofs@v1\n") and case["receipt_file"].endswith(".tlog-proof")
        assert case["case_number"] not in receipt and case["pin"] not in receipt
        async with pair.session.get(pair.helpline.public_url + "/v1/cases/receipt-policy") as r:
            assert r.status == 200
            policy_text = await r.read()
        policy = parse_policy(policy_text)
        verified = verify_proofs(receipt.encode(), policy)
        assert sorted(e.index for e in verified.entries) == [e["index"] for e in case["published"]]
        assert list(verified.quorum.cosigned) == [f"published-by:{HELPLINE}"]  # no platform had applied it yet

        # Later, the receipt also carries the platform's acknowledgement of that checkpoint.
        await pair.wait_applied(case)
        _, later = await pair.post("/v1/cases/receipt", {"case_number": case["case_number"], "pin": case["pin"]})
        async with pair.session.get(pair.helpline.public_url + "/v1/cases/receipt-policy") as r:
            policy_text = await r.read()
        verified = verify_proofs(later["receipt"].encode(), parse_policy(policy_text))
        assert "applied-by:Platform-A" in verified.quorum.cosigned

        # Checked offline by the command line, in plain words.
        (tmp_path / "receipt.tlog-proof").write_text(later["receipt"])
        (tmp_path / "policy.txt").write_bytes(policy_text)
        code = await asyncio.to_thread(cli_main, ["audit", "verify-proof", str(tmp_path / "receipt.tlog-proof"),
                                                  "--policy", str(tmp_path / "policy.txt")])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "VALID proof: 10 entries" in out and "Published: the helpline says" in out
        assert "Applied: Platform-A says" in out

        # At withdrawal: the fingerprints and the withdrawal, under one checkpoint.
        withdrawn = await pair.withdraw(case)
        verified = verify_proofs(withdrawn["receipt"].encode(), parse_policy(policy_text))
        kinds = sorted(kind_name(decode_entry(e.entry)) for e in verified.entries)
        assert kinds == ["submission"] * 10 + ["withdrawal"]

        # A receipt altered anywhere proves nothing.
        tampered = withdrawn["receipt"].replace("index 1\n", "index 2\n", 1)
        with pytest.raises(ProtocolError):
            verify_proofs(tampered.encode(), parse_policy(policy_text))


async def test_a_platform_that_stops_acknowledging_shows_up(tmp_path):
    """A followed log that never acknowledges: the case says pending since publication,
    and a minute later the operator sees it as silent; the honest platform stays ok."""
    from follow_support import LogServer, StaticLog
    from node.acks.report import acknowledgement_statistics
    from node.store import follow as follow_store

    async with running_pair(tmp_path) as pair:
        mute = StaticLog("mute.example/log")
        server = await LogServer(mute).start()
        try:
            follow_store.add_log(pair.helpline.context.db, mute.origin, server.url, mute.vkey, name="Mute")
            await pair.helpline.app[FOLLOW_SERVICE]["service"].reload()
            case = await pair.create_case(2)
            await wait_for(lambda: _applied_by(pair, case, "Platform A"))
            answer = await pair.status(case)
            mute_entry = next(p for p in answer["platforms"] if p["name"] == "Mute")
            assert mute_entry["fingerprints"]["applied"] is False and mute_entry["fingerprints"]["pending_since"]
            later = acknowledgement_statistics(pair.helpline.context.db, HELPLINE, now=time.time() + 120)
            states = {p["name"]: p["state"] for p in later["platforms"]}
            assert states == {"Platform A": "ok", "Mute": "silent"}
            text = format_report(status_report(pair.helpline.context.db, now=time.time() + 120, own_origin=HELPLINE))
            assert "SILENT" in text
            # The operator's console and `ncii-node stats` say the same.
            from node.figures import format_figures, node_figures
            from node.web.console.page import render_console

            figures = node_figures(pair.helpline.context.db, pair.helpline.context.config, "7d",
                                   now=time.time() + 120)
            states = {p["name"]: p["state"] for p in figures["acknowledgements"]["platforms"]}
            assert states == {"Platform A": "ok", "Mute": "silent"}
            for lang, words in (("en", "has not applied entries published more than a minute ago"),
                                ("fr", "n'a pas appliqué des entrées publiées il y a plus d'une minute")):
                page = render_console(figures, lang)
                assert 'id="acknowledgements"' in page and f"Mute: {html.escape(words)}" in page
            stats = format_figures(figures)
            assert "Mute (mute.example/log) [SILENT" in stats and "Platform A (platform.example/log) [ok]" in stats
        finally:
            await server.stop()


async def _applied_by(pair, case, name):
    answer = await pair.status(case)
    return any(p["name"] == name and p["fingerprints"]["applied"] for p in answer["platforms"])
