"""The auditor computes acknowledgement latency from the logs alone, lists the
withdrawals a platform never acknowledged, and turns an acknowledgement of a tree the
helpline never had into an evidence file anyone can check."""

from __future__ import annotations

import asyncio
import json

from acks_support import HELPLINE, running_pair
from follow_support import LogServer, StaticLog
from node.cli import main as cli_main
from node.web.ack_routes import ACKNOWLEDGER
from protocol.acknowledgements import acknowledge
from protocol.checkpoint import Checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.entries import encode_entry
from protocol.merkle import leaf_hash

LIAR = "liar.example/log"


async def test_audit_with_platforms_reports_latency_gaps_and_false_acknowledgements(tmp_path, capsys):
    async with running_pair(tmp_path) as pair:
        kept = await pair.create_case(3, seed=1)
        gone = await pair.create_case(2, seed=2)
        await pair.wait_applied(kept)
        await pair.withdraw(gone)
        await pair.wait_applied(gone, "withdrawal")
        size = pair.helpline.context.sequencer.published.size

        # A platform that acknowledges a helpline tree of the right size but another root,
        # and never acknowledges the withdrawal.
        liar = StaticLog(LIAR)
        liar_key = CosignatureSigner(LIAR, bytes([7]) * 32)
        liar.append(encode_entry(acknowledge(liar_key, Checkpoint(HELPLINE, size, leaf_hash(b"not it")),
                                             1742300000000)))
        server = await LogServer(liar).start()
        try:
            platform = pair.platform
            argv = ["audit", pair.helpline.public_url, "--vkey", pair.helpline.context.log_vkey, "--json",
                    "--state", str(tmp_path / "audit"),
                    "--platform", platform.public_url, platform.context.log_vkey,
                    "--platform", server.url, liar.vkey]
            capsys.readouterr()
            code = await asyncio.to_thread(cli_main, argv)
        finally:
            await server.stop()
        report = json.loads(capsys.readouterr().out)
        assert code == 1  # the liar's acknowledgement is a violation
        acks = report["acknowledgements"]
        assert acks["acknowledgement_key"] == pair.helpline.app[ACKNOWLEDGER].vkey
        honest, lying = acks["platforms"]
        assert honest["ok"] and honest["false_acknowledgements"] == 0
        assert honest["submissions"]["acknowledged"] == 5 and honest["submissions"]["pending"] == 0
        assert honest["withdrawals"]["acknowledged"] == 1 and honest["unacknowledged_withdrawals"] == []
        assert 0 <= honest["submissions"]["p50"] < 10 and honest["submissions"]["publication_unknown"] == 0
        assert not lying["ok"] and lying["false_acknowledgements"] == 1
        assert [v["kind"] for v in lying["violations"]] == ["acknowledgement"]
        assert len(lying["unacknowledged_withdrawals"]) == 1
        assert lying["unacknowledged_withdrawals"][0]["published"] is not None
        [evidence] = report["evidence_files"]

    assert cli_main(["audit", "verify-evidence", evidence]) == 0
    out = capsys.readouterr().out
    assert "VALID evidence of an acknowledgement of a tree the log never had" in out and LIAR in out
    # Tampered evidence proves nothing.
    doc = json.loads(open(evidence).read())
    for field, value in (("vkey", doc["acknowledger"]["vkey"]), ("checkpoint", doc["checkpoint"].replace("\n", "\n\n", 1))):
        bad = dict(doc, **{field: value})
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        assert cli_main(["audit", "verify-evidence", str(tmp_path / "bad.json")]) == 1
        assert "NOT evidence" in capsys.readouterr().out
