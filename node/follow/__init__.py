"""Following other nodes' logs: fetch, verify everything, apply (see sync.py).

- `client.py`    bounded HTTP reads (timeouts, body limits, signed read requests)
- `sync.py`      one round: checkpoint -> tiles -> consistency -> leaves -> one transaction
- `apply.py`     what verified entries do to the local tables
- `listener.py`  the hook the matcher plugs into (withdrawals before commit, additions after)
- `scheduler.py` one task per followed log: pushed checkpoints when the node offers
                 them, polling otherwise; back-off with jitter
- `push.py`      what a follower knows of a log's push channel (/node.json)

Tables: node/store/follow.py. Normative prose: spec/parts/following.md.
"""
