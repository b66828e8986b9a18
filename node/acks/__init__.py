"""Acknowledgements: what this node has applied, and what others say they applied.

- `publisher.py`  this node's own acknowledgements (when, signed with DIR/keys/ack.key,
                  appended through the sequencer)
- `report.py`     per followed log: when it acknowledged this node's entries (case
                  status, statistics)

The entry and its cosignature are protocol/entries.py and protocol/acknowledgements.py;
acknowledgements received from followed logs are stored by the follower
(node/follow/apply.py, table follow_acks). Normative prose: spec/parts/acknowledgements.md.
"""
