"""The node's own log: sequencing entries into C2SP tlog-tiles files and signed checkpoints.

- `edge.py`      the right edge of the Merkle tree, tile by tile, kept in memory
- `tilestore.py` writing tile files durably (temp file, fsync, rename) and reading them
- `sequencer.py` the pending pool, batches, the crash-safe order of writes

The crash argument (why a crash can neither fork the log nor change a served tile)
is written in `sequencer.py` where the writes happen, and in spec/parts/publishing.md.
"""
