"""Platform-side matching: in-memory indexes of the active fingerprints.

`pdq_index.PDQIndex` is the exact PDQ index (compiled core in `_pdqindex.c`).
"""
