"""`ncii-node audit`: check a whole log end to end, and check split-view evidence.

    check    the checks on downloaded bytes: tiles, bundles, entries, invariants, signature
    run      download, compare with the last audit (--state) and with peers (--peer), report
    report   JSON, text and a self-contained HTML page with a chart

Evidence files themselves are protocol/evidence.py (shared with witnesses and
followers). Normative prose: spec/parts/witness.md.
"""
