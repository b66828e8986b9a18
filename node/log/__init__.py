"""The node's own log: sequencing entries into C2SP tlog-tiles files and signed checkpoints.

- `append.py`    what an operator appends: JSON lines, checked all or nothing
- `sequencer.py` the pending pool, batches, the crash-safe order of writes; the tree's
                 right edge it keeps in memory is protocol/edge.py's TreeEdge; it stores
                 entries and checkpoints through node/store (`db.log`) and tiles through
                 node/store/tiles.py

The crash argument (why a crash can neither fork the log nor change a served tile)
is written in `sequencer.py` where the writes happen, and in spec/parts/publishing.md.
"""
