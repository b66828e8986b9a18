"""Platform-side matching: in-memory indexes of the active fingerprints.

`service.Matcher` is the service; `signal_indexes` holds one index class per signal
type (registered by code in `SIGNAL_INDEXES`), `entries` the entry table they share,
`pdq_index.PDQIndex` the exact PDQ index (compiled core in `_pdqindex.c`), `holds`
the budgets and held clusters, `api` and `suppress` what the routes and commands do.
"""
