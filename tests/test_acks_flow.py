"""Acknowledgements end to end, two real nodes in this process: the platform
acknowledges what it applied, the helpline acknowledges what it published, and a
person's case status says, per platform, when the fingerprints and the withdrawal
were applied."""

from __future__ import annotations

import datetime

from acks_support import HELPLINE, PLATFORM, entries_of, running_pair
from node.web.ack_routes import ACKNOWLEDGER
from protocol.acknowledgements import publication_of, verify_acknowledgement, verify_publication
from protocol.entries import entry_from_json
from protocol.note import parse_note
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

        withdrawn = await pair.withdraw(case)
        assert withdrawn["platforms"][0]["withdrawal"]["applied"] in (False, True)
        answer = await pair.wait_applied(case, "withdrawal")
        applied = answer["platforms"][0]
        assert _time(applied["withdrawal"]["at"]) >= _time(applied["fingerprints"]["at"])
