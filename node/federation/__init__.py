"""A signed federation membership list, followed by nodes to add and remove peers
(spec/parts/joining.md §3).

- `members.py`  the list: its text format, strict bounded parser, signing and k-of-n
                verification, and what changed between two versions (no I/O)
- `listlog.py`  the list as an append-only log: version entries, the log's rules,
                k-of-n checkpoints, its tiles (no I/O)
- `publish.py`  appending a version to the list log in a data directory (and asking
                the node's witnesses to cosign its checkpoint)
- `cosigning.py`  the running node asks the witnesses its served list checkpoint
                lacks again, until each has cosigned it
- `logfollow.py`  fetching the list through its log: consistency, the version's place
                in the log, rollback and forks
- `compare.py`  comparing the list log's checkpoint with a gossip peer's
- `links.py`    what linking to (and unlinking from) one member writes: readers, the
                followed log, the gossip peer (shared with `ncii-node join`)
- `subscription.py`  fetching a list over HTTP, accepting a version (rollback and
                equivocation refused), applying what needs no trust decision, and
                approving or rejecting the rest
- `service.py`  the running node's task that fetches the list every `interval` s

Tables: node/store/federation.py. Commands: node/cli/federation.py.
"""

#: The signed list a node publishes (`ncii-node federation publish`), in its data
#: directory; node/web/federation_routes.py serves it at GET /federation/list.
PUBLISHED_LIST = "federation-list"
