"""The witness area of a serving node: cosigning other logs, and what it shows of them.

    service = WitnessService(datadir, config, worker); await service.start()
    await service.add_checkpoint(body)      -> Reply (C2SP tlog-witness, node/witness/addcheckpoint.py)
    await service.cosigned()                -> the latest cosigned checkpoint per origin
    await service.cosigned_for(origin) / cosigned_for_hash(hex)  -> one of them, or None
    await service.seen(own_origin)          -> the GET /witness/seen document
    await service.evidence(origin=None)     -> the split-view evidence documents, newest last
    await service.node_json()               -> what /node.json says about witnessing

The witness is active when this node is a witness, knows logs to witness or already
has a witness key (DIR/keys/witness.key, created then); otherwise every origin is
unknown (add-checkpoint answers 404 without reading the body). All database work runs
on the service's own database worker, so add-checkpoint requests are judged one at a
time, off the event loop (the store makes each check-and-store atomic anyway).
"""

from __future__ import annotations

import json
import logging

from node.store import witness as store
from node.witness.addcheckpoint import Witness
from node.witness.keys import has_witness_key, load_witness_signer
from node.witness.seen import seen_document

log = logging.getLogger(__name__)

#: Evidence documents served per request (each a few kilobytes), the newest.
MAX_EVIDENCE_SERVED = 16


class WitnessService:
    def __init__(self, datadir, config, worker):
        self.datadir = datadir
        self.config = config
        self.worker = worker            # node.store.DatabaseWorker, owned by this service
        self.witness: Witness | None = None

    async def start(self) -> None:
        known = await self.worker.witness.list_known_logs()
        if self.config.node.role == "witness" or known or has_witness_key(self.datadir):
            signer = load_witness_signer(self.datadir, create=True)
            self.witness = await self.worker.call(lambda db: Witness(signer, db))
            log.info("witness %s: cosigning for %s", signer.verifier_key(),
                     ", ".join(sorted({k.origin for k in known})) or "no log yet")

    async def stop(self) -> None:
        await self.worker.close()

    @property
    def active(self) -> bool:
        """Whether this node cosigns anything (else every origin is unknown)."""
        return self.witness is not None

    @property
    def vkey(self) -> str | None:
        return self.witness.vkey if self.witness is not None else None

    async def add_checkpoint(self, body: bytes):
        return await self.worker.call(lambda _db: self.witness.add_checkpoint(body))

    async def cosigned(self) -> list[store.CosignedCheckpoint]:
        return await self.worker.witness.all_witness_latest()

    async def cosigned_for(self, origin: str) -> store.CosignedCheckpoint | None:
        return await self.worker.witness.witness_latest(origin)

    async def cosigned_for_hash(self, origin_hash: str) -> store.CosignedCheckpoint | None:
        return await self.worker.witness.witness_latest_by_origin_hash(origin_hash)

    async def seen(self, own_origin: str) -> dict:
        return await self.worker.call(seen_document, own_origin)

    async def evidence(self, origin: str | None = None) -> list[dict]:
        rows = await self.worker.witness.list_evidence()
        docs = [json.loads(text) for _, row_origin, text, _ in rows if origin is None or row_origin == origin]
        return docs[-MAX_EVIDENCE_SERVED:]

    async def node_json(self) -> dict:
        """`witnessing`: the add-checkpoint rate this log keeps to (the public witness
        network asks logs to declare it) and its witnesses' cosigner keys. `witness` (a
        node that witnesses): its cosigner key and, per log it witnesses, the rate that
        log declared (null: none declared)."""

        def read(db):
            return db.witness.list_log_witnesses(), db.witness.list_known_logs(), db.witness.log_rates()

        witnesses, known, rates = await self.worker.call(read)
        doc = {"witnessing": {"add_checkpoint_interval": self.config.witness.add_checkpoint_interval,
                              "witnesses": [w.vkey for w in witnesses]}}
        if self.witness is not None:
            doc["witness"] = {"cosigner_key": self.witness.vkey,
                              "logs": [{"origin": origin, "add_checkpoint_interval": rates.get(origin)}
                                       for origin in sorted({k.origin for k in known})]}
        return doc
