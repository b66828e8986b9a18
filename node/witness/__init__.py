"""Witnesses and split views: nobody has to trust a log's word about its own history.

    addcheckpoint  C2SP tlog-witness add-checkpoint: judge, store atomically, cosign
    keys           the witness's cosigning key (DIR/keys/witness.key)
    submit         publisher side: send each new checkpoint to our witnesses, serve it cosigned
    policy         the C2SP tlog-policy quorum followers and auditors require (files or k-of-n flags)
    evidence       portable split-view evidence files: build and verify
    seen           share the checkpoints this node has seen; compare views with peers
    proofs         offline proofs (C2SP tlog-proof) of entries, from disk or over HTTP

Tables: node/store/witness.py. Routes: node/web/witness_routes.py. Normative prose:
spec/parts/witness.md.
"""
