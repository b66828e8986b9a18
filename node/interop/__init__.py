"""Reading our logs from software that is not an ncii-node (spec/parts/interop.md).

- `logreader.py`  one verified round of a log against a state the caller keeps
                  (the follower's own verification, node/follow/sync.py, without a database)
- `pytx.py`       the python-threatexchange extension (`threatexchange config extensions
                  add node.interop.pytx`): exchange `ncii_node` for the CLI and HMA

Nothing here is imported by the node itself; `pytx.py` needs the optional dependency
`threatexchange` (pip install "ncii-node[pytx]").
"""
